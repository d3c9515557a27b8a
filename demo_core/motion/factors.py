"""Named factor blocks of DEMO's motion coefficients (lip, pose, gaze, blink, residual).

DEMO's motion encoder predicts ``M`` coefficients ``lam`` that address the columns of ONE orthonormal
direction dictionary ``Q`` (W, M); the motion latent is ``lam @ Qᵀ``.  A :class:`FactorLayout` names
contiguous runs of those coefficients (blocks), so each factor owns its own columns of ``Q`` and the
factors live in mutually orthogonal sub-spaces of the latent.

Some coefficients are *semantic axes*: stage 1 supervises them with labels, so that
``axis value = axis_offset + coefficient × axis_scale`` in the axis unit (e.g. pose yaw 1.0 ↔ 30°).
The decoder may render an axis with a different, non-linear gain (the embedded model draws a 20° yaw
coefficient as 17°): ``axis_render`` then holds per-axis knots ``(rendered value, coefficient)`` measured by
rendering and re-encoding (:mod:`demo_core.tools.render_axes`), and edits in the axis unit go through
:meth:`FactorBlock.render_coefficient` / :meth:`FactorBlock.rendered_value`, while :meth:`FactorBlock.axis_value`
stays the encoder's (label) calibration that reads encoded frames.
Scales are chosen so that the coefficients stay O(1).  For training, a scale near the label's spread in the
data is better (the bundled recipe: yaw 5° per unit, mouth opening 0.2 per unit): with the default scales the
coefficients of the synthetic data spread only ~0.2, the motion was ~5 % of the decoder's latent, and the renders
followed edits with a gain of ~0.1.

Example:
    .. code-block:: python

        layout = default_factor_layout()                  # 20 coefficients
        parts = split_coefficients(lam, layout)           # {"lip": (B, 6), "pose": (B, 6), ...}
        yaw_deg = layout.block("pose").axis_value("yaw", parts["pose"][..., 0])
        lip_only = project_factor(motion, Q, layout, "lip")
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor

from ..errors import DemoInputError

__all__ = [
    "FactorBlock",
    "FactorLayout",
    "default_factor_layout",
    "split_coefficients",
    "join_coefficients",
    "factor_basis",
    "project_factor",
]


@dataclass(frozen=True)
class FactorBlock:
    """A contiguous run of ``size`` coefficients owned by one factor.

    Attributes:
        name: factor name (``"lip"``, ``"pose"`` …).
        size: number of coefficients.
        axes: names of the first ``len(axes)`` coefficients when they are semantic axes (may be empty).
        axis_units: unit of each axis (same length as ``axes``).
        axis_scale: axis value per unit coefficient (same length as ``axes``).
        axis_offset: axis value at coefficient 0 (empty = all zeros; pose ``scale`` is 1 at rest).
        axis_render: per axis (empty = none at all), knots ``((value, coefficient), ...)`` of what the decoder
            renders: the coefficient whose rendered frame the encoder reads as ``value``; values strictly
            increasing, coefficients strictly monotone like ``value / scale``; an axis with no knots (``()``)
            renders as it reads.
    """

    name: str
    size: int
    axes: tuple[str, ...] = ()
    axis_units: tuple[str, ...] = ()
    axis_scale: tuple[float, ...] = ()
    axis_offset: tuple[float, ...] = ()
    axis_render: tuple[tuple[tuple[float, float], ...], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", int(self.size))
        for name in ("axes", "axis_units"):
            object.__setattr__(self, name, tuple(str(v) for v in getattr(self, name)))
        for name in ("axis_scale", "axis_offset"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        try:
            render = tuple(tuple((float(v), float(c)) for v, c in knots) for knots in self.axis_render)
        except (TypeError, ValueError):
            raise DemoInputError(f"FactorBlock {self.name!r}: axis_render must hold, per axis, a list of "
                                 f"[value, coefficient] pairs; got {self.axis_render!r}") from None
        object.__setattr__(self, "axis_render", render)
        if not self.name or self.size < 1:
            raise DemoInputError(f"FactorBlock: expected a name and size >= 1, got {self.name!r}, {self.size}")
        n = len(self.axes)
        if n > self.size or len(self.axis_units) != n or len(self.axis_scale) != n:
            raise DemoInputError(
                f"FactorBlock {self.name!r}: axes, axis_units and axis_scale must have the same length <= size "
                f"({self.size}); got {n}, {len(self.axis_units)}, {len(self.axis_scale)}"
            )
        if len(self.axis_offset) not in (0, n):
            raise DemoInputError(f"FactorBlock {self.name!r}: axis_offset must be empty or have {n} entries")
        if any(s == 0.0 for s in self.axis_scale):
            raise DemoInputError(f"FactorBlock {self.name!r}: axis_scale entries must be non-zero")
        if len(set(self.axes)) != n:
            raise DemoInputError(f"FactorBlock {self.name!r}: axis names must be unique, got {self.axes}")
        if len(self.axis_render) not in (0, n):
            raise DemoInputError(f"FactorBlock {self.name!r}: axis_render must be empty or have {n} entries")
        for axis, scale, knots in zip(self.axes, self.axis_scale, self.axis_render):
            values, coefs = [v for v, _ in knots], [c * (1.0 if scale > 0 else -1.0) for _, c in knots]
            ok = all(math.isfinite(x) for x in values + coefs) and all(
                b > a for seq in (values, coefs) for a, b in zip(seq, seq[1:]))
            if len(knots) == 1 or not ok:
                raise DemoInputError(f"FactorBlock {self.name!r}: axis_render of {axis!r} needs none or at least two "
                                     f"finite knots with values increasing and coefficients monotone like "
                                     f"value / scale; got {list(knots)}")

    def axis_index(self, axis: str) -> int:
        """Position of ``axis`` inside the block."""
        try:
            return self.axes.index(axis)
        except ValueError:
            raise DemoInputError(f"factor {self.name!r} has no axis {axis!r} (axes: {self.axes})") from None

    def _offset(self, i: int) -> float:
        return self.axis_offset[i] if self.axis_offset else 0.0

    def axis_value(self, axis: str, coefficient: Tensor | float) -> Tensor | float:
        """Coefficient → axis value in its unit: ``offset + coefficient × scale``."""
        i = self.axis_index(axis)
        return self._offset(i) + coefficient * self.axis_scale[i]

    def axis_coefficient(self, axis: str, value: Tensor | float) -> Tensor | float:
        """Axis value in its unit → coefficient: ``(value − offset) / scale``."""
        i = self.axis_index(axis)
        return (value - self._offset(i)) / self.axis_scale[i]

    def _render_knots(self, axis: str) -> tuple[int, tuple[tuple[float, float], ...]]:
        i = self.axis_index(axis)
        return i, (self.axis_render[i] if self.axis_render else ())

    def render_coefficient(self, axis: str, value: Tensor | float) -> Tensor | float:
        """Axis value → the coefficient that renders as it: the ``axis_render`` knots (piecewise linear, continued
        beyond the end knots with the encoder's slope ``1 / scale``), or :meth:`axis_coefficient` without knots."""
        i, knots = self._render_knots(axis)
        if not knots:
            return self.axis_coefficient(axis, value)
        return _piecewise_linear(value, [v for v, _ in knots], [c for _, c in knots], 1.0 / self.axis_scale[i])

    def rendered_value(self, axis: str, coefficient: Tensor | float) -> Tensor | float:
        """Coefficient → the axis value its rendered frame shows (inverse of :meth:`render_coefficient`)."""
        i, knots = self._render_knots(axis)
        if not knots:
            return self.axis_value(axis, coefficient)
        pairs = sorted(knots, key=lambda k: k[1])  # coefficients increasing (a negative scale reverses them)
        return _piecewise_linear(coefficient, [c for _, c in pairs], [v for v, _ in pairs], self.axis_scale[i])

    def to_dict(self) -> dict[str, Any]:
        d = {
            "name": self.name,
            "size": self.size,
            "axes": list(self.axes),
            "axis_units": list(self.axis_units),
            "axis_scale": list(self.axis_scale),
            "axis_offset": list(self.axis_offset),
        }
        if self.axis_render:
            d["axis_render"] = [[list(k) for k in knots] for knots in self.axis_render]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FactorBlock":
        return cls(
            name=d["name"],
            size=d["size"],
            axes=tuple(d.get("axes", ())),
            axis_units=tuple(d.get("axis_units", ())),
            axis_scale=tuple(d.get("axis_scale", ())),
            axis_offset=tuple(d.get("axis_offset", ())),
            axis_render=tuple(d.get("axis_render", ())),
        )


def _piecewise_linear(x: Tensor | float, xs: list[float], ys: list[float], end_slope: float) -> Tensor | float:
    """Interpolate the knots ``(xs, ys)`` (xs increasing) at ``x``; beyond the end knots continue with
    ``end_slope``.  A float gives a float; a tensor a tensor of its dtype and device."""
    t = torch.as_tensor(x, dtype=torch.float64)
    xk = torch.tensor(xs, dtype=t.dtype, device=t.device)
    yk = torch.tensor(ys, dtype=t.dtype, device=t.device)
    j = torch.searchsorted(xk[1:-1].contiguous(), t.contiguous())  # segment index 0 … K−2
    x0, x1, y0, y1 = xk[j], xk[j + 1], yk[j], yk[j + 1]
    out = y0 + (t - x0) * (y1 - y0) / (x1 - x0)
    out = torch.where(t < xk[0], yk[0] + (t - xk[0]) * end_slope, out)
    out = torch.where(t > xk[-1], yk[-1] + (t - xk[-1]) * end_slope, out)
    if isinstance(x, Tensor):
        return out.to(x.dtype) if x.is_floating_point() else out
    return float(out)


@dataclass(frozen=True)
class FactorLayout:
    """Ordered factor blocks covering coefficients ``0 … total − 1``.

    Attributes:
        blocks: the blocks in coefficient order (names unique).
    """

    blocks: tuple[FactorBlock, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        names = [b.name for b in self.blocks]
        if not names:
            raise DemoInputError("FactorLayout: at least one block is needed")
        if len(set(names)) != len(names):
            raise DemoInputError(f"FactorLayout: block names must be unique, got {names}")

    @property
    def total(self) -> int:
        """Number of coefficients ``M``."""
        return sum(b.size for b in self.blocks)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.blocks)

    def index(self, name: str) -> int:
        """Position of block ``name`` in :attr:`blocks`."""
        try:
            return self.names.index(name)
        except ValueError:
            raise DemoInputError(f"unknown factor {name!r}; the layout has {', '.join(self.names)}") from None

    def block(self, name: str) -> FactorBlock:
        return self.blocks[self.index(name)]

    def slices(self) -> dict[str, slice]:
        """Block name → coefficient slice, in layout order."""
        out, start = {}, 0
        for b in self.blocks:
            out[b.name] = slice(start, start + b.size)
            start += b.size
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"blocks": [b.to_dict() for b in self.blocks]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FactorLayout":
        return cls(tuple(FactorBlock.from_dict(b) for b in d["blocks"]))


def default_factor_layout() -> FactorLayout:
    """DEMO's layout: lip 6 (open, width, round + 3 free), pose 6 (yaw, pitch, roll, tx, ty, scale), gaze 2,
    blink 1, residual 5 = 20.

    Units follow :mod:`demo_core.synthetic.params`: angles in degrees (1.0 ↔ 30°), translations in image
    half-sizes (1.0 ↔ 0.2), zoom ratio (1.0 ↔ +0.2 about 1), gaze −1..1 and eyelid closure 0..1 (1:1).
    """
    return FactorLayout(
        (
            FactorBlock(
                "lip",
                6,
                axes=("open", "width", "round"),
                axis_units=("0 closed..1 open", "-1 narrow..1 wide", "0 spread..1 rounded"),
                axis_scale=(1.0, 1.0, 1.0),
            ),
            FactorBlock(
                "pose",
                6,
                axes=("yaw", "pitch", "roll", "tx", "ty", "scale"),
                axis_units=("deg", "deg", "deg", "image half-width", "image half-height", "zoom ratio"),
                axis_scale=(30.0, 30.0, 30.0, 0.2, 0.2, 0.2),
                axis_offset=(0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
            ),
            FactorBlock("gaze", 2, axes=("x", "y"), axis_units=("-1..1", "-1..1"), axis_scale=(1.0, 1.0)),
            FactorBlock("blink", 1, axes=("closure",), axis_units=("0 open..1 closed",), axis_scale=(1.0,)),
            FactorBlock("residual", 5),
        )
    )


def _check_last(x: Tensor, size: int, name: str) -> None:
    if not isinstance(x, Tensor) or x.ndim < 1 or x.shape[-1] != size:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise DemoInputError(f"{name}: expected a tensor of shape (..., {size}), got {shape}")


def split_coefficients(lam: Tensor, layout: FactorLayout) -> dict[str, Tensor]:
    """Split coefficients into named blocks.

    Args:
        lam: ``(..., M)`` coefficients, ``M = layout.total``.
        layout: the factor layout.

    Returns:
        Block name → ``(..., k)`` view of ``lam``, in layout order.
    """
    _check_last(lam, layout.total, "lam")
    return {name: lam[..., s] for name, s in layout.slices().items()}


def join_coefficients(parts: Mapping[str, Tensor], layout: FactorLayout) -> Tensor:
    """Inverse of :func:`split_coefficients`.

    Args:
        parts: block name → ``(..., k)``; every block of ``layout`` must be present.
        layout: the factor layout.

    Returns:
        ``(..., M)`` coefficients in layout order (a new tensor).
    """
    import torch

    missing = [n for n in layout.names if n not in parts]
    extra = [n for n in parts if n not in layout.names]
    if missing or extra:
        raise DemoInputError(f"join_coefficients: missing blocks {missing}, unknown blocks {extra}")
    for b in layout.blocks:
        _check_last(parts[b.name], b.size, f"parts[{b.name!r}]")
    return torch.cat([parts[n] for n in layout.names], dim=-1)  # (..., M)


def factor_basis(Q: Tensor, layout: FactorLayout) -> dict[str, Tensor]:
    """Columns of the direction dictionary owned by each block.

    Args:
        Q: ``(W, M)`` orthonormal directions.
        layout: the factor layout.

    Returns:
        Block name → ``(W, k)`` column block of ``Q``.
    """
    if not isinstance(Q, Tensor) or Q.ndim != 2 or Q.shape[1] != layout.total:
        raise DemoInputError(f"Q: expected shape (W, {layout.total}), got {tuple(getattr(Q, 'shape', ()))}")
    return {name: Q[:, s] for name, s in layout.slices().items()}


def project_factor(motion: Tensor, Q: Tensor, layout: FactorLayout, name: str) -> Tensor:
    """Part of motion latents that lies in one factor's sub-space: ``(motion @ Q_k) @ Q_kᵀ``.

    Args:
        motion: ``(..., W)`` motion latents.
        Q: ``(W, M)`` orthonormal directions.
        layout: the factor layout.
        name: block name.

    Returns:
        ``(..., W)`` projection (the sum over all blocks gives back the component of ``motion`` in span(Q)).
    """
    q_k = factor_basis(Q, layout)[layout.block(name).name]  # (W, k)
    _check_last(motion, Q.shape[0], "motion")
    return (motion @ q_k) @ q_k.T  # (..., W)
