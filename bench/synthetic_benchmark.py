"""Synthetic benchmark of a DEMO checkpoint: one command, a table on stdout and a JSON file.

    python3 bench/synthetic_benchmark.py --checkpoint CKPT --data DIR/test [--clips N] \
        [--out bench/synthetic_results.json] [--seed 0] [--steps 10] [--probe-dir auto|none|DIR]

``CKPT`` is a pack-format ``.safetensors`` file, or a folder: the newest ``*.safetensors`` model under it
(training-head files excluded) is used.  The figures, their targets and how they are measured are described
in :mod:`demo_core.synthetic.benchmark`.  The probe is fitted on ``DIR/train`` when it exists (held-out
identities are then read by a probe that never saw them), else cross-fitted on two halves of the test clips.
The JSON also records the machine, the torch version, the checkpoint's SHA-256 and the command.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402

from demo_core.models.loader import load_model  # noqa: E402
from demo_core.synthetic.benchmark import run_benchmark  # noqa: E402


def newest_checkpoint(path: Path) -> Path:
    """``path`` itself, or the most recently written model ``.safetensors`` under the folder ``path``."""
    if path.is_file():
        return path
    found = [p for p in path.rglob("*.safetensors") if p.is_file() and "heads" not in p.name]
    if not found:
        raise SystemExit(f"--checkpoint: no .safetensors model under {path}")
    return max(found, key=lambda p: p.stat().st_mtime)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def machine() -> dict:
    try:
        sys.path.insert(0, str(HERE))
        from machine import machine_info  # bench/machine.py, shared with the performance benchmarks

        return machine_info()
    except ImportError:
        return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                "threads": torch.get_num_threads()}


def finite(x):
    """JSON-safe copy: NaN and infinities become None."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return x


def format_table(metrics: dict) -> str:
    rows = [("metric", "value", "target", "ok")]
    for name, m in metrics.items():
        v = m["value"]
        value = "nan" if not math.isfinite(v) else (f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}")
        ok = "-" if m["ok"] is None else ("yes" if m["ok"] else "NO")
        rows.append((name, value, m["target"] or "(info)", ok))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True, help="model .safetensors, or a run folder (newest)")
    ap.add_argument("--data", type=Path, required=True, help="test split folder (clips with .labels.npz)")
    ap.add_argument("--clips", type=int, default=12, help="clips used, sorted by name (default 12)")
    ap.add_argument("--out", type=Path, default=HERE / "synthetic_results.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=10, help="ODE steps per window (default 10)")
    ap.add_argument("--frames-per-clip", type=int, default=8, help="frames per clip for edits (default 8)")
    ap.add_argument("--probe-dir", default="auto",
                    help="fit the probe on these clips; 'auto' (default): DATA/../train when it exists, else cross-fit "
                         "on two halves of the test clips; 'none': always cross-fit")
    ap.add_argument("--probe-clips", type=int, default=32, help="clips of --probe-dir used (default 32)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    probe_dir = None if a.probe_dir == "none" else Path(a.probe_dir)
    if a.probe_dir == "auto":
        probe_dir = a.data.parent / "train" if (a.data.parent / "train").is_dir() else None
    ckpt = newest_checkpoint(a.checkpoint)
    print(f"checkpoint: {ckpt}\nprobe: {probe_dir or 'cross-fitted on two halves of the test clips'}", flush=True)
    model, report = load_model(ckpt, device=a.device)
    start = time.perf_counter()
    res = run_benchmark(model, a.data, num_clips=a.clips, seed=a.seed, device=a.device, probe_dir=probe_dir,
                        num_probe_clips=a.probe_clips, steps=a.steps, frames_per_clip=a.frames_per_clip,
                        log=lambda msg: print(f"  {msg}", flush=True))
    seconds = time.perf_counter() - start
    print(format_table(res["metrics"]))
    cal = res["details"].get("factor_calibration")
    if cal:  # which dictionary directions calibration put where (true layout: lip, pose, gaze, blink, residual)
        step = "one step 0.5" if cal["epsilon_std"] is None else f"steps {cal['epsilon_std']:g} std per direction"
        one = cal["single_portrait"]
        print(f"factor calibration on frame 0 of {', '.join(cal['clips'])} ({step}, {cal['num_active']} active "
              "directions): " + "; ".join(f"{k} {v}" for k, v in cal["calibrated"].items())
              + f"\n  {one['clip']} alone: overlap pose / lip / eyes "
              + " / ".join(f"{one[k]:.2f}" for k in ("pose", "lip", "eyes")))
    failed = [k for k, m in res["metrics"].items() if m["ok"] is False]
    print(f"{len(res['clips'])} clips, {seconds:.1f} s; {len(failed)} of "
          f"{sum(m['ok'] is not None for m in res['metrics'].values())} targets missed")
    out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(),
           "torch": torch.__version__, "seconds": round(seconds, 2),
           "checkpoint": {"path": str(ckpt), "sha256": sha256(ckpt), "step": report.metadata.get("step")},
           "data": str(a.data), **res}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(finite(out), indent=1))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
