"""Tiny synthetic talking-head clips written with PyAV for the training tests.

Each clip: a coloured disc ("head") that drifts left/right with ``yaw``, a dark bar ("mouth") whose
height follows the loudness of the audio (a 300 Hz tone switched on and off), at ``fps`` with audio at
``rate`` Hz (stereo), plus a ``<stem>.labels.npz`` sidecar with per-frame labels when ``labels`` is true.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_clip(path: Path, *, seed: int, frames: int = 24, fps: int = 30, height: int = 48, width: int = 64,
               rate: int = 22050, labels: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / fps
    yaw = 20.0 * np.sin(2 * np.pi * (0.5 + 0.3 * rng.random()) * t + rng.random() * 6)
    gate = (np.sin(2 * np.pi * (2.0 + rng.random()) * t + rng.random() * 6) > 0).astype(np.float32)
    colour = rng.integers(80, 255, size=3)
    yy, xx = np.mgrid[0:height, 0:width]
    container = av.open(str(path), mode="w")
    vs = container.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv444p"
    vs.options = {"qp": "0"}
    aus = container.add_stream("aac", rate=rate, layout="stereo")
    for k in range(frames):
        img = np.full((height, width, 3), 30, np.uint8)
        cx = width / 2 + yaw[k] / 30.0 * width / 6
        img[(xx - cx) ** 2 + (yy - height / 2) ** 2 < (height / 3) ** 2] = colour
        h = int(1 + 6 * gate[k])
        img[height // 2 + 6: height // 2 + 6 + h, int(cx) - 6: int(cx) + 6] = 0
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        for packet in vs.encode(frame):
            container.mux(packet)
    for packet in vs.encode():
        container.mux(packet)
    n = int(frames / fps * rate)
    ts = np.arange(n) / rate
    env = np.repeat(gate, int(np.ceil(n / frames)))[:n]
    wave = (0.3 * env * np.sin(2 * np.pi * 300 * ts) + 0.01 * rng.standard_normal(n)).astype(np.float32)
    stereo = np.stack([wave, wave])
    chunk = 1024
    for i in range(0, n, chunk):
        part = np.ascontiguousarray(stereo[:, i:i + chunk])
        af = av.AudioFrame.from_ndarray(part, format="fltp", layout="stereo")
        af.sample_rate = rate
        af.pts = i
        af.time_base = Fraction(1, rate)
        for packet in aus.encode(af):
            container.mux(packet)
    for packet in aus.encode():
        container.mux(packet)
    container.close()
    if labels:
        zeros = np.zeros(frames, np.float32)
        np.savez(path.with_suffix("").as_posix() + ".labels.npz", fps=np.float32(fps), yaw=yaw.astype(np.float32),
                 pitch=zeros, roll=zeros, tx=zeros, ty=zeros, scale=zeros + 1, mouth_open=gate, gaze_x=zeros,
                 gaze_y=zeros, blink=zeros)
    return path


def write_clips(folder: Path, count: int = 3, **kw) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_clip(folder / f"clip_{i:05d}.mp4", seed=i, labels=(i != count - 1), **kw) for i in range(count)]


def write_synthetic_clips(folder: Path, count: int = 2, *, size: int = 64, seconds: float = 0.72) -> list[Path]:
    """``count`` clips of the synthetic benchmark (their labels store the face), speech a 220-Hz tone."""
    import torch

    from demo_core.synthetic.dataset import generate_clip
    from demo_core.synthetic.dataset import write_clip as write_synthetic
    from demo_core.synthetic.speech import Phone, SpeechClip

    folder.mkdir(parents=True, exist_ok=True)
    sr = 16000
    t = np.arange(int(seconds * sr)) / sr
    speech = SpeechClip((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr,
                        [Phone(0.0, 0.2, "sil"), Phone(0.2, 0.4, "aa"), Phone(0.4, seconds, "sil")], text="a",
                        voice="test", alphabet="arpabet")
    out = []
    for i in range(count):
        clip = generate_clip(speech, 10 + i, size=size, generator=torch.Generator().manual_seed(i), mode="talk",
                             augment_audio=False)
        write_synthetic(folder / f"clip_{i:05d}", clip, frames_npy=True)
        out.append(folder / f"clip_{i:05d}.mp4")
    return out
