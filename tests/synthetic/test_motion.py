"""Pose / gaze / blink processes: ranges, rates, shapes of events, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from demo_core.synthetic.motion import sample_blinks, sample_gaze, sample_motion, sample_pose

FPS = 25.0


def _g(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("mode", ["talk", "idle"])
def test_blink_rate_and_duration(mode):
    n = int(10 * 60 * FPS)  # ten minutes
    blink, onsets = sample_blinks(n, FPS, _g(1), mode)
    rate = len(onsets) / 10.0
    assert 12.0 <= rate <= 24.0, rate
    closed = (blink > 0.5).numpy().astype(np.int8)
    episodes = int((np.diff(closed) == 1).sum())
    assert 10.0 <= episodes / 10.0 <= 24.0
    edges = np.diff(np.r_[0, (blink > 0.02).numpy().astype(np.int8), 0])
    runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    assert runs.max() <= int(0.3 * FPS) + 1  # each blink lasts at most ~300 ms
    assert float(blink.min()) >= 0.0 and float(blink.max()) <= 1.0 and float((blink > 0.02).float().mean()) < 0.15


def test_blink_closes_fast_and_opens_slowly():
    fps = 1000.0
    blink, onsets = sample_blinks(int(20 * fps), fps, _g(2))
    b = blink.numpy()
    for t0 in onsets.tolist()[:10]:
        k0 = int(round(t0 * fps))
        seg = b[k0:k0 + 400]
        if seg.max() < 0.5:
            continue
        peak = int(seg.argmax())
        end = int(np.flatnonzero(seg[peak:] > 0.01)[-1]) + peak
        assert peak < end - peak, "closing should be faster than reopening"


def test_pose_bounded_smooth_and_varied():
    n = int(120 * FPS)
    pose = sample_pose(n, FPS, _g(3))
    lim = {"yaw": 25, "pitch": 15, "roll": 12, "tx": 0.12, "ty": 0.1}
    for k, v in lim.items():
        assert float(pose[k].abs().max()) <= v
    assert float((pose["scale"] - 1).abs().max()) <= 0.08
    assert 2.0 < float(pose["yaw"].std()) < 15.0 and float(pose["yaw"].abs().max()) > 8.0
    assert float(pose["yaw"].diff().abs().max()) < 3.0  # < 75 deg/s: smooth at 25 fps
    idle = sample_pose(n, FPS, _g(3), "idle")
    assert float(idle["yaw"].std()) < float(pose["yaw"].std())


def test_gaze_fixations_and_saccades():
    gaze = sample_gaze(int(60 * FPS), FPS, _g(4))
    v = torch.hypot(gaze["gaze_x"].diff(), gaze["gaze_y"].diff())
    assert float((v < 0.05).float().mean()) > 0.7  # mostly fixating
    assert int((v > 0.2).sum()) > 20  # with saccades
    assert float(gaze["gaze_x"].abs().max()) <= 1 and float(gaze["gaze_y"].abs().max()) <= 1


def test_seeded_determinism_and_independence_of_speech():
    a = sample_motion(200, FPS, _g(5))
    b = sample_motion(200, FPS, _g(5))
    c = sample_motion(200, FPS, _g(6))
    assert set(a) == {"yaw", "pitch", "roll", "tx", "ty", "scale", "gaze_x", "gaze_y", "blink"}
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["yaw"], c["yaw"])
    assert all(v.shape == (200,) and v.dtype == torch.float32 for v in a.values())
