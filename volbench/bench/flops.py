"""Throughput accounting for the speed benchmarks: peak FLOP/s by device, achieved FLOP/s,
TF32 state and peak memory.

A volume estimate is dominated by forward passes of one network at many parameter vectors, so its
useful work is

    W = n_examples_evaluated * F,      F = flops_per_example() (2 x multiply-adds per forward pass
                                           of one example at one parameter vector)

and the achieved rate is ``W / seconds``. ``n_examples_evaluated`` counts (vector, example) pairs
actually run (``volbench.costs.ModelCost`` counts them; early exit lowers it), so W is the work
done, not the work a plain loop would have done.

The fraction of peak compares that rate with the device's dense peak for the precision the
matmuls ran in (:func:`matmul_precision`): float32 on a CUDA device with TF32 enabled runs on the
tensor cores at the TF32 rate, otherwise at the FP32 (CUDA core) rate. Peaks come from NVIDIA's
datasheets and whitepapers (see :data:`GPU_PEAKS`; datasheet figures marked "with sparsity" are
halved to the dense rate). A CPU has no such table here: its nominal peak depends on the SKU,
clocks and vector units, so :func:`measure_gemm_flops` measures what a large GEMM achieves on
this machine with these threads, and a fraction of *that* is what benchmarks report on a CPU
(labelled as such; it is an achievable ceiling, not a hardware peak).

Example:
    >>> import torch
    >>> peak = gpu_peak("NVIDIA H100 80GB HBM3")
    >>> peak.model, peak.flops("tf32") / 1e12
    ('H100 SXM5', 494.7)
    >>> gpu_peak("NVIDIA GeForce RTX 4090") is None
    True
    >>> matmul_precision(torch.float32, "cuda", tf32=True), matmul_precision(torch.float32, "cpu", tf32=True)
    ('tf32', 'fp32')
    >>> achieved_flops(2.0e9, 0.5)
    4000000000.0
"""
from __future__ import annotations

import math
import re
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from volbench.report.envinfo import cpu_model

__all__ = [
    "PRECISIONS",
    "GpuPeak",
    "GPU_PEAKS",
    "gpu_peak",
    "matmul_precision",
    "tf32_enabled",
    "tf32_mode",
    "achieved_flops",
    "measure_gemm_flops",
    "DevicePeak",
    "device_peak",
    "PeakMemory",
    "peak_memory",
]

#: Precisions the peak table knows: IEEE float32 on CUDA cores, TF32 and bfloat16 on tensor cores.
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16")

_TERA = 1e12


@dataclass(frozen=True)
class GpuPeak:
    """Dense peak throughput of one GPU model (FLOP/s, 2 FLOP per multiply-add, boost clock).

    Attributes:
        model: the product, e.g. ``"H100 SXM5"``.
        pattern: regular expression matched (case-insensitively) against
            ``torch.cuda.get_device_name()``.
        fp32, tf32, bf16: dense peak FLOP/s for IEEE float32 (CUDA cores), TF32 and bfloat16
            (tensor cores, dense, no structured sparsity).
        source: where the numbers come from.
    """

    model: str
    pattern: str
    fp32: float
    tf32: float
    bf16: float
    source: str

    def flops(self, precision: str) -> float:
        """Peak FLOP/s for ``precision`` (one of :data:`PRECISIONS`)."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        return float(getattr(self, precision))


_H100_WP = ("NVIDIA H100 Tensor Core GPU Architecture whitepaper (2022), table 'Comparison of "
            "NVIDIA A100 and H100 Data Center GPUs'")

#: Dense peaks, most specific pattern first (``gpu_peak`` takes the first match). Datasheet
#: tensor-core figures are quoted "with sparsity"; the dense rate is half of them.
GPU_PEAKS: tuple[GpuPeak, ...] = (
    # H100 NVL datasheet (2023): FP32 60 TF, TF32 835 TF*, BF16 1,671 TF* (* with sparsity).
    GpuPeak("H100 NVL", r"\bH100\b.*\bNVL\b", 60.0 * _TERA, 417.5 * _TERA, 835.5 * _TERA,
            "NVIDIA H100 datasheet (H100 NVL column), sparse tensor figures halved"),
    # Whitepaper H100 PCIe column: FP32 51.2, TF32 378 (756 sparse), BF16 756 (1,513 sparse).
    GpuPeak("H100 PCIe", r"\bH100\b.*\bPCIe\b", 51.2 * _TERA, 378.0 * _TERA, 756.0 * _TERA,
            f"{_H100_WP}, H100 PCIe column"),
    # Whitepaper H100 SXM5 column: FP32 66.9, TF32 494.7 (989.4 sparse), BF16 989.4 (1,978.9
    # sparse). torch reports the SXM part as e.g. "NVIDIA H100 80GB HBM3".
    GpuPeak("H100 SXM5", r"\bH100\b", 66.9 * _TERA, 494.7 * _TERA, 989.4 * _TERA,
            f"{_H100_WP}, H100 SXM5 column"),
    # H200 datasheet (2024), H200 NVL column: FP32 60 TF, TF32 835 TF*, BF16 1,671 TF*.
    GpuPeak("H200 NVL", r"\bH200\b.*\bNVL\b", 60.0 * _TERA, 417.5 * _TERA, 835.5 * _TERA,
            "NVIDIA H200 Tensor Core GPU datasheet (H200 NVL column), sparse tensor figures halved"),
    # H200 datasheet (2024), H200 SXM column: FP32 67 TF, TF32 989 TF*, BF16 1,979 TF* (the same
    # compute die and clocks as H100 SXM5; only the memory differs).
    GpuPeak("H200 SXM", r"\bH200\b", 67.0 * _TERA, 494.5 * _TERA, 989.5 * _TERA,
            "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM column), sparse tensor figures halved"),
    # A100 datasheet (40 GB and 80 GB, PCIe and SXM alike): FP32 19.5 TF, TF32 156 TF (312*),
    # BF16 312 TF (624*).
    GpuPeak("A100", r"\bA100\b", 19.5 * _TERA, 156.0 * _TERA, 312.0 * _TERA,
            "NVIDIA A100 Tensor Core GPU datasheet (all form factors), dense figures"),
)


def gpu_peak(device_name: str) -> GpuPeak | None:
    """The :class:`GpuPeak` whose pattern matches ``device_name`` (e.g. the string from
    ``torch.cuda.get_device_name()``), or None for a GPU not in :data:`GPU_PEAKS`."""
    if not isinstance(device_name, str):
        raise TypeError("device_name must be a str such as torch.cuda.get_device_name(), got "
                        f"{type(device_name).__name__}")
    for peak in GPU_PEAKS:
        if re.search(peak.pattern, device_name, flags=re.IGNORECASE):
            return peak
    return None


def matmul_precision(dtype: torch.dtype, device_type: str, *, tf32: bool) -> str:
    """The arithmetic the matmuls of ``dtype`` run in: "fp32", "tf32", "bf16", "fp16" or "fp64".

    float32 runs as TF32 only on a CUDA device with TF32 matmuls enabled (``tf32``); a CPU ignores
    the switch.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    if dtype == torch.float32:
        return "tf32" if (device_type == "cuda" and tf32) else "fp32"
    names = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float64: "fp64"}
    if dtype not in names:
        raise ValueError(f"no matmul precision known for {dtype}")
    return names[dtype]


def tf32_enabled() -> bool:
    """Whether float32 CUDA matmuls may use TF32 now.

    Reads the legacy switch ``torch.backends.cuda.matmul.allow_tf32``; torch >= 2.9 refuses to
    read it once the new ``fp32_precision`` API has been used in the process (RuntimeError), in
    which case the new API's value ("tf32" = enabled) is read instead.
    """
    try:
        return bool(torch.backends.cuda.matmul.allow_tf32)
    except RuntimeError:
        return str(getattr(torch.backends.cuda.matmul, "fp32_precision", "ieee")) == "tf32"


@contextmanager
def tf32_mode(enabled: bool) -> Iterator[None]:
    """Enable or disable TF32 for CUDA matmuls and cuDNN convolutions inside the block, restoring
    the previous switches afterwards. Uses the legacy ``allow_tf32`` switches, the ones
    ``volbench.report.envinfo`` reads (mixing them with the new ``fp32_precision`` API in one
    process makes torch refuse to read either).

    Example:
        >>> with tf32_mode(True):
        ...     tf32_enabled()
        True
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    matmul = torch.backends.cuda.matmul
    before = (tf32_enabled(), bool(torch.backends.cudnn.allow_tf32))
    matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def achieved_flops(flop_count: float, seconds: float) -> float:
    """FLOP/s achieved: ``flop_count / seconds`` (both must be positive and finite)."""
    for name, v in (("flop_count", flop_count), ("seconds", seconds)):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise TypeError(f"{name} must be a number, got {type(v).__name__}")
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    return float(flop_count) / float(seconds)


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_gemm_flops(
    size: int = 1024,
    *,
    repeats: int = 5,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> float:
    """FLOP/s of the fastest of ``repeats`` square GEMMs ``A @ B`` of side ``size`` (2 size^3
    FLOP each) after one untimed warm-up: an achievable matmul ceiling for this device, dtype and
    thread count (on a shared machine, a measure of what was available at that moment).

    The operands are N(0, 1) from a CPU ``torch.Generator`` seeded with ``seed`` (their values do
    not affect the timing; the seed keeps the call reproducible) and then moved to ``device``.

    Example:
        >>> measure_gemm_flops(64, repeats=2) > 0
        True
    """
    _check_count("size (the matrix side)", size)
    _check_count("repeats", repeats)
    device = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(size, size, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=g).to(device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up: library initialisation, thread pool start, clocks
    _sync(device)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return achieved_flops(2.0 * size**3, max(best, 1e-9))


@dataclass(frozen=True)
class DevicePeak:
    """The peak a benchmark's achieved FLOP/s is compared with.

    Attributes:
        flops: FLOP/s, or None where no meaningful peak is known.
        kind: "datasheet" (GPU table), "measured_gemm" (CPU or unknown GPU: a large-GEMM
            measurement) or "unknown".
        precision: the matmul precision (:func:`matmul_precision`).
        source: where the number comes from, or why there is none.
        device_name: the GPU name, or the CPU model.
    """

    flops: float | None
    kind: str
    precision: str
    source: str
    device_name: str


def device_peak(
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
    *,
    tf32: bool | None = None,
    measure: bool = True,
    gemm_size: int = 1024,
    seed: int = 0,
) -> DevicePeak:
    """The peak FLOP/s to compare a benchmark on ``device`` in ``dtype`` with.

    CUDA: the :data:`GPU_PEAKS` entry for the device's name and precision ("datasheet"); for a
    GPU or precision not in the table, a GEMM measurement if ``measure`` else None. CPU: a GEMM
    measurement (:func:`measure_gemm_flops`, ``kind="measured_gemm"``) if ``measure``, else None
    with the reason. ``tf32`` defaults to the current switch (:func:`tf32_enabled`).
    """
    device = torch.device(device)
    tf32 = tf32_enabled() if tf32 is None else bool(tf32)
    precision = matmul_precision(dtype, device.type, tf32=tf32)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = gpu_peak(name)
        if peak is not None and precision in PRECISIONS:
            return DevicePeak(peak.flops(precision), "datasheet", precision, f"{peak.model}: {peak.source}", name)
        why = (f"{name!r} is not in volbench.bench.flops.GPU_PEAKS" if peak is None
               else f"no {precision} peak in the table")
    else:
        name = cpu_model()
        why = "a CPU's nominal peak depends on SKU, clocks and vector units; none is tabulated"
    if not measure:
        return DevicePeak(None, "unknown", precision, why, name)
    flops = measure_gemm_flops(gemm_size, device=device, dtype=dtype, seed=seed)
    return DevicePeak(flops, "measured_gemm", precision,
                      f"{why}; measured: fastest {gemm_size}x{gemm_size} GEMM with "
                      f"{torch.get_num_threads()} threads (an achievable ceiling, not a hardware peak)",
                      name)


@dataclass(frozen=True)
class PeakMemory:
    """Peak memory of a measured block (see :func:`peak_memory`).

    Attributes:
        bytes: the peak, or None where it could not be read.
        kind: what was measured: "cuda_max_memory_allocated" (tensors allocated on the device,
            reset at the block's start), "cpu_peak_rss" (the process's resident-set high-water
            mark VmHWM, reset at the block's start through /proc/self/clear_refs) or
            "cpu_max_rss_lifetime" (``getrusage`` ru_maxrss: the process's lifetime peak, where
            the high-water mark cannot be reset; an upper bound for the block).
    """

    bytes: int | None
    kind: str


def _read_vm_hwm() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_vm_hwm() -> bool:
    # Writing "5" to clear_refs resets the peak RSS to the current RSS (Linux >= 4.0).
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class _MemoryMeter:
    """Mutable holder filled in when the ``peak_memory`` block ends."""

    def __init__(self) -> None:
        self.result = PeakMemory(None, "not measured yet")


@contextmanager
def peak_memory(device: torch.device | str) -> Iterator[_MemoryMeter]:
    """Measure the peak memory of the block; ``meter.result`` is a :class:`PeakMemory` after it.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (device tensors
    only). CPU: the process's peak RSS, reset at the start where Linux allows it, else the
    lifetime ``ru_maxrss`` (Python's tracemalloc does not see torch's allocations, so it is not
    used).

    Example:
        >>> import torch
        >>> with peak_memory("cpu") as meter:
        ...     _ = torch.ones(1000)
        >>> meter.result.bytes > 0
        True
    """
    device = torch.device(device)
    meter = _MemoryMeter()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield meter
        torch.cuda.synchronize(device)
        meter.result = PeakMemory(int(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated")
        return
    reset = sys.platform.startswith("linux") and _reset_vm_hwm()
    yield meter
    hwm = _read_vm_hwm() if reset else None
    if hwm is not None:
        meter.result = PeakMemory(hwm, "cpu_peak_rss")
        return
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
    meter.result = PeakMemory(int(maxrss if sys.platform == "darwin" else maxrss * 1024), "cpu_max_rss_lifetime")
