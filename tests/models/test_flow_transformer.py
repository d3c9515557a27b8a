"""FlowTransformer: state-dict compatibility with FLOAT's ``fmt.`` and numerical equality with tiny/fmt."""

from __future__ import annotations

import json

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.flow.guidance import ClassifierFreeGuidance
from demo_core.models.flow_transformer import (
    FlowTransformer,
    FlowTransformerConfig,
    band_attention_mask,
    sinusoidal_position_embedding,
)
from tests.conftest import FLOAT_REF, assert_close_ref, load_fixture, require_shared


def fmt_config_from_options(o: dict) -> FlowTransformerConfig:
    return FlowTransformerConfig(
        dim_w=o["dim_w"], dim_a=o["dim_a"], dim_e=o["dim_e"], dim_h=o["dim_h"], depth=o["fmt_depth"],
        num_heads=o["num_heads"], mlp_ratio=o["mlp_ratio"], num_frames=int(o["wav2vec_sec"] * o["fps"]),
        num_prev_frames=o["num_prev_frames"], attention_window=o["attention_window"],
    )


def fmt_state_dict(weights: dict) -> dict:
    return {k[len("fmt."):]: v for k, v in weights.items() if k.startswith("fmt.")}


@pytest.fixture(scope="module")
def tiny_fmt(tiny_weights, tiny_cfg) -> FlowTransformer:
    model = FlowTransformer(fmt_config_from_options(tiny_cfg["options"])).eval()
    model.load_state_dict(fmt_state_dict(tiny_weights), strict=True)
    return model


@pytest.fixture(scope="module")
def fmt_ref() -> dict:
    return load_fixture("fmt")


def inputs(ref: dict, t_name: str = "t_single") -> tuple[torch.Tensor, torch.Tensor, dict]:
    cond = {k: ref[f"input.{k}"] for k in ("prev_x", "wr", "wa", "prev_wa", "we")}
    return ref["input.x"], ref[f"input.{t_name}"], cond


@pytest.mark.parametrize("t_name", ["t_batch", "t_single"])
def test_forward_matches_reference(tiny_fmt, fmt_ref, t_name):
    x, t, cond = inputs(fmt_ref, t_name)
    with torch.no_grad():
        out = tiny_fmt(x, t, **cond)
    assert_close_ref(out, fmt_ref[f"forward.{t_name}.out"], f"forward.{t_name}.out")


def test_every_debug_tap_matches_reference(tiny_fmt, fmt_ref):
    x, t, cond = inputs(fmt_ref, "t_batch")
    taps: dict = {}
    with torch.no_grad():
        tiny_fmt(x, t, **cond, taps=taps)
    names = sorted(k[len("debug."):] for k in fmt_ref if k.startswith("debug."))
    assert names and set(names) <= set(taps)
    for name in names:
        assert_close_ref(taps[name], fmt_ref[f"debug.{name}"], f"debug.{name}")


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("precomputed", [False, True])
def test_classifier_free_vector_field_matches_reference(tiny_fmt, fmt_ref, tiny_cfg, index, precomputed):
    scales = tiny_cfg["fmt_cfv_scales"][index]
    assert scales["index"] == index
    guided = ClassifierFreeGuidance(tiny_fmt, scales["a_cfg_scale"], scales["e_cfg_scale"], scales["r_cfg_scale"])
    x, t, cond = inputs(fmt_ref, "t_single")
    with torch.no_grad():
        if precomputed:
            emb = guided.embed_condition(**{k: cond[k] for k in ("wr", "wa", "prev_wa", "we")})
            assert emb.shape[0] == guided.num_groups * x.shape[0]
            out = guided(x, t, prev_x=cond["prev_x"], cond_embedding=emb)
        else:
            out = guided(x, t, **cond)
    assert_close_ref(out, fmt_ref[f"cfv.{index}.out"], f"cfv.{index}.out")


def test_constructed_buffers_equal_checkpoint(tiny_weights, tiny_cfg):
    model = FlowTransformer(fmt_config_from_options(tiny_cfg["options"]))
    assert not model.pos_embed.requires_grad
    assert torch.equal(model.pos_embed.detach(), tiny_weights["fmt.pos_embed"])
    assert torch.equal(model.alignment_mask, tiny_weights["fmt.alignment_mask"])
    assert model.alignment_mask.dtype == torch.bool


def test_full_size_keys_and_shapes_match_manifest():
    manifest = json.loads((require_shared(FLOAT_REF) / "manifest_full.json").read_text())
    expected = {e["key"][len("fmt."):]: (tuple(e["shape"]), e["kind"]) for e in manifest["keys"] if e["key"].startswith("fmt.")}
    model = FlowTransformer(FlowTransformerConfig(), device="meta")
    params = dict(model.named_parameters())
    got = {k: (tuple(v.shape), "parameter" if k in params else "buffer") for k, v in model.state_dict().items()}
    assert got == expected
    n_params = sum(v.numel() for v in params.values())
    assert n_params == manifest["parameter_count_by_top_prefix"]["fmt"]


def test_helpers_and_config_round_trip():
    pe = sinusoidal_position_embedding(5, 8)
    assert pe.shape == (1, 5, 8)
    assert torch.equal(pe[0, 0], torch.tensor([0.0, 1.0] * 4))
    mask = band_attention_mask(6, 2)
    assert not mask[0, 2] and mask[0, 3] and mask[5, 2] and not mask[5, 3]
    cfg = FlowTransformerConfig(dim_h=64, depth=2, num_heads=2)
    assert FlowTransformerConfig.from_dict({**cfg.to_dict(), "unknown": 1}) == cfg
    assert cfg.num_positions == 60


def test_fresh_model_outputs_zero_and_rejects_bad_input():
    cfg = FlowTransformerConfig(dim_w=8, dim_a=8, dim_e=3, dim_h=16, depth=1, num_heads=2, num_frames=6, num_prev_frames=2)
    model = FlowTransformer(cfg)
    cond = dict(prev_x=torch.zeros(2, 2, 8), wr=torch.randn(2, 8), wa=torch.randn(2, 6, 8),
                prev_wa=torch.zeros(2, 2, 8), we=torch.randn(2, 1, 3))
    out = model(torch.randn(2, 6, 8), torch.tensor([0.3]), **cond)
    assert out.shape == (2, 8, 8) and torch.count_nonzero(out) == 0  # adaLN-zero initialisation
    short = model(torch.randn(2, 4, 8), torch.tensor([0.3, 0.5]), **{**cond, "wa": torch.randn(2, 4, 8)})
    assert short.shape == (2, 6, 8)
    with pytest.raises(DemoInputError, match="positions"):
        model(torch.randn(2, 7, 8), torch.tensor([0.3]), **{**cond, "wa": torch.randn(2, 7, 8)})
    with pytest.raises(DemoInputError, match="cond_embedding"):
        model(torch.randn(2, 6, 8), torch.tensor([0.3]), prev_x=cond["prev_x"])
    with pytest.raises(DemoInputError, match="num_heads"):
        FlowTransformer(FlowTransformerConfig(dim_h=10, num_heads=3), device="meta")
