"""FLOAT audio encoder (padding, interpolation, layer concatenation, projection) against the tiny fixtures."""

from __future__ import annotations

import json

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.models.audio_encoder import (
    AudioEncoder,
    AudioEncoderConfig,
    apply_normalization,
    normalization_stats,
    normalize_waveform,
)
from tests.conftest import FLOAT_REF, assert_close_ref, load_fixture, require_shared

PREFIX = "audio_encoder."
CASES = ("main", "padcase")


def _tiny_config(tiny_cfg) -> AudioEncoderConfig:
    o = tiny_cfg["options"]
    return AudioEncoderConfig.from_dict({
        "wav2vec2": o["wav2vec_config"], "dim_w": o["dim_w"], "only_last_features": o["only_last_features"],
        "sampling_rate": o["sampling_rate"], "fps": o["fps"],
    })


@pytest.fixture(scope="module")
def encoder(tiny_weights, tiny_cfg):
    model = AudioEncoder(_tiny_config(tiny_cfg)).eval()
    sd = {k[len(PREFIX):]: v for k, v in tiny_weights.items() if k.startswith(PREFIX)}
    assert "wav2vec2.masked_spec_embed" in sd
    model.load_state_dict(sd, strict=True)
    return model


@pytest.fixture(scope="module")
def ref():
    return load_fixture("audio_encoder")


def test_config_roundtrip(tiny_cfg):
    cfg = _tiny_config(tiny_cfg)
    assert cfg == AudioEncoderConfig.from_float_options(tiny_cfg["options"])
    assert AudioEncoderConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert AudioEncoderConfig.from_dict(AudioEncoderConfig().to_dict()) == AudioEncoderConfig()
    assert cfg.feature_dim == 64 and AudioEncoderConfig().feature_dim == 12 * 768


def test_full_size_keys_match_manifest():
    m = json.loads((require_shared(FLOAT_REF) / "manifest_full.json").read_text())
    want = {k["key"][len(PREFIX):]: tuple(k["shape"]) for k in m["keys"] if k["key"].startswith(PREFIX)}
    model = AudioEncoder(AudioEncoderConfig(), device="meta")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == want


@pytest.mark.parametrize("case", CASES)
def test_normalize_waveform(ref, case):
    raw = ref[f"{case}.input.raw_waveform"]
    out = normalize_waveform(raw)
    assert out.dtype == torch.float32
    assert_close_ref(out, ref[f"{case}.input.a"], "normalize_waveform")
    torch.testing.assert_close(normalize_waveform(raw[0]), out[0])


@pytest.mark.parametrize("case", CASES)
def test_matches_fixture(encoder, ref, case):
    a = ref[f"{case}.input.a"]
    T = int(ref[f"{case}.T"])
    taps = {}
    with torch.no_grad():
        feats = encoder.features(a, T, taps=taps)
        wa = encoder(a, T)
    assert_close_ref(taps["a_padded"], ref[f"{case}.a_padded"], "a_padded")
    debug = {k[len(f"{case}.debug."):] for k in ref if k.startswith(f"{case}.debug.")}
    assert debug <= set(taps), f"missing taps: {debug - set(taps)}"
    for name in sorted(debug):
        assert_close_ref(taps[name], ref[f"{case}.debug.{name}"], name)
    assert_close_ref(feats, ref[f"{case}.wav2vec2_feature"], "wav2vec2_feature")
    assert_close_ref(wa, ref[f"{case}.wa"], "wa")
    assert_close_ref(encoder.audio_projection(feats), ref[f"{case}.wa"], "wa from features")


def test_pad_waveform_rules(encoder):
    a = torch.arange(12.0).view(2, 6)
    # T frames cover int(T * 16000 / 25) = 640 * T samples.
    padded = encoder.pad_waveform(a, 1)
    assert padded.shape == (2, 640)
    torch.testing.assert_close(padded[:, :6], a)
    assert bool((padded[:, 6:] == a[:, -1:]).all())
    b = torch.randn(1, 1280)
    assert encoder.pad_waveform(b, 1) is b  # multiple of n_T: unchanged
    assert encoder.pad_waveform(torch.randn(1, 700), 1).shape == (1, 640)  # FLOAT crops here


def test_only_last_features(tiny_cfg, encoder, ref):
    cfg = _tiny_config(tiny_cfg)
    cfg.only_last_features = True
    model = AudioEncoder(cfg).eval()
    sd = {k: v for k, v in encoder.state_dict().items() if not k.startswith("audio_projection.0.")}
    model.load_state_dict(sd, strict=False)
    with torch.no_grad():
        feats = model.features(ref["main.input.a"], 75)
        assert model(ref["main.input.a"], 75).shape == (2, 75, 512)
    assert_close_ref(feats, ref["main.debug.hidden_states.2"], "only_last_features")


def test_bad_inputs(encoder):
    with pytest.raises(DemoInputError, match="audio"):
        encoder(torch.randn(100), 2)
    with pytest.raises(DemoInputError, match="num_frames"):
        encoder(torch.randn(1, 1000), 0)


@pytest.mark.parametrize("shape", [(1,), (5,), (3, 1000), (300_001,), (2, 70_000)])
def test_chunked_normalization_matches_normalize_waveform(shape):
    """normalization_stats + apply_normalization (no float64 copy of the clip) = normalize_waveform, to
    float32 rounding, also when applied slice by slice."""
    a = 0.3 * torch.randn(shape, generator=torch.Generator().manual_seed(len(shape))) + 0.02
    ref = normalize_waveform(a)
    mean, scale = normalization_stats(a, chunk=4096)
    assert mean.dtype == scale.dtype == torch.float64 and mean.shape == a.shape[:-1] + (1,)
    out = apply_normalization(a, mean, scale)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    cut = a.shape[-1] // 3
    parts = torch.cat([apply_normalization(a[..., :cut], mean, scale),
                       apply_normalization(a[..., cut:], mean, scale)], dim=-1)
    assert torch.equal(parts, out)
    with pytest.raises(DemoInputError):
        normalization_stats(torch.zeros(2, 0))
