"""The assembled FLOAT-family model: full-size keys/shapes and config round trips."""

from __future__ import annotations

import json

import torch

from demo_core.models.float_model import FloatConfig, FloatModel
from tests.conftest import FLOAT_REF, require_shared


def test_default_config_matches_full_manifest():
    manifest = json.loads((require_shared(FLOAT_REF) / "manifest_full.json").read_text())
    expected = {e["key"]: tuple(e["shape"]) for e in manifest["keys"]}
    model = FloatModel(FloatConfig(), device="meta")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert set(got) == set(expected), (sorted(set(expected) - set(got))[:5], sorted(set(got) - set(expected))[:5])
    wrong = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert not wrong
    params = sum(p.numel() for p in model.parameters())
    assert params == manifest["num_parameters"]


def test_manifest_keys_load_without_missing_or_unexpected():
    manifest = json.loads((require_shared(FLOAT_REF) / "manifest_full.json").read_text())
    model = FloatModel(FloatConfig(), device="meta")
    sd = {e["key"]: torch.empty(e["shape"], device="meta", dtype=getattr(torch, e["dtype"])) for e in manifest["keys"]}
    result = model.load_state_dict(sd, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_config_dict_round_trip(tiny_cfg):
    cfg = FloatConfig.from_float_options(tiny_cfg["options"], tiny_cfg["channels"])
    again = FloatConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.to_dict() == cfg.to_dict()
    assert cfg.flow_transformer.num_frames == 50 and cfg.motion_autoencoder.size == 64
