"""Motion-basis sign conventions: LAPACK's signs flip under tiny weight changes, the positive convention does
not; the conversion tool keeps the basis a model reconstructs best with and changes nothing else."""

from __future__ import annotations

import re

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.io.checkpoints import read_tensor_file, save_checkpoint
from demo_core.models.demo_model import DemoConfig, DemoModel
from demo_core.models.loader import load_model
from demo_core.models.motion_autoencoder import Direction, MotionAutoEncoderConfig
from demo_core.tools.common import training_clips
from demo_core.tools.basis_signs import (_reconstruction_error, fragile_columns, lapack_basis, main,
                                         positive_sign_weight)
from tests.models.demo_tiny import tiny_demo_dict
from tests.train.clips import write_clip


def _fragile_weight(w00: float) -> torch.Tensor:
    """Random (32, 6) weights whose first Householder pivot is w00 + 1e-8 (its sign sets column 0's sign)."""
    w = torch.randn(32, 6, generator=torch.Generator().manual_seed(0))
    w[0, 0] = w00 - 1e-8
    return w


def _basis(weight: torch.Tensor, positive: bool) -> torch.Tensor:
    d = Direction(*weight.shape, positive=positive)
    with torch.no_grad():
        d.weight.copy_(weight)
    return d.basis()


def test_lapack_signs_flip_under_a_tiny_change_the_positive_ones_do_not():
    a, b = _fragile_weight(1e-6), _fragile_weight(-1e-6)
    with torch.no_grad():
        qa, qb = _basis(a, False), _basis(b, False)
        pa, pb = _basis(a, True), _basis(b, True)
    assert float((qa[:, 0] * qb[:, 0]).sum()) < -0.99  # LAPACK: column 0 flipped
    torch.testing.assert_close(qa[:, 1:], qb[:, 1:], atol=1e-4, rtol=0)
    torch.testing.assert_close(pa, pb, atol=1e-4, rtol=0)  # positive: continuous
    q, r = torch.linalg.qr(a + 1e-8)
    assert torch.allclose(pa.T @ (a + 1e-8), torch.diagonal(r).abs().diag() + (pa.T @ (a + 1e-8)).triu(1), atol=1e-4)
    assert fragile_columns(a) == [0] and fragile_columns(torch.randn(32, 6)) == []


def test_positive_sign_weight_reproduces_any_signed_basis():
    w = torch.randn(32, 6, generator=torch.Generator().manual_seed(1))
    q, _ = lapack_basis(w)
    target = q * torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    w2 = positive_sign_weight(w, target)
    assert torch.equal(w2.abs(), w.abs())
    torch.testing.assert_close(_basis(w2, True).double(), target, atol=1e-5, rtol=0)
    with pytest.raises(DemoInputError, match="not ±"):
        positive_sign_weight(w, torch.linalg.qr(torch.randn(32, 6, dtype=torch.float64))[0])


def test_config_key_round_trip():
    assert MotionAutoEncoderConfig(size=64).basis_signs == "lapack"  # FLOAT's behaviour by default
    cfg = MotionAutoEncoderConfig(size=64, basis_signs="positive")
    assert MotionAutoEncoderConfig.from_dict(cfg.to_dict()).basis_signs == "positive"
    with pytest.raises(DemoInputError, match="basis_signs"):
        MotionAutoEncoderConfig(size=64, basis_signs="sorted")


def test_the_tool_keeps_the_best_reconstructing_signs_and_nothing_else(tmp_path, capsys):
    d = tiny_demo_dict()
    d["canonical_appearance"] = True
    torch.manual_seed(0)
    model = DemoModel(DemoConfig.from_dict(d)).eval()
    with torch.no_grad():  # make column 0 fragile: its Householder pivot is w[0, 0] + 1e-8
        model.motion_autoencoder.dec.direction.weight[0, 0] = 1e-7 - 1e-8
    src, dst = tmp_path / "lapack.safetensors", tmp_path / "positive.safetensors"
    save_checkpoint(src, model, model.cfg.to_dict())
    (tmp_path / "clips").mkdir()
    for i in range(2):
        write_clip(tmp_path / "clips" / f"c{i}.mp4", seed=i)
    assert main([str(src), str(dst), "--data", str(tmp_path / "clips"), "--clips", "2", "--frames", "6"]) == 0
    out = capsys.readouterr().out
    errors = {m.group(1): float(m.group(2)) for m in re.finditer(r"signs (\{[^}]*\}): reconstruction L1 ([0-9.]+)", out)}
    fragile = [int(j) for j in re.search(r"fragile basis columns: \[([0-9, ]+)\]", out).group(1).split(",")]
    assert 0 in fragile and len(errors) == 2 ** len(fragile)
    converted, _ = load_model(dst)
    assert converted.cfg.motion_autoencoder.basis_signs == "positive"
    clips = training_clips(tmp_path / "clips", 64, 2, 6)
    assert _reconstruction_error(converted.motion_autoencoder.eval(), clips) == pytest.approx(min(errors.values()),
                                                                                             abs=2e-5)
    a, _ = read_tensor_file(src)
    b, _ = read_tensor_file(dst)
    assert all(torch.equal(a[k], b[k]) for k in a if k != "motion_autoencoder.dec.direction.weight")
    assert torch.equal(a["motion_autoencoder.dec.direction.weight"].abs(), b["motion_autoencoder.dec.direction.weight"].abs())
    with pytest.raises(DemoInputError, match="already"):
        from demo_core.tools.basis_signs import convert
        convert(dst, tmp_path / "again.safetensors", tmp_path / "clips")
    assert main([str(src), str(tmp_path / "x.safetensors"), "--data", str(tmp_path / "none")]) == 2
