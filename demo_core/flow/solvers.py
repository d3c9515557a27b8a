"""Fixed-grid ODE solvers for velocity models ``forward(x, t, **cond)``.

Solvers know nothing of guidance, windows or conditions: conditions travel through ``**cond`` unchanged.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..errors import DemoInputError

__all__ = ["ODESolver", "time_grid", "SOLVER_METHODS"]

SOLVER_METHODS = ("euler", "midpoint", "rk4")

VelocityFn = Callable[..., Tensor]


def time_grid(steps: int, *, device=None) -> Tensor:
    """Uniform float32 grid ``torch.linspace(0, 1, steps + 1)`` (``steps`` solver steps).

    Args:
        steps: number of steps, at least 1.
        device: where to put the grid.

    Returns:
        ``(steps + 1,)`` float32 tensor from 0 to 1.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise DemoInputError(f"time_grid: steps must be an integer >= 1; got {steps!r}")
    return torch.linspace(0, 1, steps + 1, device=device)


class ODESolver:
    """Integrates ``dx/dt = v(x, t, **cond)`` on a given time grid.

    Args:
        velocity_model: any callable ``(x, t, **cond) -> Tensor`` shaped like ``x``; ``t`` is given as a
            ``(1,)`` tensor holding the grid (or stage) time.

    Example:
        .. code-block:: python

            solver = ODESolver(lambda x, t: 3 * t**2 * torch.ones_like(x))
            x_1 = solver.sample(torch.zeros(2, 3), time_grid(10), method="rk4")  # ≈ ones
    """

    def __init__(self, velocity_model: VelocityFn):
        if not callable(velocity_model):
            raise DemoInputError(f"ODESolver: velocity_model must be callable; got {type(velocity_model).__name__}")
        self.velocity_model = velocity_model

    def _velocity(self, x: Tensor, t: Tensor, cond: dict) -> Tensor:
        v = self.velocity_model(x, t, **cond)
        if v.shape != x.shape:
            raise DemoInputError(f"ODESolver: velocity_model returned {tuple(v.shape)} for a state {tuple(x.shape)}")
        return v

    def _step_velocity(self, method: str, y: Tensor, t0: Tensor, t1: Tensor, dt: Tensor, cond: dict) -> Tensor:
        """Effective velocity ``v`` of one step, so that ``y_next = y + dt * v``."""
        k1 = self._velocity(y, t0, cond)
        if method == "euler":
            return k1
        half = dt * 0.5
        t_mid = t0 + half
        k2 = self._velocity(y + half * k1, t_mid, cond)
        if method == "midpoint":
            return k2
        k3 = self._velocity(y + half * k2, t_mid, cond)
        k4 = self._velocity(y + dt * k3, t1, cond)
        return (k1 + 2 * (k2 + k3) + k4) / 6

    def sample(
        self,
        x_init: Tensor,
        time_grid: Tensor,
        method: str = "euler",
        callback: Callable[[int, int], None] | None = None,
        return_intermediates: bool = False,
        step_hook: Callable[[Tensor, Tensor], Tensor] | None = None,
        enable_grad: bool = False,
        **cond,
    ) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """Integrate from ``time_grid[0]`` to ``time_grid[-1]``.

        Each step is ``y_{i+1} = y_i + dt_i * v_i`` with ``dt_i = time_grid[i+1] - time_grid[i]`` (a tensor in
        the grid's dtype) and ``v_i`` the method's effective velocity (Euler: ``v(y_i, time_grid[i:i+1])``).

        Args:
            x_init: ``(B, ...)`` initial state at ``time_grid[0]``.
            time_grid: ``(N,)`` increasing (or decreasing) times, ``N >= 2`` → ``N - 1`` steps.
            method: ``"euler"``, ``"midpoint"`` or ``"rk4"`` (classic 4-stage).
            callback: ``callback(step, total)`` after each step (``step`` counts from 1).
            return_intermediates: also return the trajectory and the per-step effective velocities.
            step_hook: ``step_hook(x, t_next) -> x`` applied after every step (``t_next`` is ``(1,)``); its
                result replaces the state (inpainting, factor constraints).
            enable_grad: keep autograd on (off by default).
            **cond: passed unchanged to the velocity model.

        Returns:
            The final state ``(B, ...)``; with ``return_intermediates`` a tuple ``(final, trajectory (N, B, ...),
            velocities (N - 1, B, ...))``.
        """
        if method not in SOLVER_METHODS:
            raise DemoInputError(f"ODESolver.sample: method must be one of {SOLVER_METHODS}; got {method!r}")
        if not isinstance(time_grid, Tensor) or time_grid.ndim != 1 or time_grid.numel() < 2:
            shape = tuple(time_grid.shape) if isinstance(time_grid, Tensor) else type(time_grid).__name__
            raise DemoInputError(f"ODESolver.sample: time_grid must be a 1-D tensor with >= 2 points; got {shape}")
        if not time_grid.is_floating_point():
            raise DemoInputError(f"ODESolver.sample: time_grid must be floating point; got {time_grid.dtype}")
        grid = time_grid.to(x_init.device)
        total = grid.numel() - 1
        y = x_init
        trajectory, velocities = ([y], []) if return_intermediates else (None, None)
        with torch.set_grad_enabled(enable_grad):
            for i in range(total):
                t0, t1 = grid[i : i + 1], grid[i + 1 : i + 2]  # (1,) each
                dt = grid[i + 1] - grid[i]  # 0-d, grid dtype
                v = self._step_velocity(method, y, t0, t1, dt, cond)
                y = y + dt * v
                if step_hook is not None:
                    y_new = step_hook(y, t1)
                    if not isinstance(y_new, Tensor) or y_new.shape != y.shape:
                        raise DemoInputError("ODESolver.sample: step_hook must return a tensor shaped like x")
                    y = y_new
                if return_intermediates:
                    trajectory.append(y)
                    velocities.append(v)
                if callback is not None:
                    callback(i + 1, total)
        if return_intermediates:
            return y, torch.stack(trajectory), torch.stack(velocities)
        return y
