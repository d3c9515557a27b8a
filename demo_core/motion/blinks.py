"""Blinks on an eyelid axis: a closure profile, natural blink times, inserting and damping blinks.

A blink is a closure curve that rises from 0 to 1 in ``close_fraction · duration`` seconds and falls back
in the rest of ``duration`` (eyes close fast and reopen slowly), each phase a half cosine::

    p(τ) = ½ − ½·cos(π τ / d_c)              0 <= τ < d_c          (closing)
    p(τ) = ½ + ½·cos(π (τ − d_c) / d_o)      d_c <= τ < duration    (opening)

People blink about 15–20 times a minute at rest; :func:`natural_blink_times` draws intervals as a
refractory gap plus an exponential wait, from an explicit generator.

The axis defaults to ``blink.closure`` (0 open … 1 closed) of DEMO's layout; for a calibrated
FLOAT-family layout pass the eye factor and coordinate, e.g. ``factor="eyes", axis="c0"``.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from ..errors import DemoInputError
from .edits import check_trajectory, set_axis
from .factor_space import FactorSpace

__all__ = ["blink_profile", "blink_curve", "natural_blink_times", "insert_blinks", "damp_blinks"]


def _positive(value, name: str, *, allow_zero: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise DemoInputError(f"{name}: expected a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")
    return float(value)


def blink_profile(tau: Tensor, duration: float = 0.3, close_fraction: float = 1 / 3) -> Tensor:
    """Closure of one blink ``τ`` seconds after it starts (0 outside ``[0, duration)``, peak 1 at ``d_c``).

    Args:
        tau: (...) times since the blink started, seconds.
        duration: whole blink, seconds (> 0).
        close_fraction: share of ``duration`` spent closing, in (0, 1).

    Returns:
        (...) values in [0, 1], float64 unless ``tau`` is floating point.
    """
    duration = _positive(duration, "duration")
    if not isinstance(close_fraction, numbers.Real) or not 0 < close_fraction < 1:
        raise DemoInputError(f"close_fraction: expected a number in (0, 1), got {close_fraction!r}")
    tau = torch.as_tensor(tau)
    tau = tau if tau.is_floating_point() else tau.double()
    d_c = duration * float(close_fraction)
    d_o = duration - d_c
    closing = 0.5 - 0.5 * torch.cos(math.pi * tau / d_c)
    opening = 0.5 + 0.5 * torch.cos(math.pi * (tau - d_c) / d_o)
    p = torch.where(tau < d_c, closing, opening)
    return torch.where((tau >= 0) & (tau < duration), p, torch.zeros_like(p))


def blink_curve(
    num_frames: int, fps: float, times, *, duration: float = 0.3, close_fraction: float = 1 / 3, device=None
) -> Tensor:
    """Closure curve (T,) float64 at frame times ``k / fps`` for blinks starting at ``times`` (seconds).

    Overlapping blinks take the larger closure.  Values are in [0, 1].
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, numbers.Integral) or num_frames < 0:
        raise DemoInputError(f"num_frames: expected an integer >= 0, got {num_frames!r}")
    fps = _positive(fps, "fps")
    starts = torch.as_tensor(times, dtype=torch.float64, device=device).reshape(-1)  # (n,)
    if not torch.isfinite(starts).all():
        raise DemoInputError("times: expected finite blink start times in seconds")
    t = torch.arange(int(num_frames), dtype=torch.float64, device=device) / fps  # (T,)
    if starts.numel() == 0:
        return torch.zeros_like(t)
    p = blink_profile(t[None, :] - starts[:, None], duration, close_fraction)  # (n, T)
    return p.amax(dim=0)  # (T,)


def natural_blink_times(
    seconds: float,
    *,
    rate: float = 17.0,
    min_interval: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Blink start times for a clip of ``seconds``, at ``rate`` blinks per minute on average.

    Intervals are ``min_interval + Exp(mean = 60 / rate − min_interval)``; the first blink comes one
    interval after 0.

    Args:
        seconds: clip length (>= 0).
        rate: mean blinks per minute, in (0, 60 / min_interval).  People: about 15–20.
        min_interval: shortest gap between blink starts, seconds (>= 0).
        generator: the random source (explicit for reproducible clips).

    Returns:
        (n,) float64 start times in ``[0, seconds)``, increasing.
    """
    seconds = _positive(seconds, "seconds", allow_zero=True)
    rate = _positive(rate, "rate")
    min_interval = _positive(min_interval, "min_interval", allow_zero=True)
    mean = 60.0 / rate
    if mean <= min_interval:
        raise DemoInputError(f"rate: {rate} blinks/min leaves no room above min_interval {min_interval} s "
                             f"(expected rate < {60.0 / min_interval if min_interval else math.inf:.3g})")
    floor = max(min_interval, 1e-3)
    n = int(math.ceil(seconds / floor)) + 1  # more intervals than can fit
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    intervals = min_interval - torch.log1p(-u) * (mean - min_interval)  # (n,)
    starts = torch.cumsum(intervals, dim=0)
    return starts[starts < seconds]


def insert_blinks(
    latents: Tensor,
    space: FactorSpace,
    times,
    fps: float,
    *,
    factor: str = "blink",
    axis: str = "closure",
    duration: float = 0.3,
    amplitude: float = 1.0,
    close_fraction: float = 1 / 3,
    mode: str = "blend",
) -> Tensor:
    """Add blinks starting at ``times`` (seconds) to one eyelid coordinate.

    Modes (``p(t)`` the blink curve in [0, 1], ``v`` the axis value in its unit):

    * ``"blend"``: ``v' = (1 − p)·v + p·amplitude`` — at the blink's peak the axis reaches ``amplitude``
      (1 = fully closed on ``blink.closure``) whatever it was; outside blinks nothing changes.
    * ``"add"``: ``v' = v + amplitude·p`` — for raw coordinates whose closed value is unknown; undone by
      the same call with ``−amplitude``.

    Args:
        latents: (B, T, W) at ``fps``.
        space: factor space.
        times: blink start times in seconds (n,), e.g. from :func:`natural_blink_times`.
        fps: frame rate of ``latents``.
        factor, axis: the eyelid coordinate (semantic axis or ``c<i>``).
        duration, close_fraction: blink shape (see :func:`blink_profile`).
        amplitude: closure at the peak (blend) or added at the peak (add), in the axis unit.
        mode: ``"blend"`` or ``"add"``.

    Returns:
        New latents; only that one coordinate changes.
    """
    check_trajectory(latents, space)
    if mode not in ("blend", "add"):
        raise DemoInputError(f"mode: expected 'blend' or 'add', got {mode!r}")
    if isinstance(amplitude, bool) or not isinstance(amplitude, numbers.Real) or not math.isfinite(amplitude):
        raise DemoInputError(f"amplitude: expected a finite number, got {amplitude!r}")
    curve = blink_curve(latents.shape[1], fps, times, duration=duration, close_fraction=close_fraction,
                        device=latents.device).to(latents.dtype)  # (T,)
    value = space.axis_value(latents, factor, axis)  # (B, T)
    if mode == "blend":
        new = (1 - curve) * value + curve * amplitude
    else:
        new = value + amplitude * curve
    return set_axis(latents, space, factor, axis, new)


def damp_blinks(
    latents: Tensor,
    space: FactorSpace,
    strength: float,
    *,
    factor: str = "blink",
    axis: str = "closure",
    open_quantile: float = 0.2,
) -> Tensor:
    """Make generated blinks weaker ("blink less"): keep ``strength`` of each closure above the open level.

    The open level is the ``open_quantile`` of the axis over the clip (per portrait), ``e = max(v − open, 0)``
    and ``v' = v − (1 − strength)·e``: 0 removes blinks (eyes stay open), 1 changes nothing.  Values below
    the open level are kept.
    """
    check_trajectory(latents, space)
    strength = _positive(strength, "strength", allow_zero=True)
    if not 0 <= open_quantile <= 1:
        raise DemoInputError(f"open_quantile: expected a number in [0, 1], got {open_quantile!r}")
    value = space.axis_value(latents, factor, axis)  # (B, T)
    open_level = torch.quantile(value, float(open_quantile), dim=1, keepdim=True)  # (B, 1)
    excess = (value - open_level).clamp(min=0)
    return set_axis(latents, space, factor, axis, value - (1 - strength) * excess)
