"""Blink profile shape, natural blink rate with a seeded generator, inserting and damping blinks."""

from __future__ import annotations

import pytest
import torch

from demo_core.errors import DemoInputError
from demo_core.motion.blinks import blink_curve, blink_profile, damp_blinks, insert_blinks, natural_blink_times
from demo_core.motion.edits import set_axis
from tests.motion.factor_helpers import assert_only_factor_changed, make_space, trajectory

SPACE = make_space()


def test_profile_closes_fast_and_opens_slowly():
    duration, fraction = 0.3, 1 / 3
    tau = torch.linspace(-0.1, 0.4, 5001, dtype=torch.float64)
    p = blink_profile(tau, duration, fraction)
    assert float(p.max()) == pytest.approx(1.0, abs=1e-6)
    peak = float(tau[p.argmax()])
    assert peak == pytest.approx(0.1, abs=1e-3)  # closed after a third of the blink
    assert (p[(tau < 0) | (tau >= duration)] == 0).all()
    assert (p[(tau >= 0) & (tau <= peak)].diff() >= 0).all() and (p[(tau >= peak) & (tau < duration)].diff() <= 0).all()
    # half-closed points: 0.05 s into closing, 0.1 s into opening
    half = blink_profile(torch.tensor([0.05, 0.2], dtype=torch.float64), duration, fraction)
    torch.testing.assert_close(half, torch.tensor([0.5, 0.5], dtype=torch.float64))
    with pytest.raises(DemoInputError, match="close_fraction"):
        blink_profile(tau, 0.3, 1.0)


def test_blink_curve_at_frame_times():
    curve = blink_curve(50, 25, [0.4, 1.2], duration=0.3)
    assert curve.shape == (50,)
    assert float(curve[10]) == 0.0 and float(curve[30]) == 0.0  # starts exactly at frames 10 and 30
    assert 0.9 < float(curve[12]) <= 1.0 and 0.9 < float(curve[32]) <= 1.0  # ~0.1 s later: nearly closed
    assert float(curve[20]) == 0.0 and float(curve[40]) == 0.0
    assert torch.equal(blink_curve(5, 25, []), torch.zeros(5, dtype=torch.float64))


def test_natural_rate_is_seeded_and_human():
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    times = natural_blink_times(1800.0, rate=17.0, generator=g())
    assert torch.equal(times, natural_blink_times(1800.0, rate=17.0, generator=g()))
    assert not torch.equal(times[:5], natural_blink_times(1800.0, generator=torch.Generator().manual_seed(8))[:5])
    per_minute = len(times) / 30
    assert 15 <= per_minute <= 20
    gaps = times.diff()
    assert float(gaps.min()) >= 1.0 and float(times[0]) >= 1.0 and float(times[-1]) < 1800
    slow = natural_blink_times(1800.0, rate=8.0, generator=g())
    assert 6 <= len(slow) / 30 <= 10
    with pytest.raises(DemoInputError, match="rate"):
        natural_blink_times(10.0, rate=70.0, min_interval=1.0)


def test_insert_blinks_blend_and_add():
    r = set_axis(trajectory(T=50), SPACE, "blink", "closure", 0.1)  # eyes mostly open
    out = insert_blinks(r, SPACE, [0.4], fps=25)
    closure = SPACE.axis_value(out, "blink", "closure")
    curve = blink_curve(50, 25, [0.4]).to(closure)
    torch.testing.assert_close(closure, ((1 - curve) * 0.1 + curve * 1.0).expand(2, -1), atol=1e-10, rtol=0)
    assert_only_factor_changed(SPACE, r, out, "blink")
    added = insert_blinks(r, SPACE, [0.4, 1.0], fps=25, amplitude=0.7, mode="add")
    assert_only_factor_changed(SPACE, r, added, "blink")
    back = insert_blinks(added, SPACE, [0.4, 1.0], fps=25, amplitude=-0.7, mode="add")
    torch.testing.assert_close(back, r, atol=1e-10, rtol=0)
    with pytest.raises(DemoInputError, match="mode"):
        insert_blinks(r, SPACE, [0.4], fps=25, mode="max")


def test_damp_blinks_keeps_open_level():
    r = set_axis(trajectory(T=50), SPACE, "blink", "closure", 0.1)
    blinking = insert_blinks(r, SPACE, [0.4, 1.2], fps=25)
    calm = damp_blinks(blinking, SPACE, 0.25)
    v, v0 = SPACE.axis_value(calm, "blink", "closure"), SPACE.axis_value(blinking, "blink", "closure")
    torch.testing.assert_close(v, 0.1 + 0.25 * (v0 - 0.1), atol=1e-10, rtol=0)
    assert_only_factor_changed(SPACE, blinking, calm, "blink")
    none = SPACE.axis_value(damp_blinks(blinking, SPACE, 0.0), "blink", "closure")
    assert torch.allclose(none, torch.tensor(0.1, dtype=torch.float64), atol=1e-10)
