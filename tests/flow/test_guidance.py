"""ClassifierFreeGuidance and PrefixDroppingVelocity on a toy windowed model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from demo_core.errors import DemoInputError
from demo_core.flow.guidance import ClassifierFreeGuidance, PrefixDroppingVelocity, combine_guidance
from demo_core.models.flow_transformer import FlowTransformer, FlowTransformerConfig

B, P, L, W, E = 2, 3, 5, 4, 7


class ToyModel(nn.Module):
    """Nonlinear in every condition; records the inputs of every call."""

    def __init__(self):
        super().__init__()
        self.calls: list[dict] = []

    def forward(self, x, t, *, prev_x, wr, wa, prev_wa, we):
        self.calls.append(dict(x=x, t=t, prev_x=prev_x, wr=wr, wa=wa, prev_wa=prev_wa, we=we))
        seq = torch.cat([prev_x, x], dim=1)  # (B, N, W)
        audio = torch.cat([prev_wa, wa], dim=1)  # (B, N, W)
        return seq * (1 + t.reshape(-1, 1, 1)) + torch.tanh(audio) ** 2 + wr[:, None] * we.sum(-1, keepdim=True) ** 2


def make_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return r(B, L, W), torch.tensor([0.4]), dict(prev_x=r(B, P, W), wr=r(B, W), wa=r(B, L, W), prev_wa=r(B, P, W), we=r(B, 1, E))


def test_all_scales_one_is_a_plain_call():
    model = ToyModel()
    x, t, cond = make_inputs()
    out = ClassifierFreeGuidance(model, 1.0, 1.0, 1.0)(x, t, **cond)
    assert len(model.calls) == 1 and model.calls[0]["x"].shape[0] == B
    torch.testing.assert_close(out, ToyModel()(x, t, **cond), atol=0, rtol=0)


@pytest.mark.parametrize("a,e,r", [(2.0, 1.0, 1.0), (1.5, 1.3, 1.0), (1.0, 1.0, 3.0)])
def test_guidance_formula_with_one_batched_call(a, e, r):
    model = ToyModel()
    x, t, cond = make_inputs(1)
    out = ClassifierFreeGuidance(model, a, e, r)(x, t, **cond)
    assert len(model.calls) == 1
    call = model.calls[0]
    assert call["x"].shape[0] == 3 * B
    for name in ("x", "prev_x", "wr", "prev_wa"):  # identical in the three groups, prefix audio not zeroed
        for g in range(3):
            assert torch.equal(call[name][g * B : (g + 1) * B], (x if name == "x" else cond[name]))
    ref = ToyModel()
    zero_wa, zero_we = torch.zeros_like(cond["wa"]), torch.zeros_like(cond["we"])
    u = ref(x, t, **{**cond, "wa": zero_wa, "we": zero_we})
    c = ref(x, t, **cond)
    ao = ref(x, t, **{**cond, "we": zero_we})
    expected = u + a * (ao - u) + e * (c - ao)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(combine_guidance(u, c, ao, a, e), expected)
    if a == 1.0 and e == 1.0:  # r_cfg alone only switches the branch on: result equals the full condition
        torch.testing.assert_close(out, c)


def test_per_sample_time_is_repeated_over_groups():
    model = ToyModel()
    x, _, cond = make_inputs(2)
    t = torch.tensor([0.2, 0.9])
    out = ClassifierFreeGuidance(model, 2.0)(x, t, **cond)
    assert model.calls[0]["t"].tolist() == pytest.approx([0.2, 0.9] * 3)
    ref = ToyModel()
    u = ref(x, t, **{**cond, "wa": torch.zeros_like(cond["wa"]), "we": torch.zeros_like(cond["we"])})
    ao = ref(x, t, **{**cond, "we": torch.zeros_like(cond["we"])})
    torch.testing.assert_close(out, u + 2.0 * (ao - u) + (ref(x, t, **cond) - ao))


def test_precomputed_embedding_equals_direct_call():
    torch.manual_seed(0)
    cfg = FlowTransformerConfig(dim_w=W, dim_a=W, dim_e=E, dim_h=8, depth=1, num_heads=2, num_frames=L, num_prev_frames=P)
    fmt = FlowTransformer(cfg)
    with torch.no_grad():
        for p in fmt.parameters():
            if p.requires_grad:
                p.normal_(0, 0.3)
    x, t, cond = make_inputs(3)
    guided = ClassifierFreeGuidance(fmt, 1.7, 0.6)
    emb = guided.embed_condition(**{k: cond[k] for k in ("wr", "wa", "prev_wa", "we")})
    assert emb.shape == (3 * B, P + L, 8)
    torch.testing.assert_close(guided(x, t, prev_x=cond["prev_x"], cond_embedding=emb), guided(x, t, **cond))
    with pytest.raises(DemoInputError, match="cond_embedding"):
        guided(x, t, prev_x=cond["prev_x"], cond_embedding=emb[:B])
    with pytest.raises(DemoInputError, match="embed_condition"):
        ClassifierFreeGuidance(ToyModel()).embed_condition(**{k: cond[k] for k in ("wr", "wa", "prev_wa", "we")})


def test_prefix_dropping_velocity():
    model = ToyModel()
    x, t, cond = make_inputs(4)
    out = PrefixDroppingVelocity(ClassifierFreeGuidance(model, 2.0))(x, t, **cond)
    assert out.shape == x.shape
    full = ClassifierFreeGuidance(ToyModel(), 2.0)(x, t, **cond)
    torch.testing.assert_close(out, full[:, P:])
    bad = PrefixDroppingVelocity(lambda x, t, prev_x: x)
    with pytest.raises(DemoInputError, match="frames"):
        bad(x, t, prev_x=cond["prev_x"])
