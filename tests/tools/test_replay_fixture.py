"""The replay tool: passes on the FLOAT fixture, fails on a perturbed one, and handles other configs.

The "other config" fixture is written here by a deliberately plain second implementation (explicit
Euler loop, explicit guidance formula, per-frame decoding) on a model with a different image size,
channel table, number of directions, depth, heads, attention window, step count, guidance scales,
an explicit emotion label, padded audio, no debug tensors and a subset of decoded frames.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from demo_core.models.emotion_encoder import EMOTION_LABELS
from demo_core.models.float_model import FloatConfig, FloatModel
from demo_core.tools.replay_fixture import main, replay_fixture
from tests.conftest import TINY, require_shared, tiny_config


def test_tiny_fixture_passes(capsys):
    require_shared(TINY)
    assert main([str(TINY)]) == 0
    out = capsys.readouterr().out
    for stage in ("motion_ae", "audio_encoder", "emotion_encoder", "fmt", "sampler"):
        assert stage in out
    assert out.strip().endswith("PASS")


def _copy_fixture(dst):
    require_shared(TINY)
    dst.mkdir()
    for f in TINY.iterdir():
        shutil.copy(f, dst / f.name)
    return dst


def test_perturbed_tensor_fails(tmp_path, capsys):
    d = _copy_fixture(tmp_path / "fx")
    ref = load_file(str(d / "fmt.safetensors"))
    ref["forward.t_batch.out"] = ref["forward.t_batch.out"].clone()
    ref["forward.t_batch.out"][0, 3, 7] += 1e-2
    save_file(ref, str(d / "fmt.safetensors"))
    assert main([str(d)]) == 1
    out = capsys.readouterr().out
    assert "BAD forward.t_batch.out" in out and out.strip().endswith("FAIL")


def test_not_a_fixture_exit_2(tmp_path):
    assert main([str(tmp_path)]) == 2


def _other_options() -> tuple[dict, dict]:
    opts = dict(tiny_config()["options"])
    opts.update({"input_size": 128, "dim_m": 12, "dim_h": 48, "fmt_depth": 3, "num_heads": 3,
                 "attention_window": 3, "nfe": 6, "num_prev_frames": 6, "wav2vec_sec": 1.2})
    channels = {"4": 32, "8": 24, "16": 24, "32": 16, "64": 12, "128": 8}
    return opts, channels


def _write_other_fixture(d) -> None:
    """Write a fixture for a different configuration with a plain reference implementation."""
    torch.manual_seed(7)
    opts, channels = _other_options()
    cfg = FloatConfig.from_float_options(opts, channels)
    model = FloatModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and name != "fmt.pos_embed":
                p.add_(0.05 * torch.randn_like(p))
            if "to_flows" in name and name.endswith("conv.weight"):
                p.mul_(0.1)
    g = torch.Generator().manual_seed(3)
    batch, size = 1, 128
    image = torch.tanh(1.5 * torch.nn.functional.interpolate(torch.randn(batch, 3, 6, 6, generator=g), size=size,
                                                             mode="bilinear", align_corners=False))
    seconds = 2.63  # 66 frames at 25 fps: two windows of 30 and padding inside both audio and last window
    n = int(seconds * 16000)
    t = torch.arange(n) / 16000
    raw = (torch.sin(2 * torch.pi * 220 * t) * (0.5 + 0.5 * torch.sin(2 * torch.pi * 3 * t))).unsqueeze(0)
    a = (raw - raw.mean(-1, keepdim=True)) / torch.sqrt(raw.var(-1, unbiased=False, keepdim=True) + 1e-7)
    frames = -(-n * 25 // 16000)
    nfe, a_cfg, e_cfg = 6, 1.5, 1.3
    label = "happy"
    length, prefix = cfg.flow_transformer.num_frames, cfg.flow_transformer.num_prev_frames
    with torch.no_grad():
        mae = model.motion_autoencoder
        h, lam, feats = mae.encode(image)
        q = mae.directions()
        r_s = lam @ q.T
        wa = model.audio_encoder(a, frames)
        we = torch.zeros(batch, 1, 7)
        we[:, :, EMOTION_LABELS.index(label)] = 1.0
        grid = torch.linspace(0, 1, nfe)
        out, chunks = {}, []
        prev_x = torch.zeros(batch, prefix, 512)
        prev_wa = torch.zeros(batch, prefix, 512)
        k = 0
        while k * length < frames:
            wa_k = wa[:, k * length:(k + 1) * length]
            if wa_k.shape[1] < length:
                wa_k = torch.cat([wa_k, wa_k[:, -1:].expand(-1, length - wa_k.shape[1], -1)], dim=1)
            x = torch.randn(batch, length, 512, generator=g)
            out[f"chunk{k}.x0"] = x.clone()
            for i in range(nfe - 1):
                tt = grid[i:i + 1]
                u = model.fmt(x, tt, prev_x=prev_x, wr=r_s, wa=torch.zeros_like(wa_k), prev_wa=prev_wa,
                              we=torch.zeros_like(we))
                c = model.fmt(x, tt, prev_x=prev_x, wr=r_s, wa=wa_k, prev_wa=prev_wa, we=we)
                ao = model.fmt(x, tt, prev_x=prev_x, wr=r_s, wa=wa_k, prev_wa=prev_wa, we=torch.zeros_like(we))
                v = (u + a_cfg * (ao - u) + e_cfg * (c - ao))[:, prefix:]
                x = x + (grid[i + 1] - grid[i]) * v
            out[f"chunk{k}.sample"] = x.clone()
            chunks.append(x)
            prev_x, prev_wa = x[:, -prefix:], wa_k[:, -prefix:]
            k += 1
        sample = torch.cat(chunks, dim=1)[:, :frames]
        index = torch.tensor([0, 17, 41, frames - 1])
        d_hat = torch.stack([mae.render(h + sample[:, j], feats) for j in index.tolist()], dim=1)
    out.update({"input.s": image, "input.a": a, "T": torch.tensor([frames]), "r_s": r_s, "wa": wa, "we": we,
                "sample": sample, "d_hat": d_hat, "d_hat_frame_index": index})
    d.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "weights.safetensors"))
    save_file({k: v.contiguous() for k, v in out.items()}, str(d / "sampler.safetensors"))
    mae_out = {"input.image": image, "enc.h_source": h, "enc.lambda": lam, "direction.Q": q}
    save_file({k: v.contiguous() for k, v in mae_out.items()}, str(d / "motion_ae.safetensors"))
    config = {"options": opts, "channels": channels, "weights_file": "weights.safetensors",
              "sampler": {"a_cfg_scale": a_cfg, "e_cfg_scale": e_cfg, "r_cfg_scale": 1.0, "emo": label, "nfe": nfe,
                          "ode_method": "euler"}}
    (d / "config.json").write_text(json.dumps(config))


def test_other_config_replays(tmp_path):
    require_shared(TINY)
    d = tmp_path / "other"
    _write_other_fixture(d)
    results = {c.stage: c for c in replay_fixture(d)}
    assert set(results) == {"motion_ae", "sampler"}
    sampler = results["sampler"]
    assert {"sample", "d_hat", "chunk0.x0", "chunk2.sample", "we", "wa"} <= set(sampler.results), sampler.results
    bad = {k: v for c in results.values() for k, v in c.results.items() if not v[2]}
    assert not bad, bad
    assert main([str(d)]) == 0
