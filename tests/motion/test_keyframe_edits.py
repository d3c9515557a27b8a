"""Keyframe curves applied through the factor layout: units, modes, order and errors."""

from __future__ import annotations

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.motion.keyframe_edits import apply_keyframes, keyframe_track_names
from demo_core.motion.keyframes import parse_keyframes
from tests.motion.factor_helpers import assert_only_factor_changed, make_space, trajectory

SPACE = make_space()


def test_turn_15_degrees_at_3_seconds():
    r = trajectory(T=100)
    out = apply_keyframes(r, SPACE, '{"pose.yaw": [[0, 0], [3, 15]]}', fps=25)
    delta = SPACE.axis_value(out, "pose", "yaw") - SPACE.axis_value(r, "pose", "yaw")  # (B, T) degrees
    assert torch.allclose(delta[:, 75:], torch.tensor(15.0, dtype=torch.float64), atol=1e-9, rtol=0)
    assert float(delta[0, 75]) == pytest.approx(15.0, abs=1e-9)
    assert delta[:, 0].abs().max() < 1e-12
    assert (delta[:, 1:76].diff(dim=1) >= -1e-12).all()  # a monotone smooth ramp
    assert_only_factor_changed(SPACE, r, out, "pose")
    dc = SPACE.factor_coordinates(out, "pose") - SPACE.factor_coordinates(r, "pose")
    assert dc[..., 1:].abs().max() < 1e-10  # only the yaw coordinate moved


def test_modes_absolute_gain_and_coordinate_tracks():
    r = trajectory(T=50)
    kset = {"blink.closure": {"mode": "absolute", "interp": "step", "keys": [[0, 0.0], [1.0, 1.0]]},
            "gaze.x": {"mode": "gain", "keys": [[0, 0.5]]},
            "lip.c2": {"mode": "offset", "keys": [[0, 0.25]]}}
    out = apply_keyframes(r, SPACE, kset, fps=25)
    closure = SPACE.axis_value(out, "blink", "closure")
    assert torch.allclose(closure[:, :25], torch.tensor(0.0, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(closure[:, 25:], torch.tensor(1.0, dtype=torch.float64), atol=1e-10)
    torch.testing.assert_close(SPACE.axis_value(out, "gaze", "x"), 0.5 * SPACE.axis_value(r, "gaze", "x"))
    torch.testing.assert_close(SPACE.axis_value(out, "gaze", "y"), SPACE.axis_value(r, "gaze", "y"))
    dl = SPACE.factor_coordinates(out, "lip") - SPACE.factor_coordinates(r, "lip")
    torch.testing.assert_close(dl, torch.tensor([0, 0, 0.25, 0, 0, 0], dtype=torch.float64).expand_as(dl))
    parts_b, perp_b = SPACE.split(r)
    parts_a, perp_a = SPACE.split(out)
    for name in ("pose", "residual"):
        torch.testing.assert_close(parts_a[name], parts_b[name], atol=1e-10, rtol=0)
    torch.testing.assert_close(perp_a, perp_b, atol=1e-10, rtol=0)


def test_factor_gain_track_scales_deviation_from_rest_before_axis_tracks():
    r = trajectory(T=30)
    c = SPACE.factor_coordinates(r, "pose")
    mean = c.mean(1, keepdim=True)
    out = apply_keyframes(r, SPACE, {"pose.gain": [[0, 0.0]], "pose.yaw": [[0, 3.0]]}, fps=25)
    expected = mean.expand_as(c).clone()
    expected[..., 0] += 3.0 / 30.0  # the offset is added after the gain
    torch.testing.assert_close(SPACE.factor_coordinates(out, "pose"), expected, atol=1e-10, rtol=0)
    rest = torch.zeros(6, dtype=torch.float64)
    half = apply_keyframes(r, SPACE, {"pose.gain": [[0, 0.5]]}, fps=25, rest=rest)
    torch.testing.assert_close(SPACE.factor_coordinates(half, "pose"), 0.5 * c, atol=1e-10, rtol=0)


def test_offset_keyframes_are_undone_by_negated_keys():
    r = trajectory(T=60)
    keys = [[0.0, 0.0], [1.0, 10.0], [2.0, -4.0]]
    on = apply_keyframes(r, SPACE, {"pose.pitch": keys, "gaze.y": [[0.5, 0.2]]}, fps=30)
    off = apply_keyframes(on, SPACE, {"pose.pitch": [[t, -v] for t, v in keys], "gaze.y": [[0.5, -0.2]]}, fps=30)
    torch.testing.assert_close(off, r, atol=1e-10, rtol=0)
    assert torch.equal(apply_keyframes(r, SPACE, parse_keyframes(""), fps=25), r)


def test_tracks_are_checked_against_the_layout():
    r = trajectory(T=10)
    with pytest.raises(DemoInputError, match='"eyes.c0".*unknown factor'):
        apply_keyframes(r, SPACE, {"eyes.c0": [[0, 1]]}, fps=25)
    with pytest.raises(DemoInputError, match="lip.c6"):
        apply_keyframes(r, SPACE, {"lip.c6": [[0, 1]]}, fps=25)
    with pytest.raises(DemoInputError, match="needs mode 'gain'"):
        apply_keyframes(r, SPACE, {"lip.gain": {"mode": "offset", "keys": [[0, 1]]}}, fps=25)
    names = keyframe_track_names(SPACE)
    assert "pose.yaw" in names and "pose.c5" in names and "residual.gain" in names and "lip.yaw" not in names
