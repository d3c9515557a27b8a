"""Apply keyframe curves (:mod:`demo_core.motion.keyframes`) to motion latents through a factor layout.

Each track ``<factor>.<axis>`` is mapped onto the factor space:

* ``<factor>.<semantic axis>`` (``pose.yaw``, ``gaze.x``, ``blink.closure``): the curve is in the axis unit;
  the coordinate is ``(value − axis_offset) / axis_scale``.  ``offset`` adds ``curve / scale`` to the
  coordinate (so ``pose.yaw`` +15 turns exactly 15°), ``absolute`` sets the axis value to the curve,
  ``gain`` multiplies the axis value (``pose.yaw`` gain 0.5 halves the angle away from 0°).
* ``<factor>.c<i>``: coordinate ``i`` of the factor, raw units (scale 1, offset 0), same three modes.
* ``<factor>.gain``: multiplies the factor's deviation from its rest value (its mean over the clip unless
  ``rest`` is given), ``c' = rest + g(t) · (c − rest)``; the track's mode must be ``gain``.

Frame ``k`` is evaluated at time ``k / fps``.  ``<factor>.gain`` tracks are applied first, then the
coordinate tracks in name order (two tracks on one coordinate, ``pose.yaw`` and ``pose.c0``, compose).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import torch
from torch import Tensor

from ..errors import DemoInputError
from .edits import check_trajectory, rest_coordinates
from .factor_space import FactorSpace
from .keyframes import KeyframeSet, apply_keyframe_mode, evaluate_keyframes, parse_keyframes

__all__ = ["apply_keyframes", "keyframe_track_names"]


def keyframe_track_names(space: FactorSpace) -> list[str]:
    """Every track name the space accepts: semantic axes, ``c<i>`` and ``gain`` of each factor."""
    names = []
    for block in space.layout.blocks:
        names += [f"{block.name}.{a}" for a in block.axes]
        names += [f"{block.name}.c{i}" for i in range(block.size)] + [f"{block.name}.gain"]
    return names


def _split_track(name: str, space: FactorSpace) -> tuple[str, str]:
    factor, _, axis = name.partition(".")
    if factor not in space.layout.names:
        raise DemoInputError(f"keyframes: track {json.dumps(name)}: unknown factor {json.dumps(factor)} "
                             f"(this model's factors: {', '.join(space.layout.names)})")
    return factor, axis


def apply_keyframes(
    latents: Tensor,
    space: FactorSpace,
    keyframes: KeyframeSet | str | Mapping,
    fps: float,
    *,
    rest="mean",
) -> Tensor:
    """Apply keyframe tracks to a trajectory.

    Args:
        latents: (B, T, W) motion latents at ``fps``.
        space: factor space of the model.
        keyframes: a parsed :class:`KeyframeSet`, or JSON text / a decoded object for
            :func:`~demo_core.motion.keyframes.parse_keyframes`.
        fps: frame rate of ``latents``; frame ``k`` is at ``k / fps`` seconds.
        rest: rest value of ``<factor>.gain`` tracks: ``"mean"``, ``"first"`` or coordinates (k,) / (B, k).

    Returns:
        New latents (B, T, W); factors without tracks and ``r_⊥`` are unchanged.

    Raises:
        DemoInputError: a track names a factor or axis the layout lacks, or a ``.gain`` track is not in
            ``gain`` mode (the message names the track).

    Example:
        .. code-block:: python

            turned = apply_keyframes(latents, space, '{"pose.yaw": [[0, 0], [3, 15]]}', fps=25)
    """
    check_trajectory(latents, space)
    kset = keyframes if isinstance(keyframes, KeyframeSet) else parse_keyframes(keyframes)
    B, T, _ = latents.shape
    curves = evaluate_keyframes(kset, T, fps, dtype=torch.float64, device=latents.device)  # {name: (T,)}
    tracks = [(name, *_split_track(name, space)) for name in kset.tracks]
    for name, factor, axis in tracks:  # validate every track before touching anything
        if axis == "gain":
            if kset.tracks[name].mode != "gain":
                raise DemoInputError(f"keyframes: track {json.dumps(name)}: a .gain track needs mode 'gain', "
                                     f"got {kset.tracks[name].mode!r}")
        else:
            try:
                space.coordinate_index(factor, axis)
            except DemoInputError as err:
                raise DemoInputError(f"keyframes: track {json.dumps(name)}: {err}") from None
    coords: dict[str, Tensor] = {}
    for _, factor, _ in tracks:
        if factor not in coords:
            coords[factor] = space.factor_coordinates(latents, factor).clone()  # (B, T, k), edited below
    original = {f: c.clone() for f, c in coords.items()}
    ordered = [t for t in tracks if t[2] == "gain"] + [t for t in tracks if t[2] != "gain"]
    for name, factor, axis in ordered:
        curve = curves[name].to(latents.dtype)  # (T,)
        c = coords[factor]
        if axis == "gain":
            r = rest_coordinates(original[factor], rest)  # (B|1, 1, k)
            coords[factor] = r + curve[None, :, None] * (c - r)
            continue
        i, _, _ = space.coordinate_index(factor, axis)
        mode = kset.tracks[name].mode
        value = space.to_value(factor, axis, c[..., i])  # (B, T) in the axis unit, as rendered
        value = value + curve if mode == "offset" else apply_keyframe_mode(value, curve, mode)
        c[..., i] = space.to_coordinate(factor, axis, value)
    out = latents
    for factor, c in coords.items():
        out = space.shift_factor(out, factor, c - original[factor])
    return out
