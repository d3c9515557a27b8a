"""python -m demo_core.tools.render_axes: render knots measured on clips, written into a copy of the checkpoint."""

from __future__ import annotations

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.io.checkpoints import read_tensor_file, save_checkpoint
from demo_core.models.demo_model import DemoConfig, DemoModel
from demo_core.models.loader import load_model
from demo_core.tools import render_axes as tool
from tests.models.demo_tiny import tiny_demo_dict
from tests.train.clips import write_clip


@pytest.fixture
def checkpoint_and_clips(tmp_path):
    torch.manual_seed(0)
    model = DemoModel(DemoConfig.from_dict(tiny_demo_dict())).eval()
    src = save_checkpoint(tmp_path / "model.safetensors", model.half(), model.cfg.to_dict())
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(2):
        write_clip(clips / f"c{i}.mp4", seed=i)
    return src, clips


def test_the_knots_invert_the_measured_curve_and_nothing_else_changes(checkpoint_and_clips, tmp_path, monkeypatch,
                                                                    capsys):
    src, clips = checkpoint_and_clips
    calls = []

    def curve(mae, layout, sources, factor, axis, values):  # a decoder drawing 80 % of every pose angle
        calls.append((factor, axis, len(sources), sum(int(s[2].shape[0]) for s in sources), values.numel()))
        return 0.8 * values

    monkeypatch.setattr(tool, "render_curve", curve)
    dst = tmp_path / "knots.safetensors"
    assert tool.main([str(src), str(dst), "--data", str(clips), str(clips), "--axes", "pose.yaw,pose.roll",
                      "--clips", "2", "--frames", "3", "--points", "9"]) == 0
    assert calls == [("pose", "yaw", 4, 12, 9), ("pose", "roll", 4, 12, 9)]  # 2 folders × 2 clips × 3 frames
    assert "knot" in capsys.readouterr().out
    model, _ = load_model(dst)
    block = model.cfg.factors.block("pose")
    assert [len(k) for k in block.axis_render] == [9, 0, 9, 0, 0, 0]
    lo, hi = block.axis_render[0][0][0], block.axis_render[0][-1][0]
    for value in torch.linspace(lo, hi, 7).tolist():  # asking v gives the coefficient the encoder reads as v / 0.8
        assert block.render_coefficient("yaw", value) == pytest.approx(block.axis_coefficient("yaw", value / 0.8))
    a, meta_a = read_tensor_file(src)
    b, meta_b = read_tensor_file(dst)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # float16 weights copied exactly
    assert meta_a["config"] != meta_b["config"]
    assert tool.main([str(src), str(dst), "--data", str(clips), "--clips", "1", "--points", "5"]) == 2
    assert "already exists" in capsys.readouterr().err  # one line, the earlier output untouched


def test_a_real_run_and_the_refusals(checkpoint_and_clips, tmp_path, capsys):
    src, clips = checkpoint_and_clips
    dst = tmp_path / "real.safetensors"
    assert tool.main([str(src), str(dst), "--data", str(clips), "--clips", "1", "--frames", "2", "--points",
                      "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("asked") == 15 and "wrote" in out  # 3 axes × 5 grid values, whatever this random model draws
    assert load_model(dst)[0].cfg.factors.names == load_model(src)[0].cfg.factors.names
    assert tool.main([str(src), str(tmp_path / "x.safetensors"), "--data", str(clips), "--axes", "pose.tilt"]) == 2
    assert "not a semantic axis" in capsys.readouterr().err
    assert tool.main([str(src), str(tmp_path / "y.safetensors"), "--data", str(tmp_path / "none")]) == 2
    with pytest.raises(DemoInputError, match="points"):
        tool.calibrate(src, tmp_path / "z.safetensors", [clips], points=2)
