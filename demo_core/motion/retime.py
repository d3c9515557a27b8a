"""Timing between audio samples, video frames and motion-latent trajectories.

Frame counts are computed with exact rational arithmetic so that, for example, 3.0 s of audio at
25 fps gives exactly 75 frames and 29.97 fps (2997/100) or NTSC 30000/1001 never suffers a
floating-point off-by-one.  The same :func:`fps_fraction` is used by the video writer, so the
number of frames and the duration of the written file agree.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

import torch

from demo_core.errors import DemoInputError

__all__ = ["fps_fraction", "num_video_frames", "resample_trajectory"]

# Largest denominator kept for a frame rate: enough for 30000/1001 and 2997/100, small enough
# for container time bases (32-bit integers).
_MAX_FPS_DENOMINATOR = 100_000


def fps_fraction(fps: float | int | Fraction, name: str = "fps") -> Fraction:
    """Convert a frame rate to an exact fraction.

    A float is read through its shortest decimal form (``29.97`` → ``2997/100``, ``23.976`` →
    ``2997/125``) and its denominator limited to 100000, so the float ``30000 / 1001`` becomes
    exactly ``30000/1001``.  Integers and fractions are kept as they are.

    Args:
        fps: Frames per second, a positive finite number.
        name: Name of the input, used in error messages.

    Returns:
        The frame rate as a :class:`fractions.Fraction`.

    Raises:
        DemoInputError: if ``fps`` is not a positive finite real number.
    """
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real):
        raise DemoInputError(f"{name}: expected a positive number of frames per second, got {fps!r}")
    if not math.isfinite(float(fps)) or float(fps) <= 0:
        raise DemoInputError(f"{name}: expected a positive finite number of frames per second, got {fps!r}")
    if isinstance(fps, numbers.Rational):
        return Fraction(int(fps.numerator), int(fps.denominator))
    try:
        exact = Fraction(str(fps))  # shortest decimal form of the float (also numpy floats)
    except ValueError:
        exact = Fraction(float(fps))
    return exact.limit_denominator(_MAX_FPS_DENOMINATOR)


def num_video_frames(num_samples: int, sample_rate: int, fps: float | Fraction) -> int:
    """Number of video frames that cover an audio clip.

    Frame ``k`` is shown at time ``k / fps``; the clip lasts ``num_samples / sample_rate`` seconds,
    and every frame whose time falls inside the clip is counted:
    ``ceil(num_samples * fps / sample_rate)``, computed exactly.

    Args:
        num_samples: Length of the audio in samples, ``>= 0``.
        sample_rate: Audio sample rate in Hz, ``> 0``.
        fps: Video frame rate (see :func:`fps_fraction`).

    Returns:
        The frame count (0 for empty audio).

    Raises:
        DemoInputError: for a negative sample count, a non-positive rate or an invalid ``fps``.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral) or num_samples < 0:
        raise DemoInputError(f"num_samples: expected an integer >= 0, got {num_samples!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) or sample_rate <= 0:
        raise DemoInputError(f"sample_rate: expected a positive integer number of Hz, got {sample_rate!r}")
    rate = fps_fraction(fps)
    return math.ceil(Fraction(int(num_samples)) * rate / int(sample_rate))


def resample_trajectory(
    motion: torch.Tensor,
    src_fps: float | Fraction,
    dst_fps: float | Fraction,
    num_frames: int,
) -> torch.Tensor:
    """Retime a motion-latent trajectory by linear interpolation.

    Output frame ``k`` is the trajectory at time ``k / dst_fps``, i.e. at fractional source index
    ``p = k * src_fps / dst_fps`` (computed exactly with integers), linearly interpolated between
    source frames ``floor(p)`` and ``floor(p) + 1``.  Past the last source frame the last frame is
    held.  When the rates are equal and ``num_frames == T`` the result equals the input (a copy).

    Args:
        motion: Trajectory, shape ``(B, T, W)``, floating point, ``T >= 1``.
        src_fps: Frame rate of ``motion``.
        dst_fps: Frame rate wanted.
        num_frames: Number of output frames, ``>= 0``.

    Returns:
        Tensor of shape ``(B, num_frames, W)``, same dtype and device as ``motion``.

    Raises:
        DemoInputError: for a tensor of the wrong rank, dtype or length, or invalid rates.

    Example:
        >>> m = torch.arange(3.0).view(1, 3, 1)
        >>> resample_trajectory(m, 10, 20, 6)[0, :, 0].tolist()
        [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    """
    if not isinstance(motion, torch.Tensor) or motion.dim() != 3:
        shape = tuple(motion.shape) if isinstance(motion, torch.Tensor) else type(motion).__name__
        raise DemoInputError(f"motion: expected a tensor of shape (B, T, W), got {shape}")
    if not motion.is_floating_point():
        raise DemoInputError(f"motion: expected a floating-point tensor, got dtype {motion.dtype}")
    B, T, W = motion.shape
    if T < 1:
        raise DemoInputError("motion: expected at least one frame (T >= 1), got T = 0")
    if isinstance(num_frames, bool) or not isinstance(num_frames, numbers.Integral) or num_frames < 0:
        raise DemoInputError(f"num_frames: expected an integer >= 0, got {num_frames!r}")
    src = fps_fraction(src_fps, "src_fps")
    dst = fps_fraction(dst_fps, "dst_fps")
    num_frames = int(num_frames)
    if src == dst and num_frames == T:
        return motion.clone()

    ratio = src / dst  # source frames per output frame
    k = torch.arange(num_frames, dtype=torch.int64)
    scaled = k * ratio.numerator  # p_k = scaled / ratio.denominator, exactly
    i_0 = torch.div(scaled, ratio.denominator, rounding_mode="floor")
    frac = (scaled - i_0 * ratio.denominator).to(torch.float64) / ratio.denominator
    past_end = i_0 >= T - 1
    i_0 = i_0.clamp(max=T - 1)
    i_1 = (i_0 + 1).clamp(max=T - 1)
    frac = torch.where(past_end, torch.zeros_like(frac), frac)

    device = motion.device
    w_1 = frac.to(device=device, dtype=motion.dtype).view(1, num_frames, 1)  # (1, N, 1)
    m_0 = motion[:, i_0.to(device)]  # (B, N, W)
    m_1 = motion[:, i_1.to(device)]  # (B, N, W)
    return m_0 + w_1 * (m_1 - m_0)  # (B, N, W)
