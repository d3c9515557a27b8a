"""Factor edits: pure functions from motion latents to new motion latents.

Every edit reads one factor's coordinates ``c_f = latents @ B_f`` (B, T, k) in a :class:`FactorSpace`,
computes new coordinates ``c_f'`` and returns ``latents + (c_f' − c_f) @ B_fᵀ``.  Other factors and the
part of the latents outside the dictionary (``r_⊥``) are kept, inputs are never modified.

* :func:`scale_factor` — ``c' = rest + gain · (c − rest)``; ``rest`` is the factor's mean over the clip
  (per portrait) unless given.  Undo with ``gain → 1/gain`` and the same ``rest``.
* :func:`offset_factor` / :func:`offset_axis` / :func:`set_axis` — add to coordinates, add in an
  axis unit (``pose.yaw`` degrees), or set an axis value.
* :func:`replace_factor` — take a factor from another trajectory, relative (keeps the own rest pose) or
  absolute.
* :func:`freeze_factor` — hold one frame's (or a given) value.
* :func:`smooth_factor` — Gaussian smoothing over time, edge-padded.

Keyframe curves, blinks and length matching live in :mod:`.keyframe_edits`, :mod:`.blinks` and
:mod:`.length_matching`.

Shapes: latents (B, T, W); per-frame scalars (gains, axis offsets) are a number, (T,) or (B, T);
coordinate vectors are (k,), (T, k) or (B, T, k) (B may be 1 to broadcast).
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DemoInputError
from .factor_space import FactorSpace, describe_shape

__all__ = [
    "scale_factor",
    "offset_factor",
    "offset_axis",
    "set_axis",
    "replace_factor",
    "freeze_factor",
    "smooth_factor",
    "rest_coordinates",
    "gaussian_kernel",
    "gaussian_smooth_time",
    "check_trajectory",
]


def check_trajectory(latents: Tensor, space: FactorSpace, name: str = "latents") -> None:
    """Raise :class:`DemoInputError` unless ``space`` is a FactorSpace and ``latents`` is float (B, T, W)."""
    if not isinstance(space, FactorSpace):
        raise DemoInputError(f"space: expected a FactorSpace, got {type(space).__name__}")
    if not isinstance(latents, Tensor) or latents.ndim != 3 or latents.shape[-1] != space.width \
            or not latents.is_floating_point():
        raise DemoInputError(f"{name}: expected a float tensor (B, T, {space.width}), got {describe_shape(latents)}")


def _as_tensor(value, like: Tensor, name: str) -> Tensor:
    try:
        return torch.as_tensor(value, dtype=like.dtype, device=like.device)
    except (TypeError, ValueError, RuntimeError):
        raise DemoInputError(f"{name}: expected a number or a tensor, got {type(value).__name__}") from None


def _per_frame(value, latents: Tensor, name: str) -> Tensor:
    """A number, (T,) or (B, T) → (B|1, T|1, 1) in ``latents``' dtype and device."""
    B, T = latents.shape[:2]
    v = _as_tensor(value, latents, name)
    if not torch.isfinite(v).all():
        raise DemoInputError(f"{name}: expected finite values")
    if v.ndim == 0:
        return v.reshape(1, 1, 1)
    if v.ndim == 1 and v.shape[0] == T:
        return v.reshape(1, T, 1)
    if v.ndim == 2 and v.shape[1] == T and v.shape[0] in (1, B):
        return v[..., None]  # (B|1, T, 1)
    raise DemoInputError(f"{name}: expected a number, ({T},) or ({B}, {T}), got {describe_shape(value)}")


def _per_coordinate(value, latents: Tensor, k: int, name: str) -> Tensor:
    """A number, (k,), (T, k) or (B, T, k) → broadcastable to (B, T, k)."""
    B, T = latents.shape[:2]
    v = _as_tensor(value, latents, name)
    ok = v.ndim == 0 or (v.ndim <= 3 and v.shape[-1] == k)
    if ok and v.ndim >= 2:
        ok = v.shape[-2] == T and (v.ndim == 2 or v.shape[0] in (1, B))
    if not ok:
        raise DemoInputError(f"{name}: expected a number, ({k},), ({T}, {k}) or ({B}, {T}, {k}), "
                             f"got {describe_shape(value)}")
    if not torch.isfinite(v).all():
        raise DemoInputError(f"{name}: expected finite values")
    return v


def _frame_index(frame, num_frames: int, name: str) -> int:
    if isinstance(frame, bool) or not isinstance(frame, numbers.Integral) or not -num_frames <= frame < num_frames:
        raise DemoInputError(f"{name}: expected an integer frame in [{-num_frames}, {num_frames}), got {frame!r}")
    return int(frame) % num_frames


def rest_coordinates(coordinates: Tensor, rest, name: str = "rest") -> Tensor:
    """The rest value a gain scales around, (B|1, 1, k).

    Args:
        coordinates: (B, T, k) factor coordinates.
        rest: ``"mean"`` (mean over time per portrait), ``"first"`` (frame 0) or coordinates (k,) / (B, k).
        name: input name for error messages.
    """
    B, _, k = coordinates.shape
    if isinstance(rest, str):
        if rest == "mean":
            return coordinates.mean(dim=1, keepdim=True)  # (B, 1, k)
        if rest == "first":
            return coordinates[:, :1]  # (B, 1, k)
        raise DemoInputError(f"{name}: expected 'mean', 'first' or a tensor of coordinates, got {rest!r}")
    r = _as_tensor(rest, coordinates, name)
    if r.shape == (k,) or (r.ndim == 2 and r.shape[1] == k and r.shape[0] in (1, B)):
        return r.reshape(-1, 1, k)  # (B|1, 1, k)
    raise DemoInputError(f"{name}: expected 'mean', 'first', ({k},) or ({B}, {k}), got {describe_shape(rest)}")


def scale_factor(latents: Tensor, space: FactorSpace, factor: str, gain, *, rest="mean") -> Tensor:
    """Scale a factor's motion around its rest value: ``c' = rest + gain · (c − rest)``.

    Args:
        latents: (B, T, W) motion latents.
        space: factor space of the model.
        factor: block name, e.g. ``"lip"``.
        gain: a number, or per frame (T,) / (B, T).  0 holds the factor at ``rest``; 1 is a no-op.
        rest: ``"mean"`` (the factor's mean over the clip, per portrait; default), ``"first"``, or
            coordinates (k,) / (B, k).  A constant gain keeps the mean, so ``gain → 1/gain`` undoes it
            with the default; undo a per-frame gain by passing the same explicit ``rest``.

    Returns:
        New latents (B, T, W).
    """
    check_trajectory(latents, space)
    c = space.factor_coordinates(latents, factor)  # (B, T, k)
    r = rest_coordinates(c, rest)
    g = _per_frame(gain, latents, "gain")  # (B|1, T|1, 1)
    return space.shift_factor(latents, factor, (g - 1) * (c - r))


def offset_factor(latents: Tensor, space: FactorSpace, factor: str, offset) -> Tensor:
    """Add ``offset`` to a factor's coordinates: a number, (k,), (T, k) or (B, T, k).  Undo with ``−offset``."""
    check_trajectory(latents, space)
    k = space.block(factor).size
    return space.shift_factor(latents, factor, _per_coordinate(offset, latents, k, "offset"))


def _axis_delta(latents: Tensor, space: FactorSpace, factor: str, axis: str, delta: Tensor) -> Tensor:
    """Shift one coordinate of ``factor`` by ``delta`` (B|1, T|1, 1) coordinate units."""
    i, _, _ = space.coordinate_index(factor, axis)
    k = space.block(factor).size
    one_hot = torch.zeros(k, dtype=latents.dtype, device=latents.device)
    one_hot[i] = 1.0
    return space.shift_factor(latents, factor, delta * one_hot)  # (B, T, k) shift


def offset_axis(latents: Tensor, space: FactorSpace, factor: str, axis: str, delta) -> Tensor:
    """Add ``delta`` in the axis unit (e.g. ``offset_axis(r, space, "pose", "yaw", 15.0)`` turns 15°).

    Args:
        latents: (B, T, W).
        space: factor space.
        factor: block name.
        axis: a semantic axis of the block (coordinate = (value − offset) / scale) or ``"c<i>"``.
        delta: a number, (T,) or (B, T), in the axis unit.

    Returns:
        New latents; only coordinate ``axis`` moves: by ``delta / scale``, or, where the model's decoder renders
        the axis with another gain (render knots), so that the rendered value moves by ``delta``.
    """
    check_trajectory(latents, space)
    i, _, _ = space.coordinate_index(factor, axis)
    current = space.factor_coordinates(latents, factor)[..., i : i + 1]  # (B, T, 1)
    value = space.to_value(factor, axis, current) + _per_frame(delta, latents, "delta")
    return _axis_delta(latents, space, factor, axis, space.to_coordinate(factor, axis, value) - current)


def set_axis(latents: Tensor, space: FactorSpace, factor: str, axis: str, value) -> Tensor:
    """Set an axis to ``value`` in its unit (a number, (T,) or (B, T)) as rendered; other coordinates are kept."""
    check_trajectory(latents, space)
    i, _, _ = space.coordinate_index(factor, axis)
    current = space.factor_coordinates(latents, factor)[..., i : i + 1]  # (B, T, 1)
    target = space.to_coordinate(factor, axis, _per_frame(value, latents, "value"))  # (B|1, T|1, 1)
    return _axis_delta(latents, space, factor, axis, target - current)


def replace_factor(
    latents: Tensor,
    space: FactorSpace,
    factor: str,
    driving: Tensor,
    *,
    relative: bool = True,
    ref_frame: int = 0,
    rest="frame",
) -> Tensor:
    """Take ``factor`` from another trajectory (e.g. pose from a driving video).

    Relative (default): ``c'(t) = rest + (d(t) − d(ref_frame))`` where ``d`` is the driving factor, so the
    portrait keeps its own rest pose and only the driving *motion* is transferred (at ``ref_frame`` the
    factor equals ``rest``).  Absolute: ``c'(t) = d(t)``.

    Args:
        latents: (B, T, W) own trajectory.
        space: factor space.
        factor: block name.
        driving: (B|1, T, ·) driving trajectory: latents (W), dictionary coefficients λ (M, e.g.
            ``MotionTrack.coefficients``) or this factor's coordinates (k).  Relative and absolute
            latents both work in relative mode.  Use :func:`~.length_matching.match_length` first when
            the lengths differ.
        relative: relative (True) or absolute (False) transfer.
        ref_frame: driving frame whose factor value maps to ``rest``.
        rest: ``"frame"`` (own coordinates at ``ref_frame``; default), ``"mean"``, ``"first"`` or
            coordinates (k,) / (B, k) (e.g. the portrait's source motion coordinates).

    Returns:
        New latents (B, T, W).
    """
    check_trajectory(latents, space)
    B, T, _ = latents.shape
    own = space.factor_coordinates(latents, factor)  # (B, T, k)
    drive = space.as_factor_coordinates(driving, factor, "driving").to(own)
    if drive.ndim != 3 or drive.shape[1] != T or drive.shape[0] not in (1, B):
        raise DemoInputError(f"driving: expected ({B} or 1, {T}, ·) to match latents {tuple(latents.shape)} "
                             f"(match the length with match_length first), got {tuple(driving.shape)}")
    if relative:
        ref = _frame_index(ref_frame, T, "ref_frame")
        base = own[:, ref : ref + 1] if isinstance(rest, str) and rest == "frame" else rest_coordinates(own, rest)
        target = base + (drive - drive[:, ref : ref + 1])  # (B, T, k)
    else:
        target = drive
    return space.shift_factor(latents, factor, target - own)


def freeze_factor(latents: Tensor, space: FactorSpace, factor: str, *, frame: int = 0, value=None) -> Tensor:
    """Hold a factor still: at frame ``frame``'s coordinates, or at ``value`` (k,) / (B, k) coordinates.

    ``freeze_factor(r, space, "pose")`` keeps the lips and eyes moving while the head holds its first pose.
    """
    check_trajectory(latents, space)
    c = space.factor_coordinates(latents, factor)  # (B, T, k)
    if value is None:
        i = _frame_index(frame, latents.shape[1], "frame")
        held = c[:, i : i + 1]  # (B, 1, k)
    else:
        held = rest_coordinates(c, value, "value")
    return space.shift_factor(latents, factor, held - c)


def gaussian_kernel(sigma: float, *, dtype=torch.float64, device=None) -> Tensor:
    """Normalised Gaussian taps ``exp(−n² / 2σ²)``, ``n = −⌈3σ⌉ … ⌈3σ⌉`` (σ in frames, > 0)."""
    radius = max(1, math.ceil(3.0 * sigma))
    n = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    w = torch.exp(-0.5 * (n / sigma) ** 2)
    return w / w.sum()  # (2·radius + 1,)


def gaussian_smooth_time(x: Tensor, sigma: float) -> Tensor:
    """Gaussian smoothing of (B, T, k) trajectories along T (σ in frames, > 0), ends padded by repeating the
    first/last frame (a constant stays constant; no fade towards zero at the ends)."""
    B, T, k = x.shape
    w = gaussian_kernel(float(sigma), dtype=x.dtype, device=x.device)
    radius = (w.shape[0] - 1) // 2
    y = x.permute(0, 2, 1).reshape(B * k, 1, T)  # (B·k, 1, T)
    first, last = y[..., :1].expand(-1, -1, radius), y[..., -1:].expand(-1, -1, radius)  # edge padding
    y = torch.cat([first, y, last], dim=-1)  # (B·k, 1, T + 2·radius)
    return F.conv1d(y, w.view(1, 1, -1)).reshape(B, k, T).permute(0, 2, 1)  # (B, T, k)


def smooth_factor(latents: Tensor, space: FactorSpace, factor: str, sigma: float) -> Tensor:
    """Gaussian-smooth a factor over time (σ in frames; 0 is a no-op copy).

    The ends are padded by repeating the first/last frame, so a constant stays constant and a clip does
    not fade towards zero at its ends.
    """
    check_trajectory(latents, space)
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not math.isfinite(sigma) or sigma < 0:
        raise DemoInputError(f"sigma: expected a number of frames >= 0, got {sigma!r}")
    if sigma == 0:
        return latents.clone()
    c = space.factor_coordinates(latents, factor)  # (B, T, k)
    return space.shift_factor(latents, factor, gaussian_smooth_time(c, sigma) - c)
