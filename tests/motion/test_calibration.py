"""Calibration on an analytic renderer whose directions have known effects, and on a tiny auto-encoder."""

from __future__ import annotations

import math

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.motion.calibration import (
    assign_directions,
    calibrate_autoencoder,
    calibrate_factors,
    coefficient_steps,
    combine_responses,
    face_regions,
    fit_similarity,
    measure_directions,
    region_masks,
    score_directions,
)
from tests.motion.factor_helpers import orthonormal

W, M = 16, 12
TRUE = {"pose": [7, 2, 10], "lip": [0, 5, 9], "eyes": [3, 11], "residual": [1, 4, 6, 8]}


def _grid(n: int) -> torch.Tensor:
    lin = torch.linspace(-1, 1, n, dtype=torch.float64)
    return torch.stack(torch.meshgrid(lin, lin, indexing="xy"), dim=-1)  # (n, n, 2), channel 0 = x


def _gauss(p, cx, cy, sx, sy):
    return torch.exp(-0.5 * (((p[..., 0] - cx) / sx) ** 2 + ((p[..., 1] - cy) / sy) ** 2))


def _fields(p: torch.Tensor) -> torch.Tensor:
    """Content motion per unit coefficient of each role, (12, H, W, 2)."""
    x, y = p[..., 0], p[..., 1]
    zero = torch.zeros_like(x)
    mouth = _gauss(p, 0.0, 0.4, 0.18, 0.1)
    eyes = _gauss(p, -0.25, -0.2, 0.08, 0.06) + _gauss(p, 0.25, -0.2, 0.08, 0.06)
    corner = _gauss(p, 0.92, 0.92, 0.04, 0.04)
    role = {
        "tx": (zero + 0.1, zero), "ty": (zero, zero + 0.1), "rot": (-0.1 * y, 0.1 * x),
        "open": (zero, 0.3 * (y - 0.4) / 0.1 * mouth), "widen": (0.3 * x / 0.18 * mouth, zero),
        "pout": (zero, 0.2 * mouth), "gaze": (0.2 * eyes, zero), "lid": (zero, 0.2 * eyes),
        "corner": (0.3 * corner, 0.3 * corner), "none": (zero, zero),
    }
    f = {k: torch.stack(v, dim=-1) for k, v in role.items()}
    g = torch.Generator().manual_seed(4)
    mix = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))[0]  # lip directions mix shapes
    lips = [sum(mix[i, j] * f[s] for j, s in enumerate(("open", "widen", "pout"))) for i in range(3)]
    lips[0] = lips[0] + 0.02 * f["ty"]  # a little jaw-driven head motion
    out = [None] * M
    for i, s in zip(TRUE["pose"], ("tx", "ty", "rot")):
        out[i] = f[s]
    for i, v in zip(TRUE["lip"], lips):
        out[i] = v
    out[3], out[11] = f["gaze"], f["lid"]
    out[1], out[4], out[6], out[8] = f["none"], f["corner"], f["none"], f["none"]
    return torch.stack(out)


def _face(p: torch.Tensor) -> torch.Tensor:
    x, y = p[..., 0], p[..., 1]
    tex = 0.5 + 0.15 * torch.sin(9 * x) * torch.cos(7 * y) + 0.1 * torch.cos(13 * x + 5 * y)
    return tex - 0.4 * _gauss(p, 0, 0.4, 0.15, 0.05) - 0.4 * (_gauss(p, -0.25, -0.2, 0.05, 0.03)
                                                             + _gauss(p, 0.25, -0.2, 0.05, 0.03))


class AnalyticRenderer:
    """``g(p) = p − Σ_i λ_i·f_i(p)`` with λ = (latent − rest)·Q; images sample a textured face at g."""

    def __init__(self, Q, rest, flow_size=32, image_size=48, images=True):
        self.Q, self.rest, self.images = Q.double(), rest, images
        self.p_flow, self.p_img = _grid(flow_size), _grid(image_size)
        self.f_flow, self.f_img = _fields(self.p_flow), _fields(self.p_img)

    def __call__(self, latents):
        lam = (latents.double() - self.rest) @ self.Q  # (N, M)
        flow = self.p_flow - torch.einsum("nm,mhwc->nhwc", lam, self.f_flow)  # (N, h, w, 2)
        if not self.images:
            return None, flow
        g = self.p_img - torch.einsum("nm,mhwc->nhwc", lam, self.f_img)  # (N, H, W, 2)
        img = _face(g)[:, None].expand(-1, 3, -1, -1) * torch.tensor([1.0, 0.9, 0.8]).view(1, 3, 1, 1)
        return img + 0.05 * lam[:, 8].view(-1, 1, 1, 1), flow  # direction 8 only changes brightness


def _overlap(Q, cal, block, true_idx):
    cols = cal.layout.slices()[block]
    rec = Q.double() @ cal.rotation[:, cols]  # (W, k)
    true = Q.double()[:, true_idx]
    return float((true.T @ rec).pow(2).sum()) / len(true_idx)


@pytest.fixture(scope="module")
def setup():
    Q = orthonormal(W, M, seed=2, dtype=torch.float32)
    rest = torch.randn(W, generator=torch.Generator().manual_seed(3), dtype=torch.float32)
    return Q, rest


@pytest.mark.parametrize("images", [True, False])
def test_recovers_the_true_blocks(setup, images):
    Q, rest = setup
    cal = calibrate_factors(AnalyticRenderer(Q, rest.double(), images=images), rest, Q, batch_size=5)
    assert cal.layout.names == ("lip", "pose", "eyes", "residual")
    assert {k: sorted(v) for k, v in cal.directions.items()} == {k: sorted(v) for k, v in TRUE.items()}
    for block in ("pose", "lip", "eyes"):
        assert _overlap(Q, cal, block, TRUE[block]) >= 0.9, block
    R = cal.rotation
    torch.testing.assert_close(R.T @ R, torch.eye(M, dtype=torch.float64), atol=1e-10, rtol=0)
    pose = cal.layout.slices()["pose"].start
    # pose c0 moves the face horizontally (yaw-like), c1 vertically (pitch-like), c2 rotates it (roll)
    assert R[7, pose] > 0.99 and R[2, pose + 1] > 0.99 and R[10, pose + 2] > 0.99
    assert cal.scores.shape == (M, 4) and cal.source == "measured"


def test_sizes_force_the_block_sizes(setup):
    Q, rest = setup
    cal = calibrate_factors(AnalyticRenderer(Q, rest.double()), rest, Q, sizes={"pose": 3, "lip": 4, "eyes": 2})
    assert [b.size for b in cal.layout.blocks] == [4, 3, 2, 3]
    assert set(TRUE["lip"]) <= set(cal.directions["lip"]) and sorted(cal.directions["pose"]) == sorted(TRUE["pose"])
    with pytest.raises(DemoInputError, match="sizes"):
        assign_directions(cal.scores, sizes={"pose": 13})
    with pytest.raises(DemoInputError, match="'head'"):
        assign_directions(cal.scores, sizes={"head": 1})


def test_measurements_and_scores_have_the_expected_structure(setup):
    Q, rest = setup
    resp = measure_directions(AnalyticRenderer(Q, rest.double()), rest, Q, epsilon=0.25)
    # a pure translation is all rigid; its image-space motion per unit coefficient is +0.1 in x
    assert resp.flow_energy[7, 1:].sum() < 1e-8 * resp.flow_energy[7, 0]
    torch.testing.assert_close(resp.motion[7], torch.tensor([0.1, 0, 0, 0], dtype=torch.float64), atol=1e-6, rtol=0)
    assert resp.flow_energy[1].sum() < 1e-9 * resp.flow_energy[7].sum()  # a direction that does nothing
    # brightness: no flow, image change over the whole head (mostly outside mouth and eyes)
    assert resp.flow_energy[8].sum() < 1e-9 * resp.flow_energy[7].sum()
    assert resp.image_energy[8, 3] > 0.5 * resp.image_energy[8].sum() > 0
    scores = score_directions(resp)
    torch.testing.assert_close(scores.sum(1), torch.ones(M, dtype=torch.float64))
    assert scores[[1, 4, 6], 3].min() == 1.0  # nothing in the head: "other"
    with pytest.raises(DemoInputError, match="rest_latent"):
        measure_directions(AnalyticRenderer(Q, rest.double()), rest[:5], Q)
    with pytest.raises(DemoInputError, match="render_fn"):
        measure_directions(lambda x: x, rest, Q)
    with pytest.raises(DemoInputError, match="epsilon"):
        measure_directions(AnalyticRenderer(Q, rest.double()), rest, Q, epsilon=torch.ones(3))
    per_direction = measure_directions(AnalyticRenderer(Q, rest.double()), rest, Q, epsilon=torch.full((M,), 0.1))
    torch.testing.assert_close(per_direction.motion[7], resp.motion[7], atol=1e-6, rtol=0)  # linear renderer


def test_fit_similarity_recovers_a_known_transform():
    p = torch.randn(1, 50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    s, th, t = 1.1, 0.3, torch.tensor([0.2, -0.1], dtype=torch.float64)
    A = s * torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]], dtype=torch.float64)
    S = fit_similarity(p, p @ A.T + t)
    torch.testing.assert_close(S[0, :2, :2], A)
    torch.testing.assert_close(S[0, :2, 2], t)


def test_regions_follow_the_face_framing():
    r = face_regions(1.6)
    assert r.mouth[1] > r.eyes[3] and r.head[0] == pytest.approx(-1.15 / 1.6)
    masks = region_masks(r, 64, 64)
    assert masks.shape == (4, 64, 64)
    assert not (masks[1] & masks[2]).any() and torch.equal(masks[3], masks[0] & ~masks[1] & ~masks[2])
    with pytest.raises(DemoInputError, match="face_scale"):
        face_regions(0.5)


def test_calibrate_a_tiny_motion_autoencoder():
    from demo_core.models.motion_autoencoder import MotionAutoEncoder, MotionAutoEncoderConfig

    torch.manual_seed(0)  # parameter initialisation only
    mae = MotionAutoEncoder(MotionAutoEncoderConfig(size=64, dim_w=8, dim_m=4,
                                                    channels={r: 4 for r in (4, 8, 16, 32, 64)})).eval()
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        h, lam, feats = mae.encode(image)
    cal = calibrate_autoencoder(mae, h, feats, mae.motion_from_coefficients(lam), epsilon=1.0)
    assert cal.layout.total == 4 and sorted(i for v in cal.directions.values() for i in v) == list(range(4))
    torch.testing.assert_close(cal.rotation.T @ cal.rotation, torch.eye(4, dtype=torch.float64), atol=1e-8, rtol=0)
    assert cal.space(mae.directions().detach()).basis.shape == (8, 4)
    assert torch.isfinite(cal.scores).all() and cal.settings["epsilon"] == [1.0] * 4
    two = torch.cat([image, image.flip(-1)])  # a batch of portraits: each measured, effects averaged
    with torch.no_grad():
        h2, lam2, feats2 = mae.encode(two)
        motion2 = mae.motion_from_coefficients(lam2)
    cal2 = calibrate_autoencoder(mae, h2, feats2, motion2, epsilon=1.0)
    assert cal2.settings["portraits"] == 2 and torch.isfinite(cal2.scores).all()
    first = calibrate_autoencoder(mae, h2[:1], [f[:1] for f in feats2], motion2[:1], epsilon=1.0)
    torch.testing.assert_close(first.scores, cal.scores, atol=1e-3, rtol=0)  # the first alone: as above
    with pytest.raises(DemoInputError, match="source_motion, feats: expected 2 portraits"):
        calibrate_autoencoder(mae, h2, feats2, motion2[:1], epsilon=1.0)


class _TurnRenderer:
    """Two directions on a flow grid only: 0 turns the head out of the image plane (features shift by their
    depth, a dome: not a similarity), 1 opens the mouth."""

    def __init__(self, Q, rest, n=32):
        self.Q, self.rest, self.p = Q.double(), rest, _grid(n)
        x, y = self.p[..., 0], self.p[..., 1]
        depth = 1.0 - 1.5 * (x**2 + y**2)  # the face front moves most, its outline least
        zero = torch.zeros_like(x)
        mouth = _gauss(self.p, 0.0, 0.4, 0.18, 0.1)
        self.f = torch.stack([torch.stack([0.1 * depth, zero], -1),
                              torch.stack([zero, 0.3 * (y - 0.4) / 0.1 * mouth], -1)])  # (2, n, n, 2)

    def __call__(self, latents):
        lam = (latents.double() - self.rest) @ self.Q  # (N, 2)
        return None, self.p - torch.einsum("nm,mhwc->nhwc", lam, self.f)


def test_a_turn_out_of_the_image_plane_is_head_motion():
    Q = orthonormal(6, 2, seed=5, dtype=torch.float64)
    rest = torch.zeros(6, dtype=torch.float64)
    render = _TurnRenderer(Q, rest)
    quad = measure_directions(render, rest, Q, epsilon=0.2)
    sim = measure_directions(render, rest, Q, epsilon=0.2, head_model="similarity")
    share = lambda r, i, k: float(r.flow_energy[i, k] / r.flow_energy[i].sum())  # noqa: E731
    assert share(quad, 0, 0) > 0.99  # the quadratic head field holds the turn
    assert share(sim, 0, 0) < 0.7 and share(sim, 0, 2) + share(sim, 0, 3) > 0.2  # a similarity leaves depth shifts
    assert share(quad, 1, 1) > 0.8 and share(quad, 1, 0) < 0.1  # the mouth stays the mouth's
    cal = calibrate_factors(render, rest, Q)
    assert cal.directions["pose"] == [0] and cal.directions["lip"] == [1]
    assert cal.settings["head_model"] == "quadratic"
    with pytest.raises(DemoInputError, match="head_model"):
        measure_directions(render, rest, Q, head_model="affine")


class _ScaledRenderer(AnalyticRenderer):
    """The analytic renderer with direction 9 (a lip shape) rendered at ``gain`` (default 1 %) per unit
    coefficient: a direction the motion swings a hundred times wider than the others, or (gain 0) a face on
    which it does not show."""

    def __init__(self, Q, rest, gain=0.01, **kwargs):
        super().__init__(Q, rest, **kwargs)
        self.gain = gain

    def __call__(self, latents):
        moved = (latents.double() - self.rest) @ self.Q  # (N, M)
        moved[:, 9] *= self.gain
        return super().__call__(self.rest + moved @ self.Q.T)


def test_per_direction_steps_judge_a_direction_at_the_size_it_moves(setup):
    Q, rest = setup
    render = _ScaledRenderer(Q, rest.double())
    one_step = calibrate_factors(render, rest, Q, epsilon=0.5)
    assert 9 in one_step.directions["residual"]  # 1e-4 of a lip shape's energy per unit: below min_energy
    # coefficients of real motion: direction 9 swings 100x wider than the rest
    lam = torch.randn(400, M, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 0.25
    lam[:, 9] *= 100.0
    steps = coefficient_steps(lam, scale=2.0, floor=0.001)
    torch.testing.assert_close(steps, 2.0 * lam.std(dim=0))
    measured = calibrate_factors(render, rest, Q, epsilon=steps)
    assert {k: sorted(v) for k, v in measured.directions.items()} == {k: sorted(v) for k, v in TRUE.items()}
    assert measured.settings["epsilon"] == steps.tolist()
    # the step's energy decides: direction 9 stepped 100x further scores as the unscaled renderer's at 1x
    plain = steps.clone()
    plain[9] /= 100
    torch.testing.assert_close(score_directions(measure_directions(render, rest, Q, epsilon=steps)),
                               score_directions(measure_directions(AnalyticRenderer(Q, rest.double()), rest, Q,
                                                                   epsilon=plain)), atol=1e-6, rtol=0)


def test_coefficient_steps_floor_and_refusals():
    lam = torch.zeros(10, 2, 3)  # leading dimensions are frames
    lam[:, :, 0] = torch.arange(20.0).reshape(10, 2)
    steps = coefficient_steps(lam, floor=0.1)
    std = float(torch.arange(20.0).std())
    torch.testing.assert_close(steps, torch.tensor([std, 0.1 * std, 0.1 * std], dtype=torch.float64))
    for bad, match in ((torch.zeros(5), "coefficients"), (torch.zeros(1, 4), "at least 2 frames"),
                       (torch.full((3, 2), float("nan")), "NaN"), (torch.zeros(6, 2), "does not move")):
        with pytest.raises(DemoInputError, match=match):
            coefficient_steps(bad)
    for kwargs in ({"scale": 0.0}, {"floor": 0.0}, {"floor": 1.5}, {"scale": True}):
        with pytest.raises(DemoInputError, match=next(iter(kwargs))):
            coefficient_steps(lam, **kwargs)


def test_several_portraits_are_measured_and_averaged(setup):
    Q, rest = setup
    blind = _ScaledRenderer(Q, rest.double(), gain=0.0)  # a face on which lip direction 9 does not show
    alone = calibrate_factors(blind, rest, Q)
    assert 9 in alone.directions["residual"] and alone.settings["portraits"] == 1
    other_rest = rest + 0.1 * Q[:, 0]
    both = calibrate_factors([blind, AnalyticRenderer(Q, other_rest.double())], torch.stack([rest, other_rest]), Q)
    assert {k: sorted(v) for k, v in both.directions.items()} == {k: sorted(v) for k, v in TRUE.items()}
    assert both.settings["portraits"] == 2
    a = measure_directions(blind, rest, Q)
    b = measure_directions(AnalyticRenderer(Q, other_rest.double()), other_rest, Q)
    c = combine_responses([a, b])
    torch.testing.assert_close(c.flow_energy, (a.flow_energy + b.flow_energy) / 2)
    torch.testing.assert_close(c.image_energy, (a.image_energy + b.image_energy) / 2)
    torch.testing.assert_close(c.motion, (a.motion + b.motion) / 2)
    assert c.mouth_flow.shape == (M, 2 * a.mouth_flow.shape[1]) and combine_responses([a]) is a
    with pytest.raises(DemoInputError, match="different steps"):
        combine_responses([a, measure_directions(blind, rest, Q, epsilon=0.3)])
    with pytest.raises(DemoInputError, match="with images and some without"):
        combine_responses([a, measure_directions(AnalyticRenderer(Q, rest.double(), images=False), rest, Q)])
    with pytest.raises(DemoInputError, match="responses"):
        combine_responses([])
    with pytest.raises(DemoInputError, match=r"rest_latent: expected one latent per renderer \(2, W\)"):
        calibrate_factors([blind, blind], rest, Q)
    with pytest.raises(DemoInputError, match="rest_latent"):
        calibrate_factors(blind, torch.stack([rest, rest]), Q)
