"""Training config: JSON round trip, strict keys, and the bundled small-model config."""

from __future__ import annotations

import json

import pytest

from demo_core.errors import DemoInputError
from demo_core.models.demo_model import DemoModel
from demo_core.train import TrainConfig, default_config_path, load_train_config
from demo_core.train.objectives import Stage1Objective


def test_bundled_config_builds_a_small_model():
    cfg = load_train_config(default_config_path())
    assert cfg.model.image_size == 64 and cfg.model.factors.total == 20
    assert cfg.model.flow_transformer.dim_a == cfg.model.audio_encoder.dim_a
    model = DemoModel(cfg.model, device="meta")
    size = sum(t.numel() * 2 for t in model.state_dict().values())
    assert size < 25e6  # the embedded model is stored in float16 and stays under the 25 MB budget
    assert max(cfg.model.motion_autoencoder.channels.values()) <= 64


def test_json_round_trip_and_unknown_keys(tmp_path):
    cfg = load_train_config(default_config_path())
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.to_dict() == cfg.to_dict()
    d = cfg.to_dict()
    d["stage1"]["weights"]["lip_nec"] = 1.0
    with pytest.raises(DemoInputError, match="lip_nec"):
        TrainConfig.from_dict(d)
    d = cfg.to_dict()
    d["stage2"]["stpes"] = 3
    with pytest.raises(DemoInputError, match="stpes"):
        TrainConfig.from_dict(d)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DemoInputError, match="JSON"):
        load_train_config(bad)
    with pytest.raises(DemoInputError, match="crop"):
        TrainConfig.from_dict({"data": {"crop": "face"}})


def test_rgb_from_is_not_a_weight_and_stage2_smoothing_keys():
    base = load_train_config(default_config_path())
    d = base.to_dict()
    d["model"]["motion_autoencoder"]["rgb_from"] = "mixed"
    d["stage1"]["weights"]["recon_region"] = 30.0
    mixed = TrainConfig.from_dict(d)
    assert mixed.model.motion_autoencoder.rgb_from == "mixed" and base.model.motion_autoencoder.rgb_from == "warped"
    assert mixed.stage1.weights.recon_region == 30.0 and base.stage1.weights.recon_region == 0
    # same weights, so a model trained one way initialises a run the other way (train stage1 --init)
    assert {k: v.shape for k, v in DemoModel(mixed.model, device="meta").state_dict().items()} == \
        {k: v.shape for k, v in DemoModel(base.model, device="meta").state_dict().items()}
    assert base.stage2.smooth == {"pose": 1.0}  # the bundled recipe smooths the encoder's pose read-out
    assert TrainConfig.from_dict({"stage2": {"smooth": {"gaze": 2}}}).stage2.smooth == {"gaze": 2.0}
    with pytest.raises(DemoInputError, match="smooth"):
        TrainConfig.from_dict({"stage2": {"smooth": {"pose": -1}}})


def test_a_config_extends_another_and_the_painter_recipe():
    base = load_train_config(default_config_path())
    painter = load_train_config(default_config_path().parent / "demo_synthetic_64_painter.json")
    gaze = load_train_config(default_config_path().parent / "demo_synthetic_64_gaze.json")
    assert painter.model.painter.factors == ("lip", "gaze", "blink") and base.model.painter is None
    assert "motion_autoencoder.painter" in painter.stage1.trainable and painter.stage1.weights.recon_region == 10
    assert not any(t.startswith("motion_autoencoder.dec.direction") for t in painter.stage1.trainable)
    assert gaze.stage1.detach_render == ("gaze",) and gaze.stage1.weights.recon_l1 == 0 and gaze.stage1.weights.gaze > 0
    d, b = painter.to_dict(), base.to_dict()
    assert d["stage1"]["weights"]["lip"] == b["stage1"]["weights"]["lip"]  # merged key by key
    assert d["model"]["motion_autoencoder"]["basis_signs"] == "positive" and b["model"]["motion_autoencoder"]["basis_signs"] == "lapack"
    d["model"].pop("painter")
    d["model"]["motion_autoencoder"]["basis_signs"] = "lapack"
    assert d["model"] == b["model"] and d["stage2"]["steps"] == b["stage2"]["steps"]
    assert d["stage2"]["smooth"] == {"pose": 1.5} and b["stage2"]["smooth"] == {"pose": 1.0}
    local = load_train_config(default_config_path().parent / "demo_synthetic_64_locality.json")
    assert local.stage1.weights.locality > 0 and local.stage1.cycle_factors == ("gaze", "blink")
    assert local.stage1.trainable == painter.stage1.trainable  # encoders frozen: stage 2 stays valid
    counter = load_train_config(default_config_path().parent / "demo_synthetic_64_counterfactual.json")
    assert counter.stage1.weights.counterfactual > 0 and counter.stage1.weights.locality == local.stage1.weights.locality
    assert counter.stage1.trainable == ("motion_autoencoder.enc.fc",) + painter.stage1.trainable  # + the factor encoders
    residual = load_train_config(default_config_path().parent / "demo_synthetic_64_residual.json")
    assert residual.stage1.trainable == ("motion_autoencoder.enc.fc.encoders.residual",
                                         "motion_autoencoder.enc.fc.heads.residual")  # the residual encoder alone
    assert residual.stage1.weights.counterfactual > 0 and residual.stage1.weights.cycle == 0
    assert residual.stage1.weights.locality == 0 and residual.to_dict()["model"] == local.to_dict()["model"]
    assert residual.stage2.steps == 4000 and residual.stage2.smooth == local.stage2.smooth
    readback = load_train_config(default_config_path().parent / "demo_synthetic_64_readback.json")
    assert readback.stage1.trainable == local.stage1.trainable  # encoders frozen: stage 2 stays valid
    assert readback.stage1.cycle_factors == ("pose", "gaze", "blink") and readback.stage1.weights.cycle > 0
    ids = load_train_config(default_config_path().parent / "demo_synthetic_64_identities.json")
    assert ids.stage1.trainable == tuple(f"motion_autoencoder.enc.fc.{part}.{name}" for name in ("gaze", "blink")
                                         for part in ("encoders", "heads"))  # the eye encoders alone
    assert ids.stage1.detach_render == ("gaze", "blink") and ids.stage1.weights.counterfactual > 0
    w = ids.stage1.weights  # labels and counterfactual pairs only: no term reaches the frozen parts through the decoder
    assert w.gaze > 0 and w.blink > 0 and w.recon_l1 == w.recon_ssim == w.recon_region == w.cycle == w.locality == 0
    assert ids.to_dict()["model"] == residual.to_dict()["model"] and ids.stage2.steps == residual.stage2.steps
    enc = load_train_config(default_config_path().parent / "demo_synthetic_64_encoders.json")
    assert enc.stage1.trainable == tuple(f"motion_autoencoder.enc.fc.{part}.{name}"
                                         for name in ("lip", "pose", "gaze", "blink") for part in ("encoders", "heads"))
    w = enc.stage1.weights  # the four factor encoders on labels and counterfactual pairs; the decoder is skipped
    assert min(w.lip, w.pose, w.gaze, w.blink, w.counterfactual) > 0 and w.lip_nce == w.gaze_nce == 0
    assert not Stage1Objective(DemoModel(enc.model), enc.stage1).renders
    assert enc.to_dict()["model"] == ids.to_dict()["model"] and enc.stage2.steps == ids.stage2.steps
    rb_lip = load_train_config(default_config_path().parent / "demo_synthetic_64_readback_lip.json")
    assert rb_lip.stage1.cycle_factors == ("lip", "pose", "gaze", "blink")
    assert rb_lip.stage1.trainable == readback.stage1.trainable and rb_lip.stage1.steps == readback.stage1.steps


def test_extends_merges_nested_keys_and_rejects_loops(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"stage1": {"steps": 5, "scales": [1, 2], "weights": {"lip": 3.0}},
                                                 "comment": "a"}))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.json").write_text(json.dumps({"extends": "../a.json", "stage1": {"scales": [1],
                                                          "weights": {"pose": 2.0}}}))
    cfg = load_train_config(tmp_path / "sub" / "b.json")
    assert cfg.stage1.steps == 5 and cfg.stage1.scales == (1,)
    assert cfg.stage1.weights.lip == 3.0 and cfg.stage1.weights.pose == 2.0
    (tmp_path / "c.json").write_text(json.dumps({"extends": "d.json"}))
    (tmp_path / "d.json").write_text(json.dumps({"extends": "c.json"}))
    with pytest.raises(DemoInputError, match="loops"):
        load_train_config(tmp_path / "c.json")
    (tmp_path / "e.json").write_text(json.dumps({"extends": "missing.json"}))
    with pytest.raises(DemoInputError, match="missing.json"):
        load_train_config(tmp_path / "e.json")
    (tmp_path / "f.json").write_text("[1, 2]")
    with pytest.raises(DemoInputError, match="JSON object"):
        load_train_config(tmp_path / "f.json")
