"""DEMO's fine-grained controllable motion encoder (FCME): one small head per motion factor.

The appearance code ``h`` (B, W) of the LIA-style encoder goes through one MLP per factor block (lip,
pose, gaze, blink, residual).  Their outputs are concatenated in layout order into the coefficients
``lam`` (B, M) that address the jointly orthonormalised direction dictionary of the decoder, so each
head only ever moves the latent inside its own factor sub-space.

With ``vae=True`` every head predicts a mean and a log-variance per coefficient (a diagonal Gaussian
posterior).  :meth:`FactorMotionEncoder.forward` always returns the mean (inference is deterministic);
training draws ``mean + exp(logvar / 2) · eps`` with :func:`reparameterize` and an explicit generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DemoInputError
from ..motion.factors import FactorLayout, default_factor_layout

__all__ = ["FactorMotionEncoderConfig", "FactorMotionEncoder", "reparameterize", "LOGVAR_INIT"]

LOGVAR_INIT = -6.0  # initial posterior log-variance: the VAE starts close to the deterministic encoder


@dataclass
class FactorMotionEncoderConfig:
    """Shape of :class:`FactorMotionEncoder`.

    Attributes:
        dim_w: appearance-code width W (input).
        layout: factor blocks; the output has ``layout.total`` coefficients.
        hidden: hidden width of every head.
        depth: hidden layers per head (>= 1).
        vae: heads also predict a log-variance (diagonal Gaussian posterior).
    """

    dim_w: int = 512
    layout: FactorLayout = field(default_factory=default_factor_layout)
    hidden: int = 128
    depth: int = 2
    vae: bool = False

    def __post_init__(self) -> None:
        self.dim_w, self.hidden, self.depth, self.vae = int(self.dim_w), int(self.hidden), int(self.depth), bool(self.vae)
        if self.dim_w < 1 or self.hidden < 1 or self.depth < 1:
            raise DemoInputError(
                f"FactorMotionEncoderConfig: dim_w, hidden and depth must be >= 1, got {self.dim_w}, {self.hidden}, {self.depth}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"dim_w": self.dim_w, "layout": self.layout.to_dict(), "hidden": self.hidden, "depth": self.depth,
                "vae": self.vae}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FactorMotionEncoderConfig":
        layout = d.get("layout")
        return cls(
            dim_w=d.get("dim_w", 512),
            layout=default_factor_layout() if layout is None else FactorLayout.from_dict(layout),
            hidden=d.get("hidden", 128),
            depth=d.get("depth", 2),
            vae=d.get("vae", False),
        )


def reparameterize(mean: Tensor, logvar: Tensor, generator: torch.Generator | None) -> Tensor:
    """Draw ``mean + exp(logvar / 2) · eps`` with ``eps ~ N(0, I)`` from ``generator``.

    Args:
        mean: ``(..., M)`` posterior means.
        logvar: ``(..., M)`` posterior log-variances.
        generator: RNG for ``eps`` (on the tensors' device).

    Returns:
        ``(..., M)`` sample.
    """
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * logvar) * eps


class _Head(nn.Module):
    """``depth`` × (Linear → SiLU) then Linear(hidden → out)."""

    def __init__(self, d_in: int, hidden: int, depth: int, d_out: int, **kw):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(d_in if i == 0 else hidden, hidden, **kw), nn.SiLU()]
        self.net = nn.Sequential(*layers)
        self.out = nn.Linear(hidden, d_out, **kw)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.net(x))


class FactorMotionEncoder(nn.Module):
    """Appearance code → factor coefficients, one head per block (drop-in for FLOAT's ``enc.fc``).

    Args:
        cfg: configuration.
        device: parameter device.
        dtype: parameter dtype.

    Example:
        .. code-block:: python

            fcme = FactorMotionEncoder(FactorMotionEncoderConfig(dim_w=512, vae=True))
            lam = fcme(h)                               # (B, 20), posterior mean
            mean, logvar = fcme.posterior(h)            # (B, 20) each
            lam_s = reparameterize(mean, logvar, generator=torch.Generator().manual_seed(0))
    """

    def __init__(self, cfg: FactorMotionEncoderConfig, *, device=None, dtype=None):
        super().__init__()
        self.cfg = cfg
        kw = {"device": device, "dtype": dtype}
        self.norm = nn.LayerNorm(cfg.dim_w, **kw)
        mult = 2 if cfg.vae else 1
        self.heads = nn.ModuleDict(
            {b.name: _Head(cfg.dim_w, cfg.hidden, cfg.depth, mult * b.size, **kw) for b in cfg.layout.blocks}
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Small output layers (coefficients start near 0) and log-variances at :data:`LOGVAR_INIT`."""
        for block in self.cfg.layout.blocks:
            out = self.heads[block.name].out
            if out.weight.is_meta:
                continue
            out.weight.mul_(0.1)
            out.bias.zero_()
            if self.cfg.vae:
                out.bias[block.size:].fill_(LOGVAR_INIT)

    def posterior(self, h: Tensor) -> tuple[Tensor, Tensor | None]:
        """Posterior parameters.

        Args:
            h: ``(B, W)`` appearance codes.

        Returns:
            ``mean`` (B, M) and ``logvar`` (B, M) (None without ``vae``), blocks in layout order.
        """
        if h.ndim != 2 or h.shape[1] != self.cfg.dim_w:
            raise DemoInputError(f"FactorMotionEncoder: expected h of shape (B, {self.cfg.dim_w}), got {tuple(h.shape)}")
        x = F.silu(self.norm(h))
        means, logvars = [], []
        for block in self.cfg.layout.blocks:
            out = self.heads[block.name](x)  # (B, k) or (B, 2k)
            means.append(out[:, : block.size])
            if self.cfg.vae:
                logvars.append(out[:, block.size:].clamp(-12.0, 6.0))
        mean = torch.cat(means, dim=1)  # (B, M)
        return mean, (torch.cat(logvars, dim=1) if self.cfg.vae else None)

    def forward(self, h: Tensor) -> Tensor:
        """``(B, W)`` → posterior mean ``(B, M)`` (deterministic)."""
        return self.posterior(h)[0]
