"""Video out: h264 ``yuv420p`` + AAC in mp4, written by :class:`VideoWriter` atomically (a hidden
``.partial.mp4`` beside the target, renamed on success) and never over an existing file unless asked.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, ColorTrc, Colorspace, Interpolation
import torch

from demo_core.errors import DemoInputError
from demo_core.motion.retime import fps_fraction

from .audio import _BLOCK, _check_rate, _resample_blocks
from .paths import unique_path

__all__ = [
    "even_size",
    "VideoWriter",
    "write_video",
]

# Sample rates the AAC encoder accepts; audio at any other rate is resampled to 48 kHz.
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
_AAC_FRAME = 1024  # samples per AAC frame
# swscale's default RGB <-> YUV path truncates (about -0.5 level of bias each way); these flags round.
_TO_YUV = Interpolation.BICUBIC | Interpolation.ACCURATE_RND


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
