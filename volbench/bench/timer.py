"""pytest-benchmark integration: a GPU-synchronising timer, machine info, safe stats.

Pitfalls handled here (see /work/shared/NOTES.md, "Tools"):

* pytest-benchmark's default timer reads ``time.perf_counter`` while CUDA kernels may still be
  queued, so a benchmark of GPU code measures the launch, not the work. Use
  ``--benchmark-timer volbench.bench.timer.synced_perf_counter``: it waits for the device first.
* saved runs are keyed by OS and Python, not by GPU; the report plugin's
  ``pytest_benchmark_update_machine_info`` hook adds :func:`machine_info` so runs from different
  hardware are kept apart.
* with ``--benchmark-disable`` (and under xdist) ``benchmark.stats`` is None:
  :func:`benchmark_summary` returns None then instead of raising.
* ``--benchmark-json`` does not create its parent directory; the report plugin does.

Example:
    >>> t0 = synced_perf_counter(); t1 = synced_perf_counter()
    >>> t1 >= t0
    True
"""
from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["synced_perf_counter", "machine_info", "benchmark_summary"]


def synced_perf_counter() -> float:
    """``time.perf_counter()`` after ``torch.cuda.synchronize()`` when CUDA is initialised.

    Without torch imported (or without CUDA work in this process) nothing is waited for: a
    process that never initialised CUDA has no queued kernels, and importing torch here would
    cost seconds inside the timed region's first call.
    """
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


def machine_info() -> dict[str, Any]:
    """Hardware and numeric settings that change timings: GPU names, CUDA and torch versions,
    TF32 switches (keys prefixed ``volbench_``, so they never clash with pytest-benchmark's)."""
    import torch

    from volbench.report.envinfo import cuda_devices, tf32_settings

    devices = cuda_devices(torch)
    info: dict[str, Any] = {
        "volbench_gpu": ", ".join(d["name"] for d in devices) or None,
        "volbench_gpu_count": len(devices),
        "volbench_cuda": torch.version.cuda,
        "volbench_torch": str(torch.__version__),
        "volbench_torch_threads": int(torch.get_num_threads()),
    }
    info.update({f"volbench_{key}": value for key, value in tf32_settings(torch).items()})
    return info


def benchmark_summary(benchmark: Any) -> dict[str, float] | None:
    """min/median/mean/stddev seconds and rounds of a finished pytest-benchmark fixture, or None
    where pytest-benchmark kept no statistics (``--benchmark-disable``, xdist, not yet run)."""
    metadata = getattr(benchmark, "stats", None)
    stats = getattr(metadata, "stats", None)
    if not stats:  # Stats is falsy while it holds no rounds
        return None
    return {
        "min": float(stats.min),
        "median": float(stats.median),
        "mean": float(stats.mean),
        "stddev": float(stats.stddev),
        "rounds": int(stats.rounds),
    }
