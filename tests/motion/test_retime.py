"""Frame counts and trajectory retiming (demo_core/motion/retime.py)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from demo_core.errors import DemoInputError
from demo_core.motion.retime import fps_fraction, num_video_frames, resample_trajectory

RATES = [8000, 16000, 22050, 44100, 48000]
# Integer rates 10..60 plus the usual fractional ones.
FPS = st.one_of(
    st.integers(10, 60),
    st.sampled_from([29.97, 23.976, 59.94, 12.5, 24.5, Fraction(30000, 1001), Fraction(24000, 1001)]),
    st.integers(1000, 6000).map(lambda k: k / 100),  # two-decimal floats 10.00..60.00
)


def test_fps_fraction_exact_forms():
    assert fps_fraction(25) == 25
    assert fps_fraction(29.97) == Fraction(2997, 100)
    assert fps_fraction(23.976) == Fraction(2997, 125)
    assert fps_fraction(30000 / 1001) == Fraction(30000, 1001)
    assert fps_fraction(Fraction(30000, 1001)) == Fraction(30000, 1001)


@pytest.mark.parametrize("bad", [0, -25, float("nan"), float("inf"), True, "25", None])
def test_fps_fraction_rejects(bad):
    with pytest.raises(DemoInputError, match="fps"):
        fps_fraction(bad)


def test_known_counts():
    assert num_video_frames(48000, 16000, 25) == 75  # 3.0 s at 25 fps, exactly
    assert num_video_frames(48000, 16000, 25.0) == 75
    assert num_video_frames(48001, 16000, 25) == 76
    assert num_video_frames(0, 16000, 25) == 0
    assert num_video_frames(44100 * 10, 44100, 29.97) == 300  # 299.7 → 300
    assert num_video_frames(1001 * 16, 16000, Fraction(30000, 1001)) == 30  # exactly 1.001 s


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 2_000_000), sample_rate=st.sampled_from(RATES), fps=FPS)
def test_count_is_exact_ceil_and_counts_frame_times(n, sample_rate, fps):
    count = num_video_frames(n, sample_rate, fps)
    rate = Fraction(fps) if isinstance(fps, (int, Fraction)) else Fraction(str(fps))
    duration = Fraction(n, sample_rate)
    assert count == math.ceil(duration * rate)
    # the frames whose start time k / fps lies inside the clip, counted one by one
    assert all(Fraction(k) / rate < duration for k in range(count))
    assert Fraction(count) / rate >= duration


@pytest.mark.parametrize("kwargs, name", [
    (dict(num_samples=-1, sample_rate=16000, fps=25), "num_samples"),
    (dict(num_samples=1.5, sample_rate=16000, fps=25), "num_samples"),
    (dict(num_samples=10, sample_rate=0, fps=25), "sample_rate"),
    (dict(num_samples=10, sample_rate=16000, fps=0), "fps"),
])
def test_count_rejects(kwargs, name):
    with pytest.raises(DemoInputError, match=name):
        num_video_frames(**kwargs)


def test_identity_returns_equal_copy():
    motion = torch.randn(2, 7, 5)
    out = resample_trajectory(motion, 25, 25.0, 7)
    assert torch.equal(out, motion)
    assert out.data_ptr() != motion.data_ptr()


def test_linear_interpolation_values():
    motion = torch.tensor([[[0.0, 10.0], [2.0, 20.0], [6.0, 0.0]]])  # (1, 3, 2)
    out = resample_trajectory(motion, 10, 20, 7)  # times 0, .05, .1, ... → source index k / 2
    expected = torch.tensor([[[0.0, 10.0], [1.0, 15.0], [2.0, 20.0], [4.0, 10.0],
                              [6.0, 0.0], [6.0, 0.0], [6.0, 0.0]]])  # held after the end
    assert torch.allclose(out, expected)


def test_downsampling_picks_exact_source_frames():
    motion = torch.arange(12.0).view(1, 12, 1)
    out = resample_trajectory(motion, 30, 10, 4)  # every third frame, no blending
    assert out.flatten().tolist() == [0.0, 3.0, 6.0, 9.0]


def test_fractional_rates_match_formula():
    motion = torch.randn(3, 40, 4, dtype=torch.float64)
    src, dst, num = Fraction(30000, 1001), 25, 33
    out = resample_trajectory(motion, src, dst, num)
    for k in range(num):
        p = Fraction(k) * src / dst
        i = min(math.floor(p), 39)
        j = min(i + 1, 39)
        f = float(p - math.floor(p)) if math.floor(p) < 39 else 0.0
        assert torch.allclose(out[:, k], (1 - f) * motion[:, i] + f * motion[:, j], atol=1e-12)


def test_linear_signal_is_reproduced_at_new_times():
    t_src = torch.arange(50, dtype=torch.float64) / 25  # 25 fps timeline
    motion = (3 * t_src - 1).view(1, 50, 1)
    out = resample_trajectory(motion, 25, 29.97, 55)
    t_dst = torch.arange(55, dtype=torch.float64) / 29.97
    assert torch.allclose(out.flatten(), 3 * t_dst - 1, atol=1e-9)


def test_zero_frames_and_errors():
    motion = torch.randn(1, 4, 3)
    assert resample_trajectory(motion, 25, 30, 0).shape == (1, 0, 3)
    with pytest.raises(DemoInputError, match="motion"):
        resample_trajectory(torch.randn(4, 3), 25, 25, 4)
    with pytest.raises(DemoInputError, match="motion"):
        resample_trajectory(torch.zeros(1, 0, 3), 25, 25, 4)
    with pytest.raises(DemoInputError, match="num_frames"):
        resample_trajectory(motion, 25, 25, -1)
    with pytest.raises(DemoInputError, match="dst_fps"):
        resample_trajectory(motion, 25, 0, 4)
