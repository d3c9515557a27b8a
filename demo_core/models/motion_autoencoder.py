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

Rendering speed (same outputs as the literal definitions, to float rounding): every frame of a chunk goes
through the decoder in one batch, channels-last, with each 3×3 modulated convolution as one dense
convolution (see :mod:`~demo_core.models.stylegan_ops`); the encoder features are converted once per
sequence; without autograd consumed activations are reused in place; the bilinear warp of channels-last
features is one weighted gather (:func:`_gather_bilinear`); at the last level ToRGB's 1×1 convolution is
applied to the features before the warp (they commute), so only 3 channels are warped at full resolution.
Optional: bfloat16 (float16 on CUDA) convolutions via autocast, and ``torch.compile``.
"""

from __future__ import annotations

import contextlib
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
    inplace_allowed,
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
    "qr_basis",
]

#: FLOAT's channel table (channel multiplier 1): resolution -> channels.
FLOAT_CHANNELS: dict[int, int] = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}

#: what the decoder's ToRGB layers read (:attr:`MotionAutoEncoderConfig.rgb_from`)
RGB_SOURCES = ("warped", "mixed")

#: sign conventions of the motion basis (:attr:`MotionAutoEncoderConfig.basis_signs`)
BASIS_SIGNS = ("lapack", "positive")

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
        rgb_from: what each level's ToRGB reads. ``"warped"`` (FLOAT, LIA): the warped source features only, so
            every output pixel is resampled from the source portrait and content the source lacks (an open
            mouth's interior over a closed one, a closed eyelid over an open eye) can only be borrowed from
            elsewhere in it.  ``"mixed"``: the level's blended activation ``warped + x·(1 − mask)``, so where
            the warp mask is off the decoder paints from its own latent-driven activation (DEMO-native models;
            same weights and keys).
        basis_signs: sign convention of the motion basis Q = QR(``dec.direction.weight``).  ``"lapack"`` (FLOAT):
            Q as LAPACK's Householder QR returns it; a column's sign follows the sign of an intermediate pivot,
            so it can flip under a change of the weights as small as float16 rounding.  ``"positive"``: columns
            signed so that R has a positive diagonal, which makes Q a continuous function of the weights.
    """

    size: int = 512
    dim_w: int = 512
    dim_m: int = 20
    channels: dict[int, int] | None = None
    rgb_from: str = "warped"
    basis_signs: str = "lapack"

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
        if self.basis_signs not in BASIS_SIGNS:
            raise DemoInputError(f"MotionAutoEncoderConfig.basis_signs: expected one of {list(BASIS_SIGNS)}, "
                                 f"got {self.basis_signs!r}")
        if self.rgb_from not in RGB_SOURCES:
            raise DemoInputError(f"MotionAutoEncoderConfig.rgb_from: expected one of {list(RGB_SOURCES)}, "
                                 f"got {self.rgb_from!r}")

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
            "rgb_from": self.rgb_from,
            "basis_signs": self.basis_signs,
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


def _gather_bilinear(feat: Tensor, grid: Tensor, mask: Tensor) -> Tensor:
    """``grid_sample(feat, grid) · mask`` for channels-last features as ONE weighted gather (``embedding_bag``):
    each output pixel is the sum of its four neighbouring feature rows (C values each, contiguous in
    channels-last memory) weighted by the bilinear weights times the mask; out-of-range neighbours get weight 0
    (zeros padding).  Weights follow PyTorch's CPU bilinear kernel (``ix = (x + 1)·W/2 − 0.5``); the result is
    channels-last, so no layout conversion follows.

    Args:
        feat: (Bf, C, Hf, Wf), channels-last contiguous.
        grid: (N, H, W, 2) with N = Bf·k (row n samples ``feat[n // k]``).
        mask: (N, 1, H, W).

    Returns:
        (N, C, H, W) with channels-last strides.
    """
    bf, c, hf, wf = feat.shape
    n, h, w, _ = grid.shape
    ix = (grid[..., 0] + 1) * (wf * 0.5) - 0.5  # (N, H, W) source column
    iy = (grid[..., 1] + 1) * (hf * 0.5) - 0.5  # (N, H, W) source row
    x0, y0 = ix.floor(), iy.floor()
    dx, dy = ix - x0, iy - y0  # distances to the west column / north row
    m = mask.reshape(n, h, w)
    north, south = (1 - dy) * m, dy * m  # row weights times the mask
    x0i, y0i = x0.to(torch.int64), y0.to(torch.int64)
    in_x0, in_x1 = (x0i >= 0) & (x0i < wf), (x0i >= -1) & (x0i < wf - 1)
    in_y0, in_y1 = (y0i >= 0) & (y0i < hf), (y0i >= -1) & (y0i < hf - 1)
    col0, col1 = x0i.clamp(0, wf - 1), (x0i + 1).clamp(0, wf - 1)
    row0, row1 = y0i.clamp(0, hf - 1) * wf, (y0i + 1).clamp(0, hf - 1) * wf
    if bf > 1:
        first = (torch.arange(n, device=feat.device) // (n // bf) * (hf * wf)).view(n, 1, 1)  # (N, 1, 1)
        row0, row1 = row0 + first, row1 + first
    index = torch.empty(n, h, w, 4, dtype=torch.int64, device=feat.device)
    weight = torch.empty(n, h, w, 4, dtype=feat.dtype, device=feat.device)
    for k, (row, col, wy, wx, inside) in enumerate((
        (row0, col0, north, 1 - dx, in_y0 & in_x0),
        (row0, col1, north, dx, in_y0 & in_x1),
        (row1, col0, south, 1 - dx, in_y1 & in_x0),
        (row1, col1, south, dx, in_y1 & in_x1),
    )):
        torch.add(row, col, out=index[..., k])
        torch.mul(wy * wx, inside, out=weight[..., k])
    table = feat.permute(0, 2, 3, 1).reshape(bf * hf * wf, c)  # (Bf·Hf·Wf, C), a view
    out = F.embedding_bag(index.view(-1, 4), table, per_sample_weights=weight.view(-1, 4), mode="sum")
    return out.view(n, h, w, c).permute(0, 3, 1, 2)  # (N, C, H, W), channels-last strides


def warp_features(feat: Tensor, grid: Tensor, mask: Tensor) -> Tensor:
    """``grid_sample(feat, grid, bilinear, zeros, align_corners=False) · mask`` with grid row n sampling
    ``feat[n // k]``.

    On the CPU without autograd (and outside ``torch.compile``), channels-last features with at least 8 channels
    use :func:`_gather_bilinear` (the result stays channels-last); otherwise ``grid_sample``.

    Args:
        feat: (Bf, C, Hf, Wf).
        grid: (N, H, W, 2) with N = Bf·k.
        mask: (N, 1, H, W).

    Returns:
        (N, C, H, W).
    """
    n, bf = grid.shape[0], feat.shape[0]
    if n % bf:
        raise DemoInputError(f"feature batch {bf} does not divide the latent batch {n}")
    inplace = inplace_allowed()
    if inplace and feat.shape[1] >= 8 and feat.device.type == "cpu" and feat.is_contiguous(
        memory_format=torch.channels_last
    ):
        return _gather_bilinear(feat, grid, mask)
    sampled = _grid_sample_rows(feat, grid)  # (N, C, H, W)
    return sampled.mul_(mask) if inplace else sampled * mask


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


def qr_basis(weight: Tensor, *, positive: bool = False) -> tuple[Tensor, Tensor]:
    """Q (W, M) and diag R (M,) of the reduced QR decomposition of ``weight + 1e-8`` (LAPACK Householder, in
    ``weight``'s dtype and device).  ``positive``: Q's columns (and the returned diagonal) signed so that R's
    diagonal is positive; otherwise LAPACK's signs, as in FLOAT."""
    q, r = torch.linalg.qr(weight + 1e-8, mode="reduced")
    d = torch.diagonal(r)
    if positive:
        s = torch.where(d < 0, -1.0, 1.0).to(q.dtype)
        q, d = q * s, d * s
    return q, d


class Direction(nn.Module):
    """``dec.direction``: parameter ``weight`` (W, M) spanning the motion directions."""

    def __init__(self, dim_w: int, dim_m: int, *, device=None, dtype=None, positive: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim_w, dim_m, device=device, dtype=dtype))
        self.positive = bool(positive)

    def basis(self) -> Tensor:
        """Q (W, M) of the reduced QR decomposition of ``weight + 1e-8`` (LAPACK Householder; with ``positive``
        each column is signed so that R's diagonal is positive, otherwise no sign fix, as in FLOAT).

        Computed in float32 at least (QR has no half-precision kernels) and cast back to the weight dtype.
        """
        w = self.weight
        calc_dtype = w.dtype if w.dtype in (torch.float32, torch.float64) else torch.float32
        calc_dev = w.device if w.device.type in ("cpu", "cuda", "meta") else torch.device("cpu")
        q, _ = qr_basis(w.to(device=calc_dev, dtype=calc_dtype), positive=self.positive)  # (W, M)
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

    The 1×1 convolution (:meth:`project`) is linear and acts per pixel, so it commutes with the bilinear warp
    that produces ``x``; the decoder uses this at its last level to warp 3 projected channels instead of C.

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

    def project(self, x: Tensor) -> Tensor:
        """The 1×1 convolution alone: (B, in, H, W) -> (B, 3, H, W), contiguous (planar) for any input layout."""
        conv = self.conv[0]
        b, c, h, w = x.shape
        weight = (conv.weight[:, :, 0, 0] * conv.scale).to(x.dtype)  # (3, in)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            pixels = x.permute(0, 2, 3, 1).reshape(b, h * w, c).transpose(1, 2)  # (B, in, H·W), a strided view
            return torch.matmul(weight, pixels).reshape(b, 3, h, w)  # (B, 3, H, W)
        return conv(x)

    def finish(self, y: Tensor, skip: Tensor | None = None) -> Tensor:
        """Activation, bias and skip on a projected (B, 3, H, W) map."""
        out = self.conv[1](y) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        """(B, in, H, W) [, (B, 3, H/2, W/2)] -> (B, 3, H, W)."""
        return self.finish(self.project(x), skip)


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

    def flow_field(self, x: Tensor, latent: Tensor, skip: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Raw ``o`` (N, 3, H, W), sampling ``grid`` (N, H, W, 2) and ``mask`` (N, 1, H, W) for activation ``x``."""
        o = self.conv(x, latent)  # (N, 3, H, W)
        if o.dtype in (torch.float16, torch.bfloat16):
            o = o.float()  # flow fields and grids stay float32 under autocast
        o = o + self.bias
        if skip is not None:
            o = o + self.upsample(skip)
        n, _, h, w = o.shape
        offset = torch.tanh(o[:, 0:2]).permute(0, 2, 3, 1)  # (N, H, W, 2)
        mask = torch.sigmoid(o[:, 2:3])  # (N, 1, H, W)
        grid = (base_grid(h, w, device=o.device, dtype=o.dtype) + offset).contiguous()  # (N, H, W, 2)
        return o, grid, mask

    def forward(
        self, x: Tensor, latent: Tensor, feat: Tensor, skip: Tensor | None = None, *, reuse_x: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Warp one pyramid level.

        Args:
            x: decoder activation (N, C, H, W).
            latent: (N, W).
            feat: encoder features (Bf, C, H, W) with N = Bf·k (row n uses ``feat[n // k]``).
            skip: previous level's raw ``o`` (N, 3, H/2, W/2) or None.
            reuse_x: ``mixed`` may be written into ``x``'s memory (only without autograd).

        Returns:
            warped (N, C, H, W), mixed (N, C, H, W), o (N, 3, H, W), grid (N, H, W, 2).
        """
        o, grid, mask = self.flow_field(x, latent, skip)
        warped = warp_features(feat, grid, mask)  # (N, C, H, W)
        keep = 1 - mask  # (N, 1, H, W)
        if reuse_x and inplace_allowed():
            mixed = torch.addcmul(warped, x, keep, out=x)  # warped + x·(1 − mask)
        else:
            mixed = warped + x * keep
        return warped, mixed, o, grid


class MotionDecoder(nn.Module):
    """``dec``: direction basis, constant input, styled convs, ToRGB and ToFlow per level 8 … S.

    Rendering runs channels-last (``channels_last``; an attribute, not a weight): every 3×3 modulated
    convolution is one dense convolution over the whole batch, and without autograd the intermediate
    activations are updated in place.
    """

    def __init__(self, cfg: MotionAutoEncoderConfig, *, device=None, dtype=None) -> None:
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        w = cfg.dim_w
        self.direction = Direction(w, cfg.dim_m, positive=cfg.basis_signs == "positive", **fk)
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
        self.channels_last = True
        self.rgb_from_mixed = cfg.rgb_from == "mixed"

    def prepare_features(self, feats: Sequence[Tensor]) -> list[Tensor]:
        """Encoder features in the renderer's memory format (a no-op when they already are)."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return [f.contiguous(memory_format=fmt) for f in feats]

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
        feats = self.prepare_features(feats)
        scratch = taps is None and not torch.is_grad_enabled()  # consumed activations are not needed again
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        h = self.input(n).contiguous(memory_format=fmt)  # (N, C(4), 4, 4)
        h = self.conv1(h, latent)  # (N, C(4), 4, 4); h may share memory with the parameter: never overwritten
        if taps is not None:
            taps["dec.conv1"] = h
        rgb = o = flow = None
        last = len(self.to_flows) - 1
        for j, (to_flow, to_rgb) in enumerate(zip(self.to_flows, self.to_rgbs)):
            h0 = self.convs[2 * j](h, latent, overwrite_input=scratch)  # (N, C(r), r, r), upsampled
            h1 = self.convs[2 * j + 1](h0, latent, overwrite_input=scratch)  # (N, C(r), r, r)
            if j == last and scratch:
                # the last level's mixed activation is unused and ToRGB's 1×1 conv commutes with the warp:
                # warp the 3 projected channels instead of all C(S)
                o, grid, mask = to_flow.flow_field(h1, latent, o)
                y = warp_features(to_rgb.project(feats[j]), grid, mask)  # (N, 3, S, S)
                if self.rgb_from_mixed:  # + project(h1 · (1 − mask)): the projection is per-pixel linear
                    y = y + to_rgb.project(h1).to(y.dtype) * (1 - mask)
                rgb = to_rgb.finish(y, rgb)  # (N, 3, S, S)
            else:
                warped, h, o, grid = to_flow(h1, latent, feats[j], o, reuse_x=scratch)
                rgb = to_rgb(h if self.rgb_from_mixed else warped, rgb)  # (N, 3, r, r)
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
        return rgb.contiguous(), flow


HALF_DTYPES = (torch.bfloat16, torch.float16)


def _autocast(x: Tensor, dtype: torch.dtype | None):
    """Autocast context for a half compute precision (a null context for None or a full precision).

    Half-precision weights run under autocast too: it keeps grid_sample and the flow fields in float32 (a
    bfloat16 grid is off by up to 2 px at 512²) and casts every layer's input to the weights' dtype.

    Raises:
        DemoInputError: for float16 on a CPU or a dtype that is not a floating-point type.
    """
    if dtype is None or (dtype == x.dtype and dtype not in HALF_DTYPES):
        return contextlib.nullcontext()
    if dtype not in HALF_DTYPES:
        raise DemoInputError(f"dtype: expected None, torch.bfloat16 or torch.float16, got {dtype}")
    if dtype == torch.float16 and x.device.type == "cpu":
        raise DemoInputError("dtype: float16 rendering needs a GPU; use torch.bfloat16 on the CPU")
    return torch.autocast(device_type=x.device.type, dtype=dtype)


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
        dtype: torch.dtype | None = None,
        motion: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Render one image per latent row.

        Args:
            latent: (N, W) = h_source + motion.
            feats: encoder features low→high res, each (Bf, C(r), r, r) with N = Bf·k; latent row n uses
                ``feats[·][n // k]`` (k = 1: one feature row per latent row).
            return_flow: also return the sampling grid of the 64×64 level.
            taps: optional dict of intermediate tensors (see :meth:`MotionDecoder.forward`).
            dtype: compute precision of the convolutions: None (the model's dtype), ``torch.bfloat16``, or
                ``torch.float16`` (CUDA only), via autocast (half-precision weights too); flow fields, grids and
                warps stay float32.
                Results are returned in the latent's dtype.
            motion: (N, W) the motion part of ``latent`` (``latent − h_source``); models with a feature painter
                (DEMO-native, see :meth:`paint`) need it, FLOAT's auto-encoder ignores it.

        Returns:
            image (N, 3, S, S) (no tanh, no clamp), and with ``return_flow`` the grid (N, 64, 64, 2).
        """
        if latent.ndim != 2 or latent.shape[1] != self.cfg.dim_w:
            raise DemoInputError(f"latent: expected shape (N, {self.cfg.dim_w}), got {tuple(latent.shape)}")
        with _autocast(latent, self._compute_dtype(dtype)):
            img, flow = self.dec(latent, feats, taps)
            img = self.paint(img, motion)
        img = img.to(latent.dtype)
        return (img, flow) if return_flow else img

    def _compute_dtype(self, dtype: torch.dtype | None) -> torch.dtype | None:
        """The decoder's compute precision: ``dtype`` if given, else the weights' own when they are half."""
        weights = self.dec.input.input.dtype
        return weights if dtype is None and weights in HALF_DTYPES else dtype

    def paint(self, image: Tensor, motion: Tensor | None) -> Tensor:
        """Post-decoder refinement of rendered frames (N, 3, S, S) given their motion latents (N, W): the
        identity here (FLOAT has none); DEMO-native models with a feature painter override it."""
        return image

    def compiled_decoder(self) -> nn.Module:
        """``torch.compile`` of the decoder (built on first use; kept outside the module tree)."""
        compiled = self.__dict__.get("_compiled_decoder")
        if compiled is None:
            compiled = torch.compile(self.dec, dynamic=False)
            self.__dict__["_compiled_decoder"] = compiled
        return compiled

    def iter_decode(
        self,
        h_source: Tensor,
        feats: Sequence[Tensor],
        motion: Tensor,
        *,
        chunk_size: int = 8,
        dtype: torch.dtype | None = None,
        compile: bool = False,
    ) -> Iterator[Tensor]:
        """Render a motion sequence chunk by chunk (for streaming).

        The features are converted once to the renderer's memory format and reused for every chunk.

        Args:
            h_source: (B, W) appearance codes.
            feats: encoder features of the B portraits, low→high res, each (B, C(r), r, r).
            motion: (B, T, W) motion latents.
            chunk_size: frames rendered per call (the decoder batch is B·chunk_size).
            dtype: compute precision, see :meth:`render`.
            compile: run the decoder through ``torch.compile`` (first chunks are slow while it compiles).

        Yields:
            (B, t_chunk, 3, S, S) frame chunks in time order.
        """
        if motion.ndim != 3 or motion.shape[0] != h_source.shape[0] or motion.shape[2] != h_source.shape[1]:
            raise DemoInputError(
                f"motion: expected shape (B, T, W) matching h_source {tuple(h_source.shape)}, got {tuple(motion.shape)}"
            )
        if int(chunk_size) < 1:
            raise DemoInputError(f"chunk_size: expected >= 1, got {chunk_size}")
        dtype = self._compute_dtype(dtype)
        _autocast(motion, dtype)  # validates dtype before the first chunk
        b, t, w = motion.shape
        s = self.cfg.size
        feats = self.dec.prepare_features(feats)
        dec = self.compiled_decoder() if compile else self.dec
        for t0 in range(0, t, int(chunk_size)):
            m = motion[:, t0 : t0 + int(chunk_size)]  # (B, tc, W)
            tc = m.shape[1]
            latent = (h_source[:, None, :] + m).reshape(b * tc, w)  # (B·tc, W), portrait-major
            with _autocast(latent, dtype):
                img, _ = dec(latent, feats)  # (B·tc, 3, S, S)
                img = self.paint(img, m.reshape(b * tc, w))
            yield img.to(motion.dtype).reshape(b, tc, 3, s, s)  # (B, tc, 3, S, S)

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
