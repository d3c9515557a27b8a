"""Benchmark sections; ``bench/run.py`` runs each in its own process: ``python3 bench/sections.py NAME --out F``.

Every timed figure is paired with a same-run baseline from ``bench/float_baseline.py`` (timed interleaved with
ours, medians reported) and every pairing checks that both give the same output.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import torch  # noqa: E402

import float_baseline as base  # noqa: E402
import machine  # noqa: E402
from demo_core.flow.guidance import ClassifierFreeGuidance  # noqa: E402
from demo_core.flow.guided_transformer import GuidedFlowTransformer  # noqa: E402
from demo_core.flow.window_sampler import SamplerSettings, sample_motion  # noqa: E402
from demo_core.models.flow_transformer import FlowTransformer, FlowTransformerConfig  # noqa: E402
from demo_core.models.motion_autoencoder import MotionAutoEncoder, MotionAutoEncoderConfig  # noqa: E402

# Random N(0, 1) ToFlow weights saturate tanh/sigmoid and the warps then amplify float rounding chaotically
# (two correct implementations, or one at two batch sizes, differ by several times the fixtures' tolerance);
# scaled down, the flows look like a trained model's and the equality check is meaningful.  Speed is unaffected.
FLOW_WEIGHT_SCALE = 0.05
EMBEDDED = ROOT / "assets" / "models" / "demo_synthetic_64.safetensors"
TINY_CONFIG = ROOT.parent / "shared" / "reference" / "float" / "tiny" / "config.json"


def margin(ours: torch.Tensor, ref: torch.Tensor) -> dict:
    """Worst |ours − ref| and its ratio to the fixtures' bound 1e-4 + 1e-4·|ref| (≤ 1 means equal)."""
    diff = (ours.double() - ref.double()).abs()
    bound = 1e-4 + 1e-4 * ref.double().abs()
    return {"max_abs_diff": float(diff.max()), "tolerance_ratio": float((diff / bound).max())}


def decoder_gflop(cfg: MotionAutoEncoderConfig) -> dict:
    """Per-frame decoder GFLOP from the layer shapes, counted the way FLOAT computes them (1 MAC = 2 FLOP)."""
    c = cfg.channel
    conv = 2 * 9 * c(4) ** 2 * 16
    blur = pointwise = skip = warp = 0
    for r in cfg.resolutions[1:]:
        cin, cout = c(r // 2), c(r)
        conv += 2 * 9 * cin * cout * (r // 2) ** 2 + 2 * 9 * cout * cout * r * r  # transposed 3×3 (input px) + 3×3
        blur += 2 * 16 * cout * r * r  # 4×4 blur after the transposed convolution
        pointwise += 2 * 2 * 3 * cout * r * r  # ToFlow and ToRGB 1×1
        skip += 2 * 2 * 16 * 3 * r * r if r > 8 else 0  # ×2 FIR of the flow and RGB skips
        warp += 8 * cout * r * r  # bilinear sampling
    parts = {"conv": conv, "blur": blur, "pointwise": pointwise, "skip_upsample": skip, "warp": warp}
    return {k: v / 1e9 for k, v in parts.items()} | {"total": sum(parts.values()) / 1e9}


def portrait_image(size: int, seed: int = 0) -> torch.Tensor:
    """A smooth random image (1, 3, S, S) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(1, 3, 8, 8, generator=g)
    return torch.tanh(1.5 * torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False))


# ----------------------------------------------------------------------------------------------------------


def section_renderer(quick: bool) -> dict:
    """Full-size renderer at 512² (random weights) vs FLOAT's frame-by-frame decoder."""
    mae = _full_renderer()
    with torch.inference_mode():
        return _renderer(mae, mae.cfg, quick)


def _full_renderer() -> MotionAutoEncoder:
    """The full-size auto-encoder (S = 512) with seeded random weights and gentle warps."""
    torch.manual_seed(0)
    mae = MotionAutoEncoder(MotionAutoEncoderConfig()).eval()
    with torch.no_grad():  # gentle warps, as in a trained model (see FLOW_WEIGHT_SCALE)
        for name, p in mae.named_parameters():
            if "to_flows" in name and name.endswith("conv.weight"):
                p.mul_(FLOW_WEIGHT_SCALE)
    return mae


def _renderer(mae: MotionAutoEncoder, cfg: MotionAutoEncoderConfig, quick: bool) -> dict:
    h, _, feats = mae.encode(portrait_image(cfg.size))
    frames, base_frames, repeats = (16, 3, 2) if quick else (50, 8, 3)
    motion = 0.3 * torch.randn(1, frames, cfg.dim_w, generator=torch.Generator().manual_seed(1))
    gflop = decoder_gflop(cfg)
    config = f"full size (S=512, FLOAT channel table), random weights, ToFlow weights ×{FLOW_WEIGHT_SCALE}"
    out: dict = {"config": config, "gflop_per_frame": gflop, "clip_frames": frames, "baseline_frames": base_frames,
                 "load_before": machine.load()}
    out["matmul_gflops"] = machine.matmul_gflops()
    # equality first (also warms both paths up)
    ref = base.float_decode(mae, h, feats, motion[:, :base_frames])
    ours = torch.cat(list(mae.iter_decode(h, feats, motion[:, :base_frames], chunk_size=base_frames)), 1)[0]
    out["equality_vs_baseline"] = margin(ours, ref)
    del ref, ours
    batches = [1, 4, 8] if not quick else [8]
    sweep = {}
    for b in batches:  # batch-size tuning: one pass each over the clip
        sweep[b] = frames / machine.timed(lambda: [None for _ in mae.iter_decode(h, feats, motion, chunk_size=b)])
    best = max(sweep, key=sweep.get)
    times = machine.interleaved({
        "ours": lambda: [None for _ in mae.iter_decode(h, feats, motion, chunk_size=best)],
        "baseline": lambda: base.float_decode(mae, h, feats, motion[:, :base_frames]),
    }, repeats)
    fps = {"ours": frames / machine.median(times["ours"]), "baseline": base_frames / machine.median(times["baseline"])}
    out["frames_per_s_by_batch"] = {str(k): v for k, v in sweep.items()}
    out["batch"] = best
    out["times_s"] = times
    for k in ("ours", "baseline"):
        out[k] = {"frames_per_s": fps[k], "s_per_frame": 1 / fps[k], "gflops": fps[k] * gflop["total"],
                  "pct_of_matmul": 100 * fps[k] * gflop["total"] / out["matmul_gflops"]}
    out["speedup"] = fps["ours"] / fps["baseline"]
    bf16 = torch.cat(list(mae.iter_decode(h, feats, motion[:, :8], chunk_size=8, dtype=torch.bfloat16)), 1)[0]
    fp32 = torch.cat(list(mae.iter_decode(h, feats, motion[:, :8], chunk_size=8)), 1)[0]
    t_bf16 = machine.median([machine.timed(
        lambda: [None for _ in mae.iter_decode(h, feats, motion, chunk_size=best, dtype=torch.bfloat16)])
        for _ in range(1 if quick else 2)])
    out["bf16"] = {"frames_per_s": frames / t_bf16, "mean_abs_diff_vs_fp32": float((bf16 - fp32).abs().mean()),
                   "fp32_std": float(fp32.std())}
    out["matmul_gflops_after"] = machine.matmul_gflops()
    out["onednn_conv_gflops"] = machine.onednn_conv_gflops()
    out["load_after"] = machine.load()
    return out


def _random_fmt() -> FlowTransformer:
    torch.manual_seed(0)
    fmt = FlowTransformer(FlowTransformerConfig()).eval()
    with torch.no_grad():  # training init zeroes adaLN and the output layer: perturb so outputs are not trivial
        for name, p in fmt.named_parameters():
            if name != "pos_embed":
                p.add_(0.02 * torch.randn_like(p))
    return fmt


def section_sampler(quick: bool) -> dict:
    """Full-size FMT, 3-way guidance, 10 Euler steps per window vs FLOAT's per-step work."""
    fmt = _random_fmt()
    with torch.inference_mode():
        return _sampler(fmt, quick)


def _sampler(fmt: FlowTransformer, quick: bool) -> dict:
    seconds, repeats, steps = (2.0, 1, 10) if quick else (10.0, 3, 10)
    frames = int(seconds * 25)
    g = torch.Generator().manual_seed(2)
    wr, wa = torch.randn(1, 512, generator=g), torch.randn(1, frames, 512, generator=g)
    we = torch.softmax(torch.randn(1, 1, 7, generator=g), -1)
    noise = [torch.randn(1, 50, 512, generator=g) for _ in range(-(-frames // 50))]
    settings = SamplerSettings(steps=steps, a_cfg=2.0, e_cfg=1.0)
    out: dict = {"config": "full-size FMT (D=1024, depth 8, 60 tokens), random weights", "audio_s": seconds,
                 "steps_per_window": steps, "windows": len(noise), "load_before": machine.load()}

    def run_ours():
        return sample_motion(fmt, wr=wr, wa=wa, we=we, settings=settings, noise=noise)

    def run_base():
        return base.float_sample_motion(fmt, wr=wr, wa=wa, we=we, steps=steps, a_cfg=2.0, e_cfg=1.0, noise=noise)

    out["equality_vs_baseline"] = margin(run_ours(), run_base())
    times = machine.interleaved({"ours": run_ours, "baseline": run_base}, repeats)
    for k in ("ours", "baseline"):
        out[k] = {"s_per_audio_s": machine.median(times[k]) / seconds}
    out["ratio"] = out["ours"]["s_per_audio_s"] / out["baseline"]["s_per_audio_s"]
    out["times_s"] = times
    # one guided step, broken down: what the shared work saves alone, and with oneDNN linear layers
    x, prev_x, prev_wa = noise[0], torch.randn(1, 10, 512, generator=g), torch.randn(1, 10, 512, generator=g)
    t = torch.tensor([0.3])
    cfv = ClassifierFreeGuidance(fmt, 2.0, 1.0)
    lean = {gemm: GuidedFlowTransformer(fmt, 2.0, 1.0, gemm=gemm) for gemm in ("torch", "auto")}
    cond = {k: m.prepare(wr=wr, wa=wa[:, :50], prev_wa=prev_wa, we=we) for k, m in lean.items()}
    step = machine.interleaved({
        "baseline": lambda: cfv(x, t, prev_x=prev_x, wr=wr, wa=wa[:, :50], prev_wa=prev_wa, we=we),
        "shared_work": lambda: lean["torch"](x, t, prev_x=prev_x, condition=cond["torch"]),
        "shared_work_onednn": lambda: lean["auto"](x, t, prev_x=prev_x, condition=cond["auto"]),
    }, 3 if quick else 5)
    med = {k: machine.median(v) for k, v in step.items()}
    out["step_s"] = med
    out["step_ratio"] = {k: med[k] / med["baseline"] for k in med}
    out["distinct_condition_rows"] = int(cond["auto"].rows.shape[0])
    out["matmul_gflops"] = machine.matmul_gflops()
    out["load_after"] = machine.load()
    return out


def _full_model():
    from demo_core.models.float_model import FloatConfig, FloatModel

    torch.manual_seed(0)
    model = FloatModel(FloatConfig()).eval()
    with torch.no_grad():
        for name, p in model.fmt.named_parameters():
            if name != "pos_embed":
                p.add_(0.02 * torch.randn_like(p))
        for name, p in model.motion_autoencoder.named_parameters():
            if "to_flows" in name and name.endswith("conv.weight"):
                p.mul_(FLOW_WEIGHT_SCALE)
    return model


def _small_model():
    """The embedded model if present, else FLOAT's tiny fixture configuration (64², random weights)."""
    if EMBEDDED.exists():
        from demo_core.models.loader import load_model

        return load_model(EMBEDDED)[0], f"embedded {EMBEDDED.name}"
    from demo_core.models.float_model import FloatConfig, FloatModel

    tiny = json.loads(TINY_CONFIG.read_text())
    torch.manual_seed(0)
    model = FloatModel(FloatConfig.from_float_options(tiny["options"], tiny["channels"])).eval()
    with torch.no_grad():
        for name, p in model.fmt.named_parameters():
            if name != "pos_embed":
                p.add_(0.02 * torch.randn_like(p))
    return model, "FLOAT tiny fixture configuration (64², random weights; the embedded model was not found)"


def speech_like(seconds: float, rate: int = 16000) -> torch.Tensor:
    """``0.3 sin(2π·180 t) · (0.6 + 0.4 sin(2π·3 t))``, built in place: the same samples as the plain expression
    without its half-dozen clip-sized temporaries, which would otherwise count in the memory section's peak."""
    t = torch.arange(int(seconds * rate), dtype=torch.float32).div_(rate)
    wave = torch.mul(t, 2 * torch.pi * 180).sin_().mul_(0.3)
    return wave.mul_(t.mul_(2 * torch.pi * 3).sin_().mul_(0.4).add_(0.6))


def _generate(model, mode: str, seconds: float, out_dir: str, batch: int = 8, stages: dict | None = None) -> None:
    """Portrait + ``seconds`` of audio → mp4, streamed (``ours``) or FLOAT's way (``baseline``).

    ``stages`` receives the peak RSS (MiB) of the encoding stage (portrait, audio, emotion) and of the rest
    (sampling, rendering, video encoding).
    """
    from demo_core.pipeline import GenerationSettings, generate_video

    size = model.cfg.image_size
    image = (portrait_image(size)[0].permute(1, 2, 0) + 1) / 2  # (S, S, 3) in [0, 1]
    wave = speech_like(seconds)
    path = Path(out_dir) / f"{mode}_{seconds:g}.mp4"

    def after_audio(*_):
        if stages is not None and "encode_mb" not in stages:
            stages["encode_mb"] = machine.hwm_mb()
            machine.reset_hwm()

    if mode == "ours":
        settings = GenerationSettings(steps=10, emotion="auto", render_batch=batch)
        generate_video(model, image, wave, 16000, path, settings, crop="none", overwrite=True, progress=after_audio)
    else:
        base.float_generate_video(model, image, wave, 16000, path, steps=10, emotion="auto", after_audio=after_audio)
    if stages is not None:
        stages["generate_mb"] = machine.hwm_mb()


def section_e2e(quick: bool) -> dict:
    """4 s of audio end to end (full size, random weights): ours streamed vs FLOAT's keep-everything flow."""
    model = _full_model()
    out = {"config": "full-size FLOAT configuration, random weights", "audio_s": 4.0, "load_before": machine.load()}
    with tempfile.TemporaryDirectory() as d:
        out["ours_s"] = machine.timed(lambda: _generate(model, "ours", 4.0, d))
        out["baseline_s"] = machine.timed(lambda: _generate(model, "baseline", 4.0, d))
    out["speedup"] = out["baseline_s"] / out["ours_s"]
    out["load_after"] = machine.load()
    return out


def section_memory_child(mode: str, seconds: float) -> dict:
    """One generation in a fresh process; the parent reads this process's peak RSS."""
    model, which = _small_model()
    stages: dict = {}
    with tempfile.TemporaryDirectory() as d:
        t = machine.timed(lambda: _generate(model, mode, seconds, d, stages=stages))
    peak = max(stages.get("encode_mb", 0.0), stages.get("generate_mb", 0.0)) or machine.peak_rss_mb()
    return {"mode": mode, "audio_s": seconds, "model": which, "wall_s": t, "peak_rss_mb": peak,
            "peak_rss_encoding_mb": stages.get("encode_mb"), "peak_rss_after_encoding_mb": stages.get("generate_mb")}


def _cuda_timed(fn) -> float:
    """Wall seconds of one call on the GPU (synchronised before and after)."""
    torch.cuda.synchronize()
    return machine.timed(lambda: (fn(), torch.cuda.synchronize()))


def section_gpu(quick: bool) -> dict:
    """On a CUDA device: the full-size renderer (ours batched and streamed vs FLOAT's frame by frame, fp32, bf16,
    fp16, peak GPU memory) and the full-size sampler (vs FLOAT's); reports ``skipped`` without CUDA."""
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    dev = torch.device("cuda")
    out: dict = {"gpu": torch.cuda.get_device_name(dev), "cuda": torch.version.cuda}
    mae = _full_renderer().to(dev)
    with torch.inference_mode():
        out["renderer"] = _gpu_renderer(mae, mae.cfg, quick, dev)
        del mae
        torch.cuda.empty_cache()
        out["sampler"] = _gpu_sampler(_random_fmt().to(dev), quick, dev)
    return out


def _gpu_renderer(mae: MotionAutoEncoder, cfg: MotionAutoEncoderConfig, quick: bool, dev) -> dict:
    h, _, feats = mae.encode(portrait_image(cfg.size).to(dev))
    frames, repeats = (32, 2) if quick else (100, 3)
    motion = 0.3 * torch.randn(1, frames, cfg.dim_w, generator=torch.Generator().manual_seed(1)).to(dev)
    out: dict = {"config": f"full size (S=512), random weights, ToFlow weights ×{FLOW_WEIGHT_SCALE}", "frames": frames}
    tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # exact float32 to compare
    ref = base.float_decode(mae, h, feats, motion[:, :4])
    fp32 = torch.cat(list(mae.iter_decode(h, feats, motion[:, :4], chunk_size=4)), 1)[0]
    out["equality_vs_baseline"] = margin(fp32, ref)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    out["tf32_convolutions"] = tf32[0]  # PyTorch's default, and what the timings below use

    def ours(b, dtype=None):
        return lambda: [None for _ in mae.iter_decode(h, feats, motion, chunk_size=b, dtype=dtype)]

    sweep = {b: frames / _cuda_timed(ours(b)) for b in (1, 4, 8, 16, 32)}
    best = max(sweep, key=sweep.get)
    times = {"ours": [], "baseline": []}
    for _ in range(repeats):
        times["ours"].append(_cuda_timed(ours(best)))
        times["baseline"].append(_cuda_timed(lambda: base.float_decode(mae, h, feats, motion)))
    fps = {k: frames / machine.median(v) for k, v in times.items()}
    out.update(frames_per_s_by_batch={str(k): v for k, v in sweep.items()}, batch=best, times_s=times,
               ours={"frames_per_s": fps["ours"]}, baseline={"frames_per_s": fps["baseline"]},
               speedup=fps["ours"] / fps["baseline"])
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        low = torch.cat(list(mae.iter_decode(h, feats, motion[:, :4], chunk_size=4, dtype=dtype)), 1)[0].float()
        t = machine.median([_cuda_timed(ours(best, dtype)) for _ in range(repeats)])
        out[name] = {"frames_per_s": frames / t, "speedup_vs_fp32": (frames / t) / fps["ours"],
                     "mean_abs_diff_vs_fp32": float((low - fp32).abs().mean()), "finite": bool(low.isfinite().all())}
    peaks = {}
    for name, fn in ((f"ours_batch_{best}", ours(best)), ("ours_batch_8", ours(8)),
                     ("baseline", lambda: base.float_decode(mae, h, feats, motion))):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        peaks[name] = (torch.cuda.max_memory_allocated() - start) / 2**20
    out["peak_gpu_mib_above_model"] = peaks
    return out


def _gpu_sampler(fmt: FlowTransformer, quick: bool, dev) -> dict:
    (seconds, repeats), steps = ((4.0, 2) if quick else (20.0, 3)), 10
    frames = int(seconds * 25)
    g = torch.Generator().manual_seed(2)
    wr, wa = torch.randn(1, 512, generator=g).to(dev), torch.randn(1, frames, 512, generator=g).to(dev)
    we = torch.softmax(torch.randn(1, 1, 7, generator=g), -1).to(dev)
    noise = [torch.randn(1, 50, 512, generator=g).to(dev) for _ in range(-(-frames // 50))]
    runs = {name: (lambda e=evaluator: sample_motion(fmt, wr=wr, wa=wa, we=we, noise=noise,
                                                      settings=SamplerSettings(steps=steps, evaluator=e)))
            for name, evaluator in (("ours", "auto"), ("ours_shared", "shared"), ("ours_batched", "batched"))}
    runs["baseline"] = lambda: base.float_sample_motion(fmt, wr=wr, wa=wa, we=we, steps=steps, a_cfg=2.0, e_cfg=1.0,
                                                        noise=noise)
    ref = runs["baseline"]()
    out: dict = {"config": "full-size FMT (D=1024, depth 8), random weights", "audio_s": seconds, "steps": steps,
                 "equality_vs_baseline": {k: margin(f(), ref) for k, f in runs.items() if k != "baseline"}}
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for k, f in runs.items():
            times[k].append(_cuda_timed(f))
    for k in times:
        out[k] = {"s_per_audio_s": machine.median(times[k]) / seconds}
    out["ratio"] = out["ours"]["s_per_audio_s"] / out["baseline"]["s_per_audio_s"]
    out["times_s"] = times
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("section", choices=["peak", "renderer", "sampler", "e2e", "gpu", "memory_child"])
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mode", default="ours")
    p.add_argument("--seconds", type=float, default=10.0)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.section == "peak":
        res = {"machine": machine.machine_info(), "matmul_gflops": machine.matmul_gflops(),
               "onednn_conv_gflops": machine.onednn_conv_gflops(), "load": machine.load()}
    elif a.section == "memory_child":
        res = section_memory_child(a.mode, a.seconds)
    else:
        res = {"renderer": section_renderer, "sampler": section_sampler, "e2e": section_e2e,
               "gpu": section_gpu}[a.section](a.quick)
    res["machine"] = machine.machine_info()
    Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
