"""Tests of speed across hardware: asv's significance rule (volbench.bench.significance) and
``volbench bench compare`` / ``volbench compare`` on pytest-benchmark JSON
(volbench.bench.compare)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import volbench
from volbench.bench import records
from volbench.bench.significance import (
    P_THRESHOLD,
    compare_rounds,
    mann_whitney_can_decide,
    median_interval,
)
from volbench.cli import main

REPO = Path(volbench.__file__).resolve().parents[1]


def lognormal_quantiles(n: int, median: float, sigma: float) -> list[float]:
    """n rounds at the (i + 0.5)/n quantiles of a log-normal: deterministic, no RNG, the shape of
    timing noise (multiplicative, right-skewed)."""
    z = stats.norm.ppf((np.arange(n) + 0.5) / n)
    return (median * np.exp(sigma * z)).tolist()


# --------------------------------------------------------------------------- significance


@pytest.mark.parametrize("n", [7, 10, 20])
def test_a_known_2x_difference_is_significant_and_1_percent_is_not(n):
    base = lognormal_quantiles(n, 1.0, 0.05)  # 5% timing noise, as on a shared machine
    twice = [2 * t for t in base]
    one_percent = [1.01 * t for t in base]
    sig = compare_rounds(base, twice)
    assert sig.test == "mann-whitney" and sig.significant and sig.mark == "slower"
    assert sig.p_value < P_THRESHOLD and math.isclose(sig.ratio, 2.0, rel_tol=1e-12)
    assert sig.ratio_text() == "2.00x"
    faster = compare_rounds(twice, base)
    assert faster.significant and faster.mark == "faster" and faster.ratio_text() == "0.50x"
    small = compare_rounds(base, one_percent)
    assert not small.significant and small.mark == "~" and small.ratio_text() == "~1.01x"
    assert small.p_value > 0.5, "1% shift under 5% noise: the rounds interleave"


def test_random_rounds_2x_significant_1_percent_not():
    """The same with seeded random rounds (5% log-normal noise): 2x separates completely, so the
    exact p is 2 / C(20, 10); a 1% shift is far from p < 0.002."""
    rng = np.random.default_rng(1234)
    base = np.exp(rng.normal(0.0, 0.05, 10))
    other = np.exp(rng.normal(0.0, 0.05, 10))
    assert compare_rounds(base, 2 * other).p_value == pytest.approx(2 / math.comb(20, 10), rel=1e-9)
    assert compare_rounds(base, 1.01 * other).mark == "~"


def test_mann_whitney_is_used_only_where_it_can_reach_the_threshold():
    for m in range(1, 15):
        for n in range(1, 15):
            attainable = 2 / math.comb(m + n, m)
            assert mann_whitney_can_decide(m, n) == (attainable < P_THRESHOLD), (m, n)
    assert not mann_whitney_can_decide(6, 6) and mann_whitney_can_decide(7, 7)


def test_few_rounds_fall_back_to_99_percent_intervals_and_one_round_to_not_significant():
    base = lognormal_quantiles(5, 1.0, 0.02)
    sig = compare_rounds(base, [2 * t for t in base])  # 5 vs 5: the test cannot reach p < 0.002
    assert sig.test == "interval overlap" and sig.significant
    assert sig.baseline.method == "student-t on log seconds"
    close = compare_rounds(base, [1.01 * t for t in base])
    assert close.test == "interval overlap" and not close.significant and close.mark == "~"
    single = compare_rounds([1.0], [3.0])
    assert single.test == "none" and not single.significant and single.ratio_text() == "~3.00x"
    assert "cannot be significant" in single.describe()


@pytest.mark.parametrize("n", [8, 9, 10, 15, 25, 40])
def test_median_interval_is_the_widest_order_statistic_pair_with_99_percent_coverage(n):
    values = lognormal_quantiles(n, 3.0, 0.1)
    iv = median_interval(values)
    assert iv.method == "order statistics"
    r = sorted(values).index(iv.low) + 1
    assert sorted(values)[n - r] == iv.high
    coverage = 1 - 2 * stats.binom.cdf(r - 1, n, 0.5)
    assert coverage >= 0.99
    assert 1 - 2 * stats.binom.cdf(r, n, 0.5) < 0.99 or r + 1 > n // 2, "r must be the largest"


def test_bad_rounds_are_refused():
    with pytest.raises(ValueError, match="no rounds"):
        compare_rounds([], [1.0])
    with pytest.raises(ValueError, match="positive finite"):
        compare_rounds([1.0, float("nan")], [1.0])


# --------------------------------------------------------------------------- files and the table


def bench_json(path: Path, rounds, *, threads=1, version=1, name="test_volume_speed[paper_batched-swiss-800]",
               machine_extra=None, extra=None, with_data=True) -> Path:
    """A pytest-benchmark JSON file shaped like --benchmark-json's output."""
    info = {"cost_evals": 1000, "example_vectors": 800_000, "flop_count": 800_000 * 8.7e3,
            "peak_flops_per_s": 5e10, "device_name": "cpu", "dtype": "float32", "tf32": False,
            "torch": "2.13.0+cpu", "torch_threads": threads, "scale": "ci", "n_directions": 16}
    info.update(extra or {})
    stats_block = {"min": min(rounds), "max": max(rounds), "median": float(np.median(rounds)),
                   "rounds": len(rounds)}
    if with_data:
        stats_block["data"] = list(rounds)
    machine = {"node": "host", "processor": "x86_64", "python_version": "3.11.7",
               "cpu": {"brand_raw": "AMD EPYC 7B13", "count": 2},
               "volbench_gpu": None, "volbench_gpu_count": 0, "volbench_cuda": None, "volbench_torch": "2.13.0+cpu",
               "volbench_torch_threads": 2, "volbench_tf32_matmul": False,
               "volbench_bf16_reduced_precision_reduction": True}
    machine.update(machine_extra or {})
    data = {"machine_info": machine, "commit_info": {"id": "abc", "dirty": False},
            "benchmarks": [{"group": "g", "name": name, "fullname": f"benchmarks/test_speed.py::{name}",
                            "params": {}, "stats": stats_block, "extra_info": info, "options": {}}],
            "datetime": "2026-01-01T00:00:00+00:00", "version": "5.3.1"}
    if version is not None:
        data["volbench"] = {"benchmark_version": version, "scale": "ci", "device": "cpu", "threads": threads}
    path.write_text(json.dumps(data))
    return path


def table_row(out: str, machine: str) -> str:
    """The comparison row of ``machine`` (not its line in the machines list)."""
    return next(line for line in out.splitlines() if not line.startswith(f"{machine} = ") and (
        line.split()[:1] == [machine] or (line.startswith("test_") and line.split()[1:2] == [machine])))


def run_cli(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_compare_prints_throughput_ratio_mark_and_differing_keys(tmp_path, capsys):
    base = lognormal_quantiles(7, 0.2, 0.03)
    a = bench_json(tmp_path / "a.json", base, threads=1)
    b = bench_json(tmp_path / "b.json", [t / 2 for t in base], threads=2)
    code, out, err = run_cli(["bench", "compare", str(a), str(b)], capsys)
    assert code == 0, err
    row = table_row(out, "B")
    assert row.split()[1] == "7", "rounds"
    assert "0.50x" in row and "faster" in row and "threads 1→2" in row, row
    evals_per_s = 1000 / float(np.median([t / 2 for t in base]))
    assert f"{evals_per_s:.4g}" in row, "cost evaluations per second at the median round"
    assert "% peak" in out and "differs from baseline" in out
    # the same files through `volbench compare`, which recognises pytest-benchmark JSON
    code2, out2, _ = run_cli(["compare", str(a), str(b)], capsys)
    assert code2 == 0 and out2 == out


def test_a_small_difference_is_marked_not_significant(tmp_path, capsys):
    base = lognormal_quantiles(7, 0.2, 0.05)
    a = bench_json(tmp_path / "a.json", base)
    b = bench_json(tmp_path / "b.json", [1.01 * t for t in base])
    code, out, _ = run_cli(["bench", "compare", str(a), str(b), "--markdown"], capsys)
    assert code == 0
    row = next(line for line in out.splitlines() if "| B |" in line)
    assert "~1.01x" in row and "| ~ |" in row, row


@pytest.mark.parametrize("content, fragment", [
    ("not json at all", "not JSON"),
    (json.dumps({"schema_version": 2, "run_id": "r", "started": "t"}), "a volbench results.json"),
    (json.dumps({"benchmarks": "x"}), "not pytest-benchmark JSON"),
    (json.dumps({"benchmarks": [], "machine_info": {}}), "holds no benchmarks"),
])
def test_bad_files_give_one_line_each_and_exit_2(tmp_path, capsys, content, fragment):
    good = bench_json(tmp_path / "good.json", [1.0] * 3)
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    for argv in (["bench", "compare", str(good), str(bad)], ["bench", "compare", str(bad), str(good)]):
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and "Traceback" not in err
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("volbench: error: ") and fragment in lines[0], err


def test_every_bad_file_gets_its_own_line(tmp_path, capsys):
    a = bench_json(tmp_path / "a.json", [1.0] * 7)
    no_rounds = bench_json(tmp_path / "saved.json", [1.0] * 7, with_data=False)
    other_version = bench_json(tmp_path / "v2.json", [1.0] * 7, version=2)
    unversioned = bench_json(tmp_path / "plain.json", [1.0] * 7, version=None)
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\x89PNG\r\n")
    code, out, err = run_cli(["bench", "compare", str(a), str(no_rounds), str(other_version), str(unversioned),
                              str(garbage)], capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 4, err
    assert "saved.json: 1 of 1 benchmarks have no rounds" in lines[0] and "--benchmark-save-data" in lines[0]
    assert "garbage.json" in lines[1]
    assert "v2.json: benchmark version 2 differs" in lines[2]
    assert "plain.json: benchmark version none differs" in lines[3]


def test_compare_refuses_to_mix_benchmark_files_and_runs(tmp_path, capsys):
    a = bench_json(tmp_path / "a.json", [1.0] * 7)
    code, _, err = run_cli(["compare", str(a), str(tmp_path)], capsys)
    assert code == 2 and "not pytest-benchmark JSON" in err and err.count("\n") == 1


def test_a_missing_machine_key_is_unknown_never_guessed(tmp_path):
    path = bench_json(tmp_path / "a.json", [1.0] * 7, extra={"torch_threads": None})
    data = json.loads(path.read_text())
    for key in ("volbench_gpu", "volbench_cuda", "volbench_bf16_reduced_precision_reduction"):
        del data["machine_info"][key]
    del data["machine_info"]["cpu"]
    del data["volbench"]["threads"]
    del data["benchmarks"][0]["extra_info"]["torch_threads"]
    path.write_text(json.dumps(data))
    loaded = records.load_bench_file(path, "A")
    keys = loaded.machine_keys(next(iter(loaded.benchmarks.values())))
    assert keys["gpu"] == keys["cuda"] == keys["bf16"] == keys["cpu"] == keys["threads"] == "unknown"
    # machine_info's volbench_torch_threads (2, read after the session restored the default) is not used
    assert keys["torch"] == "2.13.0+cpu" and keys["device"] == "cpu"


def test_a_gpu_without_cuda_key_compared_with_a_cpu_shows_every_differing_key(tmp_path, capsys):
    a = bench_json(tmp_path / "cpu.json", lognormal_quantiles(7, 2.0, 0.02))
    b = bench_json(tmp_path / "gpu.json", lognormal_quantiles(7, 0.05, 0.02), threads=16,
                   machine_extra={"volbench_gpu": "NVIDIA H200", "volbench_cuda": "12.8",
                                  "volbench_torch": "2.13.0+cu128", "cpu": {"brand_raw": "Intel Xeon"}},
                   extra={"device_name": "NVIDIA H200", "torch": "2.13.0+cu128"})
    code, out, _ = run_cli(["bench", "compare", str(a), str(b), "--env-diff"], capsys)
    assert code == 0
    assert ("differs from A in: cpu AMD EPYC 7B13→Intel Xeon; gpu none→NVIDIA H200; "
            "torch 2.13.0+cpu→2.13.0+cu128; cuda none→12.8; threads 1→16") in out
    assert "device cpu→NVIDIA H200" in out
    assert "machine_info.volbench_gpu: none → NVIDIA H200" in out


def test_a_different_workload_is_not_compared(tmp_path, capsys):
    a = bench_json(tmp_path / "a.json", [1.0] * 7)
    b = bench_json(tmp_path / "b.json", [0.5] * 7, extra={"n_directions": 500, "scale": "paper"})
    code, out, _ = run_cli(["bench", "compare", str(a), str(b)], capsys)
    assert code == 0
    row = table_row(out, "B")
    assert " x " in row and "different workload, not compared" in row and "n_directions 16→500" in row


def test_baseline_choice_and_report_files(tmp_path, capsys):
    base = lognormal_quantiles(7, 0.2, 0.03)
    a = bench_json(tmp_path / "a.json", base)
    b = bench_json(tmp_path / "b.json", [t / 4 for t in base], threads=2)
    out_dir = tmp_path / "out"
    code, out, err = run_cli(["bench", "compare", str(a), str(b), "--baseline", "B", "--out", str(out_dir)], capsys)
    assert code == 0, err
    assert "B = " in out and "(baseline)" in out.split("B = ")[1].splitlines()[0]
    row = table_row(out, "A")
    assert "4.00x" in row and "slower" in row
    html = (out_dir / "bench-compare.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == 1 and "<figcaption>" in html
    assert (out_dir / "bench-compare.png").read_bytes()[:4] == b"\x89PNG"
    assert "![Benchmark throughput across machines](bench-compare.png)" in (out_dir / "bench-compare.md").read_text()
    code, _, err = run_cli(["bench", "compare", str(a), str(b), "--baseline", "Z"], capsys)
    assert code == 2 and "--baseline 'Z' is none of the files" in err


BENCH_FILE = '''
import torch

def work():
    a = torch.ones(256, 256)
    for _ in range(4):
        a = a @ a / 256.0
    return a

def test_matmul(benchmark):
    torch.manual_seed(0)
    benchmark.extra_info.update(torch_threads=torch.get_num_threads(), cost_evals=4, device_name="cpu")
    benchmark.pedantic(work, rounds=7, iterations=1)
'''


def test_real_pytest_benchmark_files_with_different_thread_counts(tmp_path, capsys):
    """Two files written by pytest-benchmark itself (--benchmark-json keeps stats.data), run with 1
    and 2 torch threads: the comparison reads the real format, marks the thread difference and
    gives each ratio a significance mark."""
    (tmp_path / "test_tiny_bench.py").write_text(textwrap.dedent(BENCH_FILE))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))
           and k != "PYTEST_ADDOPTS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    paths = []
    for threads in (1, 2):
        path = tmp_path / f"t{threads}.json"
        env["OMP_NUM_THREADS"] = str(threads)
        proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
                               "-q", "test_tiny_bench.py", f"--benchmark-json={path}"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        paths.append(path)
    assert "data" in json.loads(paths[0].read_text())["benchmarks"][0]["stats"], "--benchmark-json keeps rounds"
    code, out, err = run_cli(["compare", str(paths[0]), str(paths[1])], capsys)
    assert code == 0, err
    row = table_row(out, "B")
    assert "threads 1→2" in row, row
    assert any(mark in row.split() for mark in ("faster", "slower", "~")), row
    assert "Mann-Whitney U p =" in row, "7 vs 7 rounds: the test decides"
