"""Factor control for hosts: calibration sidecars, factor spaces of tracks, edits, mixing and factor-conditioned
sampling (added for the ComfyUI nodes in ``nodes/editing.py``, ``nodes/calibration.py`` and ``nodes/motion.py``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import torch

from ..errors import DemoInputError
from ..flow.window_sampler import SamplerSettings
from ..models.float_model import FloatModel
from ..motion.blinks import damp_blinks, insert_blinks, natural_blink_times
from ..motion.calibration import calibrate_autoencoder, coefficient_steps
from ..motion.conditioning import sample_motion_conditioned
from ..motion.edits import freeze_factor, offset_axis, scale_factor, set_axis, smooth_factor
from ..motion.factor_sidecar import (
    FactorCalibration,
    load_factor_calibration,
    parse_factor_map,
    save_factor_calibration,
    sidecar_path,
)
from ..motion.factor_space import FactorSpace
from ..motion.factors import FactorLayout
from ..motion.keyframe_edits import apply_keyframes
from ..motion.keyframes import KeyframeSet, check_value_ranges, parse_keyframes
from ..motion.length_matching import match_length
from ..motion.mixing import mix_factors
from ..motion.render_axes import DEFAULT_RENDER_AXES, parse_axes, portrait_render_layout, without_render_knots
from ..motion.retime import fps_fraction, resample_trajectory
from ..motion.track import MotionTrack
from .encoding import AudioCondition, Portrait
from .generation import retime_motion
from .settings import Callback, GenerationSettings, make_generator
from .tracks import _to_track

__all__ = [
    "BLINK_MODES",
    "NO_LAYOUT_HINT",
    "FactorEdits",
    "model_factor_calibration",
    "model_factor_space",
    "portrait_factor_space",
    "with_track_render_knots",
    "track_factor_space",
    "attach_factor_space",
    "parse_blink_times",
    "edit_motion_track",
    "fit_track_frames",
    "mix_motion_tracks",
    "sample_motion_track_conditioned",
    "calibrate_model",
]

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


def portrait_factor_space(model: FloatModel, portrait: Portrait, space: FactorSpace | None) -> FactorSpace | None:
    """``space`` with render knots of the pose axes measured on ``portrait`` (DEMO-native models with those axes
    and one portrait: 13 renders per axis at the model's size; :mod:`demo_core.motion.render_axes`), so that an edit
    in degrees of motion sampled for this portrait renders that many degrees on it; else ``space``."""
    layout = getattr(model, "layout", None)
    if space is None or layout is None or portrait.batch != 1 or space.layout.total != layout.total:
        return space
    axes = parse_axes(DEFAULT_RENDER_AXES, layout, missing_ok=True)
    if not axes:
        return space
    with torch.inference_mode():
        measured = portrait_render_layout(model, portrait.h_source, portrait.feats, portrait.source_motion, axes)
    return FactorSpace(space.dictionary, measured, space.rotation)


def with_track_render_knots(space: FactorSpace | None, track: MotionTrack | None) -> FactorSpace | None:
    """``space`` with the render knots ``track`` carries (measured on its portrait by :func:`portrait_factor_space`)
    when the track's layout is ``space``'s apart from them; else ``space``."""
    if space is None or track is None or track.factors is None:
        return space
    theirs = FactorLayout.from_dict(track.factors)
    if theirs == space.layout or without_render_knots(theirs) != without_render_knots(space.layout):
        return space
    return FactorSpace(space.dictionary, theirs, space.rotation)


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
    motion: MotionTrack | None = None,
) -> tuple[FactorCalibration, Path, bool]:
    """Calibrate a FLOAT-family model's motion dictionary and save the sidecar beside ``checkpoint``.

    Measured on every portrait of the batch, their effects averaged (several faces give a steadier calibration
    than one; :func:`~demo_core.motion.calibration.calibrate_autoencoder`), or read from
    ``manual_map`` (JSON ``{"lip": [3, 7], "pose": [0, 5], ...}``) when it is not blank.  An existing sidecar is
    kept, never replaced, unless ``overwrite``.  Without ``motion`` every direction is stepped by ``epsilon``
    coefficient units; with ``motion`` (this model's motion: sampled, or encoded from a driving video) each
    direction is stepped by ``epsilon`` × its coefficient's spread in that motion
    (:func:`~demo_core.motion.calibration.coefficient_steps`), so it is judged at the size it really moves.

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
        steps = epsilon
        if motion is not None:
            if not isinstance(motion, MotionTrack) or motion.dim != model.motion_autoencoder.cfg.dim_w:
                raise DemoInputError(f"motion: expected a motion of this model (latent width "
                                     f"{model.motion_autoencoder.cfg.dim_w}), got "
                                     f"{motion.dim if isinstance(motion, MotionTrack) else type(motion).__name__}")
            Q = model.motion_autoencoder.directions().detach().to(device="cpu", dtype=torch.float64)
            steps = coefficient_steps(motion.latents.detach().cpu().double() @ Q, scale=epsilon, name="motion")
        with torch.inference_mode():
            calibration = calibrate_autoencoder(model.motion_autoencoder, portrait.h_source, portrait.feats,
                                                portrait.source_motion, epsilon=steps)
    return calibration, save_factor_calibration(calibration, checkpoint, overwrite=overwrite), True
