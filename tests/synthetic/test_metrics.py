"""Benchmark metrics on inputs whose answers are known in closed form."""

from __future__ import annotations

import math

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.synthetic.metrics import (angle_error, block_purity, cross_correlation_lag, dci_scores,
                                         fit_linear_probe, leakage_ratio, motion_smoothness, pearson_correlation, psnr,
                                         r2_score)


def test_psnr_of_known_noise():
    target = torch.full((2, 3, 8, 8), 0.5)
    sign = torch.where(torch.arange(3 * 8 * 8).reshape(3, 8, 8) % 2 == 0, 1.0, -1.0)
    noisy = target + torch.stack([0.1 * sign, 0.01 * sign])  # MSE 1e-2 and 1e-4 exactly
    per_image = psnr(noisy, target, batch_dims=1)
    assert per_image.shape == (2,)
    assert torch.allclose(per_image, torch.tensor([20.0, 40.0]), atol=1e-4)
    assert math.isclose(float(psnr(noisy[:1] * 2 - 1, target[:1] * 2 - 1, data_range=2.0)), 20.0, abs_tol=1e-4)
    assert math.isinf(float(psnr(target, target)))
    with pytest.raises(DemoInputError):
        psnr(target, target[:1])


def test_pearson_correlation():
    x = torch.randn(50, generator=torch.Generator().manual_seed(0))
    assert math.isclose(float(pearson_correlation(x, 2 * x + 1)), 1.0, abs_tol=1e-6)
    assert math.isclose(float(pearson_correlation(x, -x)), -1.0, abs_tol=1e-6)
    assert math.isnan(float(pearson_correlation(x, torch.ones(50))))
    rows = pearson_correlation(torch.stack([x, x]), torch.stack([x, -x]))
    assert torch.allclose(rows, torch.tensor([1.0, -1.0]), atol=1e-6)


def _smooth_signal(n: int, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(n + 8, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.avg_pool1d(noise[None, None], 5, 1)[0, 0, :n]  # low-pass, no periodicity


def test_cross_correlation_lag_of_shifted_signals():
    s = _smooth_signal(120)
    x = s[10:110]
    late, early = s[7:107], s[13:113]  # late[t] = x[t - 3]; early[t] = x[t + 3]
    lag, r = cross_correlation_lag(x, late, 5)
    assert lag == 3 and r > 0.999
    assert cross_correlation_lag(x, early, 5)[0] == -3
    assert cross_correlation_lag(x, x, 5) == (0, pytest.approx(1.0))
    assert cross_correlation_lag(x, late, 2)[0] == 2  # the best lag within the window
    with pytest.raises(DemoInputError):
        cross_correlation_lag(x, late, 200)


@pytest.mark.parametrize("standardize_inputs", [True, False])
def test_linear_probe_recovers_a_known_map(standardize_inputs):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 5, generator=g) * torch.tensor([1.0, 0.1, 3.0, 0.5, 2.0]) + 4.0
    w = torch.randn(5, 3, generator=g)
    bias = torch.tensor([1.0, -2.0, 0.5])
    y = x @ w + bias
    probe = fit_linear_probe(x, y, ridge=0.0, standardize_inputs=standardize_inputs)
    assert torch.allclose(probe.weight, w.double(), atol=1e-6)
    assert torch.allclose(probe.bias, bias.double(), atol=1e-5)
    assert torch.allclose(probe.predict(x), y, atol=1e-4)
    assert torch.allclose(r2_score(probe.predict(x), y), torch.ones(3), atol=1e-6)
    assert probe.importance.shape == (5, 3) and bool((probe.importance >= 0).all())
    shrunk = fit_linear_probe(x, y, ridge=10.0, standardize_inputs=standardize_inputs)
    assert float(shrunk.weight_std.norm()) < float(probe.weight_std.norm())


def test_r2_score():
    y = torch.randn(30, 2, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(r2_score(y.mean(0).expand(30, 2), y), torch.zeros(2), atol=1e-6)
    assert torch.isnan(r2_score(y, torch.ones(30, 2))).all()


def test_block_purity_and_dci():
    blocks, targets = {"a": slice(0, 2), "b": [2]}, {"a": [0, 1], "b": [2]}
    diagonal = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 3.0]])
    assert block_purity(diagonal, blocks, targets) == {"a": 1.0, "b": 1.0}
    mixed = diagonal.clone()
    mixed[0, 2] = 3.5  # block a now spends 3.5 of its 7 on factor b
    purity = block_purity(mixed, blocks, targets)
    assert purity["a"] == pytest.approx(0.5) and purity["b"] == 1.0
    one_to_one = dci_scores(torch.eye(3), {"x": [0], "y": [1], "z": [2]})
    assert one_to_one["disentanglement"] == pytest.approx(1.0) and one_to_one["completeness"] == pytest.approx(1.0)
    uniform = dci_scores(torch.ones(3, 3), {"x": [0], "y": [1], "z": [2]})
    assert uniform["disentanglement"] == pytest.approx(0.0, abs=1e-9)
    assert uniform["completeness"] == pytest.approx(0.0, abs=1e-9)
    grouped = dci_scores(diagonal, targets)  # parameter columns summed per factor: still one factor per code
    assert grouped["disentanglement"] == pytest.approx(1.0)
    assert dci_scores(mixed, targets)["disentanglement"] < 1.0
    with pytest.raises(DemoInputError):
        block_purity(-diagonal, blocks, targets)


def test_leakage_smoothness_and_angles():
    assert float(leakage_ratio(0.1, 2.0)) == pytest.approx(0.05)
    assert math.isinf(float(leakage_ratio(0.1, 0.0)))
    t = torch.arange(10.0)
    traj = torch.stack([3 * t + 1, t**2], dim=1)  # (T, 2): straight line, constant acceleration 2
    assert torch.allclose(motion_smoothness(traj), torch.tensor([0.0, 4.0]))
    assert torch.allclose(motion_smoothness(traj.T, dim=-1), torch.tensor([0.0, 4.0]))
    assert float(angle_error(359.0, 1.0)) == pytest.approx(2.0)
    assert float(angle_error(-20.0, 10.0)) == pytest.approx(30.0)
    assert torch.allclose(angle_error(torch.tensor([180.0, 90.0]), 0.0), torch.tensor([180.0, 90.0], dtype=torch.float64))
    with pytest.raises(DemoInputError):
        motion_smoothness(traj[:2])
