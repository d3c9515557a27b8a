"""Shared constructions for the factor-edit tests: a random orthonormal dictionary and trajectories."""

from __future__ import annotations

import torch

from demo_core.motion.factor_space import FactorSpace
from demo_core.motion.factors import default_factor_layout

W, M = 32, 20


def orthonormal(w: int = W, m: int = M, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(w, m, generator=g, dtype=torch.float64))[0].to(dtype)


def make_space(seed: int = 0, rotation: torch.Tensor | None = None) -> FactorSpace:
    return FactorSpace(orthonormal(seed=seed), default_factor_layout(), rotation)


def trajectory(B: int = 2, T: int = 40, seed: int = 1, dtype=torch.float64) -> torch.Tensor:
    """Smooth-ish random latents (B, T, W) with a component outside span(Q)."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.randn(B, T, W, generator=g, dtype=torch.float64) * 0.2
    return (torch.randn(B, 1, W, generator=g, dtype=torch.float64) + steps.cumsum(1)).to(dtype)


def assert_only_factor_changed(space: FactorSpace, before: torch.Tensor, after: torch.Tensor, factor: str,
                               atol: float = 1e-10) -> None:
    """Every other factor's coordinates and the orthogonal part are unchanged."""
    parts_b, perp_b = space.split(before)
    parts_a, perp_a = space.split(after)
    for name in space.layout.names:
        if name != factor:
            torch.testing.assert_close(parts_a[name], parts_b[name], atol=atol, rtol=0, msg=name)
    torch.testing.assert_close(perp_a, perp_b, atol=atol, rtol=0)
