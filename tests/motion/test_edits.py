"""Factor edits: each changes only its factor, inverses give back the input, and the maths of each edit."""

from __future__ import annotations

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.motion.edits import (
    freeze_factor,
    gaussian_kernel,
    offset_axis,
    offset_factor,
    replace_factor,
    scale_factor,
    set_axis,
    smooth_factor,
)
from tests.motion.factor_helpers import assert_only_factor_changed, make_space, trajectory

SPACE = make_space()


def coords(r, factor):
    return SPACE.factor_coordinates(r, factor)


def test_scale_factor_maths_locality_and_inverse():
    r = trajectory()
    out = scale_factor(r, SPACE, "lip", 2.5)
    c, mean = coords(r, "lip"), coords(r, "lip").mean(1, keepdim=True)
    torch.testing.assert_close(coords(out, "lip"), mean + 2.5 * (c - mean), atol=1e-10, rtol=0)
    assert_only_factor_changed(SPACE, r, out, "lip")
    torch.testing.assert_close(scale_factor(out, SPACE, "lip", 1 / 2.5), r, atol=1e-10, rtol=0)
    # gain 0 holds the factor at its mean; gain 1 is a no-op
    torch.testing.assert_close(coords(scale_factor(r, SPACE, "lip", 0.0), "lip"), mean.expand_as(c), atol=1e-10, rtol=0)
    torch.testing.assert_close(scale_factor(r, SPACE, "lip", 1.0), r, atol=1e-12, rtol=0)


def test_per_frame_gain_with_explicit_rest_is_undone():
    r = trajectory()
    gain = torch.linspace(0.5, 2.0, r.shape[1], dtype=torch.float64)  # (T,)
    rest = torch.randn(2, 6, dtype=torch.float64)
    out = scale_factor(r, SPACE, "pose", gain, rest=rest)
    expected = rest[:, None] + gain[None, :, None] * (coords(r, "pose") - rest[:, None])
    torch.testing.assert_close(coords(out, "pose"), expected, atol=1e-10, rtol=0)
    assert_only_factor_changed(SPACE, r, out, "pose")
    torch.testing.assert_close(scale_factor(out, SPACE, "pose", 1 / gain, rest=rest), r, atol=1e-10, rtol=0)
    per_portrait = torch.stack([gain, 2 * gain])  # (B, T)
    torch.testing.assert_close(coords(scale_factor(r, SPACE, "pose", per_portrait, rest="first"), "pose")[1, 0],
                               coords(r, "pose")[1, 0])


def test_offset_factor_and_offset_axis_inverse():
    r = trajectory()
    off = torch.randn(40, 2, dtype=torch.float64)  # per frame (T, k)
    out = offset_factor(r, SPACE, "gaze", off)
    torch.testing.assert_close(coords(out, "gaze") - coords(r, "gaze"), off.expand(2, -1, -1), atol=1e-10, rtol=0)
    assert_only_factor_changed(SPACE, r, out, "gaze")
    torch.testing.assert_close(offset_factor(out, SPACE, "gaze", -off), r, atol=1e-10, rtol=0)

    turned = offset_axis(r, SPACE, "pose", "yaw", 15.0)
    delta = SPACE.axis_value(turned, "pose", "yaw") - SPACE.axis_value(r, "pose", "yaw")
    torch.testing.assert_close(delta, torch.full((2, 40), 15.0, dtype=torch.float64), atol=1e-9, rtol=0)
    dc = coords(turned, "pose") - coords(r, "pose")
    torch.testing.assert_close(dc[..., 0], torch.full((2, 40), 0.5, dtype=torch.float64))  # 15° / 30° per unit
    assert dc[..., 1:].abs().max() < 1e-10
    assert_only_factor_changed(SPACE, r, turned, "pose")
    torch.testing.assert_close(offset_axis(turned, SPACE, "pose", "yaw", -15.0), r, atol=1e-10, rtol=0)


def test_set_axis_sets_the_value_in_its_unit():
    r = trajectory()
    out = set_axis(r, SPACE, "pose", "scale", 1.1)  # zoom ratio, offset 1, scale 0.2 per unit
    torch.testing.assert_close(SPACE.axis_value(out, "pose", "scale"), torch.full((2, 40), 1.1, dtype=torch.float64))
    torch.testing.assert_close(coords(out, "pose")[..., :5], coords(r, "pose")[..., :5], atol=1e-10, rtol=0)
    assert_only_factor_changed(SPACE, r, out, "pose")


def test_relative_replace_keeps_own_rest_pose():
    own, drive = trajectory(seed=1), trajectory(seed=2)
    ref = 7
    out = replace_factor(own, SPACE, "pose", drive, ref_frame=ref)
    new, d = coords(out, "pose"), coords(drive, "pose")
    torch.testing.assert_close(new[:, ref], coords(own, "pose")[:, ref], atol=1e-10, rtol=0)
    torch.testing.assert_close(new - new[:, ref : ref + 1], d - d[:, ref : ref + 1], atol=1e-10, rtol=0)
    assert_only_factor_changed(SPACE, own, out, "pose")
    # rest given explicitly (e.g. the portrait's source pose)
    rest = torch.randn(6, dtype=torch.float64)
    out2 = replace_factor(own, SPACE, "pose", drive, ref_frame=ref, rest=rest)
    torch.testing.assert_close(coords(out2, "pose")[:, ref], rest.expand(2, -1), atol=1e-10, rtol=0)


def test_absolute_replace_and_its_inverse_from_coefficients():
    own, drive = trajectory(seed=1), trajectory(B=1, seed=2)
    lam = drive @ SPACE.dictionary  # a driving video's coefficients (1, T, M), broadcast to B = 2
    out = replace_factor(own, SPACE, "gaze", lam, relative=False)
    torch.testing.assert_close(coords(out, "gaze"), coords(drive, "gaze").expand(2, -1, -1), atol=1e-10, rtol=0)
    assert_only_factor_changed(SPACE, own, out, "gaze")
    back = replace_factor(out, SPACE, "gaze", own, relative=False)
    torch.testing.assert_close(back, own, atol=1e-10, rtol=0)
    with pytest.raises(DemoInputError, match="match_length"):
        replace_factor(own, SPACE, "gaze", drive[:, :10], relative=False)


def test_freeze_factor_holds_a_frame_or_a_value():
    r = trajectory()
    out = freeze_factor(r, SPACE, "pose", frame=-1)
    torch.testing.assert_close(coords(out, "pose"), coords(r, "pose")[:, -1:].expand(-1, 40, -1), atol=1e-10, rtol=0)
    assert_only_factor_changed(SPACE, r, out, "pose")
    camera = freeze_factor(r, SPACE, "gaze", value=torch.zeros(2, dtype=torch.float64))  # look at the camera
    assert coords(camera, "gaze").abs().max() < 1e-10
    with pytest.raises(DemoInputError, match="frame"):
        freeze_factor(r, SPACE, "pose", frame=40)


def test_smooth_factor_gaussian_maths():
    r = trajectory(T=41)
    sigma = 2.0
    kernel = gaussian_kernel(sigma)
    assert kernel.shape == (13,) and abs(float(kernel.sum()) - 1) < 1e-12
    # an impulse on lip c0 in the middle comes out as the kernel; the ends are edge-padded
    base = SPACE.with_factor(r, "lip", torch.zeros(6, dtype=torch.float64))
    bump = torch.zeros(41, 6, dtype=torch.float64)
    bump[20, 0] = 1.0
    impulse = offset_factor(base, SPACE, "lip", bump)
    out = smooth_factor(impulse, SPACE, "lip", sigma)
    c = coords(out, "lip")
    torch.testing.assert_close(c[0, 14:27, 0], kernel, atol=1e-10, rtol=0)
    assert c[..., 1:].abs().max() < 1e-10 and c[0, :14, 0].abs().max() < 1e-10
    assert_only_factor_changed(SPACE, impulse, out, "lip")
    # a constant stays constant (edge padding, not zero padding)
    const = SPACE.with_factor(r, "gaze", torch.tensor([0.3, -0.2], dtype=torch.float64))
    torch.testing.assert_close(smooth_factor(const, SPACE, "gaze", 5.0), const, atol=1e-10, rtol=0)
    assert torch.equal(smooth_factor(r, SPACE, "gaze", 0), r)
    # smoothing lowers frame-to-frame jitter
    jitter = lambda x: coords(x, "pose").diff(dim=1).abs().mean()  # noqa: E731
    assert jitter(smooth_factor(r, SPACE, "pose", 3.0)) < 0.5 * jitter(r)


def test_edits_never_modify_inputs_and_check_arguments():
    r = trajectory()
    keep = r.clone()
    scale_factor(r, SPACE, "lip", 2.0)
    offset_factor(r, SPACE, "lip", 1.0)
    smooth_factor(r, SPACE, "lip", 1.0)
    assert torch.equal(r, keep)
    with pytest.raises(DemoInputError, match="gain"):
        scale_factor(r, SPACE, "lip", torch.ones(7))
    with pytest.raises(DemoInputError, match="offset"):
        offset_factor(r, SPACE, "lip", torch.ones(5))
    with pytest.raises(DemoInputError, match="rest"):
        scale_factor(r, SPACE, "lip", 2.0, rest="median")
    with pytest.raises(DemoInputError, match="gain: expected a number"):
        scale_factor(r, SPACE, "lip", "loud")
    with pytest.raises(DemoInputError, match="latents"):
        scale_factor(r[0], SPACE, "lip", 2.0)
    with pytest.raises(DemoInputError, match="sigma"):
        smooth_factor(r, SPACE, "lip", -1.0)
    with pytest.raises(DemoInputError, match="unknown factor"):
        offset_factor(r, SPACE, "mouth", 1.0)
    # float32 trajectories work and stay float32
    r32 = trajectory(dtype=torch.float32)
    out = offset_axis(r32, make_space(), "pose", "yaw", 15.0)
    assert out.dtype == torch.float32
    assert_only_factor_changed(SPACE, r32.double(), out.double(), "pose", atol=1e-5)
