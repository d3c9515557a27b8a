"""Steps 1 and 2 of the pipeline: the portrait and the speech, each encoded once for a whole run.

Steps:
    1. :func:`encode_portrait` — crop and normalise the portrait, encode appearance, features and
       source motion once (reused for every frame).
    2. :func:`encode_audio` — mono 16 kHz waveform → per-frame audio conditions at the model's
       native fps, plus the emotion condition.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch

from ..errors import DemoInputError
from ..face_crop import CropBox, crop_image, face_crop_box
from ..io.media import prepare_waveform
from ..models.audio_encoder import apply_normalization, normalization_stats, normalize_waveform
from ..models.emotion_encoder import EMOTION_LABELS, emotion_condition
from ..models.float_model import FloatModel
from ..models.logmel_audio_encoder import DEFAULT_SEGMENT_FRAMES, LogMelAudioEncoder
from ..motion.retime import fps_fraction, num_video_frames
from .settings import _is_int

__all__ = [
    "Portrait",
    "AudioCondition",
    "encode_portrait",
    "encode_audio",
]

log = logging.getLogger(__package__)  # "demo_core.pipeline": the logger these records have always gone to

MIN_IMAGE_SIDE = 16  # pixels; below this a portrait holds no usable face detail
# Image values further than this outside 0..1 are a wrong range (0..255 or -1..1), not resampling overshoot.
_IMAGE_RANGE_SLACK = 0.5


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
            from ..io.media import to_model_image

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
