"""run_benchmark end to end on a tiny random DEMO model and two tiny generated test clips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.models.demo_model import DemoModel
from demo_core.synthetic.benchmark import CALIBRATION_ACTIVE_FRACTION, METRIC_TARGETS, Target, run_benchmark
from demo_core.synthetic.dataset import generate_clip, write_clip
from demo_core.synthetic.speech import Phone, SpeechClip
from tests.models.demo_tiny import tiny_demo_config


def _speech(seconds: float, pitch: float, sr: int = 16000) -> SpeechClip:
    t = np.arange(int(seconds * sr)) / sr
    wav = (0.3 * np.sin(2 * np.pi * pitch * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    phones = [Phone(0.0, 0.2, "sil"), Phone(0.2, 0.4, "m"), Phone(0.4, 0.7, "aa"), Phone(0.7, 0.9, "p"),
              Phone(0.9, seconds, "sil")]
    return SpeechClip(wav, sr, phones, text="ma pa", voice="test", alphabet="arpabet")


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic") / "test"
    folder.mkdir()
    for k in range(2):
        clip = generate_clip(_speech(1.2, 180.0 + 40 * k), 2 * k + 1, size=32,
                             generator=torch.Generator().manual_seed(k), augment_audio=False)
        write_clip(folder / f"clip_{k:05d}", clip)  # 32² clips: the benchmark resizes them to the model's 64²
    return folder


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DemoModel(tiny_demo_config()).eval()


def test_run_benchmark_returns_every_metric(test_split, model):
    kw = dict(num_clips=2, seed=3, steps=2, frames_per_clip=3, max_lag=3)
    res = run_benchmark(model, test_split, **kw)
    assert set(res["metrics"]) == set(METRIC_TARGETS)
    for name, entry in res["metrics"].items():
        assert set(entry) == {"value", "target", "ok", "unit"} and isinstance(entry["value"], float)
        assert (entry["target"] is None) == (entry["ok"] is None) == (METRIC_TARGETS[name] is None)
    assert res["clips"] == ["clip_00000", "clip_00001"]
    for key in ("probe_r2", "axis_readout", "dci", "edit_effect_std", "yaw_readback", "yaw_readback_generated",
                "lip_sync", "keyframe", "driven", "smoothness", "factor_calibration", "encoder_edit_effect_std"):
        assert key in res["details"], key
    freeze = res["details"]["pose_freeze"]  # head motion left with the pose block held
    assert [f["clip"] for f in freeze] == res["clips"]
    for ratio in [f["ratio"] for f in freeze] + [res["metrics"]["pose_freeze_motion"]["value"]]:
        assert math.isnan(ratio) or ratio >= 0
    enc = res["details"]["encoder_edit_effect_std"]  # ground-truth frames redrawn: mouth and head edits read back
    assert set(enc) == {"lip", "pose", "gaze", "blink"} and enc["lip"]["lip"] > 0 and enc["pose"]["pose"] > 0, enc
    calib = res["details"]["factor_calibration"]
    assert [r["direction"] for r in calib["directions"]] == list(range(model.cfg.factors.total))
    if calib["epsilon_std"] is not None:  # each direction stepped by its own spread over the test clips
        std = torch.tensor([r["relative_std"] for r in calib["directions"]], dtype=torch.float64)
        steps = torch.tensor([r["epsilon"] for r in calib["directions"]], dtype=torch.float64)
        ratio = steps / std.clamp_min(CALIBRATION_ACTIVE_FRACTION)
        torch.testing.assert_close(ratio, ratio[0].expand_as(ratio), rtol=1e-6, atol=0)
    for block in ("pose", "lip", "eyes"):
        for name in (f"calibration_overlap.{block}", f"calibration_overlap_all.{block}"):
            v = res["metrics"][name]["value"]
            assert math.isnan(v) or 0.0 <= v <= 1.0 + 1e-9, name
    assert res["details"]["keyframe"]["frame"] == 75 and res["details"]["keyframe"]["num_frames"] > 75
    assert math.isfinite(res["metrics"]["recon_psnr"]["value"])
    again = run_benchmark(model, test_split, **kw)  # deterministic given the seed (to float64 rounding)
    for name, entry in res["metrics"].items():
        a, b = entry["value"], again["metrics"][name]["value"]
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b)) or a == b, name


def test_run_benchmark_with_a_probe_folder(test_split, model):
    res = run_benchmark(model, test_split, num_clips=1, probe_dir=test_split, steps=1, frames_per_clip=2, max_lag=2)
    assert set(res["metrics"]) == set(METRIC_TARGETS) and res["clips"] == ["clip_00000"]
    assert res["settings"]["probe"].endswith("(2 clips)")


def test_run_benchmark_rejects_bad_inputs(test_split, model, tmp_path):
    with pytest.raises(DemoInputError, match="at least 2"):
        run_benchmark(model, test_split, num_clips=1)
    with pytest.raises(DemoInputError, match="at least 2"):
        run_benchmark(model, tmp_path, num_clips=4)
    with pytest.raises(DemoInputError, match="DEMO-native"):
        run_benchmark(torch.nn.Linear(2, 2), test_split)


def test_targets():
    assert Target(">=", 0.8).check(0.8) and not Target(">=", 0.8).check(0.79)
    assert Target("<", 2.0, "deg").check(1.9) and not Target("<", 2.0).check(2.0)
    assert Target("|x|<=", 1.0).check(-1.0) and not Target("|x|<=", 1.0).check(-2.0)
    assert not Target("<", 2.0).check(math.nan)
    assert str(Target("<", 2.0, "deg")) == "< 2 deg"
