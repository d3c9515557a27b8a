"""The same engine on a CUDA device: generation, rendering, reduced precision and training.

Skipped where no CUDA device is present (CI has none); run on a GPU machine with ``pytest tests/test_cuda.py``.
They check what the CPU suite cannot: every tensor of the pipeline and of both training stages follows the
model onto the GPU, a seed fixes the result on the device, the GPU renders what the CPU renders (float
tolerance) and bfloat16/float16 inference stays finite and close (training: tests/train/test_cuda_training.py).
"""

from __future__ import annotations

import math

import av
import pytest
import torch

from demo_core.cli import DEFAULT_CHECKPOINT, DEFAULT_PORTRAIT
from demo_core.cli import main as cli_main
from demo_core.io.media import load_image
from demo_core.models.loader import load_model
from demo_core.pipeline import GenerationSettings, encode_audio, encode_portrait, iter_frames, sample_motion

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none)")
DEVICE = "cuda"  # where the GPU-side models are loaded; every tensor follows the model's own device


def _speech(seconds: float, rate: int = 16000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return 0.3 * torch.sin(2 * math.pi * 170 * t) * (0.5 + 0.5 * torch.sin(2 * math.pi * 3 * t))


@pytest.fixture(scope="module")
def models():
    cpu, _ = load_model(DEFAULT_CHECKPOINT, device="cpu")
    gpu, _ = load_model(DEFAULT_CHECKPOINT, device=DEVICE)
    return cpu, gpu


@pytest.fixture(scope="module")
def portrait_image():
    return load_image(DEFAULT_PORTRAIT)


def _frames(model, portrait, motion, batch=8):
    return torch.cat([c.float().cpu() for c in iter_frames(model, portrait, motion, batch=batch)], dim=1)


def _cpu_reference(cpu, other, image):
    """Both models' portrait encodings, a motion sampled on the CPU and the CPU's frames of it."""
    p_cpu, p_other = encode_portrait(cpu, image, crop="auto"), encode_portrait(other, image, crop="auto")
    audio = encode_audio(cpu, _speech(1.0), 16000, emotion="neutral")
    motion = sample_motion(cpu, p_cpu, audio, GenerationSettings(steps=4, seed=3))
    return p_other, motion, _frames(cpu, p_cpu, motion)


def test_every_parameter_and_buffer_is_on_the_gpu(models):
    _, gpu = models
    places = {t.device.type for t in [*gpu.parameters(), *gpu.buffers()]}
    assert places == {"cuda"}


def test_gpu_renders_what_the_cpu_renders(models, portrait_image):
    """Same portrait, same motion (sampled on the CPU) → the same frames within float tolerance."""
    cpu, gpu = models
    p_gpu, motion, a = _cpu_reference(cpu, gpu, portrait_image)
    b = _frames(gpu, p_gpu, motion.to(gpu.device))
    assert a.shape == b.shape == (1, 25, 3, 64, 64)
    assert float((a - b).abs().max()) < 2e-2 and float((a - b).abs().mean()) < 1e-3


def test_gpu_motion_follows_the_cpu_motion_and_a_seed_fixes_it(models, portrait_image):
    """The portrait and audio encodings agree across devices; on the GPU the same seed gives the same motion
    twice and another seed another motion (the noise itself is device-specific, as in ComfyUI)."""
    cpu, gpu = models
    p_cpu = encode_portrait(cpu, portrait_image, crop="auto")
    p_gpu = encode_portrait(gpu, portrait_image, crop="auto")
    a_cpu = encode_audio(cpu, _speech(1.5), 16000, emotion="neutral")
    a_gpu = encode_audio(gpu, _speech(1.5), 16000, emotion="neutral")
    for a, b in ((a_cpu.features, a_gpu.features), (p_cpu.source_motion, p_gpu.source_motion),
                 (p_cpu.h_source, p_gpu.h_source)):  # TF32 convolutions (PyTorch's CUDA default): ~1e-3 relative
        assert float((a - b.cpu()).abs().max()) < 5e-3 * max(1.0, float(a.abs().max()))
    s = GenerationSettings(steps=4, seed=11)
    m1 = sample_motion(gpu, p_gpu, a_gpu, s)
    m2 = sample_motion(gpu, p_gpu, a_gpu, s)
    assert m1.device.type == "cuda" and torch.equal(m1, m2)
    assert torch.isfinite(m1).all()
    assert not torch.equal(m1, sample_motion(gpu, p_gpu, a_gpu, GenerationSettings(steps=4, seed=12)))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_inference_is_finite_and_close(models, portrait_image, dtype):
    cpu, _ = models
    low, _ = load_model(DEFAULT_CHECKPOINT, device=DEVICE, dtype=dtype)
    p_low, motion, ref = _cpu_reference(cpu, low, portrait_image)
    out = _frames(low, p_low, motion.to(low.device))
    assert torch.isfinite(out).all()
    err = float((ref - out).abs().mean())
    assert err < 3e-2, f"{dtype}: mean abs frame difference {err:.4f} from float32 on the CPU"
    a_low = encode_audio(low, _speech(1.0), 16000, emotion="neutral")
    m_low = sample_motion(low, p_low, a_low, GenerationSettings(steps=4, seed=3))
    assert torch.isfinite(m_low.float()).all()


def test_cli_generate_on_cuda(tmp_path):
    out = tmp_path / "talk.mp4"
    code = cli_main(["generate", "--device", DEVICE, "--steps", "4", "--out", str(out), "--no-progress"])
    assert code == 0 and out.exists()
    with av.open(str(out)) as c:
        n = sum(1 for _ in c.decode(c.streams.video[0]))
        assert c.streams.audio
    assert n > 25



def test_the_two_guided_evaluators_agree_on_the_gpu(models):
    """GPUs default to the batched evaluator; the shared-work one (the CPU default) gives the same motion."""
    from demo_core.flow.window_sampler import SamplerSettings, sample_motion as sample_windows

    _, gpu = models
    cfg = gpu.fmt.cfg
    g = torch.Generator().manual_seed(0)
    wr, wa = torch.randn(1, cfg.dim_w, generator=g), torch.randn(1, 2 * cfg.num_frames + 3, cfg.dim_a, generator=g)
    we = torch.softmax(torch.randn(1, 1, cfg.dim_e, generator=g), -1)
    dev = gpu.device
    noise = [torch.randn(1, cfg.num_frames, cfg.dim_w, generator=g).to(dev) for _ in range(3)]
    out = {e: sample_windows(gpu.fmt, wr=wr.to(dev), wa=wa.to(dev), we=we.to(dev), noise=noise,
                             settings=SamplerSettings(steps=4, evaluator=e)) for e in ("auto", "shared", "batched")}
    assert torch.equal(out["auto"], out["batched"])
    scale = float(out["batched"].abs().max())
    assert float((out["shared"] - out["batched"]).abs().max()) < 1e-2 * scale


def test_render_knots_of_a_portrait_on_the_gpu(models, portrait_image):
    """Measuring how the portrait renders yaw/pitch/roll runs on the GPU and finds the CPU's knots."""
    from demo_core.pipeline import model_factor_space, portrait_factor_space

    cpu, gpu = models
    knots = {}
    for name, model in (("cpu", cpu), ("gpu", gpu)):
        portrait = encode_portrait(model, portrait_image, crop="auto")
        space = portrait_factor_space(model, portrait, model_factor_space(model, device=model.device))
        knots[name] = torch.tensor(space.layout.block("pose").axis_render[0])
    assert knots["cpu"].shape == knots["gpu"].shape
    assert float((knots["cpu"] - knots["gpu"]).abs().max()) < 0.2  # degrees and coefficients; TF32 rounding
