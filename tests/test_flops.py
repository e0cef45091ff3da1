"""Tests of volbench.bench.flops (peak table, precision, TF32 switch, achieved FLOP/s, peak memory) and
of the speed benchmarks' xdist guard (benchmarks/conftest.py)."""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from volbench.bench import flops
from volbench.bench.flops import (
    GPU_PEAKS,
    PRECISIONS,
    achieved_flops,
    device_peak,
    gpu_peak,
    matmul_precision,
    measure_gemm_flops,
    peak_memory,
    tf32_enabled,
    tf32_mode,
)

# Names as torch.cuda.get_device_name() reports them, and the table entry each must map to.
KNOWN_NAMES = {
    "NVIDIA H100 80GB HBM3": "H100 SXM5",
    "NVIDIA H100": "H100 SXM5",
    "NVIDIA H100 PCIe": "H100 PCIe",
    "NVIDIA H100 NVL": "H100 NVL",
    "NVIDIA H200": "H200 SXM",
    "NVIDIA H200 NVL": "H200 NVL",
    "NVIDIA A100-SXM4-80GB": "A100",
    "NVIDIA A100-SXM4-40GB": "A100",
    "NVIDIA A100-PCIE-40GB": "A100",
    "NVIDIA A100 80GB PCIe": "A100",
}
# Dense peaks (TFLOP/s) as the sources in volbench/flops.py state them: fp32, tf32, bf16.
EXPECTED_TFLOPS = {
    "H100 SXM5": (66.9, 494.7, 989.4),
    "H100 PCIe": (51.2, 378.0, 756.0),
    "H100 NVL": (60.0, 417.5, 835.5),
    "H200 SXM": (67.0, 494.5, 989.5),
    "H200 NVL": (60.0, 417.5, 835.5),
    "A100": (19.5, 156.0, 312.0),
}


# --------------------------------------------------------------------------- peak table
@pytest.mark.parametrize("name, model", sorted(KNOWN_NAMES.items()))
def test_gpu_peak_maps_device_names_to_models(name, model):
    peak = gpu_peak(name)
    assert peak is not None and peak.model == model, f"{name!r} should map to {model}, got {peak}"


@pytest.mark.parametrize("name", ["NVIDIA GeForce RTX 4090", "NVIDIA GH200 480GB", "NVIDIA A10", "Tesla V100-SXM2-16GB",
                                  "NVIDIA H1000", "AMD Instinct MI300X", ""])
def test_gpu_peak_unknown_names_give_none(name):
    assert gpu_peak(name) is None, f"{name!r} is not in the table and must not borrow another GPU's peak"


def test_gpu_peak_rejects_non_strings():
    with pytest.raises(TypeError, match="get_device_name"):
        gpu_peak(0)


def test_peak_table_values_and_invariants():
    assert {p.model for p in GPU_PEAKS} == set(EXPECTED_TFLOPS), "every table entry must be checked here"
    for peak in GPU_PEAKS:
        got = tuple(peak.flops(p) / 1e12 for p in PRECISIONS)
        assert got == pytest.approx(EXPECTED_TFLOPS[peak.model], rel=1e-12), f"{peak.model}: {got} TFLOP/s"
        # Ampere and Hopper tensor cores: dense BF16 is twice dense TF32 (0.5% covers the
        # datasheets' rounding of the sparse figures), and TF32 is far above FP32.
        assert peak.bf16 == pytest.approx(2 * peak.tf32, rel=5e-3), f"{peak.model}: bf16 != 2 x tf32"
        assert peak.tf32 > 5 * peak.fp32, f"{peak.model}: TF32 tensor-core peak should be > 5x FP32"
        assert peak.source.strip(), f"{peak.model}: every number needs a source"
        re.compile(peak.pattern)


def test_peak_flops_rejects_unknown_precision():
    with pytest.raises(ValueError, match="precision must be one of"):
        GPU_PEAKS[0].flops("fp16")


@given(name=st.sampled_from(sorted(KNOWN_NAMES)), flips=st.lists(st.booleans(), min_size=30, max_size=30))
def test_gpu_peak_ignores_case(name, flips):
    mixed = "".join(c.swapcase() if flip else c for c, flip in zip(name, flips))  # names are < 30 characters
    peak = gpu_peak(mixed)
    assert peak is not None and peak.model == KNOWN_NAMES[name], f"{mixed!r} should still map to {KNOWN_NAMES[name]}"


# --------------------------------------------------------------------------- precision and TF32
@pytest.mark.parametrize("dtype, device, tf32, expected", [
    (torch.float32, "cuda", True, "tf32"),
    (torch.float32, "cuda", False, "fp32"),
    (torch.float32, "cpu", True, "fp32"),
    (torch.float32, "cpu", False, "fp32"),
    (torch.bfloat16, "cuda", True, "bf16"),
    (torch.bfloat16, "cpu", False, "bf16"),
    (torch.float16, "cuda", False, "fp16"),
    (torch.float64, "cuda", True, "fp64"),
])
def test_matmul_precision(dtype, device, tf32, expected):
    assert matmul_precision(dtype, device, tf32=tf32) == expected


def test_matmul_precision_rejects_non_float_dtypes():
    with pytest.raises(TypeError, match="floating-point"):
        matmul_precision(torch.int64, "cpu", tf32=False)
    with pytest.raises(TypeError, match="floating-point"):
        matmul_precision("float32", "cpu", tf32=False)


def test_tf32_mode_sets_and_restores():
    before = (tf32_enabled(), torch.backends.cudnn.allow_tf32)
    for enabled in (True, False):
        with tf32_mode(enabled):
            assert tf32_enabled() is enabled and torch.backends.cudnn.allow_tf32 is enabled, \
                f"inside tf32_mode({enabled}) both switches must be {enabled}"
            with tf32_mode(not enabled):
                assert tf32_enabled() is (not enabled), "a nested block sets its own value"
            assert tf32_enabled() is enabled, "leaving a nested block restores the outer value"
    assert (tf32_enabled(), torch.backends.cudnn.allow_tf32) == before, "the switches must be restored"


def test_tf32_mode_restores_after_an_exception():
    before = tf32_enabled()
    with pytest.raises(KeyError):
        with tf32_mode(not before):
            raise KeyError("boom")
    assert tf32_enabled() is before, "an exception inside the block must not leak the TF32 setting"


def test_tf32_mode_rejects_non_bool():
    with pytest.raises(TypeError, match="bool"):
        with tf32_mode(1):
            pass


# --------------------------------------------------------------------------- achieved FLOP/s
def test_achieved_flops_exact():
    assert achieved_flops(469_504 * 600, 0.25) == 469_504 * 600 * 4.0


@pytest.mark.parametrize("flop_count, seconds", [(0, 1.0), (1.0, 0.0), (-1.0, 1.0), (1.0, math.nan),
                                                 (math.inf, 1.0)])
def test_achieved_flops_rejects_non_positive_or_non_finite(flop_count, seconds):
    with pytest.raises(ValueError, match="positive finite"):
        achieved_flops(flop_count, seconds)


@pytest.mark.parametrize("flop_count, seconds", [(True, 1.0), ("1", 1.0), (1.0, None)])
def test_achieved_flops_rejects_non_numbers(flop_count, seconds):
    with pytest.raises(TypeError, match="must be a number"):
        achieved_flops(flop_count, seconds)


@given(work=st.floats(1.0, 1e18), seconds=st.floats(1e-6, 1e5))
def test_achieved_flops_times_seconds_is_the_work(work, seconds):
    assert achieved_flops(work, seconds) * seconds == pytest.approx(work, rel=1e-12), \
        "rate x time must give the work back"


def test_measure_gemm_flops_positive_and_validated():
    rate = measure_gemm_flops(64, repeats=2, seed=3)
    # 2 * 64^3 FLOP can take at most the timer's resolution floor of 1e-9 s, hence the upper bound.
    assert 0 < rate <= 2 * 64**3 / 1e-9 and math.isfinite(rate), f"implausible GEMM rate {rate}"
    for bad in (0, -1):
        with pytest.raises(ValueError, match="size"):
            measure_gemm_flops(bad)
    for bad in (1.5, True):
        with pytest.raises(TypeError, match="size"):
            measure_gemm_flops(bad)
    with pytest.raises(ValueError, match="repeats"):
        measure_gemm_flops(8, repeats=0)


# --------------------------------------------------------------------------- device peak
def test_device_peak_cpu_without_measuring_says_why():
    peak = device_peak("cpu", torch.float32, tf32=True, measure=False)
    assert peak.flops is None and peak.kind == "unknown", f"no CPU peak is tabulated, got {peak}"
    assert peak.precision == "fp32", "a CPU ignores the TF32 switch"
    assert "CPU" in peak.source, "the reason must say why there is no peak"


def test_device_peak_cpu_measures_a_gemm():
    peak = device_peak("cpu", torch.float32, measure=True, gemm_size=64)
    assert peak.kind == "measured_gemm" and peak.flops is not None and peak.flops > 0, f"got {peak}"
    assert "not a hardware peak" in peak.source, "a measured ceiling must be labelled as such"


@pytest.mark.parametrize("tf32, precision, tflops", [(True, "tf32", 494.7), (False, "fp32", 66.9)])
def test_device_peak_cuda_uses_the_table(monkeypatch, tf32, precision, tflops):
    # Only the device name is read on this path, so it can be tested without a GPU.
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    peak = device_peak(torch.device("cuda"), torch.float32, tf32=tf32, measure=False)
    assert (peak.kind, peak.precision) == ("datasheet", precision), f"got {peak}"
    assert peak.flops == pytest.approx(tflops * 1e12, rel=1e-12), \
        f"H100 SXM5 {precision} dense peak is {tflops} TFLOP/s"
    assert "H100 SXM5" in peak.source


def test_device_peak_cuda_unknown_gpu_without_measuring(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA GeForce RTX 4090")
    peak = device_peak(torch.device("cuda"), torch.float32, tf32=False, measure=False)
    assert peak.flops is None and "GPU_PEAKS" in peak.source, f"got {peak}"


# --------------------------------------------------------------------------- peak memory
def test_peak_memory_cpu_sees_a_large_allocation():
    size = 64 * 2**20
    with peak_memory("cpu") as meter:
        block = torch.ones(size // 4, dtype=torch.float32)  # ones() touches every page
        del block
    assert meter.result.kind in ("cpu_peak_rss", "cpu_max_rss_lifetime"), meter.result
    assert meter.result.bytes is not None and meter.result.bytes >= size, \
        f"the peak RSS must include the {size} bytes just allocated, got {meter.result}"


def test_peak_memory_cpu_is_reset_per_block():
    big = 256 * 2**20
    with peak_memory("cpu") as first:
        block = torch.ones(big // 4, dtype=torch.float32)
        del block  # torch returns large blocks to the OS (mmap), so RSS falls again
    if first.result.kind != "cpu_peak_rss":
        pytest.skip(f"this system cannot reset the peak RSS ({first.result.kind})")
    with peak_memory("cpu") as second:
        small = torch.ones(1024)
        del small
    # The second block allocated ~nothing: its peak must sit clearly below the first block's
    # (half the big block as margin for unrelated allocations).
    assert second.result.bytes < first.result.bytes - big // 2, \
        f"peak not reset between blocks: {first.result.bytes} then {second.result.bytes}"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_peak_memory_cuda_counts_device_tensors():
    size = 64 * 2**20
    with peak_memory("cuda") as meter:
        block = torch.ones(size // 4, device="cuda")
        del block
    assert meter.result.kind == "cuda_max_memory_allocated"
    assert meter.result.bytes >= size, f"max_memory_allocated must include the {size}-byte block, got {meter.result}"


def test_flops_module_imports_no_test_or_plot_libraries():
    code = ("import sys, volbench.bench.flops; "
            "bad = [m for m in ('pytest', 'matplotlib', 'hypothesis') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(flops.__file__).resolve().parents[1])
    assert proc.returncode == 0, (f"volbench.bench.flops must import without pytest/matplotlib: "
                                  f"{proc.stdout}{proc.stderr}")


# --------------------------------------------------------------------------- benchmark guard
def test_benchmarks_skip_under_an_xdist_worker(tmp_path):
    """benchmarks/conftest.py must skip every benchmark in an xdist worker (timings would be
    distorted), before any landscape is trained."""
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTEST_XDIST_WORKER": "gw0", "VOLBENCH_STORE": str(tmp_path / "store")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "-p", "no:xdist", "-p", "no:cacheprovider", "-q", "-rs",
         "-k", "swiss-800 and loop", "--benchmark-disable", f"--volbench-report-dir={tmp_path / 'reports'}"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the guarded run must end cleanly (all skipped):\n{out[-3000:]}"
    assert "1 skipped" in out and "pytest-xdist" in out, f"expected one skip naming pytest-xdist:\n{out[-3000:]}"
    assert not (tmp_path / "store").exists(), "no minimum may be trained when the benchmarks are skipped"
