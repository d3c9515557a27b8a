"""Factor layout: block bookkeeping, axis units, and the maths of factor sub-spaces."""

from __future__ import annotations

import json

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.motion.factors import (
    FactorBlock,
    FactorLayout,
    default_factor_layout,
    factor_basis,
    join_coefficients,
    project_factor,
    split_coefficients,
)


def _orthonormal(w: int = 64, m: int = 20, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(w, m, generator=g, dtype=torch.float64))
    return q


def test_default_layout_blocks_and_slices():
    layout = default_factor_layout()
    assert layout.names == ("lip", "pose", "gaze", "blink", "residual")
    assert [b.size for b in layout.blocks] == [6, 6, 2, 1, 5] and layout.total == 20
    sl = layout.slices()
    assert sl["lip"] == slice(0, 6) and sl["pose"] == slice(6, 12) and sl["gaze"] == slice(12, 14)
    assert sl["blink"] == slice(14, 15) and sl["residual"] == slice(15, 20)
    assert layout.index("gaze") == 2
    assert layout.block("pose").axes == ("yaw", "pitch", "roll", "tx", "ty", "scale")
    assert layout.block("lip").axes == ("open", "width", "round")
    with pytest.raises(DemoInputError, match="unknown factor"):
        layout.index("mouth")


def test_layout_dict_round_trip_through_json():
    layout = default_factor_layout()
    again = FactorLayout.from_dict(json.loads(json.dumps(layout.to_dict())))
    assert again == layout


def test_axis_units_and_scales():
    pose = default_factor_layout().block("pose")
    assert pose.axis_value("yaw", 1.0) == pytest.approx(30.0)
    assert pose.axis_coefficient("pitch", -15.0) == pytest.approx(-0.5)
    assert pose.axis_value("scale", 0.0) == pytest.approx(1.0)  # neutral zoom at coefficient 0
    assert pose.axis_coefficient("scale", 1.2) == pytest.approx(1.0)
    assert pose.axis_coefficient("tx", 0.2) == pytest.approx(1.0)
    v = torch.linspace(-30, 30, 7)
    assert torch.allclose(pose.axis_value("roll", pose.axis_coefficient("roll", v)), v)
    gaze, blink = default_factor_layout().block("gaze"), default_factor_layout().block("blink")
    assert gaze.axes == ("x", "y") and blink.axes == ("closure",)
    with pytest.raises(DemoInputError, match="no axis"):
        gaze.axis_value("z", 1.0)


@pytest.mark.parametrize("kwargs", [
    {"name": "a", "size": 0},
    {"name": "a", "size": 1, "axes": ("x", "y"), "axis_units": ("u", "u"), "axis_scale": (1.0, 1.0)},
    {"name": "a", "size": 2, "axes": ("x",), "axis_units": (), "axis_scale": (1.0,)},
    {"name": "a", "size": 2, "axes": ("x",), "axis_units": ("u",), "axis_scale": (0.0,)},
])
def test_invalid_blocks_raise(kwargs):
    with pytest.raises(DemoInputError):
        FactorBlock(**kwargs)


def test_duplicate_block_names_raise():
    with pytest.raises(DemoInputError, match="unique"):
        FactorLayout((FactorBlock("a", 1), FactorBlock("a", 2)))


def test_split_then_join_is_identity():
    layout = default_factor_layout()
    lam = torch.randn(3, 7, 20)
    parts = split_coefficients(lam, layout)
    assert {k: v.shape[-1] for k, v in parts.items()} == {"lip": 6, "pose": 6, "gaze": 2, "blink": 1, "residual": 5}
    assert torch.equal(join_coefficients(parts, layout), lam)
    with pytest.raises(DemoInputError, match="missing"):
        join_coefficients({k: v for k, v in parts.items() if k != "gaze"}, layout)
    with pytest.raises(DemoInputError):
        split_coefficients(torch.randn(3, 19), layout)


def test_factor_sub_spaces_are_orthogonal_and_complete():
    layout = default_factor_layout()
    Q = _orthonormal()
    basis = factor_basis(Q, layout)
    names = list(basis)
    for i, a in enumerate(names):
        assert torch.allclose(basis[a].T @ basis[a], torch.eye(basis[a].shape[1], dtype=Q.dtype), atol=1e-12)
        for b in names[i + 1:]:
            assert torch.allclose(basis[a].T @ basis[b], torch.zeros(basis[a].shape[1], basis[b].shape[1], dtype=Q.dtype), atol=1e-12)
    motion = torch.randn(5, 64, dtype=torch.float64)
    total = sum(project_factor(motion, Q, layout, n) for n in names)
    assert torch.allclose(total, motion @ Q @ Q.T, atol=1e-12)  # the projections partition span(Q)


def test_project_factor_keeps_exactly_its_coefficients():
    layout = default_factor_layout()
    Q = _orthonormal(seed=1)
    lam = torch.randn(4, 20, dtype=torch.float64)
    motion = lam @ Q.T
    parts = split_coefficients(lam, layout)
    only_pose = join_coefficients({k: (v if k == "pose" else torch.zeros_like(v)) for k, v in parts.items()}, layout)
    proj = project_factor(motion, Q, layout, "pose")
    assert torch.allclose(proj, only_pose @ Q.T, atol=1e-12)
    assert torch.allclose(project_factor(proj, Q, layout, "pose"), proj, atol=1e-12)  # idempotent
    assert torch.allclose(project_factor(proj, Q, layout, "lip"), torch.zeros_like(proj), atol=1e-12)
