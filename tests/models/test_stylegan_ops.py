"""Fast renderer paths equal their literal definitions (modulated convolutions, FIR upsampling, warping)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from demo_core.models.motion_autoencoder import MotionAutoEncoder, MotionAutoEncoderConfig, warp_features
from demo_core.models.stylegan_ops import (
    ModulatedConv2d,
    StyledConv,
    fused_leaky_relu,
    make_fir_kernel,
    upfirdn2d_reference,
    upsample2d,
)

CL = torch.channels_last


def _randomised(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return module.eval()


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, CL])
@pytest.mark.parametrize(
    "kind", [("plain", 3, True, False), ("upsample", 3, True, True), ("pointwise", 1, False, False)]
)
def test_modulated_conv_equals_per_sample_weights(kind, memory_format):
    _, k, demodulate, upsample = kind
    conv = _randomised(ModulatedConv2d(6, 5, k, 16, demodulate=demodulate, upsample=upsample), 0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 6, 7, 7, generator=g).contiguous(memory_format=memory_format)
    latent = torch.randn(3, 16, generator=g)
    with torch.no_grad():
        ref = conv.forward_reference(x, latent)
        out = conv(x, latent)
    assert out.shape == ref.shape == ((3, 5, 14, 14) if upsample else (3, 5, 7, 7))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_reference_weights_match_the_definition():
    conv = _randomised(ModulatedConv2d(4, 3, 3, 8), 2)
    latent = torch.randn(2, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        w = conv.modulated_weight(latent)
        style = conv.modulation(latent)
        literal = conv.weight[0] / (4 * 9) ** 0.5 * style[:, None, :, None, None]
        literal = literal / literal.square().sum(dim=(2, 3, 4), keepdim=True).add(1e-8).sqrt()
        torch.testing.assert_close(w, literal, atol=1e-6, rtol=1e-6)
        # d² = (s² / fan_in) @ Σ_k W²: the demodulation without per-sample weights
        d = conv.demodulation(conv.styles(latent))
        torch.testing.assert_close(d, torch.rsqrt((conv.weight[0] * conv.scale * style[:, None, :, None, None])
                                                  .square().sum(dim=(2, 3, 4)) + 1e-8), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("overwrite_input", [False, True])
def test_styled_conv_fused_epilogue(upsample, overwrite_input):
    layer = _randomised(StyledConv(6, 5, 3, 16, upsample=upsample), 4)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 6, 8, 8, generator=g).contiguous(memory_format=CL)
    latent = torch.randn(2, 16, generator=g)
    with torch.no_grad():
        ref = fused_leaky_relu(layer.conv.forward_reference(x, latent), layer.activate.bias)
    with torch.inference_mode():
        out = layer(x.clone(), latent, overwrite_input=overwrite_input)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_fast_path_gradients_equal_reference_gradients():
    layer = _randomised(StyledConv(4, 3, 3, 8, upsample=True), 6)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 5, 5, generator=g, requires_grad=True)
    latent = torch.randn(2, 8, generator=g)
    target = torch.randn(2, 3, 10, 10, generator=g)
    grads = []
    for fast in (True, False):
        layer.zero_grad()
        x.grad = None
        y = layer(x, latent) if fast else fused_leaky_relu(layer.conv.forward_reference(x, latent), layer.activate.bias)
        (y * target).sum().backward()
        grads.append([x.grad.clone(), layer.conv.weight.grad.clone(), layer.conv.modulation.weight.grad.clone()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "taps, pad", [((1, 3, 3, 1), None), ((1, 3, 3, 1), (1, 0)), ((1, 2, 5, 5, 2, 1), None), ((1, 2, 1), (1, 0))]
)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, CL])
def test_polyphase_upsample_equals_zero_insertion(taps, pad, memory_format):
    kernel = make_fir_kernel(taps, scale=4.0)
    x = torch.randn(2, 3, 6, 5, generator=torch.Generator().manual_seed(8)).contiguous(memory_format=memory_format)
    p = pad or (len(taps) // 2, len(taps) // 2 - 1)
    torch.testing.assert_close(upsample2d(x, kernel, pad), upfirdn2d_reference(x, kernel, up=2, pad=p),
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize("bf, k, channels", [(1, 3, 16), (2, 2, 8), (2, 1, 4)])
def test_warp_equals_grid_sample(bf, k, channels):
    g = torch.Generator().manual_seed(9)
    feat = torch.randn(bf, channels, 9, 11, generator=g).contiguous(memory_format=CL)
    grid = torch.rand(bf * k, 7, 6, 2, generator=g) * 2.6 - 1.3  # includes samples outside the map
    mask = torch.rand(bf * k, 1, 7, 6, generator=g)
    ref = F.grid_sample(feat.repeat_interleave(k, 0), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False) * mask
    with torch.inference_mode():
        out = warp_features(feat, grid, mask)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_render_fast_path_equals_autograd_path():
    cfg = MotionAutoEncoderConfig(size=128, channels={4: 24, 8: 24, 16: 16, 32: 16, 64: 12, 128: 8})
    model = _randomised(MotionAutoEncoder(cfg), 10)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "to_flows" in name and name.endswith("conv.weight"):
                p.mul_(0.1)
    g = torch.Generator().manual_seed(11)
    image = torch.rand(2, 3, 128, 128, generator=g) * 2 - 1
    with torch.no_grad():
        h, _, feats = model.encode(image)
    latent = h.repeat_interleave(2, 0) + 0.2 * torch.randn(4, cfg.dim_w, generator=g)
    with torch.inference_mode():
        fast, fast_flow = model.render(latent, feats, return_flow=True)
        taps: dict = {}
        tapped = model.render(latent, feats, taps=taps)
    reference, reference_flow = model.render(latent, feats, return_flow=True)  # autograd on: grid_sample, no reuse
    # float rounding of two different kernel orders through 6 random-weight levels: up to ~4e-4 on a few pixels
    # in some process states (the same inputs gave 4.0e-4 after other tests had run, 1e-5 alone)
    torch.testing.assert_close(fast, reference.detach(), atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(tapped, reference.detach(), atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(fast_flow, reference_flow.detach(), atol=1e-5, rtol=1e-5)
    assert fast.is_contiguous() and "dec.to_flows.4.feat_warp" in taps
