"""Per-run generation options and the seeded noise generator shared by every sampling step.

:class:`GenerationSettings` holds the options of one run (nothing is stored on the model between runs);
:func:`make_generator` turns its seed into the ``torch.Generator`` the samplers draw their noise from.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import DemoInputError
from ..models.emotion_encoder import EMOTION_LABELS

__all__ = [
    "GenerationSettings",
    "make_generator",
]

Callback = Callable[[int, int], None]

SOLVER_METHODS = ("euler", "midpoint", "rk4")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


@dataclass
class GenerationSettings:
    """Per-run options (never stored on the model).

    Attributes:
        steps: ODE integration steps per window (FLOAT's ``nfe=10`` equals 9 Euler steps).
        method: ``"euler"``, ``"midpoint"`` or ``"rk4"``.
        a_cfg: audio classifier-free guidance scale.
        e_cfg: emotion classifier-free guidance scale.
        emotion: ``"auto"`` (predicted from the speech) or one of ``EMOTION_LABELS``.
        seed: noise seed, any integer (taken modulo 2**64, so ComfyUI's 0 … 2**64 − 1 and negative CLI seeds all
            work); the same seed gives the same result on the same device.
        fps: output frame rate (10–60); motion is resampled in latent space from the model's fps.
        render_batch: frames decoded per batch.
    """

    steps: int = 10
    method: str = "euler"
    a_cfg: float = 2.0
    e_cfg: float = 1.0
    emotion: str = "auto"
    seed: int = 0
    fps: float = 25.0
    render_batch: int = 8

    def validate(self) -> None:
        """Check every option; raises :class:`DemoInputError` naming the option and what it accepts."""
        if not _is_int(self.steps) or not 1 <= self.steps <= 1000:
            raise DemoInputError(f"steps: expected an integer from 1 to 1000, got {self.steps!r}")
        if self.method not in SOLVER_METHODS:
            raise DemoInputError(f"solver: expected 'euler', 'midpoint' or 'rk4', got {self.method!r}")
        if not _is_real(self.fps) or not 10 <= float(self.fps) <= 60:
            raise DemoInputError(f"fps: expected a frame rate from 10 to 60, got {self.fps!r}")
        for name in ("a_cfg", "e_cfg"):
            v = getattr(self, name)
            if not _is_real(v) or not 0.0 <= float(v) <= 20.0:
                raise DemoInputError(f"{name}: expected a guidance scale from 0 to 20, got {v!r}")
        if not isinstance(self.emotion, str) or self.emotion.lower() not in ("auto", "s2e", "none") + EMOTION_LABELS:
            raise DemoInputError(
                f"emotion: expected 'auto' or one of {', '.join(EMOTION_LABELS)}, got {self.emotion!r}"
            )
        if not _is_int(self.seed):
            raise DemoInputError(f"seed: expected an integer (any, taken modulo 2**64), got {self.seed!r}")
        if not _is_int(self.render_batch) or self.render_batch < 1:
            raise DemoInputError(f"render_batch: expected an integer >= 1, got {self.render_batch!r}")


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (any int; reduced to 64 bits)."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed) % (2**64))
    return g
