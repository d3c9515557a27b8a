"""wav2vec2 backbone: configuration, key layout, and numerics against the FLOAT tiny fixtures."""

from __future__ import annotations

import json

import pytest
import torch

from demo_core.models.wav2vec2 import (
    Wav2Vec2Config,
    Wav2Vec2Model,
    wav2vec2_base_config,
    wav2vec2_xlsr_emotion_config,
)
from tests.conftest import FLOAT_REF, assert_close_ref, load_fixture, require_shared

AUDIO_PREFIX = "audio_encoder.wav2vec2."
EMOTION_PREFIX = "emotion_encoder.wav2vec2_for_emotion.wav2vec2."
CASES = ("main", "padcase")


def _sub(weights: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


def _manifest_shapes(prefix: str) -> dict:
    m = json.loads((require_shared(FLOAT_REF) / "manifest_full.json").read_text())
    return {k["key"][len(prefix):]: tuple(k["shape"]) for k in m["keys"] if k["key"].startswith(prefix)}


@pytest.fixture(scope="module")
def audio_w2v(tiny_weights, tiny_cfg):
    model = Wav2Vec2Model(Wav2Vec2Config.from_dict(tiny_cfg["options"]["wav2vec_config"])).eval()
    model.load_state_dict(_sub(tiny_weights, AUDIO_PREFIX), strict=True)
    return model


@pytest.fixture(scope="module")
def emotion_w2v(tiny_weights, tiny_cfg):
    model = Wav2Vec2Model(Wav2Vec2Config.from_dict(tiny_cfg["options"]["audio2emotion_config"])).eval()
    model.load_state_dict(_sub(tiny_weights, EMOTION_PREFIX), strict=True)
    return model


# ---------------------------------------------------------------------------------------------- config


def test_default_configs():
    base = wav2vec2_base_config()
    assert (base.hidden_size, base.num_hidden_layers, base.num_attention_heads, base.intermediate_size) == (
        768, 12, 12, 3072)
    assert base.conv_dim == (512,) * 7 and not base.conv_bias and base.feat_extract_norm == "group"
    assert not base.do_stable_layer_norm
    x = wav2vec2_xlsr_emotion_config()
    assert (x.hidden_size, x.num_hidden_layers, x.num_attention_heads, x.intermediate_size) == (1024, 24, 16, 4096)
    assert x.conv_bias and x.feat_extract_norm == "layer" and x.do_stable_layer_norm and x.num_labels == 7
    assert (x.num_conv_pos_embeddings, x.num_conv_pos_embedding_groups) == (128, 16)


def test_config_dict_roundtrip_and_hf_dict(tiny_cfg):
    for cfg in (wav2vec2_base_config(), wav2vec2_xlsr_emotion_config()):
        d = json.loads(json.dumps(cfg.to_dict()))
        assert Wav2Vec2Config.from_dict(d) == cfg
    hf = tiny_cfg["options"]["audio2emotion_config"]
    cfg = Wav2Vec2Config.from_dict(hf)  # full HF dict: unknown keys ignored
    assert cfg.conv_dim == (24,) * 7 and isinstance(cfg.conv_kernel, tuple)
    assert cfg.hidden_size == 48 and cfg.do_stable_layer_norm and cfg.feat_extract_norm == "layer"
    with pytest.raises(ValueError, match="hidden_act"):
        Wav2Vec2Config.from_dict({**hf, "hidden_act": "relu"})
    with pytest.raises(ValueError):
        Wav2Vec2Config.from_dict({**hf, "conv_kernel": [10, 3]})


@pytest.mark.parametrize("prefix,make", [(AUDIO_PREFIX, wav2vec2_base_config),
                                         (EMOTION_PREFIX, wav2vec2_xlsr_emotion_config)])
def test_full_size_keys_match_manifest(prefix, make):
    model = Wav2Vec2Model(make(), device="meta")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == _manifest_shapes(prefix)


# ---------------------------------------------------------------------------------------------- pieces


def test_weight_norm_effective_weight(audio_w2v):
    conv = audio_w2v.encoder.pos_conv_embed.conv
    g = conv.parametrizations.weight.original0
    v = conv.parametrizations.weight.original1
    expected = g * v / v.norm(dim=(0, 1), keepdim=True)
    torch.testing.assert_close(conv.weight, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kernel", [4, 5])
def test_positional_conv_keeps_length(kernel):
    cfg = Wav2Vec2Config(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                         conv_dim=(4,), conv_kernel=(3,), conv_stride=(2,), num_conv_pos_embeddings=kernel,
                         num_conv_pos_embedding_groups=2)
    model = Wav2Vec2Model(cfg).eval()
    h = torch.randn(2, 9, 8)
    assert model.encoder.pos_conv_embed(h).shape == (2, 9, 8)
    assert model(torch.randn(2, 40)).shape == (2, model.conv_output_length(40), 8)


def test_dtype_follows_caller():
    cfg = Wav2Vec2Config(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                         conv_dim=(4, 4), conv_kernel=(4, 2), conv_stride=(2, 2), num_conv_pos_embeddings=4,
                         num_conv_pos_embedding_groups=2)
    model = Wav2Vec2Model(cfg, dtype=torch.float64).eval()
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert model(torch.randn(1, 50)).dtype == torch.float64


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.mark.parametrize("case", CASES)
def test_audio_backbone_matches_fixture(audio_w2v, case):
    ref = load_fixture("audio_encoder")
    with torch.no_grad():
        conv = audio_w2v.extract_features(ref[f"{case}.a_padded"])
        assert conv.shape[-1] == audio_w2v.conv_output_length(ref[f"{case}.a_padded"].shape[1])
        assert_close_ref(conv, ref[f"{case}.debug.conv_features"], "conv_features")
        taps = {}
        states = audio_w2v.encode(ref[f"{case}.debug.interp_features"], taps=taps)
    assert_close_ref(taps["projected_features"], ref[f"{case}.debug.projected_features"], "projected_features")
    assert len(states) == audio_w2v.config.num_hidden_layers + 1
    for i, s in enumerate(states):
        assert_close_ref(s, ref[f"{case}.debug.hidden_states.{i}"], f"hidden_states.{i}")


@pytest.mark.parametrize("case", CASES)
def test_stable_backbone_last_hidden_state(emotion_w2v, case):
    ref = load_fixture("emotion_encoder")
    a = ref[f"{case}.input.a"]
    with torch.no_grad():
        last = emotion_w2v(a)
        states = emotion_w2v.encode(emotion_w2v.extract_features(a).transpose(1, 2))
    assert len(states) == emotion_w2v.config.num_hidden_layers + 1
    torch.testing.assert_close(states[-1], last, rtol=0, atol=0)
    assert_close_ref(last, ref[f"{case}.debug.last_hidden_state"], "last_hidden_state")
