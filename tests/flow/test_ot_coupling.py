"""Minibatch OT coupling: recovers known permutations, is optimal and keeps conditions with their data."""

from __future__ import annotations

import itertools

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.flow.ot_coupling import MinibatchOTCoupling


def test_recovers_a_known_permutation_and_moves_conditions_with_the_data():
    g = torch.Generator().manual_seed(0)
    x_0 = torch.randn(8, 5, 3, generator=g) * 10
    perm = torch.randperm(8, generator=g)
    x_1 = x_0[perm] + 0.01 * torch.randn(8, 5, 3, generator=g)  # x_1[j] is a slightly moved x_0[perm[j]]
    label = torch.arange(8) * 100  # a condition that names each data sample
    wa = x_1.sum(dim=(1, 2))  # a condition computed from the data itself
    coupling = MinibatchOTCoupling()
    sigma = coupling.plan(x_0, x_1)
    assert torch.equal(perm[sigma], torch.arange(8))  # x_0[i] is paired with the x_1 row made from it
    out_0, out_1, cond = coupling.couple(x_0, x_1, {"label": label, "wa": wa})
    assert torch.equal(out_0, x_0)
    assert torch.allclose(out_1, x_0, atol=0.1)
    assert torch.equal(cond["label"], label[sigma])
    assert torch.allclose(cond["wa"], out_1.sum(dim=(1, 2)))  # every condition still belongs to its sample


def test_plan_is_optimal_and_deterministic():
    g = torch.Generator().manual_seed(3)
    x_0, x_1 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    coupling = MinibatchOTCoupling()
    sigma = coupling.plan(x_0, x_1)
    assert torch.equal(sigma, coupling.plan(x_0, x_1))
    assert sorted(sigma.tolist()) == list(range(6))
    cost = lambda p: float(((x_0 - x_1[list(p)]) ** 2).sum())  # noqa: E731
    best = min(cost(p) for p in itertools.permutations(range(6)))
    assert cost(sigma.tolist()) == pytest.approx(best)


def test_bad_inputs_raise():
    coupling = MinibatchOTCoupling()
    with pytest.raises(DemoInputError, match="one shape"):
        coupling.plan(torch.randn(3, 2), torch.randn(4, 2))
    with pytest.raises(DemoInputError, match="batch size"):
        coupling.couple(torch.randn(3, 2), torch.randn(3, 2), {"c": torch.randn(2)})
    with pytest.raises(DemoInputError, match="NaN"):
        coupling.plan(torch.full((2, 2), float("nan")), torch.randn(2, 2))
