"""Render knots of semantic axes: the piecewise-linear map, edits through it, and measuring it on a decoder whose
rendering of yaw is known."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.motion.edits import offset_axis, set_axis
from demo_core.motion.factor_space import FactorSpace
from demo_core.motion.factors import FactorBlock, FactorLayout, default_factor_layout
from demo_core.motion.keyframe_edits import apply_keyframes
from demo_core.motion.render_axes import (axis_grid, curve_knots, parse_axes, portrait_render_layout, render_curve,
                                          rising_knots, with_render_knots, without_render_knots)
from tests.motion.factor_helpers import assert_only_factor_changed, orthonormal, trajectory

YAW_KNOTS = ((-16.0, -4.0), (-9.0, -2.0), (0.0, 0.0), (9.5, 2.0), (17.0, 4.0))  # the decoder draws 4 units as 17°


def _yaw_block(knots=YAW_KNOTS, scale=5.0) -> FactorBlock:
    return FactorBlock("pose", 6, axes=("yaw", "pitch"), axis_units=("deg", "deg"), axis_scale=(scale, 5.0),
                       axis_render=(knots, ()))


def _space(knots=YAW_KNOTS) -> FactorSpace:
    layout = default_factor_layout()
    layout = with_render_knots(layout, {("pose", "yaw"): knots})
    return FactorSpace(orthonormal(), layout)


def test_render_coefficient_interpolates_the_knots_and_continues_with_the_encoder_slope():
    b = _yaw_block()
    assert b.render_coefficient("yaw", 9.5) == pytest.approx(2.0)
    assert b.render_coefficient("yaw", 13.25) == pytest.approx(3.0)  # half way between (9.5, 2) and (17, 4)
    assert b.render_coefficient("yaw", 22.0) == pytest.approx(4.0 + 5.0 / 5.0)  # beyond: 1 / scale per degree
    assert b.render_coefficient("yaw", -26.0) == pytest.approx(-4.0 - 10.0 / 5.0)
    values = torch.linspace(-30, 30, 61, dtype=torch.float64)
    back = b.rendered_value("yaw", b.render_coefficient("yaw", values))
    torch.testing.assert_close(back, values)
    assert b.render_coefficient("pitch", 10.0) == b.axis_coefficient("pitch", 10.0) == 2.0  # no knots: linear
    assert b.axis_value("yaw", 4.0) == 20.0  # the encoder's calibration is unchanged
    x32 = torch.tensor([1.0, 15.0], dtype=torch.float32)
    assert b.render_coefficient("yaw", x32).dtype == torch.float32


def test_a_negative_scale_reverses_the_coefficients():
    knots = tuple((v, -c) for v, c in YAW_KNOTS)
    b = _yaw_block(knots, scale=-5.0)
    assert b.render_coefficient("yaw", 9.5) == pytest.approx(-2.0)
    assert b.rendered_value("yaw", -3.0) == pytest.approx(13.25)
    assert b.render_coefficient("yaw", 22.0) == pytest.approx(-5.0)


@pytest.mark.parametrize("knots, why", [
    (((0.0, 0.0),), "one knot"),
    (((0.0, 0.0), (0.0, 1.0)), "values not increasing"),
    (((0.0, 1.0), (1.0, 0.5)), "coefficients against the scale"),
    (((0.0, 0.0), (math.nan, 1.0)), "not finite"),
])
def test_bad_knots_are_refused(knots, why):
    with pytest.raises(DemoInputError, match="axis_render"):
        _yaw_block(knots)


def test_knots_round_trip_through_the_config_json_and_old_configs_have_none():
    layout = with_render_knots(default_factor_layout(), {("pose", "yaw"): YAW_KNOTS})
    again = FactorLayout.from_dict(json.loads(json.dumps(layout.to_dict())))
    assert again == layout and again.block("pose").axis_render[0] == YAW_KNOTS
    plain = default_factor_layout()
    assert "axis_render" not in plain.block("pose").to_dict()
    assert without_render_knots(layout) == plain


def test_edits_in_degrees_go_through_the_knots_and_touch_only_their_coordinate():
    space = _space()
    x = trajectory()
    out = set_axis(x, space, "pose", "yaw", 13.25)
    torch.testing.assert_close(space.factor_coordinates(out, "pose")[..., 0], torch.full((2, 40), 3.0,
                                                                                         dtype=torch.float64))
    torch.testing.assert_close(space.axis_value(out, "pose", "yaw"), torch.full((2, 40), 13.25, dtype=torch.float64))
    assert_only_factor_changed(space, x, out, "pose")
    parts_x, parts_o = space.factor_coordinates(x, "pose"), space.factor_coordinates(out, "pose")
    torch.testing.assert_close(parts_o[..., 1:], parts_x[..., 1:])
    moved = offset_axis(out, space, "pose", "yaw", 3.75)  # 13.25° + 3.75° = 17° → 4 units
    torch.testing.assert_close(space.factor_coordinates(moved, "pose")[..., 0], torch.full((2, 40), 4.0,
                                                                                           dtype=torch.float64))
    torch.testing.assert_close(offset_axis(moved, space, "pose", "yaw", -3.75), out)


def test_keyframes_in_degrees_go_through_the_knots():
    space = _space()
    x = trajectory(T=51)
    keys = '{"pose.yaw": {"mode": "absolute", "interp": "linear", "keys": [[0, 0], [2, 17]]}}'
    out = apply_keyframes(x, space, keys, fps=25.0)
    coord = space.factor_coordinates(out, "pose")[..., 0]
    assert float(coord[0, 50]) == pytest.approx(4.0) and float(coord[0, 0]) == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(space.axis_value(out, "pose", "yaw")[0, 50], torch.tensor(17.0, dtype=torch.float64))
    plain = FactorSpace(space.dictionary, without_render_knots(space.layout))
    assert float(space.factor_coordinates(apply_keyframes(x, plain, keys, fps=25.0), "pose")[0, 50, 0]) == \
        pytest.approx(17.0 / plain.layout.block("pose").axis_scale[0])  # the encoder's calibration


def test_rising_knots_keep_the_rising_run_around_the_centre():
    values = torch.arange(-5.0, 6.0, dtype=torch.float64)
    readback = torch.tensor([-2.0, -2.5, -2.4, -2.0, -1.0, 0.0, 1.0, 2.0, 2.9, 3.0, 3.05], dtype=torch.float64)
    assert rising_knots(values, readback, 0.0) == list(range(2, 9))  # steps gaining < 0.2 of the asked 1 end it
    assert rising_knots(values, torch.zeros(11, dtype=torch.float64), 0.0) == [5]


class _ContractingAutoEncoder:
    """A stand-in auto-encoder whose frames are (scaled) motion latents: the decoder draws pose coordinate 0 as
    ``g(c) = 0.9 tanh(c)`` and the encoder reads frames exactly, so the render curve is known."""

    def __init__(self, q: torch.Tensor, layout: FactorLayout):
        self.q, self.j = q, layout.slices()["pose"].start

    def motion_from_coefficients(self, lam):
        return lam @ self.q.T

    def coefficients_from_motion(self, motion):
        return motion @ self.q

    def encode(self, frames):
        return None, (frames / 0.1) @ self.q, None

    def decode(self, h, feats, motion):
        lam = motion @ self.q
        lam[..., self.j] = 0.9 * torch.tanh(lam[..., self.j])
        return 0.1 * (h + lam @ self.q.T)  # inside the renderer's [-1, 1]


def test_measured_knots_invert_a_known_decoder():
    layout = default_factor_layout()
    block = dataclasses.replace(layout.block("pose"), axis_scale=(20.0, 20.0, 20.0, 1.0, 1.0, 1.0))
    layout = dataclasses.replace(layout, blocks=tuple(block if b.name == "pose" else b for b in layout.blocks))
    q = orthonormal()
    mae = _ContractingAutoEncoder(q, layout)
    model = type("Model", (), {"motion_autoencoder": mae, "cfg": type("Cfg", (), {"factors": layout})()})()
    h = torch.zeros(1, q.shape[0], dtype=torch.float64)
    lam = torch.zeros(1, layout.total, dtype=torch.float64)
    values = axis_grid(block, "yaw", points=21, half_width=30.0)
    readback = render_curve(mae, layout, [(h, [], lam)], "pose", "yaw", values)
    torch.testing.assert_close(readback, 20.0 * 0.9 * torch.tanh(values / 20.0))
    measured = portrait_render_layout(model, h, [], lam @ q.T, ["pose.yaw"], points=21, half_width=30.0)
    assert len(measured.block("pose").axis_render[0]) == 19  # the end steps render < 0.2 of what they ask
    assert measured.block("pose").axis_render[1] == ()

    def drawn(space, target):
        x = set_axis(torch.zeros(1, target.numel(), q.shape[0], dtype=torch.float64), space, "pose", "yaw", target)
        return 20.0 * 0.9 * torch.tanh(space.factor_coordinates(x, "pose")[0, :, 0])

    target = torch.tensor([-14.0, -5.0, 3.0, 12.0], dtype=torch.float64)
    assert float((drawn(FactorSpace(q, measured), target) - target).abs().max()) < 0.3  # knots 3° apart
    assert float((drawn(FactorSpace(q, layout), target) - target).abs().max()) > 1.0  # the contraction shows
    assert curve_knots(block, "yaw", values, torch.zeros_like(values), 0.0) == ()  # nothing rises: no knots


def test_axis_names_are_checked():
    layout = default_factor_layout()
    assert parse_axes("pose.yaw, pose.roll", layout) == [("pose", "yaw"), ("pose", "roll")]
    with pytest.raises(DemoInputError, match="not a semantic axis"):
        parse_axes("pose.tilt", layout)
    assert parse_axes(["pose.tilt", "pose.yaw"], layout, missing_ok=True) == [("pose", "yaw")]
    with pytest.raises(DemoInputError, match="at least one"):
        parse_axes("", layout)
