"""DEMO-native model: config, the FloatModel-compatible surface, save → load_model, and the pipeline on it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from demo_core import pipeline
from demo_core.errors import CheckpointError, DemoInputError
from demo_core.io.checkpoints import save_checkpoint
from demo_core.models.demo_model import DemoConfig, DemoModel
from demo_core.models.loader import load_model
from demo_core.motion.factors import project_factor
from tests.models.demo_tiny import tiny_demo_config, tiny_demo_dict


def _model(vae: bool = False) -> DemoModel:
    torch.manual_seed(0)
    model = DemoModel(tiny_demo_config(vae))
    with torch.no_grad():  # a non-trivial FMT (its output layer starts at zero)
        model.fmt.decoder.linear.weight.normal_(0.0, 0.05)
    return model.eval()


def test_config_round_trip_and_checks():
    cfg = tiny_demo_config(vae=True)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["family"] == "demo" and d["audio_encoder"]["kind"] == "logmel"
    assert DemoConfig.from_dict(d).to_dict() == cfg.to_dict()
    bad = tiny_demo_dict()
    bad["flow_transformer"]["dim_a"] = 32
    with pytest.raises(DemoInputError, match="dim_a"):
        DemoConfig.from_dict(bad)
    bad = tiny_demo_dict()
    bad["motion_autoencoder"]["dim_m"] = 21
    with pytest.raises(DemoInputError, match="dim_m"):
        DemoConfig.from_dict(bad)
    with pytest.raises(DemoInputError, match="family"):
        DemoConfig.from_dict({"family": "float"})


def test_float_compatible_surface():
    model = _model()
    assert model.emotion_encoder is None and model.cfg.fps == 25.0 and model.cfg.sampling_rate == 16000
    assert model.cfg.image_size == 64 and model.device == torch.device("cpu") and model.dtype == torch.float32
    mae = model.motion_autoencoder
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    h, lam, feats = mae.encode(image)
    assert h.shape == (2, 32) and lam.shape == (2, 20)
    motion = mae.motion_from_coefficients(lam)
    assert torch.allclose(mae.coefficients_from_motion(motion), lam, atol=1e-5)
    lip_only = lam.clone()
    lip_only[:, 6:] = 0
    m = mae.motion_from_coefficients(lip_only)
    assert torch.allclose(project_factor(m, mae.directions(), model.layout, "lip"), m, atol=1e-5)
    frames = mae.decode(h, feats, motion[:, None].expand(2, 3, 32))
    assert frames.shape == (2, 3, 3, 64, 64)
    assert model.audio_encoder(torch.randn(1, 8000), 12).shape == (1, 12, 16)


def test_save_then_load_model_round_trips_exactly(tmp_path):
    model = _model(vae=True)
    path = save_checkpoint(tmp_path / "demo.safetensors", model, model.cfg.to_dict())
    loaded, report = load_model(path)
    assert isinstance(loaded, DemoModel) and report.config_source == "metadata"
    assert loaded.cfg.to_dict() == model.cfg.to_dict()
    assert not report.missing and not report.unexpected
    a, b = model.state_dict(), loaded.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())


def test_load_reports_missing_and_misshapen_tensors(tmp_path):
    model = _model()
    path = save_checkpoint(tmp_path / "demo.safetensors", model, model.cfg.to_dict())
    tensors = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    del tensors["motion_autoencoder.enc.fc.heads.gaze.out.weight"]
    tensors["fmt.x_embedder.proj.weight"] = torch.zeros(3, 3)
    broken = tmp_path / "broken.safetensors"
    save_file(tensors, str(broken), metadata=meta)
    with pytest.raises(CheckpointError) as err:
        load_model(broken)
    msg = str(err.value)
    assert "broken.safetensors" in msg and "heads.gaze.out.weight" in msg and "x_embedder.proj.weight" in msg


def test_pipeline_runs_on_a_demo_model(tmp_path):
    model, _ = load_model(save_checkpoint(tmp_path / "m.safetensors", _model(), _model().cfg.to_dict()))
    image = torch.rand(80, 72, 3)
    portrait = pipeline.encode_portrait(model, image, crop="center")
    assert portrait.source_motion.shape == (1, 32)
    t = torch.arange(int(0.9 * 22050)) / 22050
    audio = pipeline.encode_audio(model, torch.sin(2 * torch.pi * 220 * t)[None], 22050)
    T = audio.features.shape[1]
    assert T == 23 and audio.features.shape == (1, 23, 16) and audio.emotion.shape == (1, 1, 7)
    assert int(audio.emotion.argmax()) == 4  # neutral one-hot: the model has no emotion encoder
    settings = pipeline.GenerationSettings(steps=2, seed=1)
    motion = pipeline.sample_motion(model, portrait, audio, settings)
    assert motion.shape == (1, T, 32) and torch.isfinite(motion).all()
    again = pipeline.sample_motion(model, portrait, audio, settings)
    assert torch.equal(motion, again)  # seeded
    chunks = list(pipeline.iter_frames(model, portrait, motion, batch=8))
    assert sum(c.shape[1] for c in chunks) == T and chunks[0].shape[2:] == (3, 64, 64)


def test_image_heads_and_subspace_flow_round_trip_and_sample_inside_the_dictionary_span(tmp_path):
    d = tiny_demo_dict()
    d.update(head_source="image", head_channels=[8, 8, 16], flow_subspace=True)
    cfg = DemoConfig.from_dict(d)
    assert DemoConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).to_dict() == cfg.to_dict()
    assert DemoConfig.from_dict(tiny_demo_dict()).flow_subspace is False  # older checkpoints: unchanged
    torch.manual_seed(0)
    built = DemoModel(cfg)
    with torch.no_grad():
        built.fmt.decoder.linear.weight.normal_(0.0, 0.05)
    model, _ = load_model(save_checkpoint(tmp_path / "m.safetensors", built.eval(), cfg.to_dict()))
    assert model.motion_autoencoder.enc.fc.reads_image and model.fmt.latent_basis is not None
    portrait = pipeline.encode_portrait(model, torch.rand(64, 64, 3), crop="center")
    t = torch.arange(int(0.8 * 16000)) / 16000
    audio = pipeline.encode_audio(model, torch.sin(2 * torch.pi * 180 * t)[None], 16000)
    motion = pipeline.sample_motion(model, portrait, audio, pipeline.GenerationSettings(steps=3, seed=2))
    Q = model.motion_autoencoder.directions()
    outside = motion - (motion @ Q) @ Q.T
    assert float(motion.abs().max()) > 1e-3 and float(outside.abs().max()) < 1e-5
    plain = DemoModel(tiny_demo_config()).eval()  # without flow_subspace the sample leaves the span
    plain.fmt.load_state_dict(model.fmt.state_dict())
    plain.motion_autoencoder.dec.direction.load_state_dict(model.motion_autoencoder.dec.direction.state_dict())
    portrait2 = pipeline.encode_portrait(plain, torch.rand(64, 64, 3), crop="center")
    free = pipeline.sample_motion(plain, portrait2, pipeline.encode_audio(plain, torch.sin(2 * torch.pi * 180 * t)[None],
                                                                          16000), pipeline.GenerationSettings(steps=3, seed=2))
    assert float((free - (free @ Q) @ Q.T).abs().max()) > 0.1


def test_flow_scale_shapes_the_noise_inside_the_span_and_round_trips(tmp_path):
    d = tiny_demo_dict()
    d.update(flow_subspace=True, flow_scale=[0.5] * 6 + [0.1] * 6 + [1.0] * 8)
    cfg = DemoConfig.from_dict(d)
    assert DemoConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).flow_scale == cfg.flow_scale
    bad = dict(d, flow_scale=[1.0] * 19)
    with pytest.raises(DemoInputError, match="flow_scale must hold 20"):
        DemoConfig.from_dict(bad)
    torch.manual_seed(0)
    model, _ = load_model(save_checkpoint(tmp_path / "m.safetensors", DemoModel(cfg).eval(), cfg.to_dict()))
    assert torch.equal(model.fmt.latent_scale, torch.tensor(cfg.flow_scale))
    record = {}
    from demo_core.flow.window_sampler import SamplerSettings, sample_motion as sample_windows
    g = torch.Generator().manual_seed(0)
    W, L = 32, model.fmt.cfg.num_frames
    sample_windows(model.fmt, wr=torch.zeros(64, W), wa=torch.zeros(64, L, 16), we=torch.zeros(64, 1, 7),
                   settings=SamplerSettings(steps=1), generator=g, record=record)
    coords = record["chunk0.x0"] @ model.motion_autoencoder.directions()  # (64, L, 20)
    spread = coords.flatten(0, 1).std(dim=0)
    assert torch.allclose(spread, torch.tensor(cfg.flow_scale), rtol=0.1)


def test_factor_conditioned_sampling_on_a_subspace_model_starts_from_its_own_noise():
    from demo_core.motion.conditioning import sample_motion_conditioned
    d = tiny_demo_dict()
    d.update(flow_subspace=True, flow_scale=[0.3] * 20)
    torch.manual_seed(0)
    model = DemoModel(DemoConfig.from_dict(d)).eval()
    with torch.no_grad():
        model.fmt.decoder.linear.weight.normal_(0.0, 0.05)
    Q, layout = model.motion_autoencoder.directions().detach(), model.cfg.factors
    T = 11
    pose = torch.full((1, T, 6), 0.2)
    record = {}
    out = sample_motion_conditioned(model.fmt, wr=torch.zeros(1, 32), wa=torch.randn(1, T, 16),
                                    we=torch.zeros(1, 1, 7), fixed={"pose": pose}, Q=Q, layout=layout,
                                    generator=torch.Generator().manual_seed(3), record=record)
    x0 = record["chunk0.x0"]
    assert float((x0 - (x0 @ Q) @ Q.T).abs().max()) < 1e-5  # noise inside the span ...
    assert abs(float((x0 @ Q).std()) - 0.3) < 0.06  # ... with the model's spread
    assert torch.allclose((out @ Q)[..., 6:12], pose.expand(1, T, 6), atol=1e-5)  # fixed factor reproduced


def test_canonical_appearance_takes_the_frames_own_motion_out_of_h(tmp_path):
    d = tiny_demo_dict()
    d.update(head_source="image", head_channels=[8, 8, 16], canonical_appearance=True)
    cfg = DemoConfig.from_dict(d)
    assert DemoConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).canonical_appearance is True
    assert DemoConfig.from_dict(tiny_demo_dict()).canonical_appearance is False  # older checkpoints: unchanged
    torch.manual_seed(0)
    canon = DemoModel(cfg).eval()
    plain = DemoModel(DemoConfig.from_dict({**d, "canonical_appearance": False})).eval()
    plain.load_state_dict(canon.state_dict())
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        h_c, lam_c, feats_c = canon.motion_autoencoder.encode(image)
        h_p, lam_p, feats_p = plain.motion_autoencoder.encode(image)
        motion = canon.motion_autoencoder.motion_from_coefficients(lam_c)
        assert torch.equal(lam_c, lam_p) and float(motion.abs().max()) > 1e-4
        assert torch.allclose(h_c, h_p - motion, atol=1e-6)
        # the frame's own coefficients ask for the same render the plain model gets from h alone
        diff = canon.motion_autoencoder.render(h_c + motion, feats_c) - plain.motion_autoencoder.render(h_p, feats_p)
        assert float(diff.abs().max()) < 2e-4, float(diff.abs().max())  # latents equal to 1e-8
    model, _ = load_model(save_checkpoint(tmp_path / "m.safetensors", canon, cfg.to_dict()))
    assert model.motion_autoencoder.canonical_appearance
    assert torch.allclose(model.motion_autoencoder.encode(image)[0], h_c, atol=1e-6)
