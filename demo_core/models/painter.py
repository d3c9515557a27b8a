"""Feature painter: a small image-to-image refiner that draws what a warp cannot (mouth interior, eyelids, irises).

A warping decoder (FLOAT/LIA) resamples the source portrait, so content the source lacks (the dark interior
of an open mouth over a closed one, a closed eyelid over an open eye) must be borrowed from elsewhere in it.
On the 64² synthetic benchmark the decoder learnt head pose well (render gain 0.88) but drew lip, gaze and
blink edits at 0.13 / 0.02 / 0.08 of their size, and a decoder-only overfit of one clip followed the mouth
opening with r 0.43 at best.  The painter takes the decoder's output and the coefficients of the factors it
paints (absolute values, e.g. lip ``open``), finds the feature in the image with a 3-level U-Net and adds an
RGB residual there, each level modulated by the coefficients (FiLM: ``x·(1 + γ(c)) + β(c)``, so a
"mouth here" feature can be scaled by "how open").  Its last layer starts at zero: a fresh painter is the
identity, and adding one to a trained model changes nothing until it is trained.

Its coefficient inputs are clamped to the range seen in training (buffers ``seen_min``/``seen_max``), so an edit
beyond the data saturates instead of painting garbage.

Keys (under ``motion_autoencoder.painter.``): ``film.*``, ``down.{i}.*``, ``up.{i}.*``, ``out.*``, ``seen_*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DemoInputError

__all__ = ["PainterConfig", "FeaturePainter"]

SEEN_COUNT_MAX = 10000.0  # the count of training samples behind the seen range saturates here


@dataclass
class PainterConfig:
    """Shape of the feature painter.

    Attributes:
        factors: names of the factor blocks whose coefficients condition the painter (their layout order).
        channels: U-Net channels at S, S/2, S/4 (three levels).
        hidden: width of the coefficient MLP that produces the FiLM parameters.
    """

    factors: tuple[str, ...] = ("lip", "gaze", "blink")
    channels: tuple[int, ...] = (32, 48, 64)
    hidden: int = 64

    def __post_init__(self) -> None:
        self.factors = tuple(str(f) for f in self.factors)
        self.channels = tuple(int(c) for c in self.channels)
        self.hidden = int(self.hidden)
        if not self.factors or len(set(self.factors)) != len(self.factors):
            raise DemoInputError(f"painter.factors: expected distinct factor names, got {list(self.factors)}")
        if len(self.channels) != 3 or min(self.channels) < 1:
            raise DemoInputError(f"painter.channels: expected 3 positive widths (S, S/2, S/4), got {list(self.channels)}")
        if self.hidden < 1:
            raise DemoInputError(f"painter.hidden: expected >= 1, got {self.hidden}")

    def to_dict(self) -> dict[str, Any]:
        return {"factors": list(self.factors), "channels": list(self.channels), "hidden": self.hidden}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PainterConfig":
        known = {"factors", "channels", "hidden"}
        unknown = set(d) - known
        if unknown:
            raise DemoInputError(f"painter: unknown keys {sorted(unknown)} (expected {sorted(known)})")
        return cls(**d)  # __post_init__ turns lists into tuples


class _FiLMConv(nn.Module):
    """3×3 conv (optionally stride 2) → FiLM → leaky ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, **fk) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, **fk)

    def forward(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        y = self.conv(x)
        return F.leaky_relu(y * (1.0 + gamma[:, :, None, None]) + beta[:, :, None, None], 0.2)


class FeaturePainter(nn.Module):
    """U-Net refiner conditioned on factor coefficients: ``image + residual(image, coefficients)``.

    Args:
        cfg: the painter's shape.
        in_coefficients: number of conditioning coefficients (the summed sizes of ``cfg.factors``).
    """

    def __init__(self, cfg: PainterConfig, in_coefficients: int, *, device=None, dtype=None) -> None:
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.cfg = cfg
        self.in_coefficients = int(in_coefficients)
        c0, c1, c2 = cfg.channels
        self.down = nn.ModuleList([_FiLMConv(3, c0, **fk), _FiLMConv(c0, c1, 2, **fk), _FiLMConv(c1, c2, 2, **fk),
                                   _FiLMConv(c2, c2, **fk)])
        self.up = nn.ModuleList([_FiLMConv(c2 + c1, c1, **fk), _FiLMConv(c1 + c0, c0, **fk)])
        self._widths = [c0, c1, c2, c2, c1, c0]
        self.film = nn.Sequential(nn.Linear(self.in_coefficients, cfg.hidden, **fk), nn.SiLU(),
                                  nn.Linear(cfg.hidden, 2 * sum(self._widths), **fk))
        nn.init.zeros_(self.film[2].weight)  # FiLM starts at γ = β = 0 (plain U-Net)
        nn.init.zeros_(self.film[2].bias)
        self.out = nn.Conv2d(c0, 3, 3, padding=1, **fk)
        nn.init.zeros_(self.out.weight)  # residual starts at zero: the identity
        nn.init.zeros_(self.out.bias)
        # range of the coefficients seen in training; outside it the painter is clamped to it (an edit far beyond
        # the data, e.g. a mouth opening of -0.8, drove an unclamped painter to paint the whole frame white)
        self.register_buffer("seen_min", torch.zeros(self.in_coefficients, **fk))
        self.register_buffer("seen_max", torch.zeros(self.in_coefficients, **fk))
        self.register_buffer("seen_count", torch.zeros((), **fk))

    def _bounded(self, c: Tensor) -> Tensor:
        """In training, widen the seen range by ``c``; otherwise clamp ``c`` to it (once anything was seen).
        Tensor-only (no host read of the count), so rendering on a GPU does not synchronise per chunk."""
        seen = self.seen_count > 0
        if self.training:
            with torch.no_grad():
                lo, hi = c.detach().amin(dim=0).to(self.seen_min), c.detach().amax(dim=0).to(self.seen_max)
                self.seen_min.copy_(torch.where(seen, torch.minimum(lo, self.seen_min), lo))
                self.seen_max.copy_(torch.where(seen, torch.maximum(hi, self.seen_max), hi))
                self.seen_count.add_(c.shape[0]).clamp_(max=SEEN_COUNT_MAX)  # stays finite in float16
            return c
        return torch.where(seen, torch.maximum(torch.minimum(c, self.seen_max.to(c)), self.seen_min.to(c)), c)

    def forward(self, image: Tensor, coefficients: Tensor) -> Tensor:
        """(N, 3, S, S) rendered frames, (N, K) coefficients → (N, 3, S, S) painted frames."""
        if coefficients.ndim != 2 or coefficients.shape[1] != self.in_coefficients or coefficients.shape[0] != image.shape[0]:
            raise DemoInputError(f"painter coefficients: expected shape ({image.shape[0]}, {self.in_coefficients}), "
                                 f"got {tuple(coefficients.shape)}")
        if image.shape[-1] % 4 or image.shape[-2] % 4:
            raise DemoInputError(f"painter image: sides must be multiples of 4, got {tuple(image.shape[-2:])}")
        x = image.to(self.out.weight.dtype)
        film = self.film(self._bounded(coefficients.to(x.dtype))).split([w for w in self._widths for _ in range(2)], dim=1)
        g = iter(film)
        s0 = self.down[0](x, next(g), next(g))  # (N, c0, S, S)
        s1 = self.down[1](s0, next(g), next(g))  # (N, c1, S/2, S/2)
        y = self.down[2](s1, next(g), next(g))  # (N, c2, S/4, S/4)
        y = self.down[3](y, next(g), next(g))
        y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
        y = self.up[0](torch.cat([y, s1], dim=1), next(g), next(g))  # (N, c1, S/2, S/2)
        y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
        y = self.up[1](torch.cat([y, s0], dim=1), next(g), next(g))  # (N, c0, S, S)
        return image + self.out(y).to(image.dtype)
