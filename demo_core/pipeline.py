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

import logging
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from .errors import DemoInputError
from .face_crop import CropBox, crop_image, face_crop_box
from .flow.window_sampler import SamplerSettings, iter_motion_windows
from .io.media import VideoWriter, frames_to_uint8, prepare_waveform
from .models.audio_encoder import apply_normalization, normalization_stats, normalize_waveform
from .models.emotion_encoder import EMOTION_LABELS, emotion_condition
from .models.float_model import FloatModel
from .models.logmel_audio_encoder import DEFAULT_SEGMENT_FRAMES, LogMelAudioEncoder
from .motion.retime import fps_fraction, num_video_frames, resample_trajectory

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
log = logging.getLogger(__name__)

SOLVER_METHODS = ("euler", "midpoint", "rk4")
MIN_IMAGE_SIDE = 16  # pixels; below this a portrait holds no usable face detail
# Image values further than this outside 0..1 are a wrong range (0..255 or -1..1), not resampling overshoot.
_IMAGE_RANGE_SLACK = 0.5


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


@dataclass
class GenerationSettings:
    """Per-run options (never stored on the model).

    Attributes:
        steps: ODE integration steps per window (FLOAT's ``nfe=10`` equals 9 Euler steps).
        method: ``"euler"``, ``"midpoint"`` or ``"rk4"``.
        a_cfg: audio classifier-free guidance scale.
        e_cfg: emotion classifier-free guidance scale.
        emotion: ``"auto"`` (predicted from the speech) or one of ``EMOTION_LABELS``.
        seed: noise seed, any integer (taken modulo 2**64, so ComfyUI's 0 … 2**64 − 1 and negative CLI seeds all
            work); the same seed gives the same result on the same device.
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
        """Check every option; raises :class:`DemoInputError` naming the option and what it accepts."""
        if not _is_int(self.steps) or not 1 <= self.steps <= 1000:
            raise DemoInputError(f"steps: expected an integer from 1 to 1000, got {self.steps!r}")
        if self.method not in SOLVER_METHODS:
            raise DemoInputError(f"solver: expected 'euler', 'midpoint' or 'rk4', got {self.method!r}")
        if not _is_real(self.fps) or not 10 <= float(self.fps) <= 60:
            raise DemoInputError(f"fps: expected a frame rate from 10 to 60, got {self.fps!r}")
        for name in ("a_cfg", "e_cfg"):
            v = getattr(self, name)
            if not _is_real(v) or not 0.0 <= float(v) <= 20.0:
                raise DemoInputError(f"{name}: expected a guidance scale from 0 to 20, got {v!r}")
        if not isinstance(self.emotion, str) or self.emotion.lower() not in ("auto", "s2e", "none") + EMOTION_LABELS:
            raise DemoInputError(
                f"emotion: expected 'auto' or one of {', '.join(EMOTION_LABELS)}, got {self.emotion!r}"
            )
        if not _is_int(self.seed):
            raise DemoInputError(f"seed: expected an integer (any, taken modulo 2**64), got {self.seed!r}")
        if not _is_int(self.render_batch) or self.render_batch < 1:
            raise DemoInputError(f"render_batch: expected an integer >= 1, got {self.render_batch!r}")


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
        source_samples, source_rate: length and rate of the audio as given (0: same as the model's).  The
            video length follows them exactly; resampling to the model's rate rounds the length up by up to
            one sample, which could otherwise add a frame at a frame boundary.
    """

    features: torch.Tensor
    emotion: torch.Tensor
    num_samples: int
    sample_rate: int
    waveform: torch.Tensor
    source_samples: int = 0
    source_rate: int = 0

    @property
    def seconds(self) -> float:
        if self.source_rate:
            return self.source_samples / self.source_rate
        return self.num_samples / self.sample_rate

    def num_frames(self, fps: float) -> int:
        """Frames that cover the clip at ``fps``: exactly ``ceil(seconds × fps)`` of the audio as given."""
        if self.source_rate:
            return num_video_frames(self.source_samples, self.source_rate, fps)
        return num_video_frames(self.num_samples, self.sample_rate, fps)


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
        image: (H, W, C) or (B, H, W, C) float in [0, 1] (ComfyUI IMAGE layout), C = 3 (RGB), 4 (RGBA:
            composited over black, the colour that pads crops past the image edge) or 1 (grey); at least
            16×16 pixels.  Smaller crops than the model's input are upscaled (a note is logged); large
            images are only ever resampled down to the crop, never copied whole.
        crop: ``"auto"`` (face detection, centre crop when no face is found), ``"center"``,
            ``"box"`` (use ``box``) or ``"none"`` (image used as it is, resized to S×S).
        box: (x, y, w, h) in pixels for ``crop="box"``.
        scale: enlargement of the detected face box (FLOAT frames the face at 1.6×).

    Returns:
        The encoded :class:`Portrait`.
    """
    if crop not in ("auto", "center", "box", "none"):
        raise DemoInputError(f"crop: expected 'auto', 'center', 'box' or 'none', got {crop!r}")
    image = _check_image(image)
    size = model.cfg.image_size
    crops: list[CropBox | None] = []
    tiles = []
    smallest = math.inf  # shortest source side (pixels) any crop is resampled from
    for b in range(image.shape[0]):
        img = image[b]
        if crop == "none":
            from .io.media import to_model_image

            tiles.append(to_model_image(img, size)[0])
            crops.append(None)
            smallest = min(smallest, *img.shape[:2])
            continue
        crop_box, _how = face_crop_box(img, mode=crop, box=box, scale=scale)
        tile = crop_image(img, crop_box, size)[0]  # (S, S, 3) in [0, 1]
        tiles.append(tile.permute(2, 0, 1) * 2.0 - 1.0)  # (3, S, S) in [-1, 1]
        crops.append(crop_box)
        smallest = min(smallest, crop_box.pixel_box()[2])
    if smallest < size:
        log.info("image: the portrait crop is %d px across, smaller than the model's %d×%d input; it is upscaled "
                 "(expect a softer result; a larger image gives a sharper one)", smallest, size, size)
    x = torch.stack(tiles).to(device=model.device, dtype=model.dtype)  # (B, 3, S, S)
    mae = model.motion_autoencoder
    h_source, lam, feats = mae.encode(x)
    source_motion = mae.motion_from_coefficients(lam)
    return Portrait(image=x, h_source=h_source, feats=feats, source_motion=source_motion, crops=crops)


def _check_image(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """Host images → (B, H, W, 3) float32 in [0, 1], refusing what cannot be a portrait.

    Accepts (H, W, C) or (B, H, W, C) floating point with C = 3, 4 (RGBA, composited over black) or 1
    (grey, repeated).  Values slightly outside [0, 1] (resampling overshoot) are clipped; values far
    outside (0..255 or -1..1 images), NaN/inf, integer dtypes, empty batches and sides under
    :data:`MIN_IMAGE_SIDE` raise :class:`DemoInputError` naming ``name``.  An RGB float32 image already
    in range is returned without a copy (a 4K frame is never duplicated here).
    """
    if not isinstance(image, torch.Tensor):
        raise DemoInputError(f"{name}: expected a tensor (B, H, W, 3) or (H, W, 3) in 0..1, "
                             f"got {type(image).__name__}")
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[-1] not in (1, 3, 4):
        raise DemoInputError(f"{name}: expected shape (B, H, W, C) or (H, W, C) with C = 3 (RGB), 4 (RGBA) or "
                             f"1 (grey), got {tuple(image.shape)}")
    b, h, w, _ = image.shape
    if b == 0:
        raise DemoInputError(f"{name}: the image batch is empty (shape {tuple(image.shape)}); expected at least "
                             "one image")
    if h < MIN_IMAGE_SIDE or w < MIN_IMAGE_SIDE:
        raise DemoInputError(f"{name}: {w}×{h} pixels is too small for a portrait; expected at least "
                             f"{MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE}")
    if not image.is_floating_point():
        raise DemoInputError(f"{name}: expected float values in 0..1, got dtype {image.dtype} "
                             "(divide 8-bit images by 255)")
    image = image.float()
    lo, hi = (float(v) for v in torch.aminmax(image))  # NaN propagates, inf shows as ±inf
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise DemoInputError(f"{name}: contains NaN or infinite values; expected finite values in 0..1")
    if lo < -_IMAGE_RANGE_SLACK or hi > 1.0 + _IMAGE_RANGE_SLACK:
        raise DemoInputError(f"{name}: expected values in 0..1 (ComfyUI IMAGE), got values from {lo:.4g} to "
                             f"{hi:.4g}; rescale the image to 0..1")
    if image.shape[-1] == 1:
        image = image.expand(b, h, w, 3)  # (B, H, W, 3)
    elif image.shape[-1] == 4:  # composite RGBA over black, like a zero border
        image = image[..., :3] * image[..., 3:4]  # (B, H, W, 3)
    return image.clamp(0.0, 1.0) if lo < 0.0 or hi > 1.0 else image


@torch.inference_mode()
def encode_audio(
    model: FloatModel,
    waveform: torch.Tensor,
    sample_rate: int,
    *,
    emotion: str = "auto",
    source: tuple[int, int] | None = None,
) -> AudioCondition:
    """Turn speech into per-frame audio conditions and the emotion condition.

    Args:
        model: the loaded model.
        waveform: (n,), (C, n) or (1, C, n) float audio at ``sample_rate`` (any rate, any channels,
            mixed to mono), at least one video frame long (1/25 s for FLOAT).  Silence is valid (it gives
            idle motion); clipped or loud audio is accepted (the model normalises its level); empty
            audio and NaN/inf samples raise :class:`DemoInputError`.
        sample_rate: rate of ``waveform`` in Hz.
        emotion: ``"auto"`` or an emotion label.
        source: ``(samples, rate)`` of the audio as it was given, when ``waveform`` was already mixed and
            resampled from it (:func:`~demo_core.io.media.load_audio_mono`): the video length follows it
            exactly, as if the original had been passed.  None: ``waveform`` is the original.

    Returns:
        :class:`AudioCondition` at the model's native fps.

    Memory: a log-mel audio encoder (DEMO) encodes the clip :data:`DEFAULT_SEGMENT_FRAMES` frames at a time,
    normalising each slice with whole-clip statistics, so neither the STFT nor a normalised copy of the
    whole clip is ever held (the features equal the whole-clip ones to float rounding).  FLOAT's wav2vec2
    encoder attends over the whole clip and is run on it whole.
    """
    if not isinstance(emotion, str) or emotion.lower() not in ("auto", "s2e", "none") + EMOTION_LABELS:
        raise DemoInputError(f"emotion: expected 'auto' or one of {', '.join(EMOTION_LABELS)}, got {emotion!r}")
    cfg = model.cfg
    mono = prepare_waveform(waveform, sample_rate, target_rate=cfg.sampling_rate, name="audio")
    n = int(mono.shape[-1])
    if n * fps_fraction(cfg.fps) < cfg.sampling_rate:  # less than one frame period of the model
        frame_ms = 1000 / float(cfg.fps)
        raise DemoInputError(f"audio: the clip lasts {1000 * n / cfg.sampling_rate:.1f} ms, shorter than one video "
                             f"frame ({frame_ms:.0f} ms at {float(cfg.fps):g} fps); expected at least "
                             f"{frame_ms:.0f} ms of speech")
    frames = num_video_frames(n, cfg.sampling_rate, cfg.fps)

    def normalized() -> torch.Tensor:  # (1, n), the whole clip
        return normalize_waveform(mono.unsqueeze(0)).to(device=model.device, dtype=model.dtype)

    if isinstance(model.audio_encoder, LogMelAudioEncoder):  # local in time: segment by segment
        mean, scale = normalization_stats(mono.unsqueeze(0))

        def normalize_slice(x: torch.Tensor) -> torch.Tensor:
            return apply_normalization(x, mean, scale).to(device=model.device, dtype=model.dtype)

        wa = model.audio_encoder(mono.unsqueeze(0), frames, segment_frames=DEFAULT_SEGMENT_FRAMES,
                                 transform=normalize_slice)  # (1, T, W)
    else:  # wav2vec2 attends over the whole clip
        wa = model.audio_encoder(normalized(), frames)  # (1, T, W)
    label = emotion.lower()
    if label in ("auto", "s2e", "none") and model.emotion_encoder is None:
        label = "neutral"  # a checkpoint without an emotion classifier: neutral condition
    probs_fn = None if model.emotion_encoder is None else (lambda: model.emotion_encoder.predict(normalized()))
    we = emotion_condition(
        None if label in ("auto", "s2e", "none") else label,
        batch=1,
        probs_fn=probs_fn,
        device=model.device,
        dtype=model.dtype,
    )
    source_samples, source_rate = _check_source(source) or (int(waveform.shape[-1]), int(sample_rate))
    return AudioCondition(features=wa, emotion=we, num_samples=n, sample_rate=cfg.sampling_rate, waveform=mono,
                          source_samples=source_samples, source_rate=source_rate)


def _check_source(source) -> tuple[int, int] | None:
    if source is None:
        return None
    if (not isinstance(source, (tuple, list)) or len(source) != 2
            or not all(_is_int(v) and int(v) > 0 for v in source)):
        raise DemoInputError(f"source: expected (samples, rate), two positive integers, got {source!r}")
    return int(source[0]), int(source[1])


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
    out, t = None, 0
    for window in iter_motion(model, portrait, audio, settings, generator=generator, callback=callback):
        if out is None:  # filled in place: no list of windows next to their concatenation
            out = window.new_empty(window.shape[0], int(audio.features.shape[1]), window.shape[2])
        out[:, t:t + window.shape[1]] = window
        t += int(window.shape[1])
    if out is None or t != out.shape[1]:
        raise RuntimeError(f"sample_motion: the windows cover {t} frames, expected {audio.features.shape[1]}")
    return out


def retime_motion(motion: torch.Tensor, audio: AudioCondition, native_fps: float, fps: float) -> torch.Tensor:
    """Resample a native-fps trajectory to ``fps`` with exactly ``ceil(seconds × fps)`` frames."""
    return resample_trajectory(motion, native_fps, fps, audio.num_frames(fps))


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
    source: tuple[int, int] | None = None,
) -> Path:
    """Portrait + speech → mp4 with the speech muxed in, streamed chunk by chunk.

    The number of frames is exactly ``ceil(audio_seconds × fps)``; besides the 16 kHz mono waveform and the
    per-frame audio features and motion latents (T × W floats), memory is bounded by one audio segment, one
    window of motion and one render batch, whatever the audio length.

    Args:
        model: loaded model.
        image: (H, W, 3) float in [0, 1] (one portrait).
        waveform: audio (n,) or (C, n) at ``sample_rate``.
        sample_rate: audio rate in Hz.
        out_path: destination mp4; an existing file is never overwritten unless ``overwrite``
            (a numbered name is chosen instead).
        settings: generation options.
        crop, box: portrait framing (see :func:`encode_portrait`).
        progress: ``callback(done, total)`` over sampling steps plus frames.  An exception it raises (a
            host's cancel, Ctrl-C) stops the run; the mp4 is written under a hidden temporary name and
            renamed only when complete, so nothing is left behind and the next run starts clean.
        source: see :func:`encode_audio` (the CLI passes :func:`~demo_core.io.media.load_audio_mono`'s
            16 kHz mono with the file's length and rate, so the file's channels are never held whole).

    Returns:
        The path written.
    """
    settings = settings or GenerationSettings()
    settings.validate()
    image = _check_image(image)
    if image.shape[0] != 1:
        raise DemoInputError(f"image: generate_video animates one portrait (H, W, 3), got a batch of "
                             f"{image.shape[0]}; use encode_portrait and write_track_video for several")
    portrait = encode_portrait(model, image, crop=crop, box=box)
    audio = encode_audio(model, waveform, sample_rate, emotion=settings.emotion, source=source)
    native = model.cfg.fps
    n_native = int(audio.features.shape[1])
    n_out = audio.num_frames(settings.fps)
    windows = -(-n_native // model.fmt.cfg.num_frames)
    total = windows * settings.steps + n_out
    state = {"sampled": 0, "rendered": 0}

    def on_step(done: int, _total: int) -> None:
        state["sampled"] = done
        if progress is not None:
            progress(state["sampled"] + state["rendered"], total)

    generator = make_generator(settings.seed, model.device)
    motion = sample_motion(model, portrait, audio, settings, generator=generator, callback=on_step)
    if not (fps_fraction(native) == fps_fraction(settings.fps) and n_out == n_native):
        motion = resample_trajectory(motion, native, settings.fps, n_out)  # (else it would be a copy)
    wave, wave_rate = audio.waveform, audio.sample_rate
    del audio  # the features are no longer needed while frames are rendered

    def on_frames(done: int, _total: int) -> None:
        state["rendered"] = done
        if progress is not None:
            progress(state["sampled"] + state["rendered"], total)

    with VideoWriter(out_path, settings.fps, audio=wave, audio_rate=wave_rate, overwrite=overwrite) as writer:
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
        raise DemoInputError(f"crop: expected 'auto', 'center', 'box' or 'none', got {crop!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise DemoInputError(f"batch: expected an integer >= 1, got {batch!r}")
    from .io.media import to_model_image

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
    from .face_crop import paste_back
    from .io.media import resize_images

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


# ---------------------------------------------------------------------------------------------------------------
# Factor control for hosts: calibration sidecars, factor spaces of tracks, edits, mixing and factor-conditioned
# sampling (added for the ComfyUI nodes in ``nodes/editing.py``, ``nodes/calibration.py`` and ``nodes/motion.py``).

__all__ += [
    "BLINK_MODES",
    "NO_LAYOUT_HINT",
    "FactorEdits",
    "model_factor_calibration",
    "model_factor_space",
    "track_factor_space",
    "attach_factor_space",
    "parse_blink_times",
    "edit_motion_track",
    "fit_track_frames",
    "mix_motion_tracks",
    "sample_motion_track_conditioned",
    "calibrate_model",
]

import re  # noqa: E402

from .motion.blinks import damp_blinks, insert_blinks, natural_blink_times  # noqa: E402
from .motion.calibration import calibrate_autoencoder  # noqa: E402
from .motion.conditioning import sample_motion_conditioned  # noqa: E402
from .motion.edits import freeze_factor, offset_axis, scale_factor, set_axis, smooth_factor  # noqa: E402
from .motion.factor_sidecar import (  # noqa: E402
    FactorCalibration,
    load_factor_calibration,
    parse_factor_map,
    save_factor_calibration,
    sidecar_path,
)
from .motion.factor_space import FactorSpace  # noqa: E402
from .motion.keyframe_edits import apply_keyframes  # noqa: E402
from .motion.keyframes import KeyframeSet, check_value_ranges, parse_keyframes  # noqa: E402
from .motion.length_matching import match_length  # noqa: E402
from .motion.mixing import mix_factors  # noqa: E402

BLINK_MODES = ("keep", "natural", "none", "at times")
NO_LAYOUT_HINT = ("no factor layout: the motion comes from a FLOAT-family model that is not calibrated. Run Demo "
                  "Calibrate Factors on the model (it saves <checkpoint>.factors.json beside the checkpoint), then "
                  "connect the model here or sample the motion again")
# Calibrated FLOAT-family layouts keep gaze and eyelids in one "eyes" block.
_FACTOR_ALIASES = {"gaze": "eyes", "blink": "eyes"}


def model_factor_calibration(model: FloatModel, checkpoint: str | Path | None) -> FactorCalibration | None:
    """The factor sidecar of a FLOAT-family ``checkpoint``, read now (None: DEMO model, no checkpoint, no sidecar)."""
    if getattr(model, "layout", None) is not None or checkpoint is None or not sidecar_path(checkpoint).is_file():
        return None
    return load_factor_calibration(checkpoint, num_directions=int(model.motion_autoencoder.cfg.dim_m))


def model_factor_space(model: FloatModel, calibration: FactorCalibration | None = None,
                       device: str | torch.device = "cpu") -> FactorSpace | None:
    """The model's factor space (float32 on ``device``): its own layout (DEMO) or ``calibration``'s; else None."""
    layout = getattr(model, "layout", None)
    if layout is None and calibration is None:
        return None
    with torch.no_grad():
        q = model.motion_autoencoder.directions().detach().to(device=device, dtype=torch.float32).clone()  # (W, M)
        if model.dtype not in (torch.float32, torch.float64):  # a half-precision basis is orthonormal to ~1e-2 only
            q, r = torch.linalg.qr(q)  # re-orthonormalised, column signs kept
            q = q * torch.where(torch.diagonal(r) < 0, -1.0, 1.0)
    return FactorSpace(q, layout) if layout is not None else FactorSpace(q, calibration.layout, calibration.rotation)


def track_factor_space(track: MotionTrack) -> FactorSpace | None:
    """The factor space a track carries (its basis and factor layout), None when it names no factors."""
    return None if track.basis is None or track.factors is None else FactorSpace.from_track(track)


def attach_factor_space(track: MotionTrack, space: FactorSpace | None) -> MotionTrack:
    """``track`` with its coefficients named by ``space`` (basis ``Q @ R``, factors its layout); None keeps it."""
    if space is None:
        return track
    if space.width != track.dim:
        raise DemoInputError(f"motion: latent width {track.dim} does not match the model's {space.width} "
                             "(motion of another model?)")
    return track.with_latents(track.latents, basis=space.basis.detach().float().cpu().clone(),
                              factors=space.layout.to_dict())


def parse_blink_times(text: str, name: str = "blink_times") -> tuple[float, ...]:
    """``"0.8, 2.5 4.1"`` → sorted blink start times in seconds (commas, semicolons or spaces between)."""
    times = []
    for item in (s for s in re.split(r"[,;\s]+", str(text).strip()) if s):
        try:
            t = float(item)
        except ValueError:
            raise DemoInputError(f'{name}: {item!r} is not a time in seconds (write e.g. "0.8, 2.5, 4.1")') from None
        if not math.isfinite(t) or t < 0:
            raise DemoInputError(f"{name}: {item!r} must be a finite time >= 0 seconds")
        times.append(t)
    return tuple(sorted(times))


@dataclass
class FactorEdits:
    """Per-run factor edits for :func:`edit_motion_track`; the defaults change nothing.

    Attributes:
        gains: factor → gain on its motion around the clip mean (``lip``, ``pose``, ``gaze``, ``blink``; 1 = as is).
        offsets: ``"<factor>.<axis>"`` → constant offset in the axis unit (``pose.yaw`` in degrees, ``gaze.x``).
        smoothing: factor → Gaussian σ over time in frames (0 = none).
        freeze_pose: hold the head at its first-frame pose.
        look_at_camera: set gaze x and y to 0 (before ``offsets``).
        blinks: one of :data:`BLINK_MODES`: keep the generated blinks, replace them by ``natural`` ones at
            ``blink_rate`` per minute or by blinks ``at times``, or remove them (``none``).
        blink_rate: blinks per minute for ``natural``.
        blink_times: blink start times in seconds for ``at times``.
        seed: seed of the natural blink times.
        keyframes: keyframe JSON (:mod:`demo_core.motion.keyframes`), applied last so its curves have the final word.
    """

    gains: dict[str, float] = field(default_factory=dict)
    offsets: dict[str, float] = field(default_factory=dict)
    smoothing: dict[str, float] = field(default_factory=dict)
    freeze_pose: bool = False
    look_at_camera: bool = False
    blinks: str = "keep"
    blink_rate: float = 17.0
    blink_times: tuple[float, ...] = ()
    seed: int = 0
    keyframes: str = ""

    def keyframe_set(self) -> KeyframeSet:
        """The parsed ``keyframes``, every key value within :func:`~demo_core.motion.keyframes.value_range`."""
        return check_value_ranges(parse_keyframes(self.keyframes))

    def is_identity(self) -> bool:
        """True when no edit is asked for (the keyframes are parsed, so bad JSON raises here)."""
        if self.blinks not in BLINK_MODES:
            raise DemoInputError(f"blinks: expected one of {', '.join(BLINK_MODES)}, got {self.blinks!r}")
        return (all(g == 1 for g in self.gains.values()) and not any(self.offsets.values())
                and not any(self.smoothing.values()) and not self.freeze_pose and not self.look_at_camera
                and self.blinks == "keep" and not self.keyframe_set().tracks)


def _layout_factor(space: FactorSpace, name: str, what: str) -> str:
    names = space.layout.names
    if name in names:
        return name
    if _FACTOR_ALIASES.get(name) in names:
        return _FACTOR_ALIASES[name]
    raise DemoInputError(f"{what}: this model has no {name!r} factor (its factors: {', '.join(names)})")


def _semantic_axis(space: FactorSpace, track_name: str, what: str) -> tuple[str, str]:
    factor, _, axis = track_name.partition(".")
    block = space.block(_layout_factor(space, factor, what))
    if axis not in block.axes:
        raise DemoInputError(f"{what}: needs the semantic axis {track_name} of DEMO-format models; this model's "
                             f"{block.name!r} factor is calibrated in dictionary units ({block.name}.c0 … "
                             f"{block.name}.c{block.size - 1}): use a keyframe track on those instead")
    return block.name, axis


def _factor_gains(space: FactorSpace, gains: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, gain in gains.items():
        if gain == 1:
            continue
        factor = _layout_factor(space, name, f"{name}_gain")
        if out.setdefault(factor, gain) != gain:
            raise DemoInputError(f"{name}_gain: {gain} conflicts with another gain on this model's {factor!r} factor "
                                 "(calibrated FLOAT layouts keep gaze and blinks in one 'eyes' block): give both "
                                 "the same value")
    return out


def _edit_blinks(latents: torch.Tensor, space: FactorSpace, edits: FactorEdits, fps: float) -> torch.Tensor:
    if edits.blinks == "keep":
        return latents
    factor, axis = _semantic_axis(space, "blink.closure", f"blinks {edits.blinks!r}")
    latents = damp_blinks(latents, space, 0.0, factor=factor, axis=axis)  # the generated blinks are removed
    if edits.blinks == "none":
        return latents
    if edits.blinks == "natural":
        times = natural_blink_times(latents.shape[1] / fps, rate=edits.blink_rate,
                                    generator=make_generator(edits.seed))
    else:
        times = torch.tensor(edits.blink_times, dtype=torch.float64)
    return insert_blinks(latents, space, times, fps, factor=factor, axis=axis)


def edit_motion_track(track: MotionTrack, edits: FactorEdits, space: FactorSpace | None) -> MotionTrack:
    """Apply :class:`FactorEdits` to a track, in the order gains, freeze, look at camera, offsets, smoothing,
    blinks, keyframes.

    Args:
        track: the motion (latents (B, T, W) on the CPU).
        edits: what to change.
        space: the factor space (:func:`model_factor_space` or :func:`track_factor_space`); None is allowed only
            when ``edits`` changes nothing.

    Returns:
        A new track (the same one when nothing is asked) whose coefficients are named by ``space``.
    """
    if edits.is_identity():
        return track
    if space is None:
        raise DemoInputError(f"motion: {NO_LAYOUT_HINT}")
    track = attach_factor_space(track, space)  # checks the width
    x, fps = track.latents, track.fps  # (B, T, W)
    for factor, gain in _factor_gains(space, edits.gains).items():
        x = scale_factor(x, space, factor, gain)
    if edits.freeze_pose:
        x = freeze_factor(x, space, _layout_factor(space, "pose", "freeze_pose"))
    for name in ("gaze.x", "gaze.y") if edits.look_at_camera else ():
        x = set_axis(x, space, *_semantic_axis(space, name, "look_at_camera"), 0.0)
    for name, delta in edits.offsets.items():
        if delta:
            x = offset_axis(x, space, *_semantic_axis(space, name, f"{name} offset"), float(delta))
    for name, sigma in edits.smoothing.items():
        if sigma:
            x = smooth_factor(x, space, _layout_factor(space, name, f"{name}_smoothing"), float(sigma))
    x = _edit_blinks(x, space, edits, fps)
    keyframes = edits.keyframe_set()
    if keyframes.tracks:
        x = apply_keyframes(x, space, keyframes, fps)
    return track.with_latents(x, source="edited")


def fit_track_frames(track: MotionTrack, fps: float, num_frames: int, mode: str = "loop") -> torch.Tensor:
    """A track's latents retimed to ``fps`` (linearly), then looped, ping-ponged, held or cut to ``num_frames``.

    Returns:
        (B, num_frames, W) latents.
    """
    frames = max(1, math.ceil(Fraction(track.num_frames) * fps_fraction(fps) / fps_fraction(track.fps)))
    retimed = resample_trajectory(track.latents, track.fps, fps, frames)  # (B, frames, W)
    return match_length(retimed, int(num_frames), mode)  # (B, num_frames, W)


def _resolve_sources(space: FactorSpace, tracks: dict[str, MotionTrack], suffix: str) -> dict[str, tuple]:
    """Input name → (factor, track), refusing two inputs that land on one factor."""
    out: dict[str, tuple] = {}
    for name, track in tracks.items():
        factor = _layout_factor(space, name, f"{name}{suffix}")
        taken = [other for other, (f, _) in out.items() if f == factor]
        if taken:
            raise DemoInputError(f"{name}{suffix}: this model's {factor!r} factor already comes from "
                                 f"{taken[0]}{suffix} (calibrated FLOAT layouts keep gaze and blinks in one 'eyes' "
                                 "block): connect one of them")
        if track.dim != space.width:
            raise DemoInputError(f"{name}{suffix}: latent width {track.dim} does not match the model's {space.width}")
        out[name] = (factor, track)
    return out


def mix_motion_tracks(base: MotionTrack, sources: dict[str, MotionTrack], space: FactorSpace | None, *,
                      relative: bool = True, length_mode: str = "loop") -> MotionTrack:
    """Each named factor (``lip``, ``pose``, ``gaze``, ``blink``) from its source track, the rest from ``base``.

    Sources are retimed to the base's fps and looped / ping-ponged / held (``length_mode``) or cut to its length.
    ``relative`` transfers each source's motion from its first frame onto the base's first-frame value (keeps
    the base portrait's rest pose); absolute mode copies the coordinates and needs sources of the same kind
    (absolute or relative to the portrait) as the base.
    """
    if not sources:
        return base
    if space is None:
        raise DemoInputError(f"base: {NO_LAYOUT_HINT}")
    fixed = {}
    for name, (factor, source) in _resolve_sources(space, sources, "").items():
        if not relative and source.relative != base.relative:
            raise DemoInputError(f"{name}: one of this source and the base holds motion relative to the portrait "
                                 "and the other absolute motion; turn relative on (or give both the same kind)")
        fixed[factor] = fit_track_frames(source, base.fps, base.num_frames, length_mode)  # (B|1, T, W)
    mixed = mix_factors(fixed, attach_factor_space(base, space).latents, space.dictionary, space.layout,
                        rotation=space.rotation, relative=relative)
    return attach_factor_space(base.with_latents(mixed, source="mixed"), space)


def sample_motion_track_conditioned(
    model: FloatModel,
    portrait: Portrait,
    audio: AudioCondition,
    settings: GenerationSettings,
    tracks: dict[str, MotionTrack],
    space: FactorSpace | None,
    *,
    length_mode: str = "loop",
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> MotionTrack:
    """Like :func:`sample_motion_track`, with the factors named in ``tracks`` following those tracks exactly.

    Each track (``pose``, ``gaze``, ``blink`` → MotionTrack) is retimed to the model's fps and fitted to the
    audio length (``length_mode``); a relative track is added to the portrait's own motion.  The other factors
    are generated from the audio, consistent with the fixed ones (:mod:`demo_core.motion.conditioning`).
    """
    settings.validate()
    if space is None:
        raise DemoInputError(f"{next(iter(tracks), 'pose')}_track: {NO_LAYOUT_HINT}")
    device, native, frames = model.device, model.cfg.fps, int(audio.features.shape[1])
    fixed = {}
    for name, (factor, track) in _resolve_sources(space, tracks, "_track").items():
        target = fit_track_frames(track, native, frames, length_mode).to(device=device, dtype=torch.float32)
        if track.relative:
            target = target + portrait.source_motion.float()[:, None]  # (B, T, W) from the portrait's own pose
        fixed[factor] = target
    b = portrait.batch
    sampler = SamplerSettings(steps=settings.steps, method=settings.method, a_cfg=settings.a_cfg, e_cfg=settings.e_cfg)
    with torch.inference_mode():
        motion = sample_motion_conditioned(
            model.fmt, wr=portrait.source_motion, wa=audio.features.expand(b, -1, -1),
            we=audio.emotion.expand(b, -1, -1), fixed=fixed, Q=space.dictionary.to(device), layout=space.layout,
            rotation=space.rotation, settings=sampler, callback=callback,
            generator=generator or make_generator(settings.seed, device))  # (B, T, W) at the native fps
    motion = retime_motion(motion, audio, native, settings.fps)
    return attach_factor_space(_to_track(model, motion, settings.fps, "sampled", relative=False), space)


def calibrate_model(
    model: FloatModel,
    portrait: Portrait,
    checkpoint: str | Path,
    *,
    manual_map: str = "",
    epsilon: float = 0.5,
    overwrite: bool = False,
) -> tuple[FactorCalibration, Path, bool]:
    """Calibrate a FLOAT-family model's motion dictionary and save the sidecar beside ``checkpoint``.

    Measured on the first portrait (:func:`~demo_core.motion.calibration.calibrate_autoencoder`), or read from
    ``manual_map`` (JSON ``{"lip": [3, 7], "pose": [0, 5], ...}``) when it is not blank.  An existing sidecar is
    kept, never replaced, unless ``overwrite``.

    Returns:
        ``(calibration, sidecar path, written)``; ``written`` is False when an existing sidecar was kept.
    """
    if getattr(model, "layout", None) is not None:
        raise DemoInputError("model: this DEMO-format model names its factors itself; calibration is for "
                             "FLOAT-family checkpoints")
    num_directions = int(model.motion_autoencoder.cfg.dim_m)
    path = sidecar_path(checkpoint)
    if path.is_file() and not overwrite:
        return load_factor_calibration(checkpoint, num_directions=num_directions), path, False
    if str(manual_map).strip():
        calibration = parse_factor_map(manual_map, num_directions)
    else:
        with torch.inference_mode():
            calibration = calibrate_autoencoder(model.motion_autoencoder, portrait.h_source[:1], portrait.feats,
                                                portrait.source_motion[:1], epsilon=epsilon)
    return calibration, save_factor_calibration(calibration, checkpoint, overwrite=overwrite), True
