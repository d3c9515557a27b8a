"""The generation pipeline: portrait + speech → motion trajectory → frames → video.

One implementation serves the CLI, the ComfyUI nodes and ``bench/``.  Each step is a function that
takes tensors and explicit settings and returns tensors; nothing is stored on the model between
runs.

Steps:
    1. :func:`encode_portrait` — crop and normalise the portrait, encode appearance, features and
       source motion once (reused for every frame).
    2. :func:`encode_audio` — mono 16 kHz waveform → per-frame audio conditions at the model's
       native fps, plus the emotion condition.
    3. :func:`sample_motion` — flow-matching sampling window by window.
    4. :func:`retime_motion` — resample the latent trajectory to the output fps.
    5. :func:`iter_frames` — decode frames chunk by chunk (streaming).
    6. :func:`generate_video` — all of the above into an mp4, encoding each chunk as it is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from .errors import DemoInputError
from .face_crop import CropBox, crop_image, face_crop_box
from .flow.window_sampler import SamplerSettings, iter_motion_windows
from .io.media import VideoWriter, frames_to_uint8, prepare_waveform
from .models.audio_encoder import normalize_waveform
from .models.emotion_encoder import EMOTION_LABELS, emotion_condition
from .models.float_model import FloatModel
from .motion.retime import num_video_frames, resample_trajectory

__all__ = [
    "GenerationSettings",
    "Portrait",
    "AudioCondition",
    "encode_portrait",
    "encode_audio",
    "sample_motion",
    "retime_motion",
    "iter_frames",
    "generate_video",
    "make_generator",
]

Callback = Callable[[int, int], None]


@dataclass
class GenerationSettings:
    """Per-run options (never stored on the model).

    Attributes:
        steps: ODE integration steps per window (FLOAT's ``nfe=10`` equals 9 Euler steps).
        method: ``"euler"``, ``"midpoint"`` or ``"rk4"``.
        a_cfg: audio classifier-free guidance scale.
        e_cfg: emotion classifier-free guidance scale.
        emotion: ``"auto"`` (predicted from the speech) or one of ``EMOTION_LABELS``.
        seed: noise seed; the same seed gives the same result on the same device.
        fps: output frame rate (10–60); motion is resampled in latent space from the model's fps.
        render_batch: frames decoded per batch.
    """

    steps: int = 10
    method: str = "euler"
    a_cfg: float = 2.0
    e_cfg: float = 1.0
    emotion: str = "auto"
    seed: int = 0
    fps: float = 25.0
    render_batch: int = 8

    def validate(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1 or self.steps > 1000:
            raise DemoInputError(f"steps must be an integer from 1 to 1000, got {self.steps!r}")
        if self.method not in ("euler", "midpoint", "rk4"):
            raise DemoInputError(f"solver must be 'euler', 'midpoint' or 'rk4', got {self.method!r}")
        if not 10 <= float(self.fps) <= 60:
            raise DemoInputError(f"fps must be between 10 and 60, got {self.fps!r}")
        for name in ("a_cfg", "e_cfg"):
            v = getattr(self, name)
            if not (0.0 <= float(v) <= 20.0):
                raise DemoInputError(f"{name} must be between 0 and 20, got {v!r}")
        if self.emotion.lower() not in ("auto", "s2e", "none") + EMOTION_LABELS:
            raise DemoInputError(
                f"emotion must be 'auto' or one of {', '.join(EMOTION_LABELS)}, got {self.emotion!r}"
            )
        if self.render_batch < 1:
            raise DemoInputError(f"render_batch must be at least 1, got {self.render_batch!r}")


@dataclass
class Portrait:
    """An encoded portrait batch (B portraits), reused for every frame.

    Attributes:
        image: model input (B, 3, S, S) in [-1, 1].
        h_source: appearance code (B, W).
        feats: encoder feature maps, low to high resolution.
        source_motion: motion latent of the portrait itself, ``r_s`` (B, W).
        crops: the crop used per portrait (source pixel coordinates), or None if none was made.
    """

    image: torch.Tensor
    h_source: torch.Tensor
    feats: list[torch.Tensor]
    source_motion: torch.Tensor
    crops: list[CropBox | None] = field(default_factory=list)

    @property
    def batch(self) -> int:
        return int(self.h_source.shape[0])


@dataclass
class AudioCondition:
    """Per-frame audio features at the model's native fps and the emotion condition.

    Attributes:
        features: ``wa`` (1, T, W).
        emotion: ``we`` (1, 1, E).
        num_samples: waveform length at ``sample_rate``.
        sample_rate: the model's audio rate.
        waveform: the mono waveform fed to the model (n,), before normalisation.
    """

    features: torch.Tensor
    emotion: torch.Tensor
    num_samples: int
    sample_rate: int
    waveform: torch.Tensor

    @property
    def seconds(self) -> float:
        return self.num_samples / self.sample_rate


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (any int; reduced to 64 bits)."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed) % (2**64))
    return g


@torch.inference_mode()
def encode_portrait(
    model: FloatModel,
    image: torch.Tensor,
    *,
    crop: str = "auto",
    box: tuple[float, float, float, float] | None = None,
    scale: float = 1.6,
) -> Portrait:
    """Crop, normalise and encode portraits.

    Args:
        model: the loaded model.
        image: (H, W, 3) or (B, H, W, 3) float in [0, 1] (ComfyUI IMAGE layout).
        crop: ``"auto"`` (face detection, centre crop when no face is found), ``"center"``,
            ``"box"`` (use ``box``) or ``"none"`` (image used as it is, resized to S×S).
        box: (x, y, w, h) in pixels for ``crop="box"``.
        scale: enlargement of the detected face box (FLOAT frames the face at 1.6×).

    Returns:
        The encoded :class:`Portrait`.
    """
    image = _check_image(image)
    size = model.cfg.image_size
    crops: list[CropBox | None] = []
    tiles = []
    for b in range(image.shape[0]):
        img = image[b]
        if crop == "none":
            from .io.media import to_model_image

            tiles.append(to_model_image(img, size)[0])
            crops.append(None)
            continue
        if crop not in ("auto", "center", "box"):
            raise DemoInputError(f"crop must be 'auto', 'center', 'box' or 'none', got {crop!r}")
        crop_box, _how = face_crop_box(img, mode=crop, box=box, scale=scale)
        tile = crop_image(img, crop_box, size)[0]  # (S, S, 3) in [0, 1]
        tiles.append(tile.permute(2, 0, 1) * 2.0 - 1.0)  # (3, S, S) in [-1, 1]
        crops.append(crop_box)
    x = torch.stack(tiles).to(device=model.device, dtype=model.dtype)  # (B, 3, S, S)
    mae = model.motion_autoencoder
    h_source, lam, feats = mae.encode(x)
    source_motion = mae.motion_from_coefficients(lam)
    return Portrait(image=x, h_source=h_source, feats=feats, source_motion=source_motion, crops=crops)


def _check_image(image: torch.Tensor) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise DemoInputError(f"image must be a torch.Tensor (H, W, 3) or (B, H, W, 3), got {type(image).__name__}")
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[-1] not in (1, 3, 4):
        raise DemoInputError(f"image must have shape (B, H, W, 3), got {tuple(image.shape)}")
    if image.shape[0] == 0:
        raise DemoInputError("image batch is empty")
    if image.shape[1] < 16 or image.shape[2] < 16:
        raise DemoInputError(f"image is {image.shape[2]}×{image.shape[1]} pixels; a portrait needs at least 16×16")
    image = image.float()
    if not torch.isfinite(image).all():
        raise DemoInputError("image contains NaN or infinite values")
    if image.shape[-1] == 1:
        image = image.expand(*image.shape[:-1], 3)
    elif image.shape[-1] == 4:  # composite RGBA over black, like a zero border
        image = image[..., :3] * image[..., 3:4]
    return image.clamp(0.0, 1.0)


@torch.inference_mode()
def encode_audio(
    model: FloatModel,
    waveform: torch.Tensor,
    sample_rate: int,
    *,
    emotion: str = "auto",
) -> AudioCondition:
    """Turn speech into per-frame audio conditions and the emotion condition.

    Args:
        model: the loaded model.
        waveform: (n,), (C, n) or (1, C, n) float audio at ``sample_rate`` (any rate, any channels).
        sample_rate: rate of ``waveform`` in Hz.
        emotion: ``"auto"`` or an emotion label.

    Returns:
        :class:`AudioCondition` at the model's native fps.
    """
    cfg = model.cfg
    mono = prepare_waveform(waveform, sample_rate, target_rate=cfg.sampling_rate, name="audio")
    n = int(mono.shape[-1])
    frames = num_video_frames(n, cfg.sampling_rate, cfg.fps)
    if frames < 1:
        raise DemoInputError("audio is shorter than one video frame")
    a = normalize_waveform(mono.unsqueeze(0)).to(device=model.device, dtype=model.dtype)  # (1, n)
    wa = model.audio_encoder(a, frames)  # (1, T, W)
    label = emotion.lower()
    if label in ("auto", "s2e", "none") and model.emotion_encoder is None:
        label = "neutral"  # a checkpoint without an emotion classifier: neutral condition
    probs_fn = None if model.emotion_encoder is None else (lambda: model.emotion_encoder.predict(a))
    we = emotion_condition(
        None if label in ("auto", "s2e", "none") else label,
        batch=1,
        probs_fn=probs_fn,
        device=model.device,
        dtype=model.dtype,
    )
    return AudioCondition(features=wa, emotion=we, num_samples=n, sample_rate=cfg.sampling_rate, waveform=mono)


def iter_motion(
    model: FloatModel,
    portrait: Portrait,
    audio: AudioCondition,
    settings: GenerationSettings,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Iterator[torch.Tensor]:
    """Yield motion latents window by window, (B, L_k, W) at the model's native fps."""
    settings.validate()
    b = portrait.batch
    if generator is None:
        generator = make_generator(settings.seed, model.device)
    wa = audio.features.expand(b, -1, -1)
    we = audio.emotion.expand(b, -1, -1)
    sampler = SamplerSettings(steps=settings.steps, method=settings.method, a_cfg=settings.a_cfg, e_cfg=settings.e_cfg)
    with torch.inference_mode():
        yield from iter_motion_windows(
            model.fmt, wr=portrait.source_motion, wa=wa, we=we, settings=sampler, generator=generator, callback=callback
        )


def sample_motion(
    model: FloatModel,
    portrait: Portrait,
    audio: AudioCondition,
    settings: GenerationSettings,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Sample the whole motion trajectory (B, T, W) at the model's native fps."""
    return torch.cat(list(iter_motion(model, portrait, audio, settings, generator=generator, callback=callback)), dim=1)


def retime_motion(motion: torch.Tensor, audio: AudioCondition, native_fps: float, fps: float) -> torch.Tensor:
    """Resample a native-fps trajectory to ``fps`` with exactly ``ceil(seconds × fps)`` frames."""
    frames = num_video_frames(audio.num_samples, audio.sample_rate, fps)
    return resample_trajectory(motion, native_fps, fps, frames)


def iter_frames(
    model: FloatModel,
    portrait: Portrait,
    motion: torch.Tensor,
    *,
    batch: int = 8,
    callback: Callback | None = None,
) -> Iterator[torch.Tensor]:
    """Decode frames chunk by chunk: yields (B, t, 3, S, S) in [-1, 1]-ish (not clamped)."""
    total = int(motion.shape[1])
    done = 0
    with torch.inference_mode():
        for chunk in model.motion_autoencoder.iter_decode(portrait.h_source, portrait.feats, motion, chunk_size=batch):
            done += int(chunk.shape[1])
            if callback is not None:
                callback(done, total)
            yield chunk


def generate_video(
    model: FloatModel,
    image: torch.Tensor,
    waveform: torch.Tensor,
    sample_rate: int,
    out_path: str | Path,
    settings: GenerationSettings | None = None,
    *,
    crop: str = "auto",
    box: tuple[float, float, float, float] | None = None,
    progress: Callback | None = None,
    overwrite: bool = False,
) -> Path:
    """Portrait + speech → mp4 with the speech muxed in, streamed chunk by chunk.

    The number of frames is exactly ``ceil(audio_seconds × fps)``; memory is bounded by one window
    of motion and one render batch, whatever the audio length.

    Args:
        model: loaded model.
        image: (H, W, 3) float in [0, 1] (one portrait).
        waveform: audio (n,) or (C, n) at ``sample_rate``.
        sample_rate: audio rate in Hz.
        out_path: destination mp4; an existing file is never overwritten unless ``overwrite``
            (a numbered name is chosen instead).
        settings: generation options.
        crop, box: portrait framing (see :func:`encode_portrait`).
        progress: ``callback(done, total)`` over sampling steps plus frames.

    Returns:
        The path written.
    """
    settings = settings or GenerationSettings()
    settings.validate()
    if image.dim() == 4 and image.shape[0] != 1:
        raise DemoInputError(f"generate_video takes one portrait, got a batch of {image.shape[0]}")
    portrait = encode_portrait(model, image, crop=crop, box=box)
    audio = encode_audio(model, waveform, sample_rate, emotion=settings.emotion)
    native = model.cfg.fps
    n_native = int(audio.features.shape[1])
    n_out = num_video_frames(audio.num_samples, audio.sample_rate, settings.fps)
    windows = -(-n_native // model.fmt.cfg.num_frames)
    total = windows * settings.steps + n_out
    state = {"sampled": 0, "rendered": 0}

    def on_step(done: int, _total: int) -> None:
        state["sampled"] = done
        if progress is not None:
            progress(state["sampled"] + state["rendered"], total)

    generator = make_generator(settings.seed, model.device)
    motion = sample_motion(model, portrait, audio, settings, generator=generator, callback=on_step)
    motion = resample_trajectory(motion, native, settings.fps, n_out)

    def on_frames(done: int, _total: int) -> None:
        state["rendered"] = done
        if progress is not None:
            progress(state["sampled"] + state["rendered"], total)

    with VideoWriter(out_path, settings.fps, audio=audio.waveform, audio_rate=audio.sample_rate,
                     overwrite=overwrite) as writer:
        for chunk in iter_frames(model, portrait, motion, batch=settings.render_batch, callback=on_frames):
            writer.write(frames_to_uint8(chunk[0]))
    return writer.path


# ---------------------------------------------------------------------------------------------------------------
# Motion tracks, rendering, paste-back and video files for hosts (added for the ComfyUI nodes in ``nodes/``).

__all__ += [
    "track_with_model_basis",
    "sample_motion_track",
    "motion_from_frames",
    "iter_track_frames",
    "render_track",
    "fit_audio",
    "paste_frames",
    "write_track_video",
]

import contextlib  # noqa: E402  (imports of this section are kept with it)
from fractions import Fraction  # noqa: E402

from .io.media import even_size, frames_to_unit  # noqa: E402
from .motion.retime import fps_fraction  # noqa: E402
from .motion.track import MotionTrack  # noqa: E402


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
        raise DemoInputError(f"crop must be 'auto', 'center', 'box' or 'none', got {crop!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise DemoInputError(f"batch: expected an integer >= 1, got {batch!r}")
    from .io.media import to_model_image

    size, mae, n = model.cfg.image_size, model.motion_autoencoder, int(frames.shape[0])
    first = _check_image(frames[:1])[0]  # (H, W, 3)
    crop_box = None if crop == "none" else face_crop_box(first, mode=crop, box=box, scale=scale)[0]
    latents = []
    with torch.inference_mode():
        for start in range(0, n, batch):
            chunk = _check_image(frames[start:start + batch])  # (b, H, W, 3)
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
    video writer uses for its audio track).
    """
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
        original: (P, H, W, 3) or (1, H, W, 3) (or (H, W, 3)) in [0, 1].
        crops: P crop boxes from :func:`encode_portrait`; None (crop "none") stretches the frames
            back to H × W.
        feather: blend width as a fraction of the box side (see :func:`face_crop.paste_back`).
        even: cut H and W down to even numbers (h264 needs them).

    Returns:
        frames (P·T, H', W', 3) and blend masks (P, H', W').
    """
    from .face_crop import paste_back
    from .io.media import resize_images

    crops = list(crops)
    p = len(crops)
    if p == 0 or rendered.shape[0] % p:
        raise DemoInputError(f"rendered: {rendered.shape[0]} frames cannot be split evenly among {p} portraits")
    original = original[None] if original.dim() == 3 else original
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
        original: full-size images (P or 1, H, W, 3) to paste the frames back into (using
            ``portrait.crops``); None writes the square crops.
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
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(VideoWriter(p, track.fps, audio=audio, audio_rate=audio_rate, crf=crf))
                   for p in paths]
        for chunk in iter_frames(model, portrait, motion, batch=batch, callback=callback):
            for k, writer in enumerate(writers):
                if original is None:
                    writer.write(frames_to_uint8(chunk[k]))  # (t, S, S, 3), as generate_video writes
                    continue
                base = original[None] if original.dim() == 3 else original
                pasted, _ = paste_frames(frames_to_unit(chunk[k]).cpu(), base[min(k, base.shape[0] - 1)],
                                         [portrait.crops[k]], feather=feather)
                writer.write((pasted * 255.0).round().to(torch.uint8))  # (t, H', W', 3)
    return [writer.path for writer in writers]
