"""ODESolver on analytic velocity fields."""

from __future__ import annotations

import math

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.flow.solvers import ODESolver, time_grid


def v_quadratic(x, t):
    return 3 * t**2 * torch.ones_like(x)


@pytest.mark.parametrize("method,steps,atol", [("euler", 400, 1e-2), ("midpoint", 20, 1e-2), ("rk4", 4, 1e-6)])
def test_quadratic_field_moves_by_one(method, steps, atol):
    x_0 = torch.randn(3, 4, dtype=torch.float64)
    x_1 = ODESolver(v_quadratic).sample(x_0, time_grid(steps).double(), method=method)
    torch.testing.assert_close(x_1, x_0 + 1, atol=atol, rtol=0)


def test_rk4_exact_for_cubic_in_t():
    x_0 = torch.zeros(2, 2, dtype=torch.float64)
    x_1 = ODESolver(lambda x, t: 4 * t**3 * torch.ones_like(x)).sample(x_0, time_grid(1).double(), method="rk4")
    torch.testing.assert_close(x_1, x_0 + 1, atol=1e-12, rtol=0)


@pytest.mark.parametrize("method,steps,tol", [("euler", 1000, 3e-3), ("midpoint", 50, 1e-4), ("rk4", 10, 1e-6)])
def test_linear_field_gives_exponential(method, steps, tol):
    x_0 = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    x_1 = ODESolver(lambda x, t: x).sample(x_0, time_grid(steps).double(), method=method)
    torch.testing.assert_close(x_1, x_0 * math.e, atol=0, rtol=tol)


def test_euler_matches_explicit_formula_on_nonuniform_grid():
    grid = torch.tensor([0.0, 0.1, 0.35, 0.7, 1.0])
    seen_t = []

    def model(x, t, *, scale):
        seen_t.append(t)
        return torch.sin(x * scale + t)

    x_0 = torch.randn(2, 3, 5)
    out, traj, vel = ODESolver(model).sample(x_0, grid, return_intermediates=True, scale=2.0)
    y = x_0
    for i in range(4):
        assert seen_t[i].shape == (1,) and seen_t[i].item() == grid[i].item()
        v = torch.sin(y * 2.0 + grid[i : i + 1])
        torch.testing.assert_close(vel[i], v, atol=0, rtol=0)
        y = y + (grid[i + 1] - grid[i]) * v
        torch.testing.assert_close(traj[i + 1], y, atol=0, rtol=0)
    assert torch.equal(out, y) and torch.equal(traj[0], x_0)
    assert traj.shape == (5, 2, 3, 5) and vel.shape == (4, 2, 3, 5)


def test_step_hook_and_callback():
    calls, hook_t = [], []

    def hook(x, t_next):
        hook_t.append(t_next.item())
        return torch.zeros_like(x)  # reset after every step

    grid = time_grid(4)
    out = ODESolver(lambda x, t: torch.ones_like(x)).sample(
        torch.full((2,), 5.0), grid, method="midpoint", step_hook=hook, callback=lambda s, n: calls.append((s, n))
    )
    assert torch.equal(out, torch.zeros(2))
    assert hook_t == pytest.approx(grid[1:].tolist())
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]

    shift = ODESolver(lambda x, t: torch.ones_like(x)).sample(torch.zeros(1), grid, step_hook=lambda x, t: x + 1)
    torch.testing.assert_close(shift, torch.tensor([5.0]))


def test_grad_mode_and_time_grid_helper():
    w = torch.tensor(2.0, requires_grad=True)
    solver = ODESolver(lambda x, t: w * x)
    assert not solver.sample(torch.ones(3), time_grid(2)).requires_grad
    out = solver.sample(torch.ones(3), time_grid(2), enable_grad=True)
    out.sum().backward()
    assert w.grad is not None
    assert torch.equal(time_grid(9), torch.linspace(0, 1, 10))
    assert time_grid(9).dtype == torch.float32


def test_invalid_arguments():
    solver = ODESolver(lambda x, t: x)
    with pytest.raises(DemoInputError, match="method"):
        solver.sample(torch.ones(2), time_grid(2), method="heun")
    with pytest.raises(DemoInputError, match="time_grid"):
        solver.sample(torch.ones(2), torch.tensor([0.0]))
    with pytest.raises(DemoInputError, match="steps"):
        time_grid(0)
    with pytest.raises(DemoInputError, match="velocity_model"):
        ODESolver(3)
    with pytest.raises(DemoInputError, match="velocity_model returned"):
        ODESolver(lambda x, t: x[:1]).sample(torch.ones(2), time_grid(1))
