"""Decode one talking-head clip for training: square frames at the model size and fps, 16-kHz mono audio.

Frames are decoded with PyAV, cropped with ONE square box for the whole clip (centre crop by default,
or the face box of the first frame), resized to S×S and resampled to the model fps by nearest
timestamp: output frame k shows the source frame closest to ``t = k / fps``.  Audio comes from the
video's audio track (or a ``<stem>.wav`` beside it), mixed to mono and resampled to 16 kHz, then
normalised over the whole clip exactly as the pipeline does at inference.  Per-frame labels from
``<stem>.labels.npz`` (arrays ``yaw … blink``) are resampled with the same frame indices, and so is an
optional ``<stem>.regions.npy`` uint8 feature-region map (255 = inside): (N, 2, H, W) mouth and eyes, or
(N, H, W) their union, that stage 1 weights its reconstruction loss with and keeps one-factor edits inside
(:mod:`demo_core.synthetic.regions` writes it).  A synthetic clip's sidecar also stores its face
(``identity_json``): kept when the clip's frames are its whole square source frames, so that stage 1 can draw the
same face again with other parameters (``stage1.weights.counterfactual``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DemoInputError

__all__ = ["Clip", "LABEL_NAMES", "VIDEO_SUFFIXES", "decode_clip"]

LABEL_NAMES = ("yaw", "pitch", "roll", "tx", "ty", "scale", "mouth_open", "mouth_width", "mouth_round",
               "gaze_x", "gaze_y", "blink")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")


@dataclass
class Clip:
    """A decoded clip.

    Attributes:
        name: file stem.
        frames: (T, S, S, 3) uint8.
        audio: (n,) float32 mono waveform at the model rate, normalised over the clip (zero mean, unit variance).
        labels: label name → (T,) float32 (only the labels the sidecar has).
        regions: uint8 feature-region maps (0 outside … 255 inside): (T, 2, S, S) mouth and eyes, (T, S, S)
            their union only (an older sidecar), or None.
        identity: the synthetic face as JSON (:class:`~demo_core.synthetic.identity.Identity`), "" for a clip
            that has none or whose frames were cropped from a non-square source.
        identity_size: side in pixels of the source frames the face was drawn at (0 without ``identity``).
    """

    name: str
    frames: np.ndarray
    audio: np.ndarray
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    regions: np.ndarray | None = None
    identity: str = ""
    identity_size: int = 0

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def _decode_frames(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All video frames (N, H, W, 3) uint8 and their times (N,) in seconds from the first frame."""
    import av

    frames, times = [], []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DemoInputError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 25.0)
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                t = frame.time if frame.time is not None else len(times) / rate
                times.append(float(t))
    except av.FFmpegError as exc:
        raise DemoInputError(f"{path}: cannot decode the video ({exc})") from None
    if not frames:
        raise DemoInputError(f"{path}: the video has no frames")
    times_np = np.asarray(times, dtype=np.float64)
    return np.stack(frames), times_np - times_np[0]


def _nearest_indices(times: np.ndarray, fps: float) -> np.ndarray:
    """Indices of the source frames closest to ``k / fps`` for k = 0 … T − 1 (T covers the source span)."""
    num = int(math.floor(times[-1] * fps + 1e-6)) + 1
    target = np.arange(num) / fps
    idx = np.searchsorted(times, target)  # first time >= target
    idx = np.clip(idx, 1, len(times) - 1) if len(times) > 1 else np.zeros_like(idx)
    if len(times) > 1:
        left_closer = (target - times[idx - 1]) <= (times[idx] - target)
        idx = np.where(left_closer, idx - 1, idx)
    return idx.astype(np.int64)


def _crop_box(first: torch.Tensor, crop: str):
    """The clip's crop box for ``"auto"`` (face box of its first frame (H, W, 3)), else None."""
    if crop != "auto":
        return None
    from ..face_crop import face_crop_box

    return face_crop_box(first, mode="auto")[0]


def _square_crop(frames: torch.Tensor, crop: str, box=None) -> torch.Tensor:
    """(N, H, W, 3) float in 0..1 → (N, side, side, 3) with one box for all frames (for ``"auto"``: ``box``,
    from :func:`_crop_box`)."""
    n, h, w, _ = frames.shape
    if crop == "none":
        return frames
    if crop == "auto":
        from ..face_crop import crop_image

        return crop_image(frames, box if box is not None else _crop_box(frames[0], crop), max(h, w))
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    return frames[:, y0:y0 + side, x0:x0 + side]


def _resize(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(N, H, W, 3) float → (N, size, size, 3) (area average down, bilinear with antialias up)."""
    x = frames.permute(0, 3, 1, 2)  # (N, 3, H, W)
    if x.shape[-2:] != (size, size):
        if x.shape[-1] >= size and x.shape[-2] >= size:
            x = F.interpolate(x, size=(size, size), mode="area")
        else:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.permute(0, 2, 3, 1)  # (N, size, size, 3)


def _load_audio(video: Path, sampling_rate: int) -> np.ndarray:
    from ..io.media import load_audio, prepare_waveform
    from ..models.audio_encoder import normalize_waveform

    wav = video.with_suffix(".wav")
    waveform, rate = load_audio(wav if wav.is_file() else video)
    mono = prepare_waveform(waveform, rate, target_rate=sampling_rate, name=str(video))  # (n,)
    return normalize_waveform(mono).numpy()


def _load_labels(path: Path, times: np.ndarray, source_fps: float) -> tuple[dict[str, np.ndarray], str]:
    """Labels of the frames shown at ``times`` (seconds; label k belongs to ``t = k / label fps``) and the
    synthetic face the sidecar stores (``identity_json``, "" when none), from one read of the file."""
    if not path.is_file():
        return {}, ""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k in LABEL_NAMES or k == "fps"}
        identity = str(z["identity_json"]) if "identity_json" in z.files else ""
    label_fps = float(arrays["fps"]) if "fps" in arrays else source_fps
    idx = np.rint(times * label_fps).astype(np.int64)
    out = {}
    for name in LABEL_NAMES:
        if name in arrays:
            values = np.asarray(arrays[name], dtype=np.float32).reshape(-1)
            out[name] = values[np.clip(idx, 0, len(values) - 1)]
    return out, identity


def decode_clip(path: str | Path, *, size: int, fps: float = 25.0, sampling_rate: int = 16000,
                crop: str = "center", regions: bool = True) -> Clip:
    """Decode a clip (see the module doc).

    Args:
        path: video file with an audio track (or a ``<stem>.wav`` beside it).
        size: output side S in pixels.
        fps: output frame rate.
        sampling_rate: output audio rate.
        crop: ``"center"``, ``"auto"`` or ``"none"``.
        regions: also read the ``<stem>.regions.npy`` sidecar when there is one.

    Returns:
        :class:`Clip` with ``T = min(video frames at fps, ceil(audio seconds · fps))`` frames.
    """
    path = Path(path)
    stem = path.with_suffix("")
    frames_npy = Path(f"{stem}.frames.npy")
    if frames_npy.is_file():
        raw = np.load(frames_npy, allow_pickle=False)  # (N, H, W, 3) uint8 at the sidecar's fps
        source_fps = fps
        labels_file = Path(f"{stem}.labels.npz")
        if labels_file.is_file():
            with np.load(labels_file, allow_pickle=False) as z:
                source_fps = float(z["fps"]) if "fps" in z.files else fps
        times = np.arange(raw.shape[0]) / source_fps
    else:
        raw, times = _decode_frames(path)
        source_fps = (len(times) - 1) / times[-1] if len(times) > 1 and times[-1] > 0 else fps
    indices = _nearest_indices(times, fps)
    audio = _load_audio(path, sampling_rate)
    num = min(len(indices), math.ceil(len(audio) * fps / sampling_rate))
    indices = indices[:num]
    x = torch.from_numpy(raw[indices]).float() / 255.0  # (T, H, W, 3)
    box = _crop_box(x[0], crop)
    x = _resize(_square_crop(x, crop, box), size)
    frames = (x.clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    labels, identity = _load_labels(Path(f"{stem}.labels.npz"), times[indices], source_fps)
    region = None
    if regions:
        region = _load_regions(Path(f"{stem}.regions.npy"), raw.shape[:3], indices, crop, box, size)
    if raw.shape[1] != raw.shape[2] or crop == "auto":  # the face is only redrawn over whole square frames
        identity = ""
    return Clip(name=path.stem, frames=frames, audio=audio.astype(np.float32), labels=labels, regions=region,
                identity=identity, identity_size=int(raw.shape[1]) if identity else 0)


def _load_regions(path: Path, frames_shape: tuple, indices: np.ndarray, crop: str, box, size: int) -> np.ndarray | None:
    """The region sidecar at the output frames (same indices, crop box and resize as the clip's frames of
    shape ``frames_shape`` (N, H, W)), or None when there is no sidecar."""
    if not path.is_file():
        return None
    try:
        region = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DemoInputError(f"{path}: cannot be read as a .npy region map ({exc})") from None
    n, h, w = frames_shape
    if (region.dtype != np.uint8 or region.ndim not in (3, 4) or region.shape[-2:] != (h, w)
            or region.shape[0] < n or (region.ndim == 4 and region.shape[1] != 2)):
        raise DemoInputError(f"{path}: expected a uint8 array (N, 2, H, W) or (N, H, W) matching the clip's {n} "
                             f"frames of {h}x{w}, got {region.dtype} {region.shape}")
    picked = torch.from_numpy(region[indices]).float().div_(255.0)  # (T, [2,] H, W)
    maps = picked[:, None] if picked.ndim == 3 else picked  # (T, P, H, W)
    # each map cropped and resized exactly like an image channel of the frames
    x = torch.stack([_resize(_square_crop(maps[:, k, :, :, None].expand(-1, -1, -1, 3), crop, box), size)[..., 0]
                     for k in range(maps.shape[1])], dim=1)  # (T, P, S, S)
    x = x[:, 0] if picked.ndim == 3 else x
    return (x.clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
