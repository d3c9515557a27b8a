"""Video in: driving videos through PyAV (FFmpeg); still and animated WebP/GIF images through Pillow,
because FFmpeg's WebP decoder does not handle animated files.
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Interpolation
import torch

from demo_core.errors import DemoInputError

from .images import _pil_to_rgb
from .paths import _existing_file

__all__ = [
    "read_video",
]

_PIL_FORMATS = ("WEBP", "GIF")  # read with Pillow: FFmpeg cannot decode animated WebP
# swscale's default RGB <-> YUV path truncates (about -0.5 level of bias each way); these flags round.
_TO_RGB = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


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
