"""FLOAT emotion encoder (XLSR classifier) and the emotion condition against the tiny fixtures."""

from __future__ import annotations

import json

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.models.emotion_encoder import (
    EMOTION_LABELS,
    EmotionEncoder,
    EmotionEncoderConfig,
    emotion_condition,
)
from demo_core.models.wav2vec2 import Wav2Vec2Config
from tests.conftest import FLOAT_REF, assert_close_ref, load_fixture, require_shared

PREFIX = "emotion_encoder."
CASES = ("main", "padcase")


@pytest.fixture(scope="module")
def encoder(tiny_weights, tiny_cfg):
    cfg = EmotionEncoderConfig(wav2vec2=Wav2Vec2Config.from_dict(tiny_cfg["options"]["audio2emotion_config"]))
    model = EmotionEncoder(cfg).eval()
    model.load_state_dict({k[len(PREFIX):]: v for k, v in tiny_weights.items() if k.startswith(PREFIX)},
                          strict=True)
    return model


def test_config_roundtrip(tiny_cfg):
    cfg = EmotionEncoderConfig.from_float_options(tiny_cfg["options"])
    assert cfg.wav2vec2.hidden_size == 48
    assert EmotionEncoderConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert EmotionEncoderConfig.from_dict({}) == EmotionEncoderConfig()


def test_full_size_keys_match_manifest():
    m = json.loads((require_shared(FLOAT_REF) / "manifest_full.json").read_text())
    want = {k["key"][len(PREFIX):]: tuple(k["shape"]) for k in m["keys"] if k["key"].startswith(PREFIX)}
    model = EmotionEncoder(device="meta")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == want


@pytest.mark.parametrize("case", CASES)
def test_matches_fixture(encoder, case):
    ref = load_fixture("emotion_encoder")
    a = ref[f"{case}.input.a"]
    taps = {}
    with torch.no_grad():
        logits = encoder.logits(a, taps=taps)
        probs = encoder.predict(a)
    assert_close_ref(taps["last_hidden_state"], ref[f"{case}.debug.last_hidden_state"], "last_hidden_state")
    assert_close_ref(logits, ref[f"{case}.logits"], "logits")
    assert_close_ref(probs, ref[f"{case}.probs"], "probs")


def test_emotion_condition_one_hot():
    for i, name in enumerate(EMOTION_LABELS):
        for spelled in (name, name.upper(), f" {name.capitalize()} "):
            we = emotion_condition(spelled, batch=3, probs_fn=lambda: pytest.fail("probs_fn must not run"))
            assert we.shape == (3, 1, 7) and we.dtype == torch.float32
            expected = torch.zeros(3, 1, 7)
            expected[:, :, i] = 1
            torch.testing.assert_close(we, expected)
    assert emotion_condition("sad", batch=1, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("label", [None, "s2e", "S2E", "auto"])
def test_emotion_condition_predicted(label):
    probs = torch.softmax(torch.randn(2, 7), dim=-1)
    we = emotion_condition(label, batch=2, probs_fn=lambda: probs)
    assert we.shape == (2, 1, 7)
    torch.testing.assert_close(we[:, 0], probs)
    assert emotion_condition(label, batch=4, probs_fn=lambda: probs[:1]).shape == (4, 1, 7)


def test_emotion_condition_errors():
    with pytest.raises(DemoInputError) as info:
        emotion_condition("joyful", batch=1)
    msg = str(info.value)
    assert "emotion" in msg and "joyful" in msg
    assert all(name in msg for name in EMOTION_LABELS)
    with pytest.raises(DemoInputError):
        emotion_condition(3, batch=1)
    with pytest.raises(DemoInputError, match="emotion"):
        emotion_condition(None, batch=2, probs_fn=lambda: torch.zeros(3, 7))
    with pytest.raises(ValueError):
        emotion_condition(None, batch=2)
