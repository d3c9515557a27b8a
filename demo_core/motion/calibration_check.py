"""Does a factor calibration recover known factor blocks?  Subspace overlaps between calibrated and true blocks.

A DEMO-native model knows its factor layout (coefficient ``k`` addresses column ``k`` of its dictionary ``Q``),
so calibrating it as if it were a FLOAT-family model (:mod:`demo_core.motion.calibration`, which ignores the
layout) and comparing the calibrated blocks with the true ones tests the calibration.

* :func:`subspace_overlap` — how much two subspaces coincide: 1 = the same, 0 = orthogonal.
* :func:`true_directions` — the layout's dictionary directions per *calibration* block: calibration has one
  ``eyes`` block for gaze and blink (:data:`CALIBRATED_BLOCKS`).
* :func:`calibration_overlaps` — per-block overlaps ``pose``, ``lip``, ``eyes``, optionally over "active"
  directions only (:func:`active_directions`: those whose coefficients vary in encoded data; a direction the
  encoder never uses cannot be identified by rendering).
* :func:`direction_report` — where each direction went (true block and axis vs calibrated block).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..errors import DemoInputError
from .factor_sidecar import FactorCalibration
from .factors import FactorLayout

__all__ = ["CALIBRATED_BLOCKS", "subspace_overlap", "true_directions", "active_directions",
           "calibration_overlaps", "direction_report"]

CALIBRATED_BLOCKS: dict[str, tuple[str, ...]] = {"pose": ("pose",), "lip": ("lip",), "eyes": ("gaze", "blink")}
"""Calibration block → the layout blocks it stands for (calibration does not split gaze from blink)."""


def subspace_overlap(A: Tensor, B: Tensor) -> float:
    """Overlap of the column spans of orthonormal bases ``A`` (W, a) and ``B`` (W, b): ``‖AᵀB‖_F² / max(a, b)``.

    ``‖AᵀB‖_F²`` is the sum of the squared cosines of the principal angles between the subspaces, so this is
    their mean over ``max(a, b)`` angles: 1 = the same subspace, 0 = orthogonal; a missing or an extra
    dimension costs ``1 / max(a, b)`` (a 2-D subspace of a 3-D one scores 2/3).  Invariant to rotations
    within either subspace.  NaN when both are empty.
    """
    for name, x in (("A", A), ("B", B)):
        if not isinstance(x, Tensor) or x.ndim != 2:
            raise DemoInputError(f"{name}: expected an orthonormal basis (W, k), got "
                                 f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    if A.shape[0] != B.shape[0]:
        raise DemoInputError(f"A, B: bases of different spaces ({A.shape[0]} vs {B.shape[0]} rows)")
    k = max(A.shape[1], B.shape[1])
    if k == 0:
        return math.nan
    return float((A.double().T @ B.double()).pow(2).sum()) / k


def true_directions(layout: FactorLayout) -> dict[str, list[int]]:
    """Calibration block → the dictionary directions (= coefficient indices) the layout gives it.

    ``eyes`` = gaze + blink; blocks the layout lacks contribute nothing.
    """
    slices = layout.slices()
    return {block: [i for name in names if name in slices for i in range(slices[name].start, slices[name].stop)]
            for block, names in CALIBRATED_BLOCKS.items()}


def active_directions(lam: Tensor, fraction: float = 0.02) -> Tensor:
    """Directions used by the encoder: (M,) bool, coefficient std over ``lam`` (N, M) > ``fraction`` × the largest.

    Directions of a trained model whose coefficients collapse to constants (free lip coordinates, residual)
    change nothing the model ever renders, so calibration cannot be expected to place them.
    """
    if not isinstance(lam, Tensor) or lam.ndim != 2 or lam.shape[0] < 2:
        raise DemoInputError(f"lam: expected coefficients (N >= 2, M), got "
                             f"{tuple(lam.shape) if isinstance(lam, Tensor) else type(lam).__name__}")
    if not 0 <= fraction < 1:
        raise DemoInputError(f"fraction: expected a number in [0, 1), got {fraction!r}")
    std = lam.detach().double().std(dim=0)
    return std > fraction * std.max()


def _active_set(active: Tensor | Sequence[bool] | None, M: int) -> set[int]:
    if active is None:
        return set(range(M))
    mask = torch.as_tensor(active, dtype=torch.bool).reshape(-1)
    if mask.numel() != M:
        raise DemoInputError(f"active: expected {M} flags, got {mask.numel()}")
    return {int(i) for i in torch.nonzero(mask).reshape(-1)}


def calibration_overlaps(calibration: FactorCalibration, layout: FactorLayout | Mapping[str, Sequence[int]],
                         Q: Tensor, *, active: Tensor | Sequence[bool] | None = None) -> dict[str, float]:
    """Overlap (:func:`subspace_overlap`) of each calibrated block with the true one: ``{"pose", "lip", "eyes"}``.

    Args:
        calibration: a calibration of dictionary ``Q`` (its blocks ``pose``, ``lip``, ``eyes``; one it left
            empty spans nothing).
        layout: the true layout (coefficient k = column k of ``Q``), or calibration block → true direction
            indices directly.
        Q: (W, M) orthonormal dictionary.
        active: optional (M,) flags; only these directions count, on both sides (:func:`active_directions`).

    Calibration owns whole dictionary directions (its rotation only mixes directions within a block), so each
    block's subspace is that of its directions' columns of ``Q``; for an orthonormal ``Q`` the overlap is
    ``|true ∩ calibrated| / max(|true|, |calibrated|)`` over the counted directions.  NaN for a block with no
    counted direction on either side.
    """
    M = calibration.num_directions
    if not isinstance(Q, Tensor) or Q.ndim != 2 or Q.shape[1] != M:
        raise DemoInputError(f"Q: expected the calibrated dictionary (W, {M}), got "
                             f"{tuple(Q.shape) if isinstance(Q, Tensor) else type(Q).__name__}")
    true = true_directions(layout) if isinstance(layout, FactorLayout) else {k: list(v) for k, v in layout.items()}
    counted = _active_set(active, M)
    out = {}
    for block in CALIBRATED_BLOCKS:
        t = [i for i in true.get(block, []) if i in counted]
        c = [i for i in calibration.directions.get(block, []) if i in counted]
        out[block] = subspace_overlap(Q[:, t], Q[:, c])
    return out


def direction_report(calibration: FactorCalibration, layout: FactorLayout) -> list[dict]:
    """Per direction: ``{"direction", "true" ("pose.yaw", "lip.c3" …), "true_block", "calibrated"}``.

    ``true_block`` is the calibration block the layout puts it in (``eyes`` for gaze and blink, else the
    layout block's name); ``calibrated`` is the block calibration put it in.
    """
    owner = {i: name for name, idx in calibration.directions.items() for i in idx}
    out = []
    for block, s in zip(layout.blocks, layout.slices().values()):
        family = next((k for k, names in CALIBRATED_BLOCKS.items() if block.name in names), block.name)
        for j, i in enumerate(range(s.start, s.stop)):
            axis = block.axes[j] if j < len(block.axes) else f"c{j}"
            out.append({"direction": i, "true": f"{block.name}.{axis}", "true_block": family,
                        "calibrated": owner.get(i, "residual")})
    return out
