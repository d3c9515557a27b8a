"""Reading and writing the clip media files (PyAV for mp4, 16-bit PCM wav), written atomically.

Video is H.264 in mp4. The default ``lossless=True`` stores 4:4:4 chroma at ``qp=0`` (the only loss
is the RGB <-> YUV rounding, at most ~2/255); ``lossless=False`` writes a widely playable yuv420p
``crf=10`` file instead. Audio goes into the same mp4 as AAC (mono) and, exactly, into a wav file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DemoInputError

__all__ = ["atomic_path", "write_wav", "write_mp4", "read_video", "read_audio"]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path (same suffix); rename it onto ``path`` when the block succeeds."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_wav(path: str | Path, waveform: np.ndarray, sample_rate: int) -> None:
    """Write float audio (S,) in [-1, 1] as 16-bit PCM mono wav (atomically)."""
    from scipy.io import wavfile

    pcm = np.clip(np.round(np.asarray(waveform, np.float64) * 32767.0), -32768, 32767).astype(np.int16)
    with atomic_path(path) as tmp:
        wavfile.write(str(tmp), int(sample_rate), pcm)


def write_mp4(path: str | Path, frames: np.ndarray, fps: float, audio: np.ndarray | None = None,
              sample_rate: int = 16000, *, lossless: bool = True) -> None:
    """Write an H.264 mp4 (with optional AAC mono audio), atomically.

    Args:
        path: output ``.mp4``.
        frames: uint8 (T, H, W, 3) RGB.
        fps: frame rate (frame k has timestamp k / fps).
        audio: float32 (S,) in [-1, 1], or None for a silent video.
        sample_rate: audio rate in Hz.
        lossless: 4:4:4 qp=0 (default) or 4:2:0 crf=10 for playback compatibility.
    """
    import av
    from fractions import Fraction

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise DemoInputError(f"write_mp4: frames must be uint8 (T,H,W,3), got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if not lossless and (h % 2 or w % 2):
        raise DemoInputError(f"write_mp4: yuv420p needs even sizes, got {w}x{h}")
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as out:
            vs = out.add_stream("libx264", rate=rate)
            vs.width, vs.height = w, h
            vs.pix_fmt = "yuv444p" if lossless else "yuv420p"
            vs.options = {"qp": "0"} if lossless else {"crf": "10"}
            as_ = None
            if audio is not None:
                as_ = out.add_stream("aac", rate=int(sample_rate), layout="mono")
                as_.bit_rate = 96000
            for k in range(t):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[k]), format="rgb24")
                frame.pts = k
                out.mux(vs.encode(frame))
            out.mux(vs.encode())
            if as_ is not None:
                samples = np.ascontiguousarray(np.asarray(audio, np.float32).reshape(1, -1))
                af = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                af.sample_rate, af.pts = int(sample_rate), 0
                out.mux(as_.encode(af))
                out.mux(as_.encode())


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
    """Decode all frames of a video file.

    Returns:
        (frames uint8 (T, H, W, 3) RGB, fps).
    """
    import av

    with av.open(str(path)) as inp:
        stream = inp.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        frames = [f.to_ndarray(format="rgb24") for f in inp.decode(stream)]
    if not frames:
        raise DemoInputError(f"read_video: no frames in {path}")
    return np.stack(frames), fps


def read_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 audio (S,) at ``sample_rate`` from a wav file or the first audio stream of a video."""
    path = Path(path)
    if path.suffix.lower() == ".wav":
        from .speech import load_wav

        return load_wav(path, sample_rate)
    import av

    with av.open(str(path)) as inp:
        if not inp.streams.audio:
            raise DemoInputError(f"read_audio: {path} has no audio stream")
        res = av.AudioResampler(format="fltp", layout="mono", rate=sample_rate)
        chunks = []
        for frame in inp.decode(audio=0):
            chunks.extend(f.to_ndarray()[0] for f in res.resample(frame))
        chunks.extend(f.to_ndarray()[0] for f in res.resample(None))
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
