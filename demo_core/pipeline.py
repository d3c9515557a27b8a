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
