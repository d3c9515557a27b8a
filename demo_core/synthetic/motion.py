"""Natural non-lip motion: head pose, gaze and blinks as seeded random processes.

Nothing here sees the speech: pose, gaze and blink are drawn only from the ``torch.Generator``, so
over a data set they are statistically independent of the lip factors (which come only from the
phones). Two styles: ``"talk"`` (livelier head motion, shorter fixations) and ``"idle"`` (calmer).

* Pose: per channel, band-limited noise (a resonant AR(2) filter of white noise, stationary from
  the first frame) plus occasional larger "turns" (Poisson events of piecewise-constant offsets,
  smoothed by a critically damped second-order filter), soft-limited by tanh to the ranges below.
* Gaze: fixations with log-normal durations, targets mostly near the centre, joined by saccades of
  30-60 ms (smoothstep), plus a little drift.
* Blinks: renewal process (0.6 s refractory + gamma), 100-300 ms each, fast close (35 %) and slower
  reopening, occasional partial blinks. Rate ~17/min (talk) and ~15/min (idle).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.signal import lfilter

__all__ = ["STYLES", "sample_pose", "sample_gaze", "sample_blinks", "sample_motion"]

# channel: (noise std, resonance Hz, bandwidth Hz, turn std, soft limit)
_POSE = {
    "yaw": (4.0, 0.25, 0.5, 9.0, 25.0),
    "pitch": (3.0, 0.6, 0.8, 4.0, 15.0),
    "roll": (2.0, 0.3, 0.6, 3.0, 12.0),
    "tx": (0.02, 0.2, 0.4, 0.03, 0.12),
    "ty": (0.015, 0.3, 0.5, 0.02, 0.1),
    "scale": (0.012, 0.15, 0.3, 0.02, 0.08),
}
STYLES = {  # amplitude multiplier, turns per second, median fixation s, blinks per minute
    "talk": {"amp": 1.0, "turn_rate": 0.18, "fixation": 0.7, "blink_rate": 17.0},
    "idle": {"amp": 0.55, "turn_rate": 0.08, "fixation": 1.2, "blink_rate": 15.0},
    # Training coverage: larger, more frequent head turns and gaze shifts, so a model trained on the
    # benchmark sees the whole pose/gaze range it will be steered to (the limits still apply).
    "wide": {"amp": 2.2, "turn_rate": 0.5, "fixation": 0.45, "blink_rate": 24.0},
}


def _style(mode: str) -> dict:
    if mode not in STYLES:
        raise ValueError(f"motion style must be one of {sorted(STYLES)}, got {mode!r}")
    return STYLES[mode]


def _randn(generator: torch.Generator, *shape: int) -> np.ndarray:
    return torch.randn(*shape, generator=generator, dtype=torch.float64).numpy()


def _rand(generator: torch.Generator) -> float:
    return float(torch.rand((), generator=generator, dtype=torch.float64))


def _ar2(n: int, fps: float, f0: float, bw: float, generator: torch.Generator) -> np.ndarray:
    """Unit-variance band-limited noise: AR(2) resonator at f0 Hz with bandwidth bw Hz; (n,)."""
    r = math.exp(-math.pi * bw / fps)
    phi1, phi2 = 2.0 * r * math.cos(2.0 * math.pi * f0 / fps), -r * r
    var = (1.0 - phi2) / ((1.0 + phi2) * ((1.0 - phi2) ** 2 - phi1 ** 2))
    burn = int(4.0 * fps / max(bw, 0.05))
    y = lfilter([1.0], [1.0, -phi1, -phi2], _randn(generator, n + burn))
    return y[burn:] / math.sqrt(var)


def _turns(n: int, fps: float, rate: float, std: float, generator: torch.Generator) -> np.ndarray:
    """Smoothed piecewise-constant offsets that jump at Poisson times; (n,)."""
    target = np.zeros(n)
    level, t = std * _randn(generator, 1)[0] * 0.5, 0.0
    while True:
        gap = -math.log(max(1e-12, 1.0 - _rand(generator))) / max(rate, 1e-6)
        k0, t = int(t * fps), t + gap
        target[k0:min(n, int(t * fps))] = level
        if t * fps >= n:
            break
        level = std * _randn(generator, 1)[0]
    a = math.exp(-1.0 / (0.3 * fps))  # critically damped: two cascaded one-pole low-passes
    y = lfilter([1 - a], [1, -a], target - target[0]) + target[0]
    return lfilter([1 - a], [1, -a], y - y[0]) + y[0]


def sample_pose(n: int, fps: float, generator: torch.Generator, mode: str = "talk") -> dict[str, torch.Tensor]:
    """Head pose per frame: ``yaw, pitch, roll`` (deg), ``tx, ty`` (image half-sizes), ``scale``.

    Returns:
        name -> float32 tensor (n,). |yaw| < 25, |pitch| < 15, |roll| < 12 deg, |tx| < 0.12,
        |ty| < 0.1, |scale - 1| < 0.08.
    """
    st = _style(mode)
    out = {}
    for name, (std, f0, bw, turn_std, limit) in _POSE.items():
        x = st["amp"] * (std * _ar2(n, fps, f0, bw, generator) + _turns(n, fps, st["turn_rate"], turn_std, generator))
        x = limit * np.tanh(x / limit)
        out[name] = torch.from_numpy(x + (1.0 if name == "scale" else 0.0)).to(torch.float32)
    return out


def sample_gaze(n: int, fps: float, generator: torch.Generator, mode: str = "talk") -> dict[str, torch.Tensor]:
    """Gaze per frame (``gaze_x``, ``gaze_y`` in -1..1): fixations joined by fast saccades."""
    st = _style(mode)
    if n <= 0:
        return {"gaze_x": torch.zeros(0), "gaze_y": torch.zeros(0)}
    t = np.arange(n) / fps
    gx, gy = np.zeros(n), np.zeros(n)
    prev = np.array([0.0, 0.0])
    time = -_rand(generator) * st["fixation"]
    while time < t[-1] + 1.0:
        if _rand(generator) < 0.6:
            cur = np.clip(_randn(generator, 2) * [0.18, 0.12], -1, 1)
        else:
            cur = np.array([_rand(generator) * 1.6 - 0.8, _rand(generator) * 1.0 - 0.5])
        dur = st["fixation"] * math.exp(0.5 * _randn(generator, 1)[0])
        sac = 0.03 + 0.03 * float(np.abs(cur - prev).max())
        u = np.clip((t - time) / sac, 0.0, 1.0)
        u = u * u * (3.0 - 2.0 * u)
        mask = t >= time
        gx[mask] = prev[0] + (cur[0] - prev[0]) * u[mask]
        gy[mask] = prev[1] + (cur[1] - prev[1]) * u[mask]
        prev, time = cur, time + sac + max(0.12, dur)
    drift = 0.02 * _ar2(n, fps, 0.5, 1.0, generator), 0.015 * _ar2(n, fps, 0.5, 1.0, generator)
    return {"gaze_x": torch.from_numpy(np.clip(gx + drift[0], -1, 1)).to(torch.float32),
            "gaze_y": torch.from_numpy(np.clip(gy + drift[1], -1, 1)).to(torch.float32)}


def sample_blinks(n: int, fps: float, generator: torch.Generator, mode: str = "talk",
                  rate_per_min: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eyelid closure per frame and the blink onsets.

    Args:
        n: frames. fps: frame rate. generator: randomness. mode: ``"talk"`` / ``"idle"``.
        rate_per_min: mean blink rate (default from the style).

    Returns:
        (blink float32 (n,) in 0..1 sampled at t = k / fps, onsets float32 (B,) in seconds).
    """
    rate = rate_per_min or _style(mode)["blink_rate"]
    refractory, shape = 0.6, 2
    scale = max(0.05, (60.0 / rate - refractory - 0.2) / shape)  # mean interval = 60 / rate
    t = np.arange(n) / fps
    blink = np.zeros(n)
    onsets = []
    time = _rand(generator) * (60.0 / rate)
    while n and time < t[-1]:
        dur = 0.1 + 0.2 * _rand(generator)
        peak = 1.0 if _rand(generator) < 0.88 else 0.55 + 0.35 * _rand(generator)
        tc = 0.35 * dur
        u = t - time
        close = np.sin(0.5 * math.pi * np.clip(u / tc, 0.0, 1.0)) ** 2
        reopen = 0.5 + 0.5 * np.cos(math.pi * np.clip((u - tc) / (dur - tc), 0.0, 1.0))
        prof = np.where(u < tc, close, reopen) * ((u >= 0) & (u <= dur))
        blink = np.maximum(blink, peak * prof)
        onsets.append(time)
        # Gamma draw through the generator: sum of `shape` exponentials (an Erlang variate).
        g = sum(-math.log(max(1e-12, 1.0 - _rand(generator))) for _ in range(shape))
        time += dur + refractory + scale * g
    return torch.from_numpy(blink).to(torch.float32), torch.tensor(onsets, dtype=torch.float32)


def sample_motion(n: int, fps: float, generator: torch.Generator, mode: str = "talk") -> dict[str, torch.Tensor]:
    """Pose + gaze + blink for ``n`` frames (the nine non-lip factors), each float32 (n,)."""
    out = sample_pose(n, fps, generator, mode)
    out.update(sample_gaze(n, fps, generator, mode))
    out["blink"] = sample_blinks(n, fps, generator, mode)[0]
    return out
