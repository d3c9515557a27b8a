"""FactorSpace: coordinates, the orthogonal remainder, rotations and input checks."""

from __future__ import annotations

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.motion.factor_space import FactorSpace
from demo_core.motion.factors import FactorBlock, FactorLayout, default_factor_layout, split_coefficients
from tests.motion.factor_helpers import M, W, assert_only_factor_changed, make_space, orthonormal, trajectory


def test_split_join_round_trip_and_orthogonal_part():
    space = make_space()
    r = trajectory()
    parts, perp = space.split(r)
    torch.testing.assert_close(space.join(parts, perp), r, atol=1e-12, rtol=0)
    assert (perp @ space.basis).abs().max() < 1e-12  # r_⊥ is outside span(Q)
    lam = r @ space.dictionary
    for name, c in split_coefficients(lam, space.layout).items():  # identity rotation: c = λ
        torch.testing.assert_close(parts[name], c)


def test_with_factor_sets_one_factor_only():
    space = make_space()
    r = trajectory()
    target = torch.randn(2, 40, 6, dtype=torch.float64)
    out = space.with_factor(r, "pose", target)
    torch.testing.assert_close(space.factor_coordinates(out, "pose"), target, atol=1e-12, rtol=0)
    assert_only_factor_changed(space, r, out, "pose")
    assert not torch.equal(out, r) and torch.equal(r, trajectory())  # input untouched


def test_axis_value_uses_the_block_units():
    space = make_space()
    r = space.with_factor(trajectory(), "pose", torch.tensor([0.5, 0.0, 0.0, 0.0, 0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(space.axis_value(r, "pose", "yaw"), torch.full((2, 40), 15.0, dtype=torch.float64))
    torch.testing.assert_close(space.axis_value(r, "pose", "scale"), torch.full((2, 40), 1.2, dtype=torch.float64))
    torch.testing.assert_close(space.axis_value(r, "pose", "c5"), torch.ones(2, 40, dtype=torch.float64))
    assert space.coordinate_index("gaze", "y") == (1, 1.0, 0.0)
    with pytest.raises(DemoInputError, match="pose.c6"):
        space.coordinate_index("pose", "c6")
    with pytest.raises(DemoInputError, match="unknown axis"):
        space.coordinate_index("lip", "yaw")
    with pytest.raises(DemoInputError, match="unknown factor"):
        space.block("mouth")


def test_rotation_defines_the_coordinates():
    g = torch.Generator().manual_seed(3)
    R = torch.linalg.qr(torch.randn(M, M, generator=g, dtype=torch.float64))[0]
    space = make_space(rotation=R)
    r = trajectory()
    lam = r @ space.dictionary
    torch.testing.assert_close(space.coordinates(r), lam @ R)
    # the three target forms agree: latents, dictionary coefficients, factor coordinates
    from_latents = space.as_factor_coordinates(r, "gaze")
    torch.testing.assert_close(space.as_factor_coordinates(lam, "gaze"), from_latents)
    torch.testing.assert_close(space.as_factor_coordinates(from_latents, "gaze"), from_latents)
    with pytest.raises(DemoInputError, match="none of latents"):
        space.as_factor_coordinates(torch.zeros(1, 3, 7, dtype=torch.float64), "gaze")


def test_bad_inputs_name_the_argument():
    layout = default_factor_layout()
    with pytest.raises(DemoInputError, match="Q: expected orthonormal"):
        FactorSpace(torch.randn(W, M, dtype=torch.float64) * 3, layout)
    with pytest.raises(DemoInputError, match=r"Q: expected a float tensor \(W, 20\)"):
        FactorSpace(orthonormal(m=19), layout)
    with pytest.raises(DemoInputError, match="rotation"):
        FactorSpace(orthonormal(), layout, torch.ones(M, M))
    with pytest.raises(DemoInputError, match="latents"):
        make_space().coordinates(torch.zeros(2, 3, W + 1))
    small = FactorLayout((FactorBlock("a", 2), FactorBlock("b", 1)))
    assert FactorSpace(orthonormal(8, 3, dtype=torch.float32), small).basis.dtype == torch.float32


def test_from_track_uses_the_layout_or_a_calibration():
    from demo_core.motion.factor_sidecar import parse_factor_map
    from demo_core.motion.track import MotionTrack

    Q = orthonormal(dtype=torch.float32)
    demo = MotionTrack(torch.zeros(1, 4, W), 25.0, basis=Q, factors=default_factor_layout().to_dict())
    assert FactorSpace.from_track(demo).layout == default_factor_layout()
    float_track = MotionTrack(torch.zeros(1, 4, W), 25.0, basis=Q)
    with pytest.raises(DemoInputError, match="calibrate the model"):
        FactorSpace.from_track(float_track)
    cal = parse_factor_map({"pose": [4, 2]}, M)
    space = FactorSpace.from_track(float_track, cal)
    torch.testing.assert_close(space.factor_basis("pose"), Q[:, [4, 2]])
    with pytest.raises(DemoInputError, match="no motion dictionary"):
        FactorSpace.from_track(MotionTrack(torch.zeros(1, 4, W), 25.0))
