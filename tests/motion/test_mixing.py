"""Mixing factors from several trajectories: each factor from its source, the rest from the base."""

from __future__ import annotations

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.motion.factors import default_factor_layout
from demo_core.motion.mixing import mix_factors
from tests.motion.factor_helpers import M, make_space, orthonormal, trajectory

Q, LAYOUT = orthonormal(), default_factor_layout()
SPACE = make_space()


def test_each_factor_comes_from_its_source():
    a, b, c, base = (trajectory(seed=s) for s in (1, 2, 3, 4))
    mixed = mix_factors({"lip": a, "pose": b, "gaze": c}, base, Q, LAYOUT)
    for factor, src in (("lip", a), ("pose", b), ("gaze", c), ("blink", base), ("residual", base)):
        torch.testing.assert_close(SPACE.factor_coordinates(mixed, factor), SPACE.factor_coordinates(src, factor),
                                   atol=1e-10, rtol=0, msg=factor)
    torch.testing.assert_close(SPACE.orthogonal_part(mixed), SPACE.orthogonal_part(base), atol=1e-10, rtol=0)
    # order does not matter, nothing named gives the base back
    swapped = mix_factors({"gaze": c, "pose": b, "lip": a}, base, Q, LAYOUT)
    torch.testing.assert_close(swapped, mixed, atol=1e-12, rtol=0)
    assert torch.equal(mix_factors({}, base, Q, LAYOUT), base)


def test_relative_mix_keeps_base_rest_and_sources_may_be_coefficients():
    base, drive = trajectory(seed=4), trajectory(B=1, seed=5)
    mixed = mix_factors({"pose": drive @ Q}, base, Q, LAYOUT, relative=True, ref_frame=0)
    p, d = SPACE.factor_coordinates(mixed, "pose"), SPACE.factor_coordinates(drive, "pose")
    torch.testing.assert_close(p[:, 0], SPACE.factor_coordinates(base, "pose")[:, 0], atol=1e-10, rtol=0)
    torch.testing.assert_close(p - p[:, :1], (d - d[:, :1]).expand(2, -1, -1), atol=1e-10, rtol=0)


def test_mixing_in_a_rotated_space():
    g = torch.Generator().manual_seed(9)
    R = torch.linalg.qr(torch.randn(M, M, generator=g, dtype=torch.float64))[0]
    space = make_space(rotation=R)
    a, base = trajectory(seed=1), trajectory(seed=2)
    mixed = mix_factors({"lip": a}, base, Q, LAYOUT, rotation=R)
    torch.testing.assert_close(space.factor_coordinates(mixed, "lip"), space.factor_coordinates(a, "lip"))
    torch.testing.assert_close(space.factor_coordinates(mixed, "pose"), space.factor_coordinates(base, "pose"))


def test_errors_name_the_source():
    base = trajectory()
    with pytest.raises(DemoInputError, match="unknown factor 'mouth'"):
        mix_factors({"mouth": base}, base, Q, LAYOUT)
    with pytest.raises(DemoInputError, match=r"sources\['pose'\]"):
        mix_factors({"pose": base[:, :5]}, base, Q, LAYOUT)
    with pytest.raises(DemoInputError, match="base"):
        mix_factors({"pose": base}, base[0], Q, LAYOUT)
