"""Performance benchmarks: one command, a table on stdout and a JSON file.

    python3 bench/run.py [--quick] [--out bench/results.json] [--only renderer,sampler,...]

Sections (each in its own process, so that peak memory and allocator settings are per section):

* ``peak``      same-run fp32 matmul GFLOP/s (2048², the reference peak) and a oneDNN convolution figure;
* ``renderer``  512² full-size decoder frames/s and GFLOP/s vs FLOAT's frame-by-frame decoder, run once with
                the default allocator and once with glibc told to keep freed memory (``machine.TUNED_MALLOC_ENV``);
* ``sampler``   seconds of sampling per second of audio (full-size FMT, 3-way guidance, 10 steps) vs FLOAT's;
* ``e2e``       4 s of audio end to end, full size (skipped with ``--quick``);
* ``gpu``       on a CUDA device (else reported as skipped): the 512² renderer (ours batched vs FLOAT's frame by
                frame, fp32 / bf16 / fp16, peak GPU memory) and the full-size sampler vs FLOAT's;
* ``memory``    peak RSS for 10 s, 60 s and 300 s of audio through the streaming pipeline vs a run that keeps
                every frame (small model; ``--quick`` stops at 60 s).

Timings are medians of interleaved repeats; every ratio is against the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import TUNED_MALLOC_ENV, load  # noqa: E402

SECTIONS = ["peak", "renderer", "sampler", "e2e", "memory", "gpu"]


def run_section(name: str, *args: str, env: dict | None = None, threads: int = 2) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, str(HERE / "sections.py"), name, "--out", out, "--threads", str(threads), *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bench section {name} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(Path(out).read_text())
    os.unlink(out)
    res["section_wall_s"] = time.perf_counter() - start
    return res


def memory_runs(quick: bool, threads: int) -> dict:
    durations = [10.0, 60.0] if quick else [10.0, 60.0, 300.0]
    runs = {mode: {} for mode in ("ours", "baseline")}
    for seconds in durations:
        for mode in runs:
            r = run_section("memory_child", "--mode", mode, "--seconds", str(seconds), threads=threads)
            runs[mode][str(int(seconds))] = r
    out = {"model": runs["ours"]["10"]["model"], "runs": runs}
    if not quick:
        for mode in runs:
            for key, name in (("peak_rss_mb", "growth_60_to_300"),
                              ("peak_rss_after_encoding_mb", "growth_60_to_300_after_encoding")):
                out[f"{mode}_{name}"] = runs[mode]["300"][key] / runs[mode]["60"][key] - 1
    return out


def fmt_table(res: dict) -> str:
    lines = []
    m = res.get("machine") or {}
    lines.append(f"machine: {m.get('cpu')} · {m.get('logical_cpus')} logical CPUs · torch {m.get('torch')} · "
                 f"{m.get('threads')} threads · load {res.get('load_start')} → {res.get('load_end')}")
    row = "{:<44} {:>14} {:>14} {:>10}  {}"
    lines.append(row.format("", "ours", "baseline", "ratio", "note"))
    if "peak" in res:
        p = res["peak"]
        lines.append(row.format("fp32 matmul 2048² GFLOP/s (peak)", f"{p['matmul_gflops']:.0f}", "", "",
                                f"oneDNN 3×3 conv: {p['onednn_conv_gflops']:.0f} GFLOP/s"))
    for key, label in (("renderer", "default malloc"), ("renderer_tuned_malloc", "malloc keeps freed memory")):
        if key in res:
            r = res[key]
            o, b = r["ours"], r["baseline"]
            lines.append(row.format(f"renderer 512² frames/s ({label})", f"{o['frames_per_s']:.2f}",
                                    f"{b['frames_per_s']:.2f}", f"{r['speedup']:.2f}×",
                                    f"batch {r['batch']}, {r['gflop_per_frame']['total']:.1f} GFLOP/frame"))
            lines.append(row.format("  GFLOP/s (% of same-run matmul)",
                                    f"{o['gflops']:.0f} ({o['pct_of_matmul']:.0f}%)",
                                    f"{b['gflops']:.0f} ({b['pct_of_matmul']:.0f}%)", "",
                                    f"matmul {r['matmul_gflops']:.0f}; equal: tol ratio "
                                    f"{r['equality_vs_baseline']['tolerance_ratio']:.3f}"))
    if "renderer" in res and "bf16" in res["renderer"]:
        b16 = res["renderer"]["bf16"]
        note = f"mean |bf16 − fp32| {b16['mean_abs_diff_vs_fp32']:.3g} (fp32 std {b16['fp32_std']:.3g})"
        lines.append(row.format("  bf16 frames/s (optional)", f"{b16['frames_per_s']:.2f}", "", "", note))
    if "sampler" in res:
        s = res["sampler"]
        note = f"{s['audio_s']:g} s audio; equal: tol ratio {s['equality_vs_baseline']['tolerance_ratio']:.3f}"
        lines.append(row.format("sampler s per s of audio", f"{s['ours']['s_per_audio_s']:.2f}",
                                f"{s['baseline']['s_per_audio_s']:.2f}", f"{s['ratio']:.2f}×", note))
        sr = s["step_ratio"]
        lines.append(row.format("  one guided step: shared work / +oneDNN", f"{sr['shared_work']:.2f}× / "
                                f"{sr['shared_work_onednn']:.2f}×", f"{s['step_s']['baseline']:.3f} s", "", ""))
    if "e2e" in res:
        e = res["e2e"]
        lines.append(row.format("end to end, 4 s of audio (s)", f"{e['ours_s']:.1f}", f"{e['baseline_s']:.1f}",
                                f"{1 / e['speedup']:.2f}×", "full size, random weights"))
    if "memory" in res:
        mem = res["memory"]
        ours, bl = mem["runs"]["ours"], mem["runs"]["baseline"]
        for sec in ours:
            lines.append(row.format(f"peak RSS, {sec} s of audio (MiB)", f"{ours[sec]['peak_rss_mb']:.0f}",
                                    f"{bl[sec]['peak_rss_mb']:.0f}", "",
                                    f"after audio encoding: {ours[sec]['peak_rss_after_encoding_mb']:.0f} vs "
                                    f"{bl[sec]['peak_rss_after_encoding_mb']:.0f}"))
        if "ours_growth_60_to_300" in mem:
            lines.append(row.format("  growth 60 s → 300 s", f"{100 * mem['ours_growth_60_to_300']:+.1f}%",
                                    f"{100 * mem['baseline_growth_60_to_300']:+.1f}%", "",
                                    f"after audio encoding: {100 * mem['ours_growth_60_to_300_after_encoding']:+.1f}% "
                                    f"vs {100 * mem['baseline_growth_60_to_300_after_encoding']:+.1f}%"))
        lines.append(f"  memory model: {mem['model']}")
    if "gpu" in res:
        g = res["gpu"]
        if "skipped" in g:
            lines.append(f"gpu: skipped ({g['skipped']})")
        else:
            r, s = g["renderer"], g["sampler"]
            lines.append(row.format("GPU renderer 512² frames/s (fp32)", f"{r['ours']['frames_per_s']:.1f}",
                                    f"{r['baseline']['frames_per_s']:.1f}", f"{r['speedup']:.2f}×",
                                    f"{g['gpu']}, batch {r['batch']}; equal: tol ratio "
                                    f"{r['equality_vs_baseline']['tolerance_ratio']:.3f}"))
            for name in ("bf16", "fp16"):
                lines.append(row.format(f"  {name} frames/s", f"{r[name]['frames_per_s']:.1f}", "",
                                        f"{r[name]['speedup_vs_fp32']:.2f}×",
                                        f"vs fp32; mean |diff| {r[name]['mean_abs_diff_vs_fp32']:.3g}"))
            pk = r["peak_gpu_mib_above_model"]
            best = pk["ours_batch_" + str(r["batch"])]
            lines.append(row.format(f"  peak GPU MiB, {r['frames']} frames", f"{best:.0f}",
                                    f"{pk['baseline']:.0f}", "", f"above the weights; batch 8: {pk['ours_batch_8']:.0f}"))
            eq = max(v["tolerance_ratio"] for v in s["equality_vs_baseline"].values())
            lines.append(row.format("GPU sampler s per s of audio", f"{s['ours']['s_per_audio_s']:.4f}",
                                    f"{s['baseline']['s_per_audio_s']:.4f}", f"{s['ratio']:.2f}×",
                                    f"{s['audio_s']:g} s audio; equal: tol ratio {eq:.3f}"))
            for name in ("shared", "batched"):
                v = s[f"ours_{name}"]["s_per_audio_s"]
                lines.append(row.format(f"  evaluator {name}", f"{v:.4f}", "",
                                        f"{v / s['baseline']['s_per_audio_s']:.2f}×", ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="shorter clips, fewer repeats, no end-to-end run")
    p.add_argument("--out", default=str(HERE / "results.json"))
    p.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    only = [s for s in a.only.split(",") if s]
    if a.quick and "e2e" in only:
        only.remove("e2e")
    res: dict = {"command": " ".join(["python3", "bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
                 "quick": a.quick, "load_start": load(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    q = ["--quick"] if a.quick else []
    for name in only:
        print(f"[bench] {name} … (load {load()})", file=sys.stderr, flush=True)
        if name == "memory":
            res["memory"] = memory_runs(a.quick, a.threads)
        elif name == "renderer":
            res["renderer"] = run_section("renderer", *q, threads=a.threads)
            res["renderer_tuned_malloc"] = run_section("renderer", *q, env=TUNED_MALLOC_ENV, threads=a.threads)
        else:
            res[name] = run_section(name, *q, threads=a.threads)
        section = res[name]
        res["machine"] = section.get("machine") or section["runs"]["ours"]["10"].get("machine") if name == "memory" \
            else section.get("machine", res.get("machine"))
    res["load_end"] = load()
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(fmt_table(res))
    print(f"\nwritten: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
