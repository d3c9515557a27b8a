"""FLOAT's LIA-style motion auto-encoder (``motion_autoencoder.*`` in FLOAT checkpoints).

Written from ``shared/reference/float/ARCHITECTURE.md`` §3–§5.  The module tree (``enc.net_app.convs``,
``enc.fc``, ``dec.direction``, ``dec.input``, ``dec.conv1``, ``dec.to_rgb1``, ``dec.convs``, ``dec.to_rgbs``,
``dec.to_flows``) reproduces FLOAT's ``state_dict`` keys and shapes exactly, so FLOAT weights load with
``load_state_dict`` after stripping the ``motion_autoencoder.`` prefix.

Data flow:

* :meth:`MotionAutoEncoder.encode`: image (B, 3, S, S) in [-1, 1] → appearance code ``h_source`` (B, W),
  motion coefficients ``lam`` (B, M) and a feature pyramid ``feats`` (8×8 … S×S).
* :meth:`MotionAutoEncoder.directions`: orthonormal motion basis Q (W, M) from a QR decomposition.
* :meth:`MotionAutoEncoder.render`: latent ``h_source + motion`` (B, W) + ``feats`` → image (B, 3, S, S).
* :meth:`MotionAutoEncoder.decode` / :meth:`MotionAutoEncoder.iter_decode`: a motion sequence (B, T, W)
  → frames (B, T, 3, S, S), rendered a chunk of frames at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DemoInputError
from .stylegan_ops import (
    ConvLayer,
    EqualConv2d,
    EqualLinear,
    FusedLeakyReLU,
    ModulatedConv2d,
    ResBlock,
    StyledConv,
    Upsample,
)

__all__ = [
    "FLOAT_CHANNELS",
    "MotionAutoEncoderConfig",
    "MotionAutoEncoder",
    "MotionEncoder",
    "MotionDecoder",
    "ToRGB",
    "ToFlow",
    "base_grid",
]

#: FLOAT's channel table (channel multiplier 1): resolution -> channels.
FLOAT_CHANNELS: dict[int, int] = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}

#: resolution of the decoder level whose sampling grid is returned as "flow"
FLOW_RESOLUTION = 64


# ----------------------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------------------


@dataclass
class MotionAutoEncoderConfig:
    """Shape configuration of the motion auto-encoder.

    Attributes:
        size: image size S, a power of two >= 64.
        dim_w: appearance / motion latent size W (FLOAT: 512; its direction matrix has a literal 512 rows,
            so FLOAT checkpoints require 512).
        dim_m: number of motion directions M.
        channels: resolution -> channels for every resolution 4 … S; None = FLOAT's table.
    """

    size: int = 512
    dim_w: int = 512
    dim_m: int = 20
    channels: dict[int, int] | None = None

    def __post_init__(self) -> None:
        self.size = int(self.size)
        self.dim_w = int(self.dim_w)
        self.dim_m = int(self.dim_m)
        if self.size < FLOW_RESOLUTION or self.size & (self.size - 1):
            raise DemoInputError(f"MotionAutoEncoderConfig.size: expected a power of two >= 64, got {self.size}")
        if self.dim_w < 1 or self.dim_m < 1 or self.dim_m > self.dim_w:
            raise DemoInputError(
                f"MotionAutoEncoderConfig: expected 1 <= dim_m <= dim_w, got dim_w={self.dim_w}, dim_m={self.dim_m}"
            )
        if self.channels is not None:
            self.channels = {int(r): int(c) for r, c in self.channels.items()}
        for r in self.resolutions:
            if self.channel(r) < 1:
                raise DemoInputError(f"MotionAutoEncoderConfig.channels[{r}] must be positive")

    @property
    def resolutions(self) -> list[int]:
        """Resolutions 4, 8, …, S."""
        return [2**i for i in range(2, self.size.bit_length())]

    @property
    def num_levels(self) -> int:
        """Number of decoder levels (8 … S) = log2(S) - 2."""
        return self.size.bit_length() - 3

    def channel(self, resolution: int) -> int:
        """Channel count at ``resolution``.

        Raises:
            DemoInputError: if the table has no entry for ``resolution``.
        """
        table = FLOAT_CHANNELS if self.channels is None else self.channels
        try:
            return table[int(resolution)]
        except KeyError:
            raise DemoInputError(
                f"MotionAutoEncoderConfig.channels: no entry for resolution {resolution} "
                f"(have {sorted(table)})"
            ) from None

    def to_dict(self) -> dict:
        """JSON-safe dict (channel keys as str)."""
        return {
            "size": self.size,
            "dim_w": self.dim_w,
            "dim_m": self.dim_m,
            "channels": None if self.channels is None else {str(r): c for r, c in sorted(self.channels.items())},
        }

    @classmethod
    def from_dict(cls, d: dict) -> MotionAutoEncoderConfig:
        """Inverse of :meth:`to_dict`; channel keys may be str or int, unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if kw.get("channels") is not None:
            kw["channels"] = {int(r): int(c) for r, c in kw["channels"].items()}
        return cls(**kw)


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------


def base_grid(height: int, width: int, *, device=None, dtype=None) -> Tensor:
    """Identity sampling grid in the align-corners=True convention.

    ``lin = linspace(-1, 1, n)`` is computed in float64 and cast; ``grid[y, x] = (lin_w[x], lin_h[y])``
    (channel 0 is the horizontal coordinate).

    Returns:
        (height, width, 2) tensor on ``device`` with ``dtype`` (float32 if None).
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    calc = dev if dev.type in ("cpu", "cuda") else torch.device("cpu")  # float64 is not available everywhere
    ys = torch.linspace(-1.0, 1.0, height, dtype=torch.float64, device=calc)
    xs = torch.linspace(-1.0, 1.0, width, dtype=torch.float64, device=calc)
    gx = xs[None, :].expand(height, width)  # (H, W)
    gy = ys[:, None].expand(height, width)  # (H, W)
    return torch.stack((gx, gy), dim=-1).to(device=dev, dtype=dtype or torch.float32)  # (H, W, 2)


def _grid_sample_rows(feat: Tensor, grid: Tensor) -> Tensor:
    """Bilinear ``grid_sample`` (zeros padding, align_corners=False) where ``grid`` may have k times the batch
    of ``feat``: grid row ``n`` samples ``feat[n // k]``.  The k grids of one feature map are stacked along
    the height axis, so ``feat`` is never repeated in memory.

    Args:
        feat: (Bf, C, Hf, Wf).
        grid: (Bf·k, H, W, 2).

    Returns:
        (Bf·k, C, H, W).
    """
    bf, c = feat.shape[:2]
    n, h, w = grid.shape[:3]
    if n == bf:
        return F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if n % bf:
        raise DemoInputError(f"feature batch {bf} does not divide the latent batch {n}")
    k = n // bf
    g = grid.reshape(bf, k * h, w, 2)  # (Bf, k·H, W, 2)
    out = F.grid_sample(feat, g, mode="bilinear", padding_mode="zeros", align_corners=False)  # (Bf, C, k·H, W)
    out = out.reshape(bf, c, k, h, w).transpose(1, 2)  # (Bf, k, C, H, W)
    return out.reshape(n, c, h, w)  # (Bf·k, C, H, W)


# ----------------------------------------------------------------------------------------------------------
# encoder
# ----------------------------------------------------------------------------------------------------------


class AppearanceNet(nn.Module):
    """``net_app``: ``convs`` = [ConvLayer(3, C(S), 1), ResBlock S→S/2, …, ResBlock 8→4, EqualConv2d 4×4 → W].

    The final 4×4 conv has no padding and no bias, giving a (B, W, 1, 1) code.
    """

    def __init__(self, cfg: MotionAutoEncoderConfig, *, device=None, dtype=None) -> None:
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        s = cfg.size
        convs: list[nn.Module] = [ConvLayer(3, cfg.channel(s), 1, **fk)]
        r = s
        while r > 4:
            convs.append(ResBlock(cfg.channel(r), cfg.channel(r // 2), **fk))
            r //= 2
        convs.append(EqualConv2d(cfg.channel(4), cfg.dim_w, 4, padding=0, bias=False, **fk))
        self.convs = nn.ModuleList(convs)

    def forward(self, x: Tensor) -> list[Tensor]:
        """(B, 3, S, S) -> outputs of every module: (B, C(S), S, S), …, (B, C(4), 4, 4), (B, W, 1, 1)."""
        outs = []
        for conv in self.convs:
            x = conv(x)
            outs.append(x)
        return outs


class MotionEncoder(nn.Module):
    """``enc``: appearance network ``net_app`` and the motion MLP ``fc`` (five EqualLinears, no activation)."""

    def __init__(self, cfg: MotionAutoEncoderConfig, *, device=None, dtype=None) -> None:
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.net_app = AppearanceNet(cfg, **fk)
        w = cfg.dim_w
        self.fc = nn.Sequential(*[EqualLinear(w, w, **fk) for _ in range(4)], EqualLinear(w, cfg.dim_m, **fk))

    def forward(self, image: Tensor, taps: dict | None = None) -> tuple[Tensor, Tensor, list[Tensor]]:
        """(B, 3, S, S) -> (h_source (B, W), lam (B, M), feats low→high res (8×8 … S×S))."""
        outs = self.net_app(image)
        if taps is not None:
            for i, o in enumerate(outs):
                taps[f"enc.net_app.convs.{i}"] = o
        h_source = outs[-1].flatten(1)  # (B, W)
        lam = self.fc(h_source)  # (B, M)
        feats = outs[-3::-1]  # reversed, without the 1×1 code and the 4×4 map
        return h_source, lam, feats


# ----------------------------------------------------------------------------------------------------------
# decoder
# ----------------------------------------------------------------------------------------------------------


class Direction(nn.Module):
    """``dec.direction``: parameter ``weight`` (W, M) spanning the motion directions."""

    def __init__(self, dim_w: int, dim_m: int, *, device=None, dtype=None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim_w, dim_m, device=device, dtype=dtype))

    def basis(self) -> Tensor:
        """Q (W, M) of the reduced QR decomposition of ``weight + 1e-8`` (LAPACK Householder, no sign fix).

        Computed in float32 at least (QR has no half-precision kernels) and cast back to the weight dtype.
        """
        w = self.weight
        calc_dtype = w.dtype if w.dtype in (torch.float32, torch.float64) else torch.float32
        calc_dev = w.device if w.device.type in ("cpu", "cuda", "meta") else torch.device("cpu")
        q, _ = torch.linalg.qr(w.to(device=calc_dev, dtype=calc_dtype) + 1e-8, mode="reduced")  # (W, M)
        return q.to(device=w.device, dtype=w.dtype)


class ConstantInput(nn.Module):
    """``dec.input``: learned constant ``input`` (1, C(4), 4, 4)."""

    def __init__(self, channels: int, size: int = 4, *, device=None, dtype=None) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size, device=device, dtype=dtype))

    def forward(self, batch: int) -> Tensor:
        """-> (batch, C, 4, 4) (an expanded view)."""
        return self.input.expand(batch, -1, -1, -1)


class ToRGB(nn.Module):
    """``FusedLeakyReLU(conv1×1(x)) + bias [+ Upsample×2(skip)]``.

    Keys: ``bias`` (1, 3, 1, 1), ``upsample.kernel`` (if ``upsample``), ``conv.0.weight`` (3, in, 1, 1),
    ``conv.1.bias`` (1, 3, 1, 1).
    """

    def __init__(self, in_channels: int, upsample: bool = True, *, device=None, dtype=None) -> None:
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1, **fk))
        if upsample:
            self.upsample = Upsample(**fk)
        self.conv = nn.Sequential(EqualConv2d(in_channels, 3, 1, bias=False, **fk), FusedLeakyReLU(3, **fk))

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        """(B, in, H, W) [, (B, 3, H/2, W/2)] -> (B, 3, H, W)."""
        out = self.conv(x) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ToFlow(nn.Module):
    """Predicts a warp of the encoder feature map and blends it into the decoder activation.

    ``o = modconv1×1(x, latent) (no demodulation) + bias [+ Upsample×2(previous o)]``;
    ``grid = base_grid + tanh(o[:, :2])``; ``mask = sigmoid(o[:, 2:3])``;
    ``warped = grid_sample(feat, grid) · mask``; ``mixed = warped + x · (1 - mask)``.

    Keys: ``bias`` (1, 3, 1, 1), ``upsample.kernel``, ``conv.weight`` (1, 3, in, 1, 1),
    ``conv.modulation.{weight, bias}``.
    """

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True, *, device=None, dtype=None):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1, **fk))
        if upsample:
            self.upsample = Upsample(**fk)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False, **fk)

    def forward(
        self, x: Tensor, latent: Tensor, feat: Tensor, skip: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Warp one pyramid level.

        Args:
            x: decoder activation (N, C, H, W).
            latent: (N, W).
            feat: encoder features (Bf, C, H, W) with N = Bf·k (row n uses ``feat[n // k]``).
            skip: previous level's raw ``o`` (N, 3, H/2, W/2) or None.

        Returns:
            warped (N, C, H, W), mixed (N, C, H, W), o (N, 3, H, W), grid (N, H, W, 2).
        """
        o = self.conv(x, latent) + self.bias  # (N, 3, H, W)
        if skip is not None:
            o = o + self.upsample(skip)
        h, w = o.shape[-2:]
        offset = torch.tanh(o[:, 0:2]).permute(0, 2, 3, 1)  # (N, H, W, 2)
        mask = torch.sigmoid(o[:, 2:3])  # (N, 1, H, W)
        grid = base_grid(h, w, device=o.device, dtype=o.dtype) + offset  # (N, H, W, 2)
        warped = _grid_sample_rows(feat, grid) * mask  # (N, C, H, W)
        mixed = warped + x * (1 - mask)
        return warped, mixed, o, grid


class MotionDecoder(nn.Module):
    """``dec``: direction basis, constant input, styled convs, ToRGB and ToFlow per level 8 … S."""

    def __init__(self, cfg: MotionAutoEncoderConfig, *, device=None, dtype=None) -> None:
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        w = cfg.dim_w
        self.direction = Direction(w, cfg.dim_m, **fk)
        self.input = ConstantInput(cfg.channel(4), **fk)
        self.conv1 = StyledConv(cfg.channel(4), cfg.channel(4), 3, w, **fk)
        self.to_rgb1 = ToRGB(cfg.channel(4), upsample=False, **fk)  # unused at inference (kept for the keys)
        convs, to_rgbs, to_flows = [], [], []
        for r in cfg.resolutions[1:]:
            c_in, c_out = cfg.channel(r // 2), cfg.channel(r)
            convs.append(StyledConv(c_in, c_out, 3, w, upsample=True, **fk))
            convs.append(StyledConv(c_out, c_out, 3, w, **fk))
            to_rgbs.append(ToRGB(c_out, **fk))
            to_flows.append(ToFlow(c_out, w, **fk))
        self.convs = nn.ModuleList(convs)
        self.to_rgbs = nn.ModuleList(to_rgbs)
        self.to_flows = nn.ModuleList(to_flows)

    def forward(
        self, latent: Tensor, feats: Sequence[Tensor], taps: dict | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Render images.

        Args:
            latent: (N, W) = h_source + motion.
            feats: encoder features low→high res, each (Bf, C(r), r, r) with N = Bf·k.
            taps: optional dict filled with intermediate tensors (``dec.conv1``, ``dec.convs.{i}``,
                ``dec.to_flows.{j}.{feat_warp, mixed, flow_logits, grid}``, ``dec.to_rgbs.{j}``).

        Returns:
            image (N, 3, S, S) and the sampling grid of the 64×64 level (N, 64, 64, 2) (None if no such level).
        """
        if len(feats) != len(self.to_flows):
            raise DemoInputError(f"feats: expected {len(self.to_flows)} feature maps, got {len(feats)}")
        n = latent.shape[0]
        h = self.conv1(self.input(n), latent)  # (N, C(4), 4, 4)
        if taps is not None:
            taps["dec.conv1"] = h
        rgb = o = flow = None
        for j, (to_flow, to_rgb) in enumerate(zip(self.to_flows, self.to_rgbs)):
            h0 = self.convs[2 * j](h, latent)  # (N, C(r), r, r), upsampled
            h1 = self.convs[2 * j + 1](h0, latent)  # (N, C(r), r, r)
            warped, h, o, grid = to_flow(h1, latent, feats[j], o)
            rgb = to_rgb(warped, rgb)  # (N, 3, r, r)
            if grid.shape[1] == FLOW_RESOLUTION:
                flow = grid
            if taps is not None:
                taps[f"dec.convs.{2 * j}"] = h0
                taps[f"dec.convs.{2 * j + 1}"] = h1
                taps[f"dec.to_flows.{j}.feat_warp"] = warped
                taps[f"dec.to_flows.{j}.mixed"] = h
                taps[f"dec.to_flows.{j}.flow_logits"] = o
                taps[f"dec.to_flows.{j}.grid"] = grid
                taps[f"dec.to_rgbs.{j}"] = rgb
        return rgb, flow


# ----------------------------------------------------------------------------------------------------------
# auto-encoder
# ----------------------------------------------------------------------------------------------------------


class MotionAutoEncoder(nn.Module):
    """FLOAT's motion auto-encoder (``enc`` + ``dec``), state-dict compatible with ``motion_autoencoder.*``.

    Args:
        cfg: shape configuration.
        device: device of parameters and buffers (``"meta"`` builds an empty shell instantly).
        dtype: dtype of parameters and buffers.
    """

    def __init__(self, cfg: MotionAutoEncoderConfig | None = None, *, device=None, dtype=None) -> None:
        super().__init__()
        self.cfg = cfg or MotionAutoEncoderConfig()
        self.enc = MotionEncoder(self.cfg, device=device, dtype=dtype)
        self.dec = MotionDecoder(self.cfg, device=device, dtype=dtype)

    # -- encoder ---------------------------------------------------------------------------------------------

    def encode(self, image: Tensor, *, taps: dict | None = None) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Encode portraits.

        Args:
            image: (B, 3, S, S) in [-1, 1].
            taps: optional dict filled with ``enc.net_app.convs.{i}`` outputs.

        Returns:
            h_source (B, W), lam (B, M), feats: list of (B, C(r), r, r) for r = 8 … S (low → high res).
        """
        s = self.cfg.size
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, s, s):
            raise DemoInputError(f"image: expected shape (B, 3, {s}, {s}), got {tuple(image.shape)}")
        return self.enc(image, taps)

    # -- motion basis ----------------------------------------------------------------------------------------

    def directions(self) -> Tensor:
        """Orthonormal motion basis Q (W, M) = reduced QR of ``dec.direction.weight + 1e-8`` (no sign fix)."""
        return self.dec.direction.basis()

    def motion_from_coefficients(self, lam: Tensor) -> Tensor:
        """Motion latent Σ_i lam_i·Q[:, i].

        Args:
            lam: (..., M).

        Returns:
            (..., W) = lam @ Qᵀ.
        """
        return lam @ self.directions().T

    def coefficients_from_motion(self, motion: Tensor) -> Tensor:
        """Project motion latents onto the basis.

        Args:
            motion: (..., W).

        Returns:
            (..., M) = motion @ Q.
        """
        return motion @ self.directions()

    # -- decoder ---------------------------------------------------------------------------------------------

    def render(
        self,
        latent: Tensor,
        feats: Sequence[Tensor],
        *,
        return_flow: bool = False,
        taps: dict | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Render one image per latent row.

        Args:
            latent: (N, W) = h_source + motion.
            feats: encoder features low→high res, each (Bf, C(r), r, r) with N = Bf·k; latent row n uses
                ``feats[·][n // k]`` (k = 1: one feature row per latent row).
            return_flow: also return the sampling grid of the 64×64 level.
            taps: optional dict of intermediate tensors (see :meth:`MotionDecoder.forward`).

        Returns:
            image (N, 3, S, S) (no tanh, no clamp), and with ``return_flow`` the grid (N, 64, 64, 2).
        """
        if latent.ndim != 2 or latent.shape[1] != self.cfg.dim_w:
            raise DemoInputError(f"latent: expected shape (N, {self.cfg.dim_w}), got {tuple(latent.shape)}")
        img, flow = self.dec(latent, feats, taps)
        return (img, flow) if return_flow else img

    def iter_decode(
        self, h_source: Tensor, feats: Sequence[Tensor], motion: Tensor, *, chunk_size: int = 8
    ) -> Iterator[Tensor]:
        """Render a motion sequence chunk by chunk (for streaming).

        Args:
            h_source: (B, W) appearance codes.
            feats: encoder features of the B portraits, low→high res, each (B, C(r), r, r).
            motion: (B, T, W) motion latents.
            chunk_size: frames rendered per call (the decoder batch is B·chunk_size).

        Yields:
            (B, t_chunk, 3, S, S) frame chunks in time order.
        """
        if motion.ndim != 3 or motion.shape[0] != h_source.shape[0] or motion.shape[2] != h_source.shape[1]:
            raise DemoInputError(
                f"motion: expected shape (B, T, W) matching h_source {tuple(h_source.shape)}, got {tuple(motion.shape)}"
            )
        if int(chunk_size) < 1:
            raise DemoInputError(f"chunk_size: expected >= 1, got {chunk_size}")
        b, t, w = motion.shape
        s = self.cfg.size
        for t0 in range(0, t, int(chunk_size)):
            m = motion[:, t0 : t0 + int(chunk_size)]  # (B, tc, W)
            tc = m.shape[1]
            latent = (h_source[:, None, :] + m).reshape(b * tc, w)  # (B·tc, W), portrait-major
            img = self.render(latent, feats)  # (B·tc, 3, S, S)
            yield img.reshape(b, tc, 3, s, s)  # (B, tc, 3, S, S)

    def decode(self, h_source: Tensor, feats: Sequence[Tensor], motion: Tensor, *, chunk_size: int = 8) -> Tensor:
        """Render a motion sequence: frame t of portrait b = render(h_source[b] + motion[b, t], feats[b]).

        Args:
            h_source: (B, W).
            feats: list of (B, C(r), r, r), low→high res.
            motion: (B, T, W).
            chunk_size: frames rendered per decoder call.

        Returns:
            frames (B, T, 3, S, S); singleton axes are kept (unlike FLOAT, which squeezes them).
        """
        chunks = list(self.iter_decode(h_source, feats, motion, chunk_size=chunk_size))
        if not chunks:
            s = self.cfg.size
            return motion.new_empty(motion.shape[0], 0, 3, s, s)
        return torch.cat(chunks, dim=1)  # (B, T, 3, S, S)
