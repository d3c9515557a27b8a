"""CondOTPath: endpoints, velocity and shape checks."""

from __future__ import annotations

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.flow.paths import CondOTPath, PathSample


def test_endpoints_and_velocity():
    g = torch.Generator().manual_seed(0)
    x_0, x_1 = torch.randn(3, 5, 4, generator=g), torch.randn(3, 5, 4, generator=g)
    path = CondOTPath()
    s0 = path.sample(x_0, x_1, torch.zeros(3))
    s1 = path.sample(x_0, x_1, torch.ones(3))
    assert isinstance(s0, PathSample)
    torch.testing.assert_close(s0.x_t, x_0)
    torch.testing.assert_close(s1.x_t, x_1)
    torch.testing.assert_close(s0.dx_t, x_1 - x_0)


def test_per_sample_time_and_derivative():
    g = torch.Generator().manual_seed(1)
    x_0, x_1 = torch.randn(2, 7, generator=g, dtype=torch.float64), torch.randn(2, 7, generator=g, dtype=torch.float64)
    t = torch.tensor([0.25, 0.8], dtype=torch.float64)
    s = CondOTPath().sample(x_0, x_1, t)
    torch.testing.assert_close(s.x_t[1], 0.2 * x_0[1] + 0.8 * x_1[1])
    h = 1e-6
    fd = (CondOTPath().sample(x_0, x_1, t + h).x_t - CondOTPath().sample(x_0, x_1, t - h).x_t) / (2 * h)
    torch.testing.assert_close(fd, s.dx_t)
    assert s.t is t and s.x_0 is x_0 and s.x_1 is x_1


def test_shape_checks():
    path = CondOTPath()
    with pytest.raises(DemoInputError, match="x_0"):
        path.sample(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(DemoInputError, match="t must"):
        path.sample(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3))
    with pytest.raises(DemoInputError, match="t must"):
        path.sample(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 1))
