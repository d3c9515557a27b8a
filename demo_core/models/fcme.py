"""DEMO's fine-grained controllable motion encoder (FCME): one small head per motion factor.

Every factor block (lip, pose, gaze, blink, residual) has its own head.  Their outputs are concatenated in
layout order into the coefficients ``lam`` (B, M) that address the jointly orthonormalised direction
dictionary of the decoder, so each head only ever moves the latent inside its own factor sub-space.

Two sources feed the heads (``source`` in the config):

* ``"appearance"``: one MLP per block on the appearance code ``h`` (B, W) of the LIA-style encoder (a drop-in
  for FLOAT's ``enc.fc``).
* ``"image"``: as in the paper, one separate small convolutional encoder per factor reads the frame itself
  (stride-2 3×3 convs with SiLU, then a linear map of the flattened map and the MLP head).  Measured on the
  synthetic benchmark this is what lets per-frame motion be learnt: through the equalised-lr appearance
  network the coefficients of one clip barely varied (yaw stayed at the mean-predictor error), while a plain
  CNN learnt yaw to ~2° on held-out clips within 200 steps.

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
        depth: hidden layers per head (>= 1; with ``source="image"`` 0 is allowed: a linear read-out of the
            encoder's features, which themselves end in a hidden layer).
        vae: heads also predict a log-variance (diagonal Gaussian posterior).
        source: ``"appearance"`` (heads read ``h``) or ``"image"`` (one conv encoder per factor reads the frame).
        image_size: frame side S (``source="image"``).
        channels: output channels of the stride-2 convs of each per-factor encoder (``source="image"``).
    """

    dim_w: int = 512
    layout: FactorLayout = field(default_factory=default_factor_layout)
    hidden: int = 128
    depth: int = 2
    vae: bool = False
    source: str = "appearance"
    image_size: int = 256
    channels: tuple[int, ...] = (32, 64, 128, 128)

    def __post_init__(self) -> None:
        self.dim_w, self.hidden, self.depth, self.vae = int(self.dim_w), int(self.hidden), int(self.depth), bool(self.vae)
        self.image_size, self.channels = int(self.image_size), tuple(int(c) for c in self.channels)
        if self.dim_w < 1 or self.hidden < 1 or self.depth < (0 if self.source == "image" else 1):
            raise DemoInputError(
                f"FactorMotionEncoderConfig: dim_w and hidden must be >= 1 and depth >= 1 (>= 0 with source='image'), "
                f"got {self.dim_w}, {self.hidden}, {self.depth}"
            )
        if self.source not in ("appearance", "image"):
            raise DemoInputError(f"FactorMotionEncoderConfig: source must be 'appearance' or 'image', got {self.source!r}")
        if self.source == "image" and (not self.channels or min(self.channels) < 1 or self.image_size < 2 ** len(self.channels)):
            raise DemoInputError(
                f"FactorMotionEncoderConfig: image encoders need channels >= 1 and image_size >= 2**len(channels), "
                f"got channels {list(self.channels)} at size {self.image_size}"
            )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"dim_w": self.dim_w, "layout": self.layout.to_dict(), "hidden": self.hidden,
                             "depth": self.depth, "vae": self.vae, "source": self.source}
        if self.source == "image":
            d.update(image_size=self.image_size, channels=list(self.channels))
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FactorMotionEncoderConfig":
        layout = d.get("layout")
        return cls(
            dim_w=d.get("dim_w", 512),
            layout=default_factor_layout() if layout is None else FactorLayout.from_dict(layout),
            hidden=d.get("hidden", 128),
            depth=d.get("depth", 2),
            vae=d.get("vae", False),
            source=d.get("source", "appearance"),
            image_size=d.get("image_size", 256),
            channels=tuple(d.get("channels", (32, 64, 128, 128))),
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
    """``depth`` × (Linear → SiLU) then Linear(hidden → out) (``depth`` 0: one Linear(in → out))."""

    def __init__(self, d_in: int, hidden: int, depth: int, d_out: int, **kw):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(d_in if i == 0 else hidden, hidden, **kw), nn.SiLU()]
        self.net = nn.Sequential(*layers)
        self.out = nn.Linear(hidden if depth else d_in, d_out, **kw)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.net(x))


class _ConvEncoder(nn.Module):
    """Frame → (B, hidden): stride-2 3×3 convs with GroupNorm and SiLU, flatten, Linear, SiLU (one per factor).

    GroupNorm matters: without it the small features (mouth opening, gaze, eyelids of a 64² face) took
    ~5× more steps to learn in a supervised probe (mouth-open r 0.75 vs 0.88 after 250 steps).  So does a
    shallow read-out (``depth=0``): learning the mouth alone shows a plateau before the features appear, and
    two more hidden layers on top of this encoder kept the lip head at a constant output past 300 steps,
    while a linear read-out reached mouth-open r 0.85 after 200.
    """

    def __init__(self, size: int, channels: tuple[int, ...], hidden: int, **kw):
        super().__init__()
        layers: list[nn.Module] = []
        c_in, r = 3, size
        for c in channels:
            groups = 8 if c % 8 == 0 else 1
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1, **kw), nn.GroupNorm(groups, c, **kw), nn.SiLU()]
            c_in, r = c, (r + 1) // 2
        self.net = nn.Sequential(*layers)
        self.proj = nn.Linear(c_in * r * r, hidden, **kw)

    def forward(self, image: Tensor) -> Tensor:
        return F.silu(self.proj(self.net(image).flatten(1)))


class FactorMotionEncoder(nn.Module):
    """Appearance code or frame → factor coefficients, one head per block (drop-in for FLOAT's ``enc.fc``).

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
        mult = 2 if cfg.vae else 1
        if cfg.source == "image":
            self.encoders = nn.ModuleDict(
                {b.name: _ConvEncoder(cfg.image_size, cfg.channels, cfg.hidden, **kw) for b in cfg.layout.blocks}
            )
            d_in = cfg.hidden
        else:
            self.norm = nn.LayerNorm(cfg.dim_w, **kw)
            d_in = cfg.dim_w
        self.heads = nn.ModuleDict(
            {b.name: _Head(d_in, cfg.hidden, cfg.depth, mult * b.size, **kw) for b in cfg.layout.blocks}
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Small output layers (coefficients start near 0) and log-variances at :data:`LOGVAR_INIT`."""
        for block in self.cfg.layout.blocks:
            self._init_output(block)

    def _init_output(self, block) -> None:
        out = self.heads[block.name].out
        if out.weight.is_meta:
            return
        out.weight.mul_(0.1)
        out.bias.zero_()
        if self.cfg.vae:
            out.bias[block.size:].fill_(LOGVAR_INIT)

    @torch.no_grad()
    def reset_block(self, name: str) -> None:
        """Re-initialise one factor's encoder (``source="image"``) and head as when freshly built (draws from the
        global torch RNG): fine-tuning restarts a factor whose encoder got stuck without touching the others."""
        names = [b.name for b in self.cfg.layout.blocks]
        if name not in names:
            raise DemoInputError(f"FactorMotionEncoder.reset_block: no factor {name!r}; the layout has {names}")
        parts = [self.heads[name]] + ([self.encoders[name]] if self.reads_image else [])
        for part in parts:
            for module in part.modules():
                if module is not part and hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        self._init_output(self.cfg.layout.block(name))

    @property
    def reads_image(self) -> bool:
        """True when the heads read the frame (``source="image"``), False when they read ``h``."""
        return self.cfg.source == "image"

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Posterior parameters.

        Args:
            x: ``(B, W)`` appearance codes (``source="appearance"``) or ``(B, 3, S, S)`` frames in [-1, 1]
                (``source="image"``).

        Returns:
            ``mean`` (B, M) and ``logvar`` (B, M) (None without ``vae``), blocks in layout order.
        """
        cfg = self.cfg
        if self.reads_image:
            s = cfg.image_size
            if x.ndim != 4 or tuple(x.shape[1:]) != (3, s, s):
                raise DemoInputError(f"FactorMotionEncoder: expected frames of shape (B, 3, {s}, {s}), got {tuple(x.shape)}")
            inputs = {b.name: self.encoders[b.name](x) for b in cfg.layout.blocks}
        else:
            if x.ndim != 2 or x.shape[1] != cfg.dim_w:
                raise DemoInputError(f"FactorMotionEncoder: expected h of shape (B, {cfg.dim_w}), got {tuple(x.shape)}")
            shared = F.silu(self.norm(x))
            inputs = {b.name: shared for b in cfg.layout.blocks}
        means, logvars = [], []
        for block in cfg.layout.blocks:
            out = self.heads[block.name](inputs[block.name])  # (B, k) or (B, 2k)
            means.append(out[:, : block.size])
            if self.cfg.vae:
                logvars.append(out[:, block.size:].clamp(-12.0, 6.0))
        mean = torch.cat(means, dim=1)  # (B, M)
        return mean, (torch.cat(logvars, dim=1) if self.cfg.vae else None)

    def forward(self, x: Tensor) -> Tensor:
        """Appearance codes ``(B, W)`` or frames ``(B, 3, S, S)`` → posterior mean ``(B, M)`` (deterministic)."""
        return self.posterior(x)[0]
