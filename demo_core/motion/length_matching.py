"""Stretch or cut a trajectory to N frames without resampling: loop, ping-pong or hold the last frame.

Use it to fit a driving track (pose from a video, a recorded gaze path) to the length of the generated
clip before :func:`~demo_core.motion.edits.replace_factor` or :func:`~demo_core.motion.mixing.mix_factors`.
A longer input is cut to its first N frames in every mode.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from ..errors import DemoInputError
from .factor_space import describe_shape

__all__ = ["LENGTH_MODES", "length_indices", "match_length"]

LENGTH_MODES = ("loop", "pingpong", "hold")


def length_indices(num_source: int, num_frames: int, mode: str = "loop", *, device=None) -> Tensor:
    """Source frame of each output frame.

    * ``loop``: ``0 1 … T−1 0 1 …``
    * ``pingpong``: ``0 1 … T−1 T−2 … 1 0 1 …`` (period ``2T − 2``; no frame is shown twice in a row)
    * ``hold``: ``0 1 … T−1 T−1 T−1 …``

    Args:
        num_source: source length T >= 1.
        num_frames: output length N >= 0.
        mode: one of :data:`LENGTH_MODES`.
        device: device of the result.

    Returns:
        (N,) int64 indices into the source.
    """
    for name, value, low in (("num_source", num_source, 1), ("num_frames", num_frames, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise DemoInputError(f"{name}: expected an integer >= {low}, got {value!r}")
    if mode not in LENGTH_MODES:
        raise DemoInputError(f"mode: expected one of {LENGTH_MODES}, got {mode!r}")
    k = torch.arange(int(num_frames), device=device)  # (N,)
    T = int(num_source)
    if mode == "hold" or T == 1:
        return k.clamp(max=T - 1)
    if mode == "loop":
        return k % T
    period = 2 * T - 2
    m = k % period
    return torch.where(m < T, m, period - m)


def match_length(x: Tensor, num_frames: int, mode: str = "loop") -> Tensor:
    """A trajectory (B, T, ...) brought to ``num_frames`` frames along dim 1 (a new tensor).

    Args:
        x: (B, T, ...) latents, coefficients or any per-frame tensor, T >= 1.
        num_frames: wanted length N.
        mode: ``"loop"``, ``"pingpong"`` or ``"hold"`` (see :func:`length_indices`).

    Returns:
        (B, N, ...).
    """
    if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[1] < 1:
        raise DemoInputError(f"x: expected a tensor (B, T >= 1, ...), got {describe_shape(x)}")
    idx = length_indices(x.shape[1], num_frames, mode, device=x.device)  # (N,)
    return x.index_select(1, idx)  # (B, N, ...)
