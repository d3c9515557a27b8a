"""A same-run baseline that does what FLOAT does, written for the benchmarks from ARCHITECTURE.md §3–§5, §8.4, §9
and the issue's description of where FLOAT loses time.  It reads the weights of our modules, so its outputs
can be compared with ours.

Renderer (``float_decode``): one frame at a time, every frame kept and stacked at the end, float32, NCHW,
per-sample modulated weights, the blur after each upsampling convolution run with every channel as a separate
single-channel image, ×2 skip upsampling as a dense convolution over inserted zeros, no in-place work.

Sampler (``float_sample_motion``): per solver step the inputs are copied into three guidance groups and the
transformer recomputes the condition embedding inside its forward.

End to end (``float_generate_video``): encode, audio and emotion encoders, that sampler, that renderer, then
all frames are converted and written to the mp4 at the end.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from demo_core.io.media import VideoWriter, frames_to_uint8
from demo_core.flow.solvers import time_grid
from demo_core.models.motion_autoencoder import MotionAutoEncoder, base_grid
from demo_core.motion.retime import num_video_frames, resample_trajectory

SQRT2 = math.sqrt(2.0)


# ----------------------------------------------------------------------------------------------------------
# renderer
# ----------------------------------------------------------------------------------------------------------


def _per_channel_fir(x: Tensor, kernel: Tensor, up: int, pad: tuple[int, int]) -> Tensor:
    """FIR resampling with every channel as a single-channel image: zero insertion, padding, convolution."""
    b, c, h, w = x.shape
    x = x.reshape(b * c, 1, h, w)  # (B·C, 1, H, W)
    if up > 1:
        z = x.new_zeros(b * c, 1, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    y = F.conv2d(x, torch.flip(kernel, (0, 1))[None, None])  # (B·C, 1, H', W')
    return y.reshape(b, c, y.shape[-2], y.shape[-1])


def _modconv(conv, x: Tensor, latent: Tensor) -> Tensor:
    style = F.linear(latent, conv.modulation.weight * conv.modulation.scale, conv.modulation.bias)  # (1, in)
    w = conv.weight * conv.scale * style[:, None, :, None, None]  # (1, out, in, k, k)
    if conv.demodulate:
        w = w * torch.rsqrt(w.pow(2).sum(dim=(2, 3, 4)) + 1e-8)[:, :, None, None, None]
    w = w[0]
    if conv.upsample:
        y = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)  # (1, out, 2H+1, 2W+1)
        return _per_channel_fir(y, conv.blur.kernel, 1, (1, 1))
    return F.conv2d(x, w, padding=conv.kernel_size // 2)


def _styled(layer, x: Tensor, latent: Tensor) -> Tensor:
    return F.leaky_relu(_modconv(layer.conv, x, latent) + layer.activate.bias, 0.2) * SQRT2


@torch.inference_mode()
def float_render_frame(mae: MotionAutoEncoder, latent: Tensor, feats: list[Tensor]) -> Tensor:
    """One frame (1, 3, S, S) from latent (1, W) and the portrait's features (each (1, C, r, r))."""
    dec = mae.dec
    h = _styled(dec.conv1, dec.input.input, latent)
    rgb = o = None
    for j, (to_flow, to_rgb) in enumerate(zip(dec.to_flows, dec.to_rgbs)):
        h = _styled(dec.convs[2 * j], h, latent)
        h = _styled(dec.convs[2 * j + 1], h, latent)
        out = _modconv(to_flow.conv, h, latent) + to_flow.bias
        if o is not None:
            out = out + _per_channel_fir(o, to_flow.upsample.kernel, 2, (2, 1))
        o = out
        size = o.shape[-1]
        grid = base_grid(size, size, device=o.device) + torch.tanh(o[:, 0:2]).permute(0, 2, 3, 1)
        mask = torch.sigmoid(o[:, 2:3])
        warped = F.grid_sample(feats[j], grid, mode="bilinear", padding_mode="zeros", align_corners=False) * mask
        h = warped + h * (1 - mask)
        conv = to_rgb.conv[0]
        y = F.leaky_relu(F.conv2d(warped, conv.weight * conv.scale) + to_rgb.conv[1].bias, 0.2) * SQRT2
        y = y + to_rgb.bias
        if rgb is not None:
            y = y + _per_channel_fir(rgb, to_rgb.upsample.kernel, 2, (2, 1))
        rgb = y
    return rgb


@torch.inference_mode()
def float_decode(mae: MotionAutoEncoder, h_source: Tensor, feats: list[Tensor], motion: Tensor) -> Tensor:
    """FLOAT's decode for one portrait: frames (T, 3, S, S), rendered one at a time and all kept."""
    frames = [float_render_frame(mae, h_source + motion[:, t], feats) for t in range(motion.shape[1])]
    return torch.cat(frames, dim=0)


# ----------------------------------------------------------------------------------------------------------
# sampler
# ----------------------------------------------------------------------------------------------------------


@torch.inference_mode()
def float_sample_motion(fmt, *, wr: Tensor, wa: Tensor, we: Tensor, steps: int, a_cfg: float, e_cfg: float,
                        noise: list[Tensor]) -> Tensor:
    """FLOAT's windowed Euler sampler with classifier-free guidance (inputs copied ×3, embedding per step)."""
    b, t_total, a_dim = wa.shape
    length, prev = fmt.cfg.num_frames, fmt.cfg.num_prev_frames
    grid = time_grid(steps).to(wa.device)
    prev_x = wa.new_zeros(b, prev, fmt.cfg.dim_w)
    prev_wa = wa.new_zeros(b, prev, a_dim)
    chunks = []
    for k in range(-(-t_total // length)):
        wa_k = wa[:, k * length : (k + 1) * length]
        if wa_k.shape[1] < length:
            wa_k = torch.cat([wa_k, wa_k[:, -1:].expand(b, length - wa_k.shape[1], a_dim)], dim=1)
        x = noise[k]
        for i in range(steps):
            out = fmt(
                torch.cat([x, x, x]), grid[i : i + 1], prev_x=torch.cat([prev_x, prev_x, prev_x]),
                wr=torch.cat([wr, wr, wr]), wa=torch.cat([torch.zeros_like(wa_k), wa_k, wa_k]),
                prev_wa=torch.cat([prev_wa, prev_wa, prev_wa]),
                we=torch.cat([torch.zeros_like(we), we, torch.zeros_like(we)]),
            )  # (3B, P + L, W); the condition embedding is recomputed inside
            u, c, ao = out.chunk(3)
            v = (u + a_cfg * (ao - u) + e_cfg * (c - ao))[:, prev:]
            x = x + (grid[i + 1] - grid[i]) * v
        chunks.append(x)
        prev_x, prev_wa = x[:, -prev:], wa_k[:, -prev:]
    return torch.cat(chunks, dim=1)[:, :t_total]


# ----------------------------------------------------------------------------------------------------------
# end to end
# ----------------------------------------------------------------------------------------------------------


def float_generate_video(model, image: Tensor, waveform: Tensor, sample_rate: int, out_path: str | Path, *,
                         steps: int, emotion: str, seed: int = 0, fps: float = 25.0, after_audio=None) -> Path:
    """FLOAT's flow for one portrait: every frame is kept and the video is written at the end.

    ``after_audio()`` is called once the portrait and audio are encoded (the benchmark's stage marker).
    """
    from demo_core.pipeline import encode_audio, encode_portrait, make_generator

    portrait = encode_portrait(model, image, crop="none")
    audio = encode_audio(model, waveform, sample_rate, emotion=emotion)
    if after_audio is not None:
        after_audio()
    g = make_generator(seed)
    length, w = model.fmt.cfg.num_frames, model.fmt.cfg.dim_w
    t_total = audio.features.shape[1]
    noise = [torch.randn(1, length, w, generator=g) for _ in range(-(-t_total // length))]
    motion = float_sample_motion(model.fmt, wr=portrait.source_motion, wa=audio.features, we=audio.emotion,
                                 steps=steps, a_cfg=2.0, e_cfg=1.0, noise=noise)
    n_out = num_video_frames(audio.num_samples, audio.sample_rate, fps)
    motion = resample_trajectory(motion, model.cfg.fps, fps, n_out)
    frames = float_decode(model.motion_autoencoder, portrait.h_source, portrait.feats, motion)  # (T, 3, S, S)
    video = frames_to_uint8(frames)
    with VideoWriter(out_path, fps, audio=audio.waveform, audio_rate=audio.sample_rate, overwrite=True) as writer:
        writer.write(video)
    return writer.path
