"""Factor-conditioned sampling: fixed factors follow the track exactly, free factors come from the model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from demo_core.errors import DemoInputError
from demo_core.flow.window_sampler import SamplerSettings, iter_motion_windows, sample_motion
from demo_core.models.flow_transformer import FlowTransformer, FlowTransformerConfig
from demo_core.motion.conditioning import FactorConditioning, sample_motion_conditioned
from demo_core.motion.factors import default_factor_layout
from tests.motion.factor_helpers import W, make_space, orthonormal, trajectory

LAYOUT = default_factor_layout()
B, T, L, P, E = 2, 20, 8, 2, 3  # 3 windows, the last one 4 frames long


class ToyVelocity(nn.Module):
    """``v = (c − x)`` row by row with ``c`` read from the audio: linear and the same for every coordinate."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = FlowTransformerConfig(dim_w=W, dim_a=W, dim_e=E, dim_h=8, depth=1, num_heads=2,
                                         num_frames=L, num_prev_frames=P)

    def embed_condition(self, *, wr, wa, prev_wa, we):
        return torch.cat([prev_wa, wa], dim=1) + wr[:, None, :] + we.reshape(we.shape[0], 1, -1).sum(-1, keepdim=True)

    def forward(self, x, t, *, prev_x, cond_embedding):
        return cond_embedding - torch.cat([prev_x, x], dim=1)  # (B, P + L, W)


def conditions(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"wr": torch.randn(B, W, generator=g, dtype=dtype), "wa": torch.randn(B, T, W, generator=g, dtype=dtype),
            "we": torch.randn(B, 1, E, generator=g, dtype=dtype)}


def run(model, fixed, settings, seed=5, dtype=torch.float64, cond_seed=0, record=None):
    gen = torch.Generator().manual_seed(seed)
    cond = conditions(dtype, cond_seed)
    if fixed is None:
        return sample_motion(model, **cond, settings=settings, generator=gen, record=record)
    return sample_motion_conditioned(model, **cond, settings=settings, fixed=fixed, Q=orthonormal(dtype=dtype),
                                     layout=LAYOUT, generator=gen, record=record)


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_fixed_factors_are_reproduced_and_free_ones_untouched_for_a_separable_model(method):
    space, model = make_space(), ToyVelocity()
    settings = SamplerSettings(steps=4, method=method, a_cfg=2.0, e_cfg=1.5)
    pose, gaze = trajectory(B=B, T=T, seed=11), trajectory(B=1, T=T, seed=12) @ space.dictionary  # latents, λ
    free = run(model, None, settings)
    record: dict = {}
    fixed = run(model, {"pose": pose, "gaze": gaze}, settings, record=record)
    torch.testing.assert_close(space.factor_coordinates(fixed, "pose"), space.factor_coordinates(pose, "pose"),
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(space.factor_coordinates(fixed, "gaze"), gaze[..., 12:14].expand(B, -1, -1),
                               atol=1e-12, rtol=0)
    # this model moves every coordinate on its own, so the free factors equal unconditioned sampling's
    for factor in ("lip", "blink", "residual"):
        torch.testing.assert_close(space.factor_coordinates(fixed, factor), space.factor_coordinates(free, factor),
                                   atol=1e-12, rtol=0)
    torch.testing.assert_close(space.orthogonal_part(fixed), space.orthogonal_part(free), atol=1e-12, rtol=0)
    # every intermediate state has the fixed coordinates on the straight noise → target path
    grid, x0 = record["time_grid"].double(), record["chunk1.x0"]
    target = space.factor_coordinates(pose, "pose")[:, L : 2 * L]
    for i, t in enumerate(grid):
        on_path = (1 - t) * space.factor_coordinates(x0, "pose") + t * target
        torch.testing.assert_close(space.factor_coordinates(record["chunk1.trajectory"][i], "pose"), on_path,
                                   atol=1e-12, rtol=0)


def tiny_transformer(seed: int = 0) -> FlowTransformer:
    cfg = FlowTransformerConfig(dim_w=W, dim_a=W, dim_e=E, dim_h=16, depth=1, num_heads=2, num_frames=L,
                                num_prev_frames=P)
    model = FlowTransformer(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and not p.any():  # the zero-initialised adaLN and output layers
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def test_tiny_flow_transformer_fixed_exact_free_from_audio():
    space, model = make_space(), tiny_transformer()
    settings = SamplerSettings(steps=3)
    head = trajectory(B=1, T=T, seed=13, dtype=torch.float32)
    fixed = {"pose": head, "blink": torch.full((1, T, 1), 0.2)}
    a = run(model, fixed, settings, dtype=torch.float32).double()
    torch.testing.assert_close(space.factor_coordinates(a, "pose"),
                               space.factor_coordinates(head.double(), "pose").expand(B, -1, -1), atol=1e-5, rtol=0)
    torch.testing.assert_close(space.factor_coordinates(a, "blink"), torch.full((B, T, 1), 0.2, dtype=torch.float64),
                               atol=1e-5, rtol=0)
    # the free factors still follow the audio: other audio, same noise → other lips, same fixed pose
    b = run(model, fixed, settings, dtype=torch.float32, cond_seed=1).double()
    torch.testing.assert_close(space.factor_coordinates(b, "pose"), space.factor_coordinates(a, "pose"),
                               atol=1e-5, rtol=0)
    assert (space.factor_coordinates(b, "lip") - space.factor_coordinates(a, "lip")).abs().max() > 1e-2
    # and the model sees the constraint: free factors differ from unconditioned sampling with the same noise
    free = run(model, None, settings, dtype=torch.float32).double()
    assert (space.factor_coordinates(free, "lip") - space.factor_coordinates(a, "lip")).abs().max() > 1e-3
    assert torch.isfinite(a).all()


def test_streaming_with_factor_conditioning_and_input_checks():
    space, model = make_space(), ToyVelocity()
    cond = conditions()
    target = torch.zeros(B, T, 2, dtype=torch.float64)  # gaze coordinates: look at the camera
    fc = FactorConditioning(space, {"gaze": target}, window_length=L, batch=B, num_frames=T,
                            generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    windows = list(iter_motion_windows(model, **cond, settings=SamplerSettings(steps=2), noise=fc.noise,
                                       step_hook=fc.step_hook))
    assert [w.shape[1] for w in windows] == [8, 8, 4] and sorted(fc.x0) == [0, 1, 2]
    assert space.factor_coordinates(torch.cat(windows, 1), "gaze").abs().max() < 1e-12
    with pytest.raises(DemoInputError, match="no recorded noise"):
        FactorConditioning(space, {}, window_length=L, batch=B, num_frames=T).step_hook(
            torch.zeros(B, L, W), torch.ones(1), 0)
    with pytest.raises(DemoInputError, match=r"fixed\['pose'\]"):
        run(model, {"pose": trajectory(B=B, T=T - 1)}, SamplerSettings(steps=1))
    with pytest.raises(DemoInputError, match="unknown factor 'head'"):
        run(model, {"head": trajectory(B=B, T=T)}, SamplerSettings(steps=1))
    with pytest.raises(DemoInputError, match="Q: expected 32 rows"):
        sample_motion_conditioned(model, **cond, fixed={}, Q=orthonormal(w=40), layout=LAYOUT)
