"""Audio in: files decoded a frame at a time, host waveforms mixed to mono and resampled for the models.

Layout: ``(C, n)`` float32 in ``[-1, 1]`` plus an integer sample rate; the models take mono ``(n,)`` at
16 kHz (:func:`prepare_waveform`, or :func:`load_audio_mono` straight from a file).  Long audio is mixed,
resampled and checked a block at a time (:class:`_StreamResampler`), with the samples of the whole-signal
computation.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import av
import numpy as np
import torch
from scipy.signal import resample_poly

from demo_core.errors import DemoInputError

from .paths import _existing_file

__all__ = [
    "load_audio",
    "load_audio_mono",
    "prepare_waveform",
]

# Full-scale value of each integer sample format, for the mapping to [-1, 1].
_INT_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0, np.dtype(np.int64): 2.0**63}


def _audio_frame_to_float(frame: av.AudioFrame) -> np.ndarray:
    """One decoded frame as float32 ``(C, n)``, whatever its sample format and packing."""
    channels = len(frame.layout.channels)
    samples = frame.to_ndarray()  # planar: (C, n); packed: (1, n * C), interleaved
    if not frame.format.is_planar:
        samples = samples.reshape(-1, channels).T  # (C, n)
    if samples.dtype == np.uint8:
        return (samples.astype(np.float32) - 128.0) / 128.0
    if samples.dtype in _INT_SCALE:
        return (samples.astype(np.float64) / _INT_SCALE[samples.dtype]).astype(np.float32)
    return samples.astype(np.float32)


class _SampleBuffer:
    """``(C, k)`` float32 blocks appended one after the other.

    Given an expected length (:meth:`expect`, from a header), the samples go into one buffer of that size, so
    a long file is not held twice (a list of decoded frames next to their concatenation).  Without one, or
    once the expected length turns out too short, the blocks are listed and concatenated at the end.
    """

    def __init__(self) -> None:
        self._buf: np.ndarray | None = None
        self._expected = 0
        self._chunks: list[np.ndarray] = []
        self.channels = 0
        self.size = 0

    def expect(self, samples: int, _rate: int = 0) -> None:
        self._expected = max(0, int(samples))

    def append(self, samples: np.ndarray, _rate: int = 0) -> None:
        c, k = samples.shape
        if not self.channels:
            self.channels = c
            if self._expected >= k:
                self._buf = np.empty((c, self._expected), np.float32)
        if self._buf is not None and self.size + k > self._buf.shape[1]:  # understated: list from here on
            self._chunks.append(self._buf[:, :self.size])
            self._buf = None
        if self._buf is not None:
            self._buf[:, self.size:self.size + k] = samples
        else:
            self._chunks.append(samples)
        self.size += k

    def result(self) -> np.ndarray:
        """The ``(C, n)`` samples, C-contiguous."""
        if self._buf is None:
            return np.concatenate(self._chunks, axis=1).astype(np.float32, copy=False)
        buf, n = self._buf, self.size
        c, cap = buf.shape
        if n == cap:
            return buf
        flat = buf.reshape(-1)
        for row in range(1, c):  # row r moves down from r·cap to r·n: rows already moved are never overwritten
            flat[row * n:(row + 1) * n] = flat[row * cap:row * cap + n]
        return flat[:c * n].reshape(c, n)


def _decode_audio(path: Path, sink) -> int:
    """Decode the first audio stream of ``path`` a frame at a time into ``sink`` (:class:`_SampleBuffer`,
    :class:`_MonoSink`), with :func:`load_audio`'s checks; returns the sample rate."""
    sample_rate = 0
    declared_s = None
    try:
        with av.open(str(path)) as container:
            if not container.streams:
                raise DemoInputError(f"audio: {str(path)!r} contains no media streams (corrupt or truncated?)")
            if not container.streams.audio:
                raise DemoInputError(f"audio: {str(path)!r} has no audio stream")
            stream = container.streams.audio[0]
            if stream.duration and stream.time_base:
                declared_s = float(stream.duration * stream.time_base)
            rate = int(stream.rate or 0)
            if declared_s and rate:
                sink.expect(math.ceil(declared_s * rate) + rate, rate)  # a second of slack
            for frame in container.decode(stream):
                samples = _audio_frame_to_float(frame)
                if sink.size and samples.shape[0] != sink.channels:
                    raise DemoInputError(f"audio: the channel count of {str(path)!r} changes mid-stream")
                sample_rate = sample_rate or int(frame.sample_rate)
                sink.append(samples, sample_rate)
    except av.FFmpegError as err:
        raise DemoInputError(
            f"audio: {str(path)!r} could not be decoded as audio (corrupt, truncated or not a media file): {err}"
        ) from err
    if sink.size == 0:
        raise DemoInputError(f"audio: {str(path)!r} contains no audio samples")
    decoded_s = sink.size / sample_rate
    if declared_s is not None and decoded_s < 0.9 * declared_s and declared_s - decoded_s > 0.5:
        raise DemoInputError(
            f"audio: {str(path)!r} looks truncated: its header declares {declared_s:.2f} s "
            f"but only {decoded_s:.2f} s could be decoded"
        )
    return sample_rate


def load_audio(path: str | os.PathLike) -> tuple[torch.Tensor, int]:
    """Decode the first audio stream of any audio or video file.

    Integer formats map to ``[-1, 1)`` by their full scale (u8, s16, s32, s64); float formats
    are clipped to ``[-1, 1]``.  All channels are kept.

    Args:
        path: Audio file (wav, mp3, flac, m4a, ...) or video file with an audio track.

    Returns:
        ``(waveform, sample_rate)``: waveform of shape ``(C, n)``, float32, and the rate in Hz.

    Raises:
        DemoInputError: if the file is missing, cannot be decoded, has no audio stream or no
            samples, or decodes to less than 90% of the duration its header declares (truncated).
    """
    path = _existing_file(path, "audio")
    samples = _SampleBuffer()
    sample_rate = _decode_audio(path, samples)
    waveform = torch.from_numpy(samples.result()).clamp_(-1.0, 1.0)  # (C, n)
    return waveform, sample_rate


class _MonoSink:
    """Decoded frames → clipped, mixed to mono and resampled as they arrive (see :func:`load_audio_mono`)."""

    def __init__(self, path: Path, target_rate: int) -> None:
        self._path, self._target = path, target_rate
        self._expected = 0
        self._resampler: _StreamResampler | None = None
        self.channels = 0
        self.size = 0

    def expect(self, samples: int, rate: int) -> None:
        self._expected = -(-samples * self._target // rate)  # output samples

    def append(self, samples: np.ndarray, rate: int) -> None:
        if self._resampler is None:
            self.channels = samples.shape[0]
            self._resampler = _StreamResampler(rate, self._target, expected=self._expected)
        if not np.isfinite(samples).all():
            raise DemoInputError(f"audio: {str(self._path)!r} contains NaN or infinite samples")
        # load_audio's clipping, then prepare_waveform's float64 mean of the channels, sample for sample
        clipped = torch.from_numpy(samples).clamp(-1.0, 1.0)
        self._resampler.feed(clipped.to(torch.float64).mean(dim=0).numpy()[None])  # (1, k)
        self.size += samples.shape[1]

    def result(self) -> np.ndarray:
        return self._resampler.finish()[0]


def load_audio_mono(path: str | os.PathLike, target_rate: int = 16000) -> tuple[torch.Tensor, int, int]:
    """``prepare_waveform(*load_audio(path), target_rate=target_rate)``, decoded a frame at a time.

    The same samples as that pair of calls (frames are clipped, mixed in float64 and resampled block by
    block as they are decoded: see :func:`_resample_blocks`), without ever holding the file's channels at
    their own rate: for 5 minutes of 44.1 kHz stereo, 19 MB of output instead of a 106 MB waveform.

    Args:
        path: Audio file (wav, mp3, flac, m4a, ...) or video file with an audio track.
        target_rate: Rate wanted, Hz.

    Returns:
        ``(waveform, source_samples, source_rate)``: float32 ``(n_out,)`` at ``target_rate``, and the
        length and rate of the audio in the file (the video length follows those exactly).

    Raises:
        DemoInputError: as :func:`load_audio`, and for NaN or infinite samples.
    """
    path = _existing_file(path, "audio")
    target = _check_rate(target_rate, "target_rate")
    sink = _MonoSink(path, target)
    rate = _decode_audio(path, sink)
    return torch.from_numpy(np.ascontiguousarray(sink.result())), sink.size, rate


def _check_rate(rate: object, name: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)):
        raise DemoInputError(f"{name}: expected a positive integer sample rate in Hz, got {rate!r}")
    if not math.isfinite(float(rate)) or float(rate) <= 0 or float(rate) != int(rate):
        raise DemoInputError(f"{name}: expected a positive integer sample rate in Hz, got {rate!r}")
    return int(rate)


_BLOCK = 1 << 18  # samples per step when long audio is mixed, resampled or checked piecewise


class _StreamResampler:
    """Polyphase resampling (``scipy.signal.resample_poly`` with the reduced ``up/down`` ratio) of a ``(C, n)``
    float64 signal fed in pieces, into float32: the same samples as ``resample_poly`` of the whole signal.

    Output is produced in blocks; each is computed with ``resample_poly`` from its input span plus a margin
    wider than the filter's half-length, the span starting on a multiple of ``down`` so that the polyphase
    phases line up with the whole-signal ones: every output sample is then the same sum of the same products
    as in ``resample_poly`` of the whole signal (and a signal of one block or less is resampled whole).  A
    block is made as soon as its span has arrived and the input before the next span is dropped, so the
    working memory is about one block of float64 whatever the length.
    """

    def __init__(self, rate: int, target_rate: int, *, expected: int = 0, block: int | None = None) -> None:
        g = math.gcd(rate, target_rate)
        self.rate, self.target = rate, target_rate
        self.up, self.down = target_rate // g, rate // g
        # output blocks of a multiple of ``up`` samples: each starts at an input sample that is a multiple of ``down``
        self.out_block = self.up * max(1, (block or _BLOCK) // self.down)
        margin = -(-(10 * max(self.up, self.down) + 2 * self.down) // self.up) + 8  # beyond the filter's reach
        self.margin = -(-margin // self.down) * self.down
        self._pending: list[np.ndarray] = []
        self._start = 0  # input index of the first pending sample
        self.n = 0  # input samples fed
        self._m0 = 0  # next output sample to make
        self._out = _SampleBuffer()
        self._out.expect(expected)

    def _span(self, m0: int, m1: int, n: int | None) -> tuple[int, int]:
        s0 = max(0, m0 // self.up * self.down - self.margin)  # m0 · down / up is a multiple of ``down``
        s1 = -(-m1 * self.down // self.up) + self.margin
        return s0, s1 if n is None else min(n, s1)

    def feed(self, x: np.ndarray) -> None:
        if self.rate == self.target:
            self._out.append(x.astype(np.float32))
            self.n += x.shape[1]
            return
        self._pending.append(x)
        self.n += x.shape[1]
        while True:  # blocks whose span has fully arrived (they are interior: the signal goes on past them)
            m1 = self._m0 + self.out_block
            s0, s1 = self._span(self._m0, m1, None)
            if s1 >= self.n:
                break
            self._emit(m1, s0, s1)

    def _emit(self, m1: int, s0: int, s1: int) -> None:
        pending = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending, axis=1)
        y = resample_poly(pending[:, s0 - self._start:s1 - self._start], self.up, self.down, axis=-1)
        off = s0 // self.down * self.up  # output index of input sample s0
        self._out.append(y[:, self._m0 - off:m1 - off].astype(np.float32))
        self._m0 = m1
        keep = self._span(m1, m1 + 1, None)[0]  # the next block's span starts here
        self._pending = [pending[:, keep - self._start:]]
        self._start = keep

    def finish(self) -> np.ndarray:
        """All the output, ``(C, ceil(n · target / rate))`` float32."""
        if self.rate == self.target:
            return self._out.result()
        n_out = -(-self.n * self.up // self.down)
        if self._m0 == 0 and n_out <= self.out_block:  # short: the whole signal at once
            whole = np.concatenate(self._pending, axis=1)
            return resample_poly(whole, self.up, self.down, axis=-1).astype(np.float32)
        while self._m0 < n_out:
            m1 = min(n_out, self._m0 + self.out_block)
            self._emit(m1, *self._span(self._m0, m1, self.n))
        return self._out.result()


def _resample_blocks(read, n: int, rate: int, target_rate: int, block: int | None = None) -> np.ndarray:
    """``resample_poly`` of a long signal, a block at a time, into float32: the same samples, less memory.

    ``read(s, e)`` returns input samples ``s … e-1`` as a float64 array ``(..., e − s)`` (see
    :class:`_StreamResampler`).

    Returns:
        float32 array ``(..., ceil(n · target_rate / rate))``.
    """
    step = block or _BLOCK
    stream = _StreamResampler(rate, target_rate, expected=-(-n * target_rate // rate), block=block)
    lead: tuple = ()
    for s in range(0, n, step):
        x = read(s, min(n, s + step))
        lead = x.shape[:-1]
        stream.feed(x.reshape(-1, x.shape[-1]))
    out = stream.finish()
    return out.reshape(lead + out.shape[-1:])


def _all_finite(x: torch.Tensor) -> bool:
    """``torch.isfinite(x).all()`` along the last axis a block at a time (no full-size mask)."""
    n = int(x.shape[-1])
    return all(bool(torch.isfinite(x[..., s:s + _BLOCK]).all()) for s in range(0, n, _BLOCK))


def prepare_waveform(
    waveform: torch.Tensor | np.ndarray,
    sample_rate: int,
    *,
    target_rate: int = 16000,
    name: str = "audio",
) -> torch.Tensor:
    """Mono waveform at the model's rate.

    Channels are averaged, then the signal is resampled with ``scipy.signal.resample_poly``
    (Kaiser-windowed polyphase FIR, ratio ``target_rate/sample_rate`` reduced by their gcd), so the
    output has ``ceil(n * target_rate / sample_rate)`` samples.

    Args:
        waveform: Shape ``(n,)``, ``(C, n)`` or ``(1, C, n)`` (ComfyUI ``AUDIO`` with one batch item).
        sample_rate: Rate of ``waveform`` in Hz (any positive integer; 8 kHz–192 kHz in practice).
        target_rate: Rate wanted, Hz.
        name: Name of the input, used in error messages.

    Long audio is mixed and resampled a block at a time (see :func:`_resample_blocks`; the same samples
    as the whole-signal computation), so no float64 copy of the whole clip is made.

    Returns:
        Float32 tensor of shape ``(n_out,)`` on the device of ``waveform``.  Mono float32 audio already at
        ``target_rate`` is returned as it is (a view of ``waveform``, not a copy).

    Raises:
        DemoInputError: naming ``name`` for a wrong rank, a batch > 1, empty audio, NaN/inf values
            or a non-positive sample rate.
    """
    if isinstance(waveform, np.ndarray):
        waveform = torch.from_numpy(waveform)
    if not isinstance(waveform, torch.Tensor):
        raise DemoInputError(f"{name}: expected a waveform tensor, got {type(waveform).__name__}")
    rate = _check_rate(sample_rate, f"{name} sample_rate")
    target = _check_rate(target_rate, "target_rate")
    if waveform.dim() == 3:
        if waveform.shape[0] != 1:
            raise DemoInputError(f"{name}: expected one clip (batch size 1), got shape {tuple(waveform.shape)}")
        waveform = waveform[0]  # (C, n)
    elif waveform.dim() == 1:
        waveform = waveform[None]  # (1, n)
    elif waveform.dim() != 2:
        raise DemoInputError(f"{name}: expected shape (n,), (C, n) or (1, C, n), got {tuple(waveform.shape)}")
    if waveform.numel() == 0:
        raise DemoInputError(f"{name}: the waveform is empty (shape {tuple(waveform.shape)}); "
                             "expected audio samples")
    if not waveform.is_floating_point():
        raise DemoInputError(f"{name}: expected float samples in [-1, 1], got dtype {waveform.dtype}")
    if not _all_finite(waveform):
        raise DemoInputError(f"{name}: the waveform contains NaN or infinite values; "
                             "expected finite samples in -1..1")
    waveform = waveform.detach()
    channels, n = waveform.shape
    if channels == 1 and rate == target:  # the float64 mean of one channel is that channel: no copy needed
        return waveform[0].to(torch.float32).contiguous()

    def mono(s: int, e: int) -> np.ndarray:  # (e - s,) float64: the channel mean, as for the whole clip
        return waveform[:, s:e].to("cpu", torch.float64).mean(dim=0).numpy()

    if rate == target:
        out = np.empty(n, np.float32)
        for s in range(0, n, _BLOCK):
            out[s:s + _BLOCK] = mono(s, s + _BLOCK)
    else:
        out = _resample_blocks(mono, n, rate, target)  # (n_out,) float32
    return torch.from_numpy(np.ascontiguousarray(out)).to(waveform.device)
