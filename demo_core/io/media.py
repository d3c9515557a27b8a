"""Media in and out: audio and image files, host layouts ↔ model tensors, mp4 writing.

Layouts used here:

* audio: ``(C, n)`` float32 in ``[-1, 1]`` plus an integer sample rate; the models take mono
  ``(n,)`` at 16 kHz (:func:`prepare_waveform`).
* images: the host layout ``(B, H, W, 3)`` float in ``0..1`` (ComfyUI ``IMAGE``); the models take
  ``(B, 3, S, S)`` in ``[-1, 1]`` (:func:`to_model_image`) and give frames back in that layout
  (:func:`frames_to_unit`, :func:`frames_to_uint8`).
* video files: h264 ``yuv420p`` + AAC in mp4, written by :class:`VideoWriter` atomically (a hidden
  ``.partial.mp4`` beside the target, renamed on success) and never over an existing file unless
  asked.

Decoding and encoding go through PyAV (FFmpeg); still and animated WebP/GIF images go through
Pillow, because FFmpeg's WebP decoder does not handle animated files.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, ColorTrc, Colorspace, Interpolation
import torch
import torch.nn.functional as F
from scipy.signal import resample_poly

from demo_core.errors import DemoInputError
from demo_core.motion.retime import fps_fraction

__all__ = [
    "load_audio",
    "load_audio_mono",
    "prepare_waveform",
    "load_image",
    "resize_images",
    "to_model_image",
    "frames_to_uint8",
    "frames_to_unit",
    "unique_path",
    "even_size",
    "VideoWriter",
    "write_video",
    "read_video",
]

# Sample rates the AAC encoder accepts; audio at any other rate is resampled to 48 kHz.
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
_AAC_FRAME = 1024  # samples per AAC frame
# Full-scale value of each integer sample format, for the mapping to [-1, 1].
_INT_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0, np.dtype(np.int64): 2.0**63}
_PIL_FORMATS = ("WEBP", "GIF")  # read with Pillow: FFmpeg cannot decode animated WebP
# swscale's default RGB <-> YUV path truncates (about -0.5 level of bias each way); these flags round.
_TO_YUV = Interpolation.BICUBIC | Interpolation.ACCURATE_RND
_TO_RGB = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


def _existing_file(path: str | os.PathLike, name: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise DemoInputError(f"{name}: file {str(path)!r} does not exist")
    if not path.is_file():
        raise DemoInputError(f"{name}: {str(path)!r} is not a file")
    return path


# ---------------------------------------------------------------------------------------- audio


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


# --------------------------------------------------------------------------------------- images


def _pil_to_rgb(image) -> np.ndarray:
    """A Pillow image as float32 ``(H, W, 3)`` in 0..1; alpha composited over black."""
    mode = image.mode
    if mode.startswith("I"):  # 16-bit ("I;16*") or 32-bit integer grey, read as 16-bit scale
        grey = np.clip(np.asarray(image).astype(np.float64) / 65535.0, 0.0, 1.0).astype(np.float32)
        return np.repeat(grey[..., None], 3, axis=-1)
    if mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=-1)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0  # (H, W, 4)
        return rgba[..., :3] * rgba[..., 3:]
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as RGB.

    The EXIF orientation is applied.  Grey, palette, CMYK and 16-bit images become RGB (16-bit
    values scale by 1/65535); transparency (RGBA, LA, palette transparency) is composited over
    black, the same black that pads crops outside the image.  An animated file gives its first frame.

    Args:
        path: Image file (png, jpg, webp, ...).

    Returns:
        Float32 tensor of shape ``(H, W, 3)`` in 0..1.

    Raises:
        DemoInputError: if the file is missing or is not a readable image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = _existing_file(path, "image")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            rgb = _pil_to_rgb(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DemoInputError(f"image: {str(path)!r} is not a readable image: {err}") from err
    return torch.from_numpy(np.ascontiguousarray(rgb))


def resize_images(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize images with values in 0..1.

    Area averaging when both sides shrink (or stay), bicubic with antialiasing otherwise; the
    result is clipped to 0..1 (bicubic overshoots at edges).

    Args:
        images: Shape ``(B, C, H, W)``, floating point, values in 0..1.
        height: Output height.
        width: Output width.

    Returns:
        Shape ``(B, C, height, width)``, same dtype.
    """
    H, W = images.shape[-2:]
    if (H, W) == (height, width):
        return images
    x = images if images.dtype in (torch.float32, torch.float64) else images.float()
    if height <= H and width <= W:
        out = F.interpolate(x, size=(height, width), mode="area")
    else:
        out = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
        out = out.clamp(0.0, 1.0)
    return out.to(images.dtype)


def _check_image_batch(image: torch.Tensor, name: str) -> torch.Tensor:
    """``(H, W, 3)`` or ``(B, H, W, 3)`` float → ``(B, H, W, 3)``."""
    if not isinstance(image, torch.Tensor):
        raise DemoInputError(f"{name}: expected a tensor (B, H, W, 3) in 0..1, got {type(image).__name__}")
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[-1] != 3 or image.shape[0] == 0 or 0 in image.shape[1:3]:
        raise DemoInputError(f"{name}: expected shape (B, H, W, 3) or (H, W, 3), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise DemoInputError(f"{name}: expected float values in 0..1, got dtype {image.dtype}")
    return image


def to_model_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """Host images to the model's square input.

    Args:
        image: Shape ``(B, H, W, 3)`` or ``(H, W, 3)``, values in 0..1 (normally already a square crop;
            a non-square image is stretched).
        size: Side of the model input in pixels.

    Returns:
        Shape ``(B, 3, size, size)`` in ``[-1, 1]``: resized with :func:`resize_images`, then
        ``(x - 0.5) / 0.5``.
    """
    image = _check_image_batch(image, "image")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise DemoInputError(f"size: expected a positive integer, got {size!r}")
    x = image.permute(0, 3, 1, 2)  # (B, 3, H, W)
    x = resize_images(x, size, size)  # (B, 3, size, size)
    return (x - 0.5) / 0.5


def _check_model_frames(frames: torch.Tensor) -> torch.Tensor:
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise DemoInputError(f"frames: expected a tensor of shape (N, 3, H, W) in [-1, 1], got {shape}")
    return frames


def frames_to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """Model frames to 8-bit RGB, as FLOAT does it.

    ``((clamp(x, -1, 1) + 1) / 2 * 255)`` truncated toward zero (not rounded), so only exactly 1.0
    maps to 255.

    Args:
        frames: Shape ``(N, 3, H, W)`` in ``[-1, 1]``.

    Returns:
        uint8 tensor of shape ``(N, H, W, 3)`` on the same device.
    """
    frames = _check_model_frames(frames)
    x = (frames.detach().float().clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0
    return x.permute(0, 2, 3, 1).to(torch.uint8)  # (N, H, W, 3)


def frames_to_unit(frames: torch.Tensor) -> torch.Tensor:
    """Model frames to the host ``IMAGE`` layout.

    Args:
        frames: Shape ``(N, 3, H, W)`` in ``[-1, 1]``.

    Returns:
        Shape ``(N, H, W, 3)``, float32 in 0..1.
    """
    frames = _check_model_frames(frames)
    x = (frames.float().clamp(-1.0, 1.0) + 1.0) / 2.0
    return x.permute(0, 2, 3, 1).contiguous()  # (N, H, W, 3)


# ---------------------------------------------------------------------------------------- video


def unique_path(path: str | os.PathLike) -> Path:
    """``path`` if nothing exists there, else the first free ``stem_0001.ext``, ``stem_0002.ext``, ...

    Args:
        path: The path wanted.

    Returns:
        A path that does not exist (at the time of the call).
    """
    path = Path(path)
    if not path.exists():
        return path
    counter = 1
    while True:
        candidate = path.with_name(f"{path.stem}_{counter:04d}{path.suffix}")
        if not candidate.exists():
            return candidate
        counter += 1


def even_size(height: int, width: int) -> tuple[int, int]:
    """The largest even ``(height, width)`` not above the given one (h264 ``yuv420p`` needs even sides).

    Crop frames to this size (e.g. ``frames[:, :h, :w]``) before :meth:`VideoWriter.write`.
    """
    return height - height % 2, width - width % 2


def _check_audio_track(audio, audio_rate) -> tuple[np.ndarray, int]:
    """Audio for muxing as float32 ``(C, n)`` with C in {1, 2}, at a rate AAC accepts.

    Float32 audio in ``[-1, 1]`` at an AAC rate is used as it is (no copy: the caller's array is read as
    frames are written); otherwise one clipped and/or resampled copy is made.  The checks run a block at a
    time, so no full-size temporary is made either.
    """
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().to("cpu", torch.float32).numpy()
    if not isinstance(audio, np.ndarray):
        raise DemoInputError(f"audio: expected a tensor (n,) or (C, n), got {type(audio).__name__}")
    if audio.ndim == 3 and audio.shape[0] == 1:
        audio = audio[0]
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2 or audio.shape[0] not in (1, 2):
        raise DemoInputError(f"audio: expected shape (n,) or (C, n) with 1 or 2 channels, got {audio.shape}")
    if audio_rate is None:
        raise DemoInputError("audio_rate: required when audio is given (sample rate in Hz)")
    rate = _check_rate(audio_rate, "audio_rate")
    audio = audio.astype(np.float32, copy=False)
    in_range = True
    for s in range(0, audio.shape[1], _BLOCK):
        block = audio[:, s:s + _BLOCK]
        if not np.isfinite(block).all():
            raise DemoInputError("audio: the waveform contains NaN or infinite values; "
                                 "expected finite samples in -1..1")
        in_range = in_range and float(block.min()) >= -1.0 and float(block.max()) <= 1.0
    if rate not in _AAC_RATES:
        source = audio
        audio = _resample_blocks(lambda s, e: source[:, s:e].astype(np.float64), audio.shape[1], rate, 48000)
        rate = 48000
        np.clip(audio, -1.0, 1.0, out=audio)  # our own copy
    elif not in_range:
        audio = np.clip(audio, -1.0, 1.0)
    return np.ascontiguousarray(audio), rate


class VideoWriter:
    """Streaming mp4 writer (h264 ``yuv420p`` via libx264, optional AAC audio), atomic on close.

    Frames are encoded as they arrive, reproducibly (the same frames give the same bytes).  The file is
    written to a hidden ``.<name>.<random>.partial.mp4`` in the target directory and renamed on a
    successful :meth:`close`; the final name is the path asked for, or ``stem_0001.mp4``, ... if a
    file is already there (unless ``overwrite=True``).  An exception inside the ``with`` block, or
    :meth:`abort`, deletes the partial file.  Audio is cut or padded with silence to exactly
    ``frames / fps`` seconds.

    Example:
        >>> with VideoWriter("out.mp4", 25, audio=wave, audio_rate=16000) as writer:  # doctest: +SKIP
        ...     for batch in batches:  # (N, H, W, 3) uint8
        ...         writer.write(batch)
        >>> writer.path  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float | Fraction,
        *,
        audio: torch.Tensor | np.ndarray | None = None,
        audio_rate: int | None = None,
        crf: int = 18,
        overwrite: bool = False,
    ) -> None:
        """Prepare a writer; nothing is created on disk before the first :meth:`write`.

        Args:
            path: Output file; ``.mp4`` is appended when it has no suffix.
            fps: Frame rate, may be fractional (29.97, ``Fraction(30000, 1001)``).
            audio: Optional waveform ``(n,)`` or ``(C, n)`` (C = 1 or 2), float in ``[-1, 1]``.
            audio_rate: Sample rate of ``audio`` in Hz (rates AAC lacks are resampled to 48 kHz).
            crf: x264 constant rate factor, 0 (lossless) to 51.
            overwrite: Replace an existing file at ``path`` instead of choosing a new name.
        """
        target = Path(path)
        if target.suffix == "":
            target = target.with_suffix(".mp4")
        if target.suffix.lower() != ".mp4":
            raise DemoInputError(f"path: only .mp4 output is supported, got {str(path)!r}")
        self._target = target
        self._fps = fps_fraction(fps)
        if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
            raise DemoInputError(f"crf: expected an integer from 0 to 51, got {crf!r}")
        self._crf = crf
        self._overwrite = bool(overwrite)
        self._audio, self._audio_rate = (None, None) if audio is None else _check_audio_track(audio, audio_rate)
        self._tmp: Path | None = None
        self._container = None
        self._video = None
        self._audio_stream = None
        self._size: tuple[int, int] | None = None
        self._frames = 0
        self._audio_pos = 0
        self._closed = False
        self._aborted = False
        self.path: Path | None = None

    @property
    def frame_count(self) -> int:
        """Frames written so far."""
        return self._frames

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.abort()
        elif not self._aborted:
            self.close()
        return False

    def _open(self, height: int, width: int) -> None:
        directory = self._target.parent
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{self._target.stem}.{secrets.token_hex(4)}.partial.mp4"
        with open(tmp, "xb"):  # claim the name; PyAV then writes into it
            pass
        self._tmp = tmp
        self._container = av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        video = self._container.add_stream("libx264", rate=self._fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        # x264's macroblock-tree rate control gives different bitstreams for identical frames from run to run
        # (seen with PyAV 18's libx264 whenever other work runs between frames); without it the same seed gives
        # the same mp4, byte for byte.
        video.options = {"crf": str(self._crf), "x264-params": "mbtree=0"}
        # sRGB input → BT.709 matrix, limited ("TV") range, tagged so players decode it the same way.
        codec = video.codec_context
        codec.colorspace, codec.color_range = Colorspace.ITU709, ColorRange.MPEG
        codec.color_primaries, codec.color_trc = ColorPrimaries.BT709, ColorTrc.BT709
        self._video = video
        if self._audio is not None:
            stream = self._container.add_stream("aac", rate=self._audio_rate)
            stream.layout = "mono" if self._audio.shape[0] == 1 else "stereo"
            self._audio_stream = stream
        self._size = (height, width)

    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        """Encode frames.

        Args:
            frames: uint8 RGB, shape ``(N, H, W, 3)`` or ``(H, W, 3)``; H and W even and equal to
                the first batch's (see :func:`even_size`, :func:`frames_to_uint8`).
        """
        if self._closed:
            raise RuntimeError("VideoWriter: write() after close() or abort()")
        if isinstance(frames, torch.Tensor):
            frames = frames.detach().cpu().numpy()
        if not isinstance(frames, np.ndarray):
            raise DemoInputError(f"frames: expected a uint8 array (N, H, W, 3), got {type(frames).__name__}")
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise DemoInputError(f"frames: expected shape (N, H, W, 3), got {frames.shape}")
        if frames.dtype != np.uint8:
            raise DemoInputError(f"frames: expected dtype uint8 (see frames_to_uint8), got {frames.dtype}")
        height, width = frames.shape[1:3]
        if self._size is None:
            if height % 2 or width % 2 or height == 0 or width == 0:
                raise DemoInputError(
                    f"frames: h264 needs an even, non-zero width and height, got {width}x{height}; "
                    f"crop to {even_size(height, width)[1]}x{even_size(height, width)[0]} with even_size()"
                )
            self._open(height, width)
        elif (height, width) != self._size:
            raise DemoInputError(f"frames: size {width}x{height} differs from the first batch's "
                                 f"{self._size[1]}x{self._size[0]}")
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace=Colorspace.ITU709,
                                   dst_color_range=ColorRange.MPEG, interpolation=_TO_YUV)
            frame.pts = self._frames
            for packet in self._video.encode(frame):
                self._container.mux(packet)
            self._frames += 1
        self._feed_audio(final=False)

    def _audio_target(self) -> int:
        """Audio samples matching the frames written so far: ``round(frames / fps * rate)``."""
        return round(Fraction(self._frames) / self._fps * self._audio_rate)

    def _feed_audio(self, *, final: bool) -> None:
        """Encode audio up to the video's current end (whole AAC frames until ``final``)."""
        if self._audio_stream is None:
            return
        target = self._audio_target()
        if not final:
            target -= (target - self._audio_pos) % _AAC_FRAME
        channels, available = self._audio.shape
        layout = "mono" if channels == 1 else "stereo"
        while self._audio_pos < target:
            end = min(self._audio_pos + _AAC_FRAME, target)
            block = np.zeros((channels, end - self._audio_pos), np.float32)  # silence past the audio
            have = max(0, min(end, available) - self._audio_pos)
            block[:, :have] = self._audio[:, self._audio_pos:self._audio_pos + have]
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
            frame.sample_rate = self._audio_rate
            frame.pts = self._audio_pos
            for packet in self._audio_stream.encode(frame):
                self._container.mux(packet)
            self._audio_pos = end

    def close(self) -> Path:
        """Finish the file and move it into place.

        Returns:
            The final path (also in :attr:`path`).

        Raises:
            DemoInputError: if no frame was written (nothing is left on disk).
        """
        if self._closed:
            if self.path is None:
                raise RuntimeError("VideoWriter: close() after abort()")
            return self.path
        if self._frames == 0:
            self.abort()
            raise DemoInputError(f"frames: no frames were written, so {str(self._target)!r} was not created")
        try:
            self._feed_audio(final=True)
            for stream in (self._video, self._audio_stream):
                if stream is not None:
                    for packet in stream.encode(None):
                        self._container.mux(packet)
            self._container.close()
            self.path = self._move_into_place()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def _move_into_place(self) -> Path:
        if self._overwrite:
            os.replace(self._tmp, self._target)
            return self._target
        while True:
            final = unique_path(self._target)
            try:
                os.link(self._tmp, final)  # fails if a file appeared there meanwhile: never clobbers
            except FileExistsError:
                continue
            except OSError:  # no hard links on this filesystem
                os.replace(self._tmp, final)
                return final
            os.unlink(self._tmp)
            return final

    def abort(self) -> None:
        """Stop writing and delete the partial file; nothing is created at the target path."""
        if self._closed and not self._aborted:
            return  # already finished: the file stays
        self._closed = self._aborted = True
        if self._container is not None:
            with contextlib.suppress(av.FFmpegError, OSError, ValueError):
                self._container.close()
            self._container = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)


def write_video(
    path: str | os.PathLike,
    frames: Iterable[torch.Tensor | np.ndarray] | torch.Tensor | np.ndarray,
    fps: float | Fraction,
    *,
    audio: torch.Tensor | np.ndarray | None = None,
    audio_rate: int | None = None,
    crf: int = 18,
    overwrite: bool = False,
) -> Path:
    """Write frames (and audio) to an mp4 with :class:`VideoWriter`.

    Args:
        path: Output file.
        frames: One uint8 array ``(N, H, W, 3)`` or an iterable of such batches / single frames.
        fps: Frame rate.
        audio: Optional waveform ``(n,)`` or ``(C, n)``.
        audio_rate: Sample rate of ``audio``.
        crf: x264 quality, 0–51.
        overwrite: Replace an existing file instead of choosing ``stem_0001.mp4``.

    Returns:
        The path written.
    """
    with VideoWriter(path, fps, audio=audio, audio_rate=audio_rate, crf=crf, overwrite=overwrite) as writer:
        if isinstance(frames, (torch.Tensor, np.ndarray)):
            writer.write(frames)
        else:
            for batch in frames:
                writer.write(batch)
    return writer.path


def _read_with_pillow(path: Path, max_frames: int | None) -> tuple[np.ndarray, float]:
    from PIL import Image

    frames, durations = [], []
    with Image.open(path) as image:
        count = getattr(image, "n_frames", 1)
        for index in range(count if max_frames is None else min(count, max_frames)):
            image.seek(index)
            image.load()
            frames.append(_pil_to_rgb(image))
            duration = image.info.get("duration") or 0
            durations.append(duration if duration > 0 else 100)  # browsers show 0 ms as 100 ms
    fps = 1000.0 * len(frames) / sum(durations)
    return np.stack(frames), fps


def _read_with_pyav(path: Path, max_frames: int | None) -> tuple[np.ndarray, float]:
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise DemoInputError(f"video: {str(path)!r} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = []
        for frame in container.decode(stream):
            if max_frames is not None and len(frames) >= max_frames:
                break
            frames.append(frame.reformat(format="rgb24", interpolation=_TO_RGB).to_ndarray())
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not frames:
        raise DemoInputError(f"video: {str(path)!r} contains no frames")
    if len({f.shape for f in frames}) > 1:
        raise DemoInputError(f"video: the frame size of {str(path)!r} changes mid-stream")
    return np.stack(frames).astype(np.float32) / 255.0, float(rate) if rate else 25.0


def read_video(path: str | os.PathLike, *, max_frames: int | None = None) -> tuple[torch.Tensor, float]:
    """Read a driving video.

    Animated WebP and GIF (and other still images FFmpeg cannot open) are read with Pillow, with
    the frame rate from the frame durations (``1000 * N / sum(ms)``); everything else with PyAV
    (rate from the stream's average rate).  Alpha is composited over black.

    Args:
        path: Video or animated image file.
        max_frames: Read at most this many frames from the start.

    Returns:
        ``(frames, fps)``: frames of shape ``(N, H, W, 3)``, float32 in 0..1, and the frame rate.

    Raises:
        DemoInputError: if the file is missing, unreadable or has no frames.
    """
    from PIL import Image, UnidentifiedImageError

    path = _existing_file(path, "video")
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
        raise DemoInputError(f"max_frames: expected a positive integer or None, got {max_frames!r}")
    try:
        with Image.open(path) as image:
            pillow_format = image.format
    except (UnidentifiedImageError, OSError):
        pillow_format = None
    if pillow_format not in _PIL_FORMATS:
        try:
            frames, fps = _read_with_pyav(path, max_frames)
            return torch.from_numpy(frames), fps
        except av.FFmpegError as err:
            if pillow_format is None:
                raise DemoInputError(
                    f"video: {str(path)!r} could not be decoded (corrupt or unsupported): {err}"
                ) from err
    try:
        frames, fps = _read_with_pillow(path, max_frames)
    except (OSError, SyntaxError) as err:
        raise DemoInputError(f"video: {str(path)!r} could not be decoded (corrupt or unsupported): {err}") from err
    return torch.from_numpy(frames), fps
