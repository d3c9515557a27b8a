"""StyleGAN2-style primitives used by FLOAT's LIA motion auto-encoder.

Everything here is pure PyTorch and written from the description in
``shared/reference/float/ARCHITECTURE.md`` §3 and §5.2:

* equalised learning rate: weights are stored unscaled and multiplied at run time by ``1/sqrt(fan_in)``;
* fused leaky ReLU: ``sqrt(2) * leaky_relu(x + bias, 0.2)`` with a ``bias`` parameter of shape (1, C, 1, 1);
* the (1, 3, 3, 1) FIR kernel and FIR resampling: the blur is ONE depthwise convolution over all channels;
  ×2 upsampling is in polyphase form (four 2×2 phase filters as one depthwise convolution + ``pixel_shuffle``),
  so the inserted zeros are never multiplied;
* modulated convolution: the batch is modulated on the activations, convolved with ONE shared weight (a dense
  convolution, channels-last friendly) and demodulated on the outputs; without autograd the demodulation,
  bias and leaky ReLU are applied in place on the convolution output.  The literal per-sample-weight form
  stays available as :meth:`ModulatedConv2d.forward_reference` (and :func:`upfirdn2d_reference`) for tests.

Module attribute names (``weight``, ``bias``, ``kernel``, ``modulation``, ``blur``) are chosen so that
``state_dict`` keys equal FLOAT's.  Every module takes ``device``/``dtype`` from the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "SQRT2",
    "inplace_allowed",
    "make_fir_kernel",
    "fused_leaky_relu",
    "blur2d",
    "upsample2d",
    "upfirdn2d_reference",
    "EqualConv2d",
    "EqualLinear",
    "FusedLeakyReLU",
    "Blur",
    "Upsample",
    "ModulatedConv2d",
    "NoiseInjection",
    "StyledConv",
    "ConvLayer",
    "ResBlock",
]

SQRT2 = math.sqrt(2.0)


def inplace_allowed() -> bool:
    """True when consumed activations may be overwritten in place: no autograd is recorded and no
    ``torch.compile`` trace is running (inductor plans its own buffers and fuses the element-wise work)."""
    return not torch.is_grad_enabled() and not torch.compiler.is_compiling()


# ----------------------------------------------------------------------------------------------------------
# functional helpers
# ----------------------------------------------------------------------------------------------------------


def make_fir_kernel(
    taps: Sequence[float] = (1.0, 3.0, 3.0, 1.0),
    scale: float = 1.0,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Build the separable 2-D FIR kernel ``scale * outer(v, v) / sum(outer(v, v))``.

    Args:
        taps: 1-D filter taps ``v``; FLOAT uses (1, 3, 3, 1).
        scale: gain applied after normalisation (1 for blurs, 4 = up² for ×2 upsampling).
        device: device of the result.
        dtype: dtype of the result (float32 if None).

    Returns:
        Tensor of shape (len(taps), len(taps)) summing to ``scale``.
    """
    v = torch.tensor([float(t) for t in taps], dtype=torch.float64)
    k = torch.outer(v, v)  # (K, K)
    k = k / k.sum() * float(scale)
    return k.to(device=device, dtype=dtype or torch.float32)


def fused_leaky_relu(x: Tensor, bias: Tensor, negative_slope: float = 0.2, scale: float = SQRT2) -> Tensor:
    """``scale * leaky_relu(x + bias, negative_slope)``.

    Args:
        x: (B, C, ...) activations.
        bias: (1, C, 1, 1) (or anything broadcastable to ``x``).
        negative_slope: leaky ReLU slope.
        scale: output gain (sqrt(2) in StyleGAN2).

    Returns:
        Tensor shaped like ``x``.
    """
    return F.leaky_relu(x + bias, negative_slope) * scale


def _depthwise_weight(kernel: Tensor, channels: int, *, flip: bool) -> Tensor:
    """Expand a (kh, kw) kernel to a depthwise conv weight (channels, 1, kh, kw)."""
    k = torch.flip(kernel, (0, 1)) if flip else kernel
    return k[None, None].expand(channels, 1, k.shape[0], k.shape[1]).contiguous()  # (C, 1, kh, kw)


def blur2d(x: Tensor, kernel: Tensor, pad: tuple[int, int]) -> Tensor:
    """FIR filtering without resampling: zero-pad ``pad[0]`` before / ``pad[1]`` after on both spatial axes,
    then a true 2-D convolution with ``kernel``, all channels at once (one depthwise convolution).

    Args:
        x: (B, C, H, W).
        kernel: (kh, kw) FIR kernel (same dtype/device as ``x``).
        pad: (p0, p1) zero padding before and after, applied to both spatial axes.

    Returns:
        (B, C, H + p0 + p1 - kh + 1, W + p0 + p1 - kw + 1).
    """
    p0, p1 = int(pad[0]), int(pad[1])
    channels = x.shape[1]
    weight = _depthwise_weight(kernel.to(dtype=x.dtype), channels, flip=True)
    if p0 == p1:
        return F.conv2d(x, weight, padding=p0, groups=channels)
    if min(p0, p1) < 0:
        raise ValueError(f"blur2d: negative padding {pad} is not supported")
    x = F.pad(x, (p0, p1, p0, p1))  # (B, C, H + p0 + p1, W + p0 + p1)
    return F.conv2d(x, weight, groups=channels)


def _polyphase_weight(kernel: Tensor, p0: int, channels: int, dtype: torch.dtype) -> tuple[Tensor, int]:
    """Phase kernels of ×2 FIR upsampling, stacked as a depthwise conv2d weight.

    Output sample ``2m + p`` of "insert zeros, pad p0, convolve with k" is ``Σ_j x[m + (p + j - p0) / 2] · k'[j]``
    over the taps ``j`` with ``p + j - p0`` even (``k'`` = flipped kernel).  All offsets of both phases fit in one
    window ``[omin, omin + n)``; the four 2-D phases become four output channels per input channel (order
    ``2·py + px``, as ``pixel_shuffle`` expects).

    Returns:
        weight (channels·4, 1, n, n) and the window start ``omin`` (the input is padded by ``-omin`` before).
    """
    kh = kernel.shape[0]
    kf = torch.flip(kernel, (0, 1)).to(torch.float64)
    taps = [[((p + j - p0) // 2, j) for j in range(kh) if (p + j - p0) % 2 == 0] for p in (0, 1)]
    omin = min(o for ph in taps for o, _ in ph)
    n = max(o for ph in taps for o, _ in ph) - omin + 1
    w = torch.zeros(4, n, n, dtype=torch.float64)
    for py in (0, 1):
        for px in (0, 1):
            for oy, jy in taps[py]:
                for ox, jx in taps[px]:
                    w[2 * py + px, oy - omin, ox - omin] = kf[jy, jx]
    w = w.to(device=kernel.device, dtype=dtype)[None].expand(channels, 4, n, n)  # (C, 4, n, n)
    return w.reshape(channels * 4, 1, n, n), omin


def upsample2d(x: Tensor, kernel: Tensor, pad: tuple[int, int] | None = None) -> Tensor:
    """×2 FIR upsampling: equal to "insert one zero after every sample, zero-pad (p0, p1), convolve with
    ``kernel``", computed in polyphase form so the inserted zeros are never multiplied: for FLOAT's 4-tap kernel
    the four output phases are 2×2 filters of the input, run as ONE depthwise convolution with 4 outputs per
    channel followed by ``pixel_shuffle`` (other paddings use a stride-2 depthwise transposed convolution).

    For a K-tap kernel the default padding is ``p0 = K // 2``, ``p1 = K // 2 - 1`` ((2, 1) for FLOAT's 4-tap
    kernel), which gives an output of exactly twice the input size.

    Args:
        x: (B, C, H, W).
        kernel: (K, K) FIR kernel, already including the up² gain (4·k for FLOAT).
        pad: optional (p0, p1); only ``p1 == p0 - 1`` with ``0 <= p0 <= K - 1`` is supported.

    Returns:
        (B, C, 2H + p0 + p1 - K + 1, 2W + p0 + p1 - K + 1) = (B, C, 2H, 2W) with the default padding.
    """
    kh = kernel.shape[0]
    if kernel.shape[1] != kh:
        raise ValueError(f"upsample2d: square kernel expected, got {tuple(kernel.shape)}")
    p0, p1 = (kh // 2, kh // 2 - 1) if pad is None else (int(pad[0]), int(pad[1]))
    if p1 != p0 - 1 or not 0 <= p0 <= kh - 1:
        raise ValueError(f"upsample2d: padding {(p0, p1)} not supported for a {kh}-tap kernel")
    channels = x.shape[1]
    if 2 * p0 == kh:  # output exactly 2H: polyphase form
        weight, omin = _polyphase_weight(kernel, p0, channels, x.dtype)  # (4C, 1, n, n)
        n = weight.shape[-1]
        xp = F.pad(x, (-omin, n - 1 + omin, -omin, n - 1 + omin))  # (B, C, H + n - 1, W + n - 1)
        phases = F.conv2d(xp, weight, groups=channels)  # (B, 4C, H, W)
        return F.pixel_shuffle(phases, 2)  # (B, C, 2H, 2W)
    # Transposed conv: out[n] = sum_a x[a] * w[n + P - 2a]; the upfirdn form is
    # out[n] = sum_a x[a] * kernel[n + K - 1 - p0 - 2a], so w = kernel (unflipped) and P = K - 1 - p0.
    weight = _depthwise_weight(kernel.to(dtype=x.dtype), channels, flip=False)  # (C, 1, K, K)
    return F.conv_transpose2d(x, weight, stride=2, padding=kh - 1 - p0, groups=channels)


def upfirdn2d_reference(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Literal (slow) FIR resampling, for tests: zero insertion, padding, convolution, decimation.

    Args:
        x: (B, C, H, W).
        kernel: (kh, kw).
        up: upsampling factor (``up - 1`` zeros inserted after every sample).
        down: keep every ``down``-th output starting at index 0.
        pad: (p0, p1) zero padding on both spatial axes after zero insertion.

    Returns:
        (B, C, (H·up + p0 + p1 - kh + 1) // down, ...).
    """
    b, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(b, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z  # (B, C, H·up, W·up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = _depthwise_weight(kernel.to(dtype=x.dtype), c, flip=True)
    y = F.conv2d(x, weight, groups=c)
    return y[:, :, ::down, ::down]


# ----------------------------------------------------------------------------------------------------------
# modules
# ----------------------------------------------------------------------------------------------------------


class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate: ``conv(x, weight / sqrt(in·k²)) + bias``.

    Parameters: ``weight`` (out, in, k, k) ~ N(0, 1); optional ``bias`` (out,), zeros.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size, **fk))
        self.bias = nn.Parameter(torch.zeros(out_channels, **fk)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.stride = stride
        self.padding = padding

    def forward(self, x: Tensor) -> Tensor:
        """(B, in, H, W) -> (B, out, H', W')."""
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: ``y = x · (Wᵀ / sqrt(in)) + b`` (no activation).

    Parameters: ``weight`` (out, in) ~ N(0, 1); ``bias`` (out,) filled with ``bias_init``.
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0, *, device=None, dtype=None
    ) -> None:
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.randn(out_features, in_features, **fk))
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init), **fk)) if bias else None
        self.scale = 1.0 / math.sqrt(in_features)

    def forward(self, x: Tensor) -> Tensor:
        """(..., in) -> (..., out)."""
        return F.linear(x, self.weight * self.scale, self.bias)

    def extra_repr(self) -> str:
        o, i = self.weight.shape
        return f"{i}, {o}, bias={self.bias is not None}"


class FusedLeakyReLU(nn.Module):
    """``sqrt(2) · leaky_relu(x + bias, 0.2)`` with parameter ``bias`` of shape (1, C, 1, 1)."""

    def __init__(self, channels: int, negative_slope: float = 0.2, scale: float = SQRT2, *, device=None, dtype=None):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1, device=device, dtype=dtype))
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


class Blur(nn.Module):
    """FIR blur (no resampling) with buffer ``kernel`` (4, 4) = ``gain · k``.

    Args:
        pad: (p0, p1) zero padding before/after on both spatial axes.
        gain: kernel gain (1 for the encoder's pre-downsampling blur, 4 after a ×2 transposed conv).
    """

    def __init__(self, pad: tuple[int, int], gain: float = 1.0, *, device=None, dtype=None) -> None:
        super().__init__()
        self.register_buffer("kernel", make_fir_kernel(scale=gain, device=device, dtype=dtype))
        self.pad = (int(pad[0]), int(pad[1]))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H + p0 + p1 - 3, W + p0 + p1 - 3)."""
        return blur2d(x, self.kernel, self.pad)

    def extra_repr(self) -> str:
        return f"pad={self.pad}"


class Upsample(nn.Module):
    """×2 FIR upsampling (pad (2, 1)) with buffer ``kernel`` (4, 4) = 4·k."""

    def __init__(self, *, device=None, dtype=None) -> None:
        super().__init__()
        self.register_buffer("kernel", make_fir_kernel(scale=4.0, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, 2H, 2W)."""
        return upsample2d(x, self.kernel)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution.

    ``s = modulation(latent)`` (B, in); per sample the weight is ``w_b = weight · s_b[i] / sqrt(in·k²)``, optionally
    demodulated by ``d_b[o] = (Σ_{i,kh,kw} w_b[o, i, kh, kw]² + 1e-8)^(-1/2)``.  With ``upsample`` the convolution is
    a stride-2 transposed convolution (2H+1) followed by a blur with 4·k and padding (1, 1), giving 2H.

    :meth:`forward` never builds per-sample weights: since ``conv(x, w_b) = conv(x · s_b, weight / sqrt(in·k²))``
    and ``d_b`` only scales output channels, the batch is modulated on the activations, convolved with ONE shared
    weight (a dense convolution, i.e. one large GEMM for the whole batch) and demodulated on the outputs, with
    ``d_b² = (s_b² / (in·k²)) @ Σ_k weight²`` from a small matmul.  1×1 layers use the per-sample weights
    directly in a batched matmul (no activation pass).  :meth:`forward_reference` is the literal per-sample form.

    Parameters: ``weight`` (1, out, in, k, k); ``modulation`` = EqualLinear(style_dim → in, bias 1);
    ``blur`` (only with ``upsample``; buffer ``blur.kernel``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size, **fk))
        # registration order blur -> modulation gives FLOAT's state_dict key order
        if upsample:
            self.blur = Blur((1, 1), gain=4.0, **fk)
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0, **fk)
        self._weight_sq_cache: tuple | None = None

    def modulated_weight(self, latent: Tensor) -> Tensor:
        """Per-sample weights (the literal definition; :meth:`forward` does not need them).

        Args:
            latent: (B, style_dim).

        Returns:
            (B, out, in, k, k).
        """
        style = self.modulation(latent)  # (B, in)
        w = (self.weight * self.scale) * style[:, None, :, None, None]  # (B, out, in, k, k)
        if self.demodulate:
            demod = torch.rsqrt(w.square().sum(dim=(2, 3, 4)) + 1e-8)  # (B, out)
            w = w * demod[:, :, None, None, None]
        return w

    def _weight_sq(self) -> Tensor:
        """Σ_{kh,kw} weight² (out, in); cached while the weight is unchanged and no gradient is recorded."""
        w = self.weight
        if torch.is_grad_enabled() or torch.compiler.is_compiling() or w.is_inference():
            return w[0].square().sum(dim=(2, 3))  # (inference tensors have no version counter to key on)
        key = (w.data_ptr(), w._version, w.dtype, w.device)
        if self._weight_sq_cache is None or self._weight_sq_cache[0] != key:
            with torch.no_grad():
                self._weight_sq_cache = (key, w[0].square().sum(dim=(2, 3)))  # (out, in)
        return self._weight_sq_cache[1]

    def styles(self, latent: Tensor) -> Tensor:
        """Modulation including the equalised-lr scale: ``s / sqrt(in·k²)`` (B, in)."""
        return self.modulation(latent) * self.scale

    def demodulation(self, style: Tensor) -> Tensor:
        """``d`` (B, out) for scaled styles ``style`` (B, in) from :meth:`styles`."""
        return torch.rsqrt(style.square() @ self._weight_sq().T + 1e-8)  # (B, out)

    def _shared_conv(self, x: Tensor, style: Tensor, overwrite_input: bool = False) -> Tensor:
        """Convolution of the modulated activations with the shared weight (blur included when upsampling);
        with ``overwrite_input`` (and no autograd) ``x`` is modulated in place."""
        s = style[:, :, None, None].to(x.dtype)  # (B, in, 1, 1)
        xm = x.mul_(s) if overwrite_input and inplace_allowed() else x * s  # keeps x's memory format
        w = self.weight[0].to(x.dtype)  # (out, in, k, k)
        if self.upsample:
            y = F.conv_transpose2d(xm, w.transpose(0, 1), stride=2)  # (B, out, 2H+1, 2W+1)
            return self.blur(y)  # (B, out, 2H, 2W)
        return F.conv2d(xm, w, padding=self.kernel_size // 2)  # (B, out, H, W)

    def _pointwise(self, x: Tensor, style: Tensor) -> Tensor:
        """1×1 layer as a batched matmul with per-sample weights (B, out, in); the output is contiguous
        (planar), whatever the memory format of ``x``."""
        b, c, h, w_ = x.shape
        wb = self.weight[0, :, :, 0, 0] * style[:, None, :]  # (B, out, in)
        if self.demodulate:
            wb = wb * torch.rsqrt(wb.square().sum(dim=2, keepdim=True) + 1e-8)
        wb = wb.to(x.dtype)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            pixels = x.permute(0, 2, 3, 1).reshape(b, h * w_, c).transpose(1, 2)  # (B, in, H·W), a strided view
        else:
            pixels = x.reshape(b, c, h * w_)  # (B, in, H·W)
        return torch.bmm(wb, pixels).reshape(b, -1, h, w_)  # (B, out, H, W)

    def forward(self, x: Tensor, latent: Tensor) -> Tensor:
        """Modulated convolution.

        Args:
            x: (B, in, H, W), contiguous or channels-last (the output has the same memory format).
            latent: (B, style_dim).

        Returns:
            (B, out, H, W), or (B, out, 2H, 2W) with ``upsample``.
        """
        style = self.styles(latent)  # (B, in)
        if self.kernel_size == 1 and not self.upsample:
            return self._pointwise(x, style)
        y = self._shared_conv(x, style)
        if self.demodulate:
            y = y * self.demodulation(style)[:, :, None, None].to(y.dtype)
        return y

    def forward_activated(self, x: Tensor, bias: Tensor, latent: Tensor, *, overwrite_input: bool = False) -> Tensor:
        """``fused_leaky_relu(forward(x, latent), bias)`` with the demodulation, bias and activation applied in
        place on the convolution output when no gradient is recorded (uses ``sqrt2·lrelu(z) = lrelu(sqrt2·z)``).

        Args:
            x: (B, in, H, W).
            bias: (1, out, 1, 1) activation bias.
            latent: (B, style_dim).
            overwrite_input: ``x`` is not needed afterwards and may be modulated in place (no autograd only).

        Returns:
            (B, out, H', W').
        """
        if not inplace_allowed() or self.kernel_size == 1 or not self.demodulate:
            return fused_leaky_relu(self.forward(x, latent), bias)
        style = self.styles(latent)  # (B, in)
        y = self._shared_conv(x, style, overwrite_input)  # fresh tensor, safe to overwrite
        d = (self.demodulation(style) * SQRT2)[:, :, None, None].to(y.dtype)  # (B, out, 1, 1)
        torch.addcmul((bias * SQRT2).to(y.dtype), y, d, out=y)
        return F.leaky_relu_(y, 0.2)

    def forward_reference(self, x: Tensor, latent: Tensor) -> Tensor:
        """Literal definition with per-sample weights (slow; for tests): one grouped (transposed) convolution
        over the batch, then for ``upsample`` the blur as zero-padded FIR filtering."""
        b, c, h, w_ = x.shape
        k = self.kernel_size
        weight = self.modulated_weight(latent)  # (B, out, in, k, k)
        x = x.contiguous()
        if self.upsample:
            wt = weight.transpose(1, 2).reshape(b * c, self.out_channels, k, k)  # (B·in, out, k, k)
            y = F.conv_transpose2d(x.reshape(1, b * c, h, w_), wt, stride=2, groups=b)  # (1, B·out, 2H+1, 2W+1)
            y = y.reshape(b, self.out_channels, y.shape[-2], y.shape[-1])  # (B, out, 2H+1, 2W+1)
            return upfirdn2d_reference(y, self.blur.kernel, pad=(1, 1))  # (B, out, 2H, 2W)
        wg = weight.reshape(b * self.out_channels, c, k, k)  # (B·out, in, k, k)
        y = F.conv2d(x.reshape(1, b * c, h, w_), wg, padding=k // 2, groups=b)  # (1, B·out, H, W)
        return y.reshape(b, self.out_channels, h, w_)  # (B, out, H, W)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"demodulate={self.demodulate}, upsample={self.upsample}"
        )


class NoiseInjection(nn.Module):
    """Noise injection with parameter ``weight`` (1,).  FLOAT never passes noise, so this is the identity
    unless a noise tensor is given explicitly: ``x + weight · noise``."""

    def __init__(self, *, device=None, dtype=None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, device=device, dtype=dtype))

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        """(B, C, H, W) [+ (B, 1, H, W) noise] -> (B, C, H, W)."""
        if noise is None:
            return x
        return x + self.weight * noise


class StyledConv(nn.Module):
    """``FusedLeakyReLU(ModulatedConv2d(x, latent))`` (keys ``conv.*``, ``noise.weight``, ``activate.bias``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        demodulate: bool = True,
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.conv = ModulatedConv2d(
            in_channels, out_channels, kernel_size, style_dim, demodulate=demodulate, upsample=upsample, **fk
        )
        self.noise = NoiseInjection(**fk)
        self.activate = FusedLeakyReLU(out_channels, **fk)

    def forward(
        self, x: Tensor, latent: Tensor, noise: Tensor | None = None, *, overwrite_input: bool = False
    ) -> Tensor:
        """(B, in, H, W), (B, style_dim) -> (B, out, H, W) or (B, out, 2H, 2W) when upsampling.

        ``overwrite_input``: ``x`` is dead after this call and may be used as scratch (no autograd only).
        """
        if noise is None:
            return self.conv.forward_activated(x, self.activate.bias, latent, overwrite_input=overwrite_input)
        return self.activate(self.noise(self.conv(x, latent), noise))


class ConvLayer(nn.Sequential):
    """Encoder convolution block (``nn.Sequential`` so keys are ``0.weight``, ``1.bias``, …).

    * no downsampling: [0] EqualConv2d(k, padding k//2, no bias), [1] FusedLeakyReLU (if ``activate``);
    * downsampling: [0] Blur (buffer ``kernel``, pad (⌈(k+1)/2⌉, ⌊(k+1)/2⌋)), [1] EqualConv2d(stride 2,
      no padding, no bias), [2] FusedLeakyReLU (if ``activate``).

    Without activation the conv carries a bias only if ``bias`` (FLOAT's skip path has neither).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        downsample: bool = False,
        activate: bool = True,
        bias: bool = True,
        *,
        device=None,
        dtype=None,
    ) -> None:
        fk = {"device": device, "dtype": dtype}
        layers: list[nn.Module] = []
        if downsample:
            p = 2 + kernel_size - 1  # total padding for factor 2 and a 4-tap kernel: 4 - 2 + (k - 1)
            layers.append(Blur(((p + 1) // 2, p // 2), **fk))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(
            EqualConv2d(
                in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                bias=bias and not activate, **fk,
            )
        )
        if activate:
            layers.append(FusedLeakyReLU(out_channels, **fk))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """``(conv2(conv1(x)) + skip(x)) / sqrt(2)``, halving the spatial size.

    conv1 = ConvLayer(in, in, 3); conv2 = ConvLayer(in, out, 3, downsample); skip = 1×1 downsampling
    ConvLayer without activation or bias.
    """

    def __init__(self, in_channels: int, out_channels: int, *, device=None, dtype=None) -> None:
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.conv1 = ConvLayer(in_channels, in_channels, 3, **fk)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, **fk)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, activate=False, bias=False, **fk)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in, H, W) -> (B, out, H/2, W/2)."""
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2
