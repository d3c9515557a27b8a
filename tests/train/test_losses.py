"""Training losses checked against their maths."""

from __future__ import annotations

import math

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.train.losses import (
    condition_keep_mask,
    decorrelation_loss,
    flow_matching_loss,
    gaussian_kl_loss,
    gaze_direction,
    info_nce_loss,
    masked_label_loss,
    reconstruction_loss,
)


def test_info_nce_is_minimal_for_aligned_pairs():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 8, generator=g)
    b = a + 0.05 * torch.randn(16, 8, generator=g)
    aligned = info_nce_loss(a, b, 0.1)
    for seed in range(5):
        perm = torch.randperm(16, generator=torch.Generator().manual_seed(seed))
        assert aligned < info_nce_loss(a, b[perm], 0.1)
    eye = torch.eye(8)
    assert float(info_nce_loss(eye, eye, 0.01)) < 1e-6  # orthogonal positives, cold temperature → 0
    same = torch.ones(8, 4)
    assert float(info_nce_loss(same, same, 0.1)) == pytest.approx(math.log(8), rel=1e-6)  # no information
    b_sym = info_nce_loss(a, b, 0.2)
    assert torch.allclose(b_sym, info_nce_loss(b, a, 0.2))  # bidirectional
    with pytest.raises(DemoInputError):
        info_nce_loss(a, b, 0.0)


def test_decorrelation_zero_for_uncorrelated_blocks_and_one_for_copies():
    n, sizes = 64, [3, 2, 4]
    raw = torch.randn(n, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    raw = raw - raw.mean(0)
    q, _ = torch.linalg.qr(raw)  # 9 orthonormal, zero-mean columns: exactly uncorrelated in the sample
    assert float(decorrelation_loss(q * torch.linspace(1, 5, 9, dtype=torch.float64), sizes)) < 1e-20
    within = q.clone()
    within[:, 1] = 2 * within[:, 0]  # correlation inside one block is allowed
    assert float(decorrelation_loss(within, sizes)) < 1e-20
    copies = 8 * q[:, :1].expand(n, 9)  # unit spread (above the floor)
    assert float(decorrelation_loss(copies, sizes)) == pytest.approx(1.0, rel=1e-4)
    # Below the floor (0.05) the term is a covariance penalty: shrinking a block to a constant is no longer a
    # cheap way to decorrelate it. Spread 0.01 → (0.01 / 0.05)⁴ of the full correlation.
    tiny = copies * (0.01 / 1.0)
    assert float(decorrelation_loss(tiny, sizes)) == pytest.approx((0.01 / 0.05) ** 4, rel=1e-3)
    leak = q.clone()
    leak[:, 3] = q[:, 0]  # one coefficient of block 2 copies one of block 1
    assert float(decorrelation_loss(leak, sizes)) > 0.01


def test_kl_masked_label_losses_and_keep_mask():
    assert float(gaussian_kl_loss(torch.zeros(4, 3), torch.zeros(4, 3))) == 0.0
    mean, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]])
    expected = 0.5 * (1.0 + (2.0 - 1.0 - math.log(2.0)))
    assert float(gaussian_kl_loss(mean, logvar)) == pytest.approx(expected)
    pred, target = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 0.0, 0.0])
    assert float(masked_label_loss(pred, target, torch.tensor([True, False, True]))) == pytest.approx(2.0)
    assert float(masked_label_loss(pred, target, torch.zeros(3, dtype=torch.bool))) == 0.0
    assert float(masked_label_loss(pred, target, torch.tensor([True, False, True]), "mse")) == pytest.approx(5.0)
    with pytest.raises(DemoInputError, match="kind"):
        masked_label_loss(pred, target, torch.ones(3, dtype=torch.bool), "huber")
    m1 = condition_keep_mask(10000, 0.25, torch.Generator().manual_seed(2))
    assert torch.equal(m1, condition_keep_mask(10000, 0.25, torch.Generator().manual_seed(2)))
    assert float(m1.mean()) == pytest.approx(0.75, abs=0.02)


def test_gaze_direction_is_a_unit_vector_facing_the_camera_at_zero():
    d = gaze_direction(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, -1.0]]))
    assert torch.allclose(d.norm(dim=-1), torch.ones(3))
    assert torch.allclose(d[0], torch.tensor([0.0, 0.0, 1.0]))
    assert float(d[1] @ d[0]) == pytest.approx(math.cos(math.pi / 4))


def test_reconstruction_loss_zero_for_identical_frames():
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    loss, parts = reconstruction_loss(x, x)
    assert float(loss) < 1e-6 and float(parts["l1"]) == 0.0
    worse, _ = reconstruction_loss(x, -x)
    assert float(worse) > 0.5


def test_flow_matching_loss_zero_for_the_exact_velocity_and_ignores_the_prefix():
    g = torch.Generator().manual_seed(3)
    x_0, x_1 = torch.randn(4, 6, 5, generator=g), torch.randn(4, 6, 5, generator=g)
    prev_x = torch.randn(4, 2, 5, generator=g)

    def oracle(x_t, t, *, prev_x, wa):
        v = (x_1 - x_t) / (1 - t.view(-1, 1, 1))  # the conditional OT velocity at x_t
        return torch.cat([torch.full_like(prev_x, 99.0), v + 0 * wa], dim=1)  # (B, P + L, W), junk prefix

    t = torch.rand(4, generator=g) * 0.9
    assert float(flow_matching_loss(oracle, x_0, x_1, t, prev_x=prev_x, wa=torch.zeros(1))) < 1e-10
    zero = lambda x_t, t, *, prev_x: torch.zeros(4, 8, 5)  # noqa: E731
    assert float(flow_matching_loss(zero, x_0, x_1, t, prev_x=prev_x)) == pytest.approx(float(((x_1 - x_0) ** 2).mean()))


def test_flow_matching_loss_in_a_subspace_ignores_the_orthogonal_complement():
    g = torch.Generator().manual_seed(4)
    Q, _ = torch.linalg.qr(torch.randn(5, 2, generator=g))
    x_0, x_1 = torch.randn(3, 4, 2, generator=g) @ Q.T, torch.randn(3, 4, 2, generator=g) @ Q.T
    prev_x = torch.zeros(3, 1, 5)
    t = torch.rand(3, generator=g) * 0.9
    off = torch.randn(3, 5, 5, generator=g)
    off = off - (off @ Q) @ Q.T  # orthogonal to span(Q)

    def oracle_plus_junk(x_t, t, *, prev_x):
        v = (x_1 - x_t) / (1 - t.view(-1, 1, 1))
        return torch.cat([prev_x, v], dim=1) + off

    assert float(flow_matching_loss(oracle_plus_junk, x_0, x_1, t, prev_x=prev_x, basis=Q)) < 1e-10
    assert float(flow_matching_loss(oracle_plus_junk, x_0, x_1, t, prev_x=prev_x)) > 0.1


def test_flow_matching_loss_in_units_of_the_coordinate_scale():
    g = torch.Generator().manual_seed(5)
    Q, _ = torch.linalg.qr(torch.randn(6, 2, generator=g))
    x_0, x_1 = torch.randn(2, 3, 2, generator=g) @ Q.T, torch.randn(2, 3, 2, generator=g) @ Q.T
    t = torch.rand(2, generator=g) * 0.9
    scale = torch.tensor([0.1, 2.0])
    err = torch.tensor([0.3, 0.3])  # the same velocity error on both coordinates

    def off_by_err(x_t, t, *, prev_x):
        v = (x_1 - x_t) / (1 - t.view(-1, 1, 1))
        return torch.cat([prev_x, v + err @ Q.T], dim=1)

    prev_x = torch.zeros(2, 1, 6)
    got = float(flow_matching_loss(off_by_err, x_0, x_1, t, prev_x=prev_x, basis=Q, scale=scale))
    assert got == pytest.approx(float(((err / scale) ** 2).mean()), rel=1e-4)


def test_region_weighted_reconstruction_counts_region_errors_more():
    g = torch.Generator().manual_seed(5)
    target = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    region = torch.zeros(2, 1, 16, 16)
    region[:, :, 4:8, 4:8] = 1.0
    inside, outside = target.clone(), target.clone()
    inside[:, :, 4:8, 4:8] += 0.5
    outside[:, :, 10:14, 10:14] += 0.5
    kw = dict(scales=(1,), ssim_weight=0.0)
    plain_in, parts = reconstruction_loss(inside, target, **kw, region=region, region_weight=0.0)
    plain_out, _ = reconstruction_loss(outside, target, **kw)
    assert float(plain_in) == pytest.approx(float(plain_out)) and float(parts["l1_region"]) == 0.0
    w_in, parts = reconstruction_loss(inside, target, **kw, region=region, region_weight=9.0)
    w_out, _ = reconstruction_loss(outside, target, **kw, region=region, region_weight=9.0)
    assert float(w_in) == pytest.approx(10.0 * float(plain_in), rel=1e-5)  # 1 + 9 on every wrong pixel
    assert float(w_out) == pytest.approx(float(plain_out), rel=1e-5)  # errors outside count once
    assert float(parts["l1_region"]) == pytest.approx(0.5, rel=1e-5)  # mean error of the region pixels
    assert float(parts["l1"]) == pytest.approx(float(plain_in), rel=1e-5)  # reported unweighted
    multi, _ = reconstruction_loss(inside, target, scales=(1, 2, 4), ssim_weight=0.0, region=region, region_weight=9.0)
    assert float(multi) > float(reconstruction_loss(inside, target, scales=(1, 2, 4), ssim_weight=0.0)[0])
    with pytest.raises(DemoInputError, match="region"):
        reconstruction_loss(inside, target, region=region[:, :, :8], region_weight=1.0)
