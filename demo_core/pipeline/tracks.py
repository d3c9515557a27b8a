"""Motion tracks, rendering, paste-back and video files for hosts (added for the ComfyUI nodes in ``nodes/``).

Motion is handed between host nodes as a :class:`~demo_core.motion.track.MotionTrack` (latents on the CPU with
the model's motion dictionary): sampled from speech, read from a driving video, rendered into frames, pasted
back into the full-size images or written straight into mp4 files.
"""

from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import torch

from ..errors import DemoInputError
from ..face_crop import crop_image, face_crop_box
from ..io.media import VideoWriter, even_size, frames_to_uint8, frames_to_unit
from ..models.float_model import FloatModel
from ..motion.retime import fps_fraction
from ..motion.track import MotionTrack
from .encoding import AudioCondition, Portrait, _check_image
from .generation import iter_frames, retime_motion, sample_motion
from .settings import Callback, GenerationSettings, _is_int

__all__ = [
    "track_with_model_basis",
    "sample_motion_track",
    "motion_from_frames",
    "iter_track_frames",
    "render_track",
    "fit_audio",
    "paste_frames",
    "write_track_video",
]


def _to_track(model: FloatModel, motion: torch.Tensor, fps: float, source: str, relative: bool) -> MotionTrack:
    """Wrap latents (B, T, W) as a CPU float32 :class:`MotionTrack` with the model's motion dictionary."""
    with torch.no_grad():
        basis = model.motion_autoencoder.directions().detach().float().cpu().clone()  # (W, M)
    layout = getattr(model, "layout", None)  # DEMO models name their coefficients by factor
    return MotionTrack(motion.detach().float().cpu().clone(), float(fps), source, relative, basis,
                       None if layout is None else layout.to_dict())


def track_with_model_basis(model: FloatModel, track: MotionTrack) -> MotionTrack:
    """``track`` with the model's motion dictionary (and factor layout) attached, latents unchanged."""
    return _to_track(model, track.latents, track.fps, track.source, track.relative)


def sample_motion_track(
    model: FloatModel,
    portrait: Portrait,
    audio: AudioCondition,
    settings: GenerationSettings,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> MotionTrack:
    """Sample motion for ``audio`` and retime it to ``settings.fps``.

    Returns:
        A :class:`~demo_core.motion.track.MotionTrack` of absolute latents (B, ceil(seconds × fps), W)
        on the CPU, with the model's motion dictionary; ``callback(done, total)`` runs over all ODE steps.
    """
    motion = sample_motion(model, portrait, audio, settings, generator=generator, callback=callback)
    motion = retime_motion(motion, audio, model.cfg.fps, settings.fps)  # (B, T_out, W)
    return _to_track(model, motion, settings.fps, "sampled", relative=False)


def motion_from_frames(
    model: FloatModel,
    frames: torch.Tensor,
    fps: float,
    *,
    crop: str = "auto",
    box: tuple[float, float, float, float] | None = None,
    scale: float = 1.6,
    relative: bool = True,
    batch: int = 16,
    callback: Callback | None = None,
) -> MotionTrack:
    """Motion latents of a driving video, one per frame, from the motion encoder.

    Args:
        model: the loaded model.
        frames: (N, H, W, 3) float in [0, 1].
        fps: frame rate of ``frames``.
        crop, box, scale: framing as in :func:`encode_portrait`, chosen on the first frame and kept for
            every frame (a steady crop; per-frame detection would jitter).
        relative: subtract the first frame's latent; the track then moves a portrait away from its own
            pose (rendered on top of ``Portrait.source_motion``).
        batch: frames encoded per call.
        callback: ``callback(done, total)`` over frames.

    Returns:
        A :class:`~demo_core.motion.track.MotionTrack` (1, N, W) on the CPU.
    """
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[0] == 0:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise DemoInputError(f"frames: expected a non-empty batch (N, H, W, 3), got {shape}")
    if crop not in ("auto", "center", "box", "none"):
        raise DemoInputError(f"crop: expected 'auto', 'center', 'box' or 'none', got {crop!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise DemoInputError(f"batch: expected an integer >= 1, got {batch!r}")
    from ..io.media import to_model_image

    size, mae, n = model.cfg.image_size, model.motion_autoencoder, int(frames.shape[0])
    first = _check_image(frames[:1], "frames")[0]  # (H, W, 3)
    crop_box = None if crop == "none" else face_crop_box(first, mode=crop, box=box, scale=scale)[0]
    latents = []
    with torch.inference_mode():
        for start in range(0, n, batch):
            chunk = _check_image(frames[start:start + batch], "frames")  # (b, H, W, 3)
            if crop_box is None:
                x = to_model_image(chunk, size)  # (b, 3, S, S)
            else:
                x = crop_image(chunk, crop_box, size).permute(0, 3, 1, 2) * 2.0 - 1.0  # (b, 3, S, S)
            _, lam, _ = mae.encode(x.to(device=model.device, dtype=model.dtype))
            latents.append(mae.motion_from_coefficients(lam))  # (b, W)
            if callback is not None:
                callback(min(start + batch, n), n)
    motion = torch.cat(latents)[None]  # (1, N, W)
    if relative:
        motion = motion - motion[:, :1]
    return _to_track(model, motion, fps, "video", relative)


def _render_motion(model: FloatModel, portrait: Portrait, track: MotionTrack) -> torch.Tensor:
    """Absolute latents (B, T, W) on the model's device for rendering ``track`` on ``portrait``."""
    b, w = portrait.batch, int(portrait.source_motion.shape[-1])
    if track.batch not in (1, b):
        raise DemoInputError(f"motion: holds {track.batch} tracks but there are {b} portraits; expected 1 or {b}")
    if track.dim != w:
        raise DemoInputError(f"motion: latent width {track.dim} does not match the model's {w} (another model's?)")
    motion = track.latents.to(device=model.device, dtype=model.dtype).expand(b, -1, -1)  # (B, T, W)
    if track.relative:
        motion = motion + portrait.source_motion[:, None, :]  # (B, T, W)
    return motion


def iter_track_frames(
    model: FloatModel, portrait: Portrait, track: MotionTrack, *, batch: int = 8, callback: Callback | None = None
) -> Iterator[torch.Tensor]:
    """Render ``track`` on ``portrait`` chunk by chunk.

    Yields:
        (B, t, S, S, 3) float in [0, 1] on the CPU (sides cut to even numbers, a no-op for the
        power-of-two model sizes); ``callback(done, total)`` runs over frames.
    """
    motion = _render_motion(model, portrait, track)
    for chunk in iter_frames(model, portrait, motion, batch=batch, callback=callback):
        b, t = chunk.shape[:2]
        images = frames_to_unit(chunk.flatten(0, 1)).cpu()  # (B·t, S, S, 3)
        h, w = even_size(images.shape[1], images.shape[2])
        yield images[:, :h, :w].reshape(b, t, h, w, 3)  # (B, t, S, S, 3)


def render_track(
    model: FloatModel,
    portrait: Portrait,
    track: MotionTrack,
    *,
    batch: int = 8,
    callback: Callback | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """All frames of ``track`` on ``portrait`` as one image batch (B·T, S, S, 3), portrait-major, on ``device``."""
    out, done = None, 0
    for chunk in iter_track_frames(model, portrait, track, batch=batch, callback=callback):
        b, t, h, w, _ = chunk.shape
        if out is None:
            out = torch.empty(b, track.num_frames, h, w, 3, device=device)  # (B, T, S, S, 3)
        out[:, done:done + t] = chunk
        done += t
    return out.flatten(0, 1)  # (B·T, S, S, 3)


def fit_audio(waveform: torch.Tensor, sample_rate: int, num_frames: int, fps: float) -> torch.Tensor:
    """Cut or zero-pad audio (..., n) to the duration of ``num_frames`` at ``fps``.

    The length is ``round(num_frames / fps × sample_rate)`` samples, computed exactly (the rule the
    video writer uses for its audio track).  Any channel count and batch are kept.

    Raises:
        DemoInputError: naming ``audio`` for a non-float or NaN/inf waveform or a bad sample rate.
    """
    if not isinstance(waveform, torch.Tensor) or waveform.dim() not in (1, 2, 3) or not waveform.is_floating_point():
        shape = f"{tuple(waveform.shape)} {waveform.dtype}" if isinstance(waveform, torch.Tensor) else \
            type(waveform).__name__
        raise DemoInputError(f"audio: expected a float waveform (n,), (C, n) or (B, C, n), got {shape}")
    if not _is_int(sample_rate) or sample_rate <= 0:
        raise DemoInputError(f"audio sample_rate: expected a positive integer number of Hz, got {sample_rate!r}")
    if not bool(torch.isfinite(waveform).all()):
        raise DemoInputError("audio: the waveform contains NaN or infinite values; expected finite samples in -1..1")
    n = round(Fraction(int(num_frames)) / fps_fraction(fps) * int(sample_rate))
    have = int(waveform.shape[-1])
    if have >= n:
        return waveform[..., :n].clone()
    return torch.nn.functional.pad(waveform, (0, n - have))


def paste_frames(
    rendered: torch.Tensor,
    original: torch.Tensor,
    crops,
    *,
    feather: float = 0.1,
    even: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste rendered crops of P portraits back into their full-size images.

    Args:
        rendered: (P·T, S, S, 3) in [0, 1], portrait-major (portrait k owns frames k·T … (k+1)·T − 1).
        original: (P, H, W, C) or (1, H, W, C) (or (H, W, C)) in [0, 1]; C = 3, 4 (RGBA, composited over
            black as at encoding) or 1 (grey).
        crops: P crop boxes from :func:`encode_portrait`; None (crop "none") stretches the frames
            back to H × W.
        feather: blend width as a fraction of the box side (see :func:`face_crop.paste_back`).
        even: cut H and W down to even numbers (h264 needs them).

    Returns:
        frames (P·T, H', W', 3) and blend masks (P, H', W').
    """
    from ..face_crop import paste_back
    from ..io.media import resize_images

    crops = list(crops)
    p = len(crops)
    if p == 0 or rendered.shape[0] % p:
        raise DemoInputError(f"rendered: {rendered.shape[0]} frames cannot be split evenly among {p} portraits")
    original = _check_image(original, "original")  # (P|1, H, W, 3); RGBA and grey become RGB
    if original.shape[0] not in (1, p):
        raise DemoInputError(f"original: expected 1 or {p} images (one per portrait), got {original.shape[0]}")
    t, (H, W) = rendered.shape[0] // p, original.shape[1:3]
    h, w = even_size(H, W) if even else (H, W)
    frames = rendered.new_empty(p * t, h, w, 3)  # (P·T, H', W', 3)
    masks = rendered.new_empty(p, h, w)  # (P, H', W')
    for k, box in enumerate(crops):
        part, base = rendered[k * t:(k + 1) * t], original[min(k, original.shape[0] - 1)]
        if box is None:
            pasted = resize_images(part.permute(0, 3, 1, 2), H, W).permute(0, 2, 3, 1)  # (T, H, W, 3)
            mask = torch.ones(H, W, dtype=rendered.dtype, device=rendered.device)
        else:
            pasted, mask = paste_back(part, base, box, feather=feather)
        frames[k * t:(k + 1) * t] = pasted[:, :h, :w]
        masks[k] = mask[:h, :w]
    return frames, masks


def write_track_video(
    model: FloatModel,
    portrait: Portrait,
    track: MotionTrack,
    paths: list[str | Path],
    *,
    audio: torch.Tensor | None = None,
    audio_rate: int | None = None,
    original: torch.Tensor | None = None,
    feather: float = 0.1,
    batch: int = 8,
    crf: int = 18,
    callback: Callback | None = None,
) -> list[Path]:
    """Render ``track`` on each portrait straight into mp4 files, chunk by chunk.

    Memory is one render chunk whatever the length.  Each file is written atomically and never over
    an existing file (a numbered name is chosen); if anything fails or ``callback`` raises (a host's
    cancel), no file is left behind.

    Args:
        paths: one output path per portrait.
        audio: soundtrack (n,), (C, n) or (1, C, n) at ``audio_rate``, cut or padded to the video;
            more than two channels are mixed down to mono.
        original: full-size images (P or 1, H, W, C) to paste the frames back into (using
            ``portrait.crops``; RGBA and grey as in :func:`paste_frames`, odd sides cut to even);
            None writes the square crops.
        feather: paste-back blend width (fraction of the box side).
        batch: frames decoded per chunk.
        crf: x264 quality (0 lossless … 51).
        callback: ``callback(done, total)`` over frames.

    Returns:
        The paths written, one per portrait.
    """
    if len(paths) != portrait.batch:
        raise DemoInputError(f"paths: expected one output path per portrait ({portrait.batch}), got {len(paths)}")
    if audio is not None:
        audio = audio[0] if audio.dim() == 3 else audio  # (C, n) or (n,)
        audio = audio.mean(0, keepdim=True) if audio.dim() == 2 and audio.shape[0] > 2 else audio
    motion = _render_motion(model, portrait, track)
    if original is not None:
        original = _check_image(original, "original")  # (P|1, H, W, 3), checked before any file is opened
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(VideoWriter(p, track.fps, audio=audio, audio_rate=audio_rate, crf=crf))
                   for p in paths]
        for chunk in iter_frames(model, portrait, motion, batch=batch, callback=callback):
            for k, writer in enumerate(writers):
                if original is None:
                    writer.write(frames_to_uint8(chunk[k]))  # (t, S, S, 3), as generate_video writes
                    continue
                pasted, _ = paste_frames(frames_to_unit(chunk[k]).cpu(), original[min(k, original.shape[0] - 1)],
                                         [portrait.crops[k]], feather=feather)
                writer.write((pasted * 255.0).round().to(torch.uint8))  # (t, H', W', 3)
    return [writer.path for writer in writers]
