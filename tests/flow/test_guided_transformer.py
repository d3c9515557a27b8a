"""GuidedFlowTransformer equals classifier-free guidance over the plain FlowTransformer call."""

from __future__ import annotations

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.flow.guidance import ClassifierFreeGuidance, PrefixDroppingVelocity
from demo_core.flow.guided_transformer import GuidedFlowTransformer, supports_guided_transformer
from demo_core.models.flow_transformer import FlowTransformer, FlowTransformerConfig


def _model(depth: int, prev: int, window: int) -> FlowTransformer:
    cfg = FlowTransformerConfig(dim_w=16, dim_a=16, dim_e=7, dim_h=32, depth=depth, num_heads=2, num_frames=12,
                                num_prev_frames=prev, attention_window=window)
    model = FlowTransformer(cfg).eval()
    g = torch.Generator().manual_seed(depth * 10 + prev)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "pos_embed":
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("depth, prev, window", [(3, 6, 1), (2, 10, 2), (4, 2, 3), (1, 0, 2)])
@pytest.mark.parametrize("scales", [(2.0, 1.0), (1.5, 1.3), (1.0, 1.0)])
@pytest.mark.parametrize("gemm", ["torch", "auto"])
def test_equals_classifier_free_guidance(depth, prev, window, scales, gemm):
    model = _model(depth, prev, window)
    g = torch.Generator().manual_seed(1)
    b, length = 2, 12
    x, prev_x = torch.randn(b, length, 16, generator=g), torch.randn(b, prev, 16, generator=g)
    wr, wa = torch.randn(b, 16, generator=g), torch.randn(b, length, 16, generator=g)
    we = torch.softmax(torch.randn(b, 1, 7, generator=g), dim=-1)
    reference = PrefixDroppingVelocity(ClassifierFreeGuidance(model, *scales))
    guided = GuidedFlowTransformer(model, *scales, gemm=gemm)
    for prev_wa in (torch.zeros(b, prev, 16), torch.randn(b, prev, 16, generator=g)):  # first / later windows
        t = torch.rand(1, generator=g)
        with torch.inference_mode():
            cond = guided.prepare(wr=wr, wa=wa, prev_wa=prev_wa, we=we)
            out = guided(x, t, prev_x=prev_x, condition=cond)
            ref = reference(x, t, prev_x=prev_x, wr=wr, wa=wa, prev_wa=prev_wa, we=we)
        assert out.shape == (b, length, 16)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        if scales != (1.0, 1.0) and prev:
            # unconditional frames share one condition row and its prefix equals the audio-only prefix
            assert cond.rows.shape[0] <= 2 * b * (prev + length) + b


def test_rejects_other_models_and_batched_times():
    with pytest.raises(DemoInputError):
        GuidedFlowTransformer(torch.nn.Linear(2, 2))
    model = _model(1, 2, 1)
    assert supports_guided_transformer(model)
    guided = GuidedFlowTransformer(model)
    cond = guided.prepare(wr=torch.zeros(1, 16), wa=torch.zeros(1, 12, 16), prev_wa=torch.zeros(1, 2, 16),
                          we=torch.zeros(1, 1, 7))
    with pytest.raises(DemoInputError, match="one time"):
        guided(torch.zeros(1, 12, 16), torch.zeros(2), prev_x=torch.zeros(1, 2, 16), condition=cond)
    with pytest.raises(DemoInputError, match="rows"):
        guided(torch.zeros(2, 12, 16), torch.zeros(1), prev_x=torch.zeros(2, 2, 16), condition=cond)
