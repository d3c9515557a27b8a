"""Machine description, load, timing helpers and the same-run compute peaks for the benchmarks."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

TUNED_MALLOC_ENV = {
    # glibc: serve large blocks from the heap and keep freed memory, so per-frame temporaries reuse pages
    # instead of being unmapped and faulted in again (FLOAT's "millions of page faults")
    "MALLOC_MMAP_THRESHOLD_": str(1 << 30),
    "MALLOC_TRIM_THRESHOLD_": str(1 << 31),
}


def cpu_model() -> str:
    """CPU model name, family and model numbers from /proc/cpuinfo (or platform)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    k, v = (s.strip() for s in line.split(":", 1))
                    info.setdefault(k, v)
    except OSError:
        return platform.processor() or platform.machine()
    flags = info.get("flags", "").split()
    isa = "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "")
    family, model = info.get("cpu family", "?"), info.get("model", "?")
    return f"{info.get('model name', '?')} (family {family}, model {model}, {isa})"


def machine_info() -> dict:
    """What the figures were measured on."""
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "blas": "MKL" if torch.backends.mkl.is_available() else "other",
        "malloc_env": {k: os.environ[k] for k in TUNED_MALLOC_ENV if k in os.environ},
    }


def load() -> list[float]:
    """1, 5 and 15 minute load averages (other processes share the machine)."""
    return [round(x, 2) for x in os.getloadavg()]


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident set size of this process (or of its finished children) in MiB (Linux: ru_maxrss in KiB)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0


def hwm_mb() -> float:
    """Peak resident set size since the last :func:`reset_hwm` (Linux VmHWM) in MiB; 0 if unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def reset_hwm() -> None:
    """Reset the peak-RSS mark (Linux ``/proc/self/clear_refs`` = 5), to measure one stage's peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Run the functions in turn ``repeats`` times (A B A B …) so that load changes hit all of them alike."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            out[k].append(timed(fn))
    return out


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


@torch.inference_mode()
def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """fp32 ``torch.matmul`` of two n×n matrices (the issue's practical peak), median GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = [timed(lambda: a @ b) for _ in range(repeats)]
    return 2 * n**3 / median(times) / 1e9


@torch.inference_mode()
def onednn_conv_gflops(repeats: int = 10) -> float:
    """fp32 3×3 convolution through oneDNN (channels-last, 8×512×64×64 → 512 channels), median GFLOP/s.

    On this project's AMD machines MKL's sgemm (behind ``torch.matmul``) does not use AVX-512 and oneDNN
    does, so this is the more realistic compute ceiling for convolution-heavy code; it is reported next to
    the matmul figure, which stays the reference the targets are stated against.
    """
    x = torch.randn(8, 512, 64, 64).contiguous(memory_format=torch.channels_last)
    w = torch.randn(512, 512, 3, 3)
    F.conv2d(x, w, padding=1)
    times = [timed(lambda: F.conv2d(x, w, padding=1)) for _ in range(repeats)]
    return 2 * 9 * 512 * 512 * 8 * 64 * 64 / median(times) / 1e9
