"""Training loops: both stages learn, checkpoints resume exactly, the CLI and JSON config drive them."""

from __future__ import annotations

import json

import numpy as np

import pytest
import torch

from demo_core.cli import main
from demo_core.errors import DemoInputError
from demo_core.io.checkpoints import read_tensor_file
from demo_core.models.demo_model import DemoModel
from demo_core.models.loader import load_model
from demo_core.train import lr_at, train_stage1, train_stage2
from demo_core.train.checkpointing import latest_checkpoint


def _losses(run, stage):
    return [json.loads(line)["loss"] for line in (run / stage / "metrics.jsonl").read_text().splitlines()]


def test_lr_schedule():
    assert lr_at(5, 1.0, 100, 10, "none") == pytest.approx(0.5)
    assert lr_at(50, 1.0, 100, 10, "none") == 1.0
    assert lr_at(10, 1.0, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_at(100, 1.0, 100, 10, "cosine") == pytest.approx(0.1)


def test_both_stages_learn_via_the_cli(tiny_train_config, tmp_path):
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(tiny_train_config(stage1__steps=20).to_dict()))
    run = tmp_path / "run"
    assert main(["train", "stage1", "--config", str(cfg_path), "--out", str(run)]) == 0
    s1 = _losses(run, "stage1")
    assert len(s1) == 20 and sum(s1[-4:]) < 0.9 * sum(s1[:4]), s1
    assert main(["train", "stage2", "--config", str(cfg_path), "--out", str(run)]) == 0
    s2 = _losses(run, "stage2")
    assert len(s2) == 12 and sum(s2[-3:]) < 0.8 * sum(s2[:3]), s2
    model, _ = load_model(run / "stage2" / "model.safetensors")
    assert isinstance(model, DemoModel)
    stage1, _ = read_tensor_file(run / "stage1" / "model.safetensors")
    final = model.state_dict()
    assert torch.equal(stage1["motion_autoencoder.dec.direction.weight"], final["motion_autoencoder.dec.direction.weight"])
    assert not torch.equal(stage1["fmt.decoder.linear.weight"], final["fmt.decoder.linear.weight"])  # only the FMT moved


def test_resume_continues_identically(tiny_train_config, tmp_path):
    cfg = tiny_train_config(stage1__steps=4, stage2__steps=4, stage1__lr_decay="cosine", stage2__lr_decay="cosine")
    quiet = lambda _m: None  # noqa: E731
    whole, split = tmp_path / "whole", tmp_path / "split"
    train_stage1(cfg, whole, log=quiet)
    train_stage1(cfg, split, stop_after=2, log=quiet)
    assert latest_checkpoint(split / "stage1" / "checkpoints").name == "step_00000002"
    assert not (split / "stage1" / "model.safetensors").exists()
    train_stage1(cfg, split, resume=True, log=quiet)
    assert _losses(whole, "stage1") == _losses(split, "stage1")
    a, _ = read_tensor_file(whole / "stage1" / "model.safetensors")
    b, _ = read_tensor_file(split / "stage1" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    init = whole / "stage1" / "model.safetensors"
    train_stage2(cfg, whole, log=quiet)
    train_stage2(cfg, split, init=init, stop_after=3, log=quiet)
    train_stage2(cfg, split, init=init, resume=True, log=quiet)
    assert _losses(whole, "stage2") == _losses(split, "stage2")


def test_stage1_with_the_vae_posterior(tiny_train_config, tmp_path):
    cfg = tiny_train_config(model__vae=True, stage1__steps=3)
    train_stage1(cfg, tmp_path, log=lambda _m: None)
    rows = [json.loads(line) for line in (tmp_path / "stage1" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["kl"] > 0 for r in rows) and all(r["loss"] == r["loss"] for r in rows)
    model, _ = load_model(tmp_path / "stage1" / "model.safetensors")
    assert model.cfg.vae and model.motion_autoencoder.enc.fc.cfg.vae


def test_image_heads_and_subspace_flow_train_both_stages(tiny_train_config, tmp_path):
    cfg = tiny_train_config(model__head_source="image", model__head_channels=[8, 8, 16], model__flow_subspace=True)
    quiet = lambda _m: None  # noqa: E731
    train_stage1(cfg, tmp_path, log=quiet)
    s1 = _losses(tmp_path, "stage1")
    assert sum(s1[-3:]) < 0.9 * sum(s1[:3]), s1
    train_stage2(cfg, tmp_path, log=quiet)
    s2 = _losses(tmp_path, "stage2")
    assert sum(s2[-3:]) < 0.8 * sum(s2[:3]), s2
    model, _ = load_model(tmp_path / "stage2" / "model.safetensors")
    assert model.cfg.head_source == "image" and model.cfg.flow_subspace and model.fmt.latent_basis is not None
    assert model.cfg.flow_scale is not None and len(model.cfg.flow_scale) == 20  # σ of the cached motion, saved
    assert torch.equal(model.fmt.latent_scale, torch.tensor(model.cfg.flow_scale))


def test_coefficient_l2_is_logged_and_pulls_the_coefficients_in(tiny_train_config, tmp_path):
    cfg = tiny_train_config(stage1__steps=8)
    cfg.stage1.weights.coefficient_l2 = 50.0
    train_stage1(cfg, tmp_path, log=lambda _m: None)
    c = _logged(tmp_path, "coefficient_l2")
    assert c[0] > 0 and c[-1] < 0.5 * c[0], c


def test_stage1_fine_tunes_from_a_model_and_restarts_chosen_factors(tiny_train_config, tmp_path):
    cfg = tiny_train_config(model__head_source="image", model__head_channels=[8, 8, 16], stage1__steps=2)
    quiet = lambda _m: None  # noqa: E731
    base = train_stage1(cfg, tmp_path / "base", log=quiet)
    messages = []
    cfg_mixed = tiny_train_config(model__head_source="image", model__head_channels=[8, 8, 16], stage1__steps=1,
                                  stage1__lr=1e-12, stage1__warmup_steps=0)
    cfg_mixed.model.motion_autoencoder.rgb_from = "mixed"  # not a weight: taken from the config
    tuned = train_stage1(cfg_mixed, tmp_path / "tuned", init=base, reinit=["gaze"], log=messages.append)
    assert any("initialised from" in m for m in messages) and any("gaze encoder" in m for m in messages)
    a, _ = read_tensor_file(base)
    b, _ = read_tensor_file(tuned)
    gaze = [k for k in a if ".fc.encoders.gaze." in k or ".fc.heads.gaze." in k]
    others = [k for k in a if k not in gaze and a[k].is_floating_point()]
    assert gaze and all(torch.allclose(a[k], b[k], atol=1e-6) for k in others)  # lr ~0: the init weights
    assert any(not torch.allclose(a[k], b[k], atol=1e-3) for k in gaze if k.endswith("weight"))
    model, _ = load_model(tuned)
    assert model.cfg.motion_autoencoder.rgb_from == "mixed"
    other = tiny_train_config(model__head_source="image", model__head_channels=[8, 16, 16], stage1__steps=1)
    with pytest.raises(ValueError, match="architecture differs"):
        train_stage1(other, tmp_path / "bad", init=base, log=quiet)
    with pytest.raises(ValueError, match="no factor"):
        train_stage1(cfg, tmp_path / "bad2", init=base, reinit=["hair"], log=quiet)


def test_cli_init_and_reinit(tiny_train_config, tmp_path, capsys):
    cfg = tiny_train_config(stage1__steps=1)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg.to_dict()))
    base = train_stage1(cfg, tmp_path / "base", log=lambda _m: None)
    out = tmp_path / "tuned"
    assert main(["train", "stage1", "--config", str(cfg_path), "--out", str(out), "--init", str(base),
                 "--reinit", "blink", "lip"]) == 0
    assert (out / "stage1" / "model.safetensors").is_file()
    assert main(["train", "stage2", "--config", str(cfg_path), "--out", str(out), "--reinit", "gaze"]) == 2
    assert "stage 1 only" in capsys.readouterr().err


def test_stage2_trains_on_smoothed_pose(tiny_train_config, tmp_path):
    cfg = tiny_train_config(stage1__steps=2, stage2__steps=3, stage2__smooth={"pose": 1.0})
    messages = []
    train_stage1(cfg, tmp_path, log=lambda _m: None)
    train_stage2(cfg, tmp_path, log=messages.append)
    assert any("smoothed the encoded pose" in m for m in messages)
    assert len(_losses(tmp_path, "stage2")) == 3



def test_stage1_trains_only_a_new_painter_of_a_complete_model(tiny_train_config, tmp_path):
    quiet = lambda _m: None  # noqa: E731
    cfg = tiny_train_config(model__flow_subspace=True, model__canonical_appearance=True, stage1__steps=2,
                            stage2__steps=2)
    train_stage1(cfg, tmp_path / "base", log=quiet)
    base = train_stage2(cfg, tmp_path / "base", log=quiet)  # a complete model: stage 1 + FMT + flow scale
    painter = {"factors": ["lip", "blink"], "channels": [8, 8, 8], "hidden": 8}
    cfg_p = tiny_train_config(model__flow_subspace=True, model__canonical_appearance=True, model__painter=painter,
                              stage1__steps=4, stage1__trainable=["motion_autoencoder.painter"])
    messages = []
    tuned = train_stage1(cfg_p, tmp_path / "painted", init=base, log=messages.append)
    assert any("painter starts fresh" in m for m in messages) and any("training only" in m for m in messages)
    a, _ = read_tensor_file(base)
    b, _ = read_tensor_file(tuned)
    assert set(b) - set(a) and all(k.startswith("motion_autoencoder.painter.") for k in set(b) - set(a))
    assert all(torch.equal(a[k], b[k]) for k in a)  # everything else frozen, the FMT carried over
    assert float(b["motion_autoencoder.painter.out.weight"].abs().max()) > 0  # it left its zero init
    model, _ = load_model(tuned)
    source, _ = load_model(base)
    assert model.cfg.painter.factors == ("lip", "blink") and model.cfg.flow_scale == source.cfg.flow_scale
    bad = tiny_train_config(model__painter=painter, stage1__steps=1, stage1__trainable=["motion_autoencoder.paint"])
    with pytest.raises(ValueError, match="names no parameter"):
        train_stage1(bad, tmp_path / "bad", log=quiet)


def test_detach_render_keeps_the_reconstruction_out_of_a_factor_encoder(tiny_train_config, tmp_path):
    only_recon = {k: 0.0 for k in ("lip_nce", "lip", "pose", "gaze_nce", "gaze", "blink", "decorrelation", "kl",
                                   "coefficient_l2")}
    cfg = tiny_train_config(model__head_source="image", model__head_channels=[8, 8, 16], stage1__steps=2,
                            stage1__weights=only_recon, stage1__detach_render=["gaze"])
    quiet = lambda _m: None  # noqa: E731
    init = train_stage1(tiny_train_config(model__head_source="image", model__head_channels=[8, 8, 16],
                                          stage1__steps=1, stage1__lr=1e-12), tmp_path / "init", log=quiet)
    tuned = train_stage1(cfg, tmp_path / "tuned", init=init, log=quiet)
    a, _ = read_tensor_file(init)
    b, _ = read_tensor_file(tuned)
    gaze = [k for k in a if ".fc.encoders.gaze." in k or ".fc.heads.gaze." in k]
    lip = [k for k in a if ".fc.encoders.lip." in k and k.endswith("weight")]
    assert gaze and all(torch.equal(a[k], b[k]) for k in gaze)  # only the reconstruction trains: gaze untouched
    assert any(not torch.equal(a[k], b[k]) for k in lip)  # the lip encoder learns through the render
    with pytest.raises(ValueError, match="detach_render"):
        train_stage1(tiny_train_config(stage1__steps=1, stage1__detach_render=["hair"]), tmp_path / "bad", log=quiet)
    with pytest.raises(ValueError, match="cycle_factors"):
        train_stage1(tiny_train_config(stage1__steps=1, stage1__cycle_factors=["hair"]), tmp_path / "bad2", log=quiet)


class _LinearRenderer:
    """Stand-in auto-encoder for the re-encoding term: 'frames' are 0.01 × latents (inside the renderer's
    [-1, 1]), the encoder reads ``frames / 0.01 @ Q`` and the renderer maps coefficients through ``A``
    (identity: a perfect renderer)."""

    def __init__(self, q, a):
        self.q, self.a = q, a

    def motion_from_coefficients(self, lam):
        return lam @ self.q.T

    def render(self, latent, feats, *, motion):
        return 0.01 * ((motion @ self.q) @ self.a @ self.q.T)

    def coefficients_posterior(self, frames):
        return (frames / 0.01) @ self.q, None


def test_the_re_encoding_term_is_zero_for_a_faithful_renderer_and_measures_leaks():
    from types import SimpleNamespace

    from demo_core.motion.factors import default_factor_layout
    from demo_core.train.config import Stage1Config
    from demo_core.train.objectives import CYCLE_SIGMA_FLOOR, Stage1Objective, block_rows

    layout = default_factor_layout()  # lip 6, pose 6, gaze 2, blink 1, residual 5
    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(40, 20, generator=g, dtype=torch.float64))[0]
    lam = torch.randn(8, 20, generator=g, dtype=torch.float64)
    noise = torch.randn(8, 20, generator=g, dtype=torch.float64)
    h = torch.zeros(8, 40, dtype=torch.float64)

    def term(a, step=1.0, own=1.0, factors=None):
        fake = SimpleNamespace(mae=_LinearRenderer(q, a), layout=layout, cycle_blocks=block_rows(layout, factors),
                               cfg=Stage1Config(cycle_step=step, cycle_own=own))
        recon = fake.mae.render(None, [], motion=fake.mae.motion_from_coefficients(lam))
        return float(Stage1Objective._cycle(fake, recon, lam, h, [], noise))

    eye = torch.eye(20, dtype=torch.float64)
    assert term(eye) < 1e-20
    leak = eye.clone()
    leak[6, 0] = 0.5  # pose coefficient 0 (yaw) moves lip coefficient 0 by half of it
    sigma = lam.std(dim=0).clamp_min(CYCLE_SIGMA_FLOOR)
    rows = torch.arange(8) % 4 == 1  # rows 1 and 5 edit pose
    delta = sigma[6] * noise[rows, 6]
    expected = float(((0.5 * delta / sigma[0]) ** 2).sum() / (8 * 20))
    assert term(leak) == pytest.approx(expected, rel=1e-9)
    assert term(0.5 * eye) > term(0.9 * eye) > 0  # an edit rendered at half strength reads back too small
    assert term(0.5 * eye, own=3.0) == pytest.approx(3.0 * term(0.5 * eye))  # errors in the edited block only
    assert term(leak, own=3.0) == pytest.approx(term(leak))  # errors in another block only
    assert term(leak, factors=["gaze"]) < 1e-20  # only gaze is edited: the pose leak is not exercised
    gaze_leak = eye.clone()
    gaze_leak[12, 14] = 0.5  # gaze x moves the blink coefficient
    assert term(gaze_leak, factors=["gaze"]) > 0 and term(gaze_leak, factors=["lip", "blink"]) < 1e-20


class _PatternRenderer:
    """Stand-in auto-encoder for the locality term: coefficient k paints pattern ``P[k]`` (3, S, S) linearly."""

    def __init__(self, q, patterns):
        self.q, self.p = q, patterns

    def motion_from_coefficients(self, lam):
        return lam @ self.q.T

    def render(self, latent, feats, *, motion):
        return torch.einsum("nm,mchw->nchw", motion @ self.q, self.p)


def test_the_locality_term_is_zero_for_local_edits_and_measures_what_spills():
    from types import SimpleNamespace

    from demo_core.motion.factors import default_factor_layout
    from demo_core.train.config import Stage1Config
    from demo_core.train.objectives import CYCLE_SIGMA_FLOOR, LOCALITY_PARTS, Stage1Objective, block_rows

    layout = default_factor_layout()  # lip 0-5, pose 6-11, gaze 12-13, blink 14, residual 15-19
    S, n = 8, 6
    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(40, 20, generator=g, dtype=torch.float64))[0]
    lam = torch.randn(n, 20, generator=g, dtype=torch.float64)
    noise = torch.randn(n, 20, generator=g, dtype=torch.float64)
    parts = torch.zeros(n, 2, S, S, dtype=torch.float64)
    parts[:, 0, 5:] = 1.0  # mouth: rows 5-7
    parts[:, 1, :3] = 1.0  # eyes: rows 0-2
    patterns = torch.randn(20, 3, S, S, generator=g, dtype=torch.float64)
    patterns[:6] *= parts[0, 0]  # lip draws in the mouth only
    patterns[12:15] *= parts[0, 1]  # gaze and blink in the eyes only (pose and residual anywhere)
    names = [b for b in layout.names if b in LOCALITY_PARTS]
    cfg = Stage1Config(cycle_step=0.5)

    def term(pat, rows=torch.ones(n, dtype=torch.bool)):
        fake = SimpleNamespace(mae=_PatternRenderer(q, pat), cfg=cfg, locality_blocks=block_rows(layout, names),
                               locality_parts=torch.tensor([LOCALITY_PARTS[b] for b in names]))
        recon = fake.mae.render(None, [], motion=fake.mae.motion_from_coefficients(lam))
        h = torch.zeros(n, 40, dtype=torch.float64)
        return float(Stage1Objective._locality(fake, recon, lam, h, [], noise, parts, rows))

    assert names == ["lip", "gaze", "blink"] and term(patterns) < 1e-24
    spill = patterns.clone()
    spill[14, :, 3:5] = 1.0  # the blink coefficient also paints rows 3-4 (outside the eyes), all channels
    sigma = lam.std(dim=0).clamp_min(CYCLE_SIGMA_FLOOR)
    delta = 0.5 * sigma[14] * noise[[2, 5], 14]  # rows 2 and 5 edit blink (row r edits block r mod 3)
    expected = float((delta**2 * 3 * 2 * S).sum() / (S * S) / n)  # 3 channels × 2 rows × S columns per pixel row
    assert term(spill) == pytest.approx(expected, rel=1e-9)
    rows = torch.tensor([False, False, True, False, False, False])  # only row 2 has maps
    assert term(spill, rows) == pytest.approx(float(delta[0] ** 2 * 3 * 2 * S / (S * S)), rel=1e-9)
    mouth_leak = patterns.clone()
    mouth_leak[:6, :, :3] = 1.0  # lip coefficients also paint the eyes
    assert term(mouth_leak) > 0


def test_stage1_locality_term_trains_and_needs_two_part_maps(tiny_train_config, clip_folder, tmp_path):
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        for suffix in (".mp4", ".labels.npz"):
            if (clip_folder / f"clip_{i:05d}{suffix}").is_file():
                shutil.copy(clip_folder / f"clip_{i:05d}{suffix}", data / f"clip_{i:05d}{suffix}")
    cfg = tiny_train_config(stage1__steps=10, data__root=str(data), data__cache_dir=None)
    cfg.stage1.weights.locality = 50.0
    with pytest.raises(DemoInputError, match="two-part"):
        train_stage1(cfg, tmp_path / "none", log=lambda _m: None)
    for i in range(3):  # a mouth band and an eye band in every frame (64×48 clips of 24 frames)
        maps = np.zeros((24, 2, 48, 64), np.uint8)
        maps[:, 0, 30:42, 20:44], maps[:, 1, 8:20, 12:52] = 255, 255
        np.save(data / f"clip_{i:05d}.regions.npy", maps)
    plain = tiny_train_config(stage1__steps=12, data__root=str(data), data__cache_dir=None)
    init = train_stage1(plain, tmp_path / "plain", log=lambda _m: None)  # a renderer whose edits spill
    train_stage1(cfg, tmp_path / "run", init=init, log=lambda _m: None)
    c = _logged(tmp_path / "run", "locality")
    assert all(v > 0 for v in c) and sum(c[-3:]) < sum(c[:3]), c
    assert _logged(tmp_path / "run", "cycle") == [0.0] * 10


def test_stage1_re_encoding_term_trains(tiny_train_config, tmp_path):
    cfg = tiny_train_config(stage1__steps=10)
    cfg.stage1.weights.cycle = 5.0
    train_stage1(cfg, tmp_path, log=lambda _m: None)
    c = _logged(tmp_path, "cycle")
    assert all(v > 0 for v in c) and sum(c[-3:]) < sum(c[:3]), c
    train_stage1(tiny_train_config(stage1__steps=1), tmp_path / "plain", log=lambda _m: None)
    assert _logged(tmp_path / "plain", "cycle") == [0.0]


def _logged(run, name: str, stage: str = "stage1") -> list[float]:
    return [json.loads(line)[name] for line in (run / stage / "metrics.jsonl").read_text().splitlines()]


class _PixelReader:
    """Stand-in encoder for the counterfactual term: the coefficients are the first M pixels of row 0, channel 0."""

    def __init__(self, m):
        self.m = m

    def coefficients_posterior(self, x):
        return x[:, 0, 0, :self.m], None


def test_the_counterfactual_term_penalises_the_other_blocks_and_reads_the_new_labels():
    from types import SimpleNamespace

    from demo_core.motion.factors import default_factor_layout
    from demo_core.train.config import Stage1Config
    from demo_core.train.data import supervised_axes
    from demo_core.train.objectives import CYCLE_SIGMA_FLOOR, Stage1Objective, block_rows

    layout = default_factor_layout()  # lip 0-5, pose 6-11, gaze 12-13, blink 14, residual 15-19
    axes = supervised_axes(layout)
    g = torch.Generator().manual_seed(0)
    b, F, M, S = 2, 3, 20, 24
    mean = torch.randn(b * F, M, generator=g, dtype=torch.float64)
    frames = torch.zeros(b, F, 3, S, S, dtype=torch.float64)
    read = mean.clone()
    read[0, 6:12] += 1.0  # frame 0 swaps pose: its pose block moves (allowed)
    read[0, 12] += 0.5  # … and its gaze x leaks
    read[2, 14] += 0.25  # frame 2 swaps lip: blink leaks
    read[3, 0] += 3.0  # frame 3 has no counterfactual: ignored
    frames[..., 0, 0, :M] = read.reshape(b, F, M)
    block = torch.tensor([[1, 2, 0], [-1, 3, 1]])
    targets = read[:, [a[0] for a in axes]].reshape(b, F, -1).clone()
    targets[0, 0, 3] += 0.5  # frame 0's yaw label is off by 0.5
    batch = SimpleNamespace(counter=frames, counter_block=block, counter_targets=targets)
    fake = SimpleNamespace(mae=_PixelReader(M), cfg=Stage1Config(label_loss="mse"),
                           all_blocks=block_rows(layout, layout.names),
                           axis_index=torch.tensor([a[0] for a in axes]))
    keep, labels = Stage1Objective._counterfactual(fake, batch, mean)
    sigma = mean.std(dim=0).clamp_min(CYCLE_SIGMA_FLOOR)
    # per frame and other block the mean over its coefficients; 5 frames × 4 other blocks
    assert float(keep) == pytest.approx(float(((0.5 / sigma[12]) ** 2 / 2 + (0.25 / sigma[14]) ** 2) / 20), rel=1e-9)
    assert float(labels) == pytest.approx(0.25 / (5 * len(axes)), rel=1e-9)
    none = SimpleNamespace(counter=frames, counter_block=torch.full((b, F), -1), counter_targets=targets)
    assert [float(v) for v in Stage1Objective._counterfactual(fake, none, mean)] == [0.0, 0.0]


def test_stage1_counterfactual_term_trains_and_needs_synthetic_faces(tiny_train_config, synthetic_clip_folder,
                                                                     tmp_path):
    from demo_core.models.loader import load_model
    from demo_core.train.config import Stage1Weights
    from demo_core.train.data import ClipStore, build_stage1_batch
    from demo_core.train.objectives import Stage1Objective

    cfg = tiny_train_config(stage1__steps=12, data__root=str(synthetic_clip_folder), data__cache_dir=None)
    cfg.stage1.weights = Stage1Weights(**{k: 0.0 for k in vars(cfg.stage1.weights)})
    cfg.stage1.weights.counterfactual = 1.0  # alone: what it trains is its own doing
    plain = tiny_train_config(stage1__steps=12, data__root=str(synthetic_clip_folder), data__cache_dir=None)
    init = train_stage1(plain, tmp_path / "plain", log=lambda _m: None)
    out = train_stage1(cfg, tmp_path / "run", init=init, log=lambda _m: None)
    assert all(v > 0 for v in _logged(tmp_path / "run", "counterfactual_labels"))
    assert _logged(tmp_path / "plain", "counterfactual") == [0.0] * 12
    store = ClipStore.from_folder(synthetic_clip_folder, size=64, fps=25.0, sampling_rate=16000)
    g = torch.Generator().manual_seed(5)
    picks = torch.tensor([[0, 0, 2], [1, 3, 5], [0, 1, 9], [1, 2, 0]])
    layout = cfg.model.factors
    batch = build_stage1_batch(store, picks, frames=2, layout=layout, context=2, fps=25.0, sampling_rate=16000,
                               jitter=torch.zeros(4, 5), eps=torch.zeros(4, 2, layout.total),
                               counter=torch.rand(4, 2, 3, generator=g))

    def term(model):
        objective = Stage1Objective(model, cfg.stage1)
        with torch.no_grad():
            mean = objective.mae.coefficients_posterior(batch.driving.flatten(0, 1))[0]
            return sum(float(v) for v in objective._counterfactual(batch, mean))

    a, b = load_model(init)[0], load_model(out)[0]
    assert term(b) < term(a)
    moved = {n.split(".")[1] for (n, p), q in zip(a.named_parameters(), b.parameters()) if not torch.equal(p, q)}
    assert moved == {"enc"}, moved  # the term trains the encoders only (the renderer is not in it)
    faceless = tiny_train_config(stage1__steps=2)
    faceless.stage1.weights.counterfactual = 1.0
    with pytest.raises(DemoInputError, match="counterfactual"):
        train_stage1(faceless, tmp_path / "none", log=lambda _m: None)
