"""Render calibration of semantic axes: what a DEMO-native decoder draws when an axis is set, read back by the
model's own encoder.

A semantic axis maps coefficients to a unit through the encoder's label calibration (``FactorBlock.axis_value``:
the encoder reads yaw to 0.5° on held-out clips).  The decoder need not draw that calibration back: the
embedded 64² model draws a 15° yaw coefficient as ~13.7° on average and a 20° one as ~17.4°, less or more
depending on the portrait (large turns are rare in its training data).  Setting an axis to each value of a
grid, rendering, re-encoding and reading the axis gives the *render curve*; its rising part, stored as knots
``(rendered value, coefficient)`` in the block's ``axis_render``, lets edits in axis units ask for the
coefficient that renders the value (:meth:`~demo_core.motion.factors.FactorBlock.render_coefficient`).

Measured on training clips it is a property of the model (``python -m demo_core.tools.render_axes``, stored in
the checkpoint); measured on one portrait (:func:`portrait_render_layout`, a few dozen renders of that
portrait, done when motion is sampled for it) it also captures how that face turns: the keyframe test of the
synthetic benchmark lands within 0.2° of 15° with the portrait's curve and 2° off with the model's.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, Sequence

import torch
from torch import Tensor

from ..errors import DemoInputError
from .factors import FactorBlock, FactorLayout

__all__ = ["DEFAULT_RENDER_AXES", "render_curve", "rising_knots", "curve_knots", "with_render_knots",
           "without_render_knots", "parse_axes", "axis_grid", "portrait_render_layout"]

DEFAULT_RENDER_AXES = ("pose.yaw", "pose.pitch", "pose.roll")
MIN_GAIN = 0.2  # a knot step must render at least this fraction of what it asks
ENCODE_BATCH = 16  # rendered frames re-encoded per call (the grid of all values is decoded in one stream)


def parse_axes(names: Iterable[str] | str, layout: FactorLayout, *, missing_ok: bool = False) -> list[tuple[str, str]]:
    """``"pose.yaw,pose.pitch"`` or a list of such names → ``[(factor, axis), ...]`` (semantic axes only).

    Raises:
        DemoInputError: a name that is not a semantic axis of ``layout`` (unless ``missing_ok``: skipped), or
            none named.
    """
    items = [t.strip() for t in names.split(",")] if isinstance(names, str) else [str(t).strip() for t in names]
    out = []
    for item in (t for t in items if t):
        factor, _, axis = item.partition(".")
        if factor not in layout.names or axis not in layout.block(factor).axes:
            if missing_ok:
                continue
            known = [f"{b.name}.{a}" for b in layout.blocks for a in b.axes]
            raise DemoInputError(f"axes: {item!r} is not a semantic axis of this model (axes: {known})")
        out.append((factor, axis))
    if not out and not missing_ok:
        raise DemoInputError("axes: name at least one axis, e.g. pose.yaw")
    return out


@torch.no_grad()
def render_curve(mae, layout: FactorLayout, sources: Iterable[tuple[Tensor, Sequence[Tensor], Tensor]], factor: str,
                 axis: str, values: Tensor) -> Tensor:
    """Mean read-back (axis unit, encoder calibration) of frames whose ``factor.axis`` coefficient is set to each
    of ``values`` (axis unit, encoder calibration).

    Args:
        mae: the model's motion auto-encoder (``encode``, ``decode``, ``motion_from_coefficients``).
        layout: the model's factor layout.
        sources: ``(h (1, W), feats (each (1, C, r, r)), lam (N, M))``: an appearance and the coefficients of N
            frames drawn on it.
        values: (K,) grid.

    Returns:
        (K,) float64 mean read-back per grid value over every frame of every source.
    """
    block = layout.block(factor)
    j = layout.slices()[factor].start + block.axis_index(axis)
    k = values.numel()
    sums = torch.zeros(k, dtype=torch.float64)
    count = 0
    for h, feats, lam in sources:
        n = lam.shape[0]
        edited = lam[None].repeat(k, 1, 1)  # (K, N, M): every grid value on every frame
        edited[..., j] = block.axis_coefficient(axis, values.to(lam)[:, None])
        video = mae.decode(h, feats, mae.motion_from_coefficients(edited.reshape(1, k * n, -1)))[0].clamp(-1.0, 1.0)
        read = torch.cat([mae.encode(video[i:i + ENCODE_BATCH])[1][:, j] for i in range(0, k * n, ENCODE_BATCH)])
        sums += block.axis_value(axis, read).double().reshape(k, n).sum(1).cpu()
        count += n
    if count == 0:
        raise DemoInputError("render_curve: no frames to measure on")
    return sums / count


def rising_knots(values: Tensor, readback: Tensor, centre: float, *, min_gain: float = MIN_GAIN) -> list[int]:
    """Indices of the grid points kept as knots: the run around the point nearest ``centre`` over which the
    read-back rises by at least ``min_gain`` × each step of ``values`` (increasing)."""
    k0 = int((values - centre).abs().argmin())

    def rising(a: int, b: int) -> bool:
        return float(readback[b] - readback[a]) >= min_gain * float(values[b] - values[a])

    lo, hi = k0, k0
    while lo > 0 and rising(lo - 1, lo):
        lo -= 1
    while hi < values.numel() - 1 and rising(hi, hi + 1):
        hi += 1
    return list(range(lo, hi + 1))


def curve_knots(block: FactorBlock, axis: str, values: Tensor, readback: Tensor, centre: float, *,
                min_gain: float = MIN_GAIN) -> tuple[tuple[float, float], ...]:
    """The ``axis_render`` knots ``((rendered value, coefficient), ...)`` of a render curve; ``()`` when fewer
    than three grid points rise (the axis then renders as it reads)."""
    keep = rising_knots(values, readback, centre, min_gain=min_gain)
    if len(keep) < 3:
        return ()
    return tuple((float(readback[k]), float(block.axis_coefficient(axis, float(values[k])))) for k in keep)


def with_render_knots(layout: FactorLayout, knots: Mapping[tuple[str, str], tuple]) -> FactorLayout:
    """``layout`` with ``knots[(factor, axis)]`` as those axes' ``axis_render`` (other axes keep theirs)."""
    blocks = []
    for b in layout.blocks:
        render = list(b.axis_render) or [()] * len(b.axes)
        for (factor, axis), k in knots.items():
            if factor == b.name:
                render[b.axis_index(axis)] = tuple(k)
        blocks.append(dataclasses.replace(b, axis_render=tuple(render) if any(render) else ()))
    return dataclasses.replace(layout, blocks=tuple(blocks))


def without_render_knots(layout: FactorLayout) -> FactorLayout:
    """``layout`` with no render knots (to compare layouts that differ only in them)."""
    return dataclasses.replace(layout, blocks=tuple(dataclasses.replace(b, axis_render=()) for b in layout.blocks))


def axis_grid(block: FactorBlock, axis: str, *, points: int = 13, half_width: float | None = None) -> Tensor:
    """Grid of ``points`` values (axis unit) around the rest value (coefficient 0): ± ``half_width``, by default
    the farthest value the block's render knots ask for (the range found renderable on training clips), else
    5 coefficient units."""
    i = block.axis_index(axis)
    rest = float(block.axis_value(axis, 0.0))
    if half_width is None:
        knots = block.axis_render[i] if block.axis_render else ()
        asked = [abs(float(block.axis_value(axis, c)) - rest) for _, c in knots]
        half_width = max(asked) if asked else 5.0 * abs(block.axis_scale[i])
    return torch.linspace(rest - half_width, rest + half_width, points, dtype=torch.float64)


@torch.no_grad()
def portrait_render_layout(model, h: Tensor, feats: Sequence[Tensor], motion: Tensor,
                           axes: Iterable[str] | str | list[tuple[str, str]] = DEFAULT_RENDER_AXES, *,
                           points: int = 13, half_width: float | None = None) -> FactorLayout:
    """The model's layout with render knots measured on one portrait: each axis set to a grid of values on the
    portrait's own motion, rendered on its appearance and read back (``points`` renders per axis).

    Args:
        model: DEMO-native model (``cfg.factors`` with the semantic axes).
        h: (1, W) the portrait's appearance code; feats: its encoder features (each (1, C, r, r)).
        motion: (1, W) the portrait's own motion latent (``Portrait.source_motion``).
        axes: the axes to measure (names ``factor.axis``, or :func:`parse_axes`'s pairs).
        points, half_width: the grid of each axis (:func:`axis_grid`).

    Returns:
        The layout with those axes' knots replaced (an axis whose curve does not rise keeps the model's).
    """
    mae, layout = model.motion_autoencoder, model.cfg.factors
    if h.shape[0] != 1 or motion.shape != (1, h.shape[1]):
        raise DemoInputError(f"portrait: expected one portrait (h (1, W), motion (1, W)), got {tuple(h.shape)}, "
                             f"{tuple(motion.shape)}")
    lam = mae.coefficients_from_motion(motion.to(h.dtype))  # (1, M)
    knots = {}
    pairs = list(axes) if not isinstance(axes, str) and all(isinstance(a, tuple) for a in axes) else None
    for factor, axis in pairs if pairs is not None else parse_axes(axes, layout):
        block = layout.block(factor)
        own = float(block.axis_value(axis, lam[0, layout.slices()[factor].start + block.axis_index(axis)]))
        values = axis_grid(block, axis, points=points, half_width=half_width)
        readback = render_curve(mae, layout, [(h, feats, lam)], factor, axis, values)
        k = curve_knots(block, axis, values, readback, own)
        if k:
            knots[(factor, axis)] = k
    return with_render_knots(layout, knots)
