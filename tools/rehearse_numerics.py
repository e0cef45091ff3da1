"""Rehearse the rounding-sensitive verdicts under other thread counts and BLAS / ATen kernels.

Another machine (an Intel Xeon's MKL with one thread per xdist worker, AVX2 instead of AVX-512, a
GPU) sums floats in another order. Every verdict and every id must survive that, so this script
reruns the cases whose decisions sit closest to rounding (E3, E4, F12, F13, S4) and the numerics
unit tests once per setting, each in a fresh process with a fresh store (minima are retrained
under the setting, so its rounding reaches the trained network too), and compares every verdict
*strictly* with the checked-in baseline (``VOLBENCH_BASELINE_MATCH=strict``: any moved verdict
fails, whatever the machine class).

Settings: 1 and 2 threads; ``MKL_CBWR`` = COMPATIBLE, AVX2, AVX512 (MKL's conditional numerical
reproducibility branches: other GEMM kernels on this CPU); ``ATEN_CPU_CAPABILITY`` = default,
avx2 (ATen's own vectorised kernels); ``MKL_ENABLE_INSTRUCTIONS=AVX512`` (on an AMD CPU, may reach
MKL's Intel code path). Each row also records a fingerprint of a float32 GEMM (784-long dot
products, the MNIST MLP's first layer), so the table shows which settings really changed the
arithmetic.

    python tools/rehearse_numerics.py                  # every setting, table on stdout + reports/numerics/
    python tools/rehearse_numerics.py --only threads-1 --only mkl-cbwr-avx2
    tox -e numerics                                    # the same in a fresh environment

Exit status 0 when every setting passed. About 3-6 minutes per setting on two cores.
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

REPO = Path(__file__).resolve().parents[1]

#: The cases whose verdicts sit closest to rounding (issue R1), and the numerics unit tests.
CASES = "E3 or E4 or F12 or F13 or S4"
UNIT_TESTS = ("tests/test_rounding.py", "tests/test_ids.py", "tests/faults/test_fault_determinism.py")

SETTINGS: dict[str, dict[str, str]] = {
    "threads-1": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    "threads-2": {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
    "mkl-cbwr-compatible": {"OMP_NUM_THREADS": "1", "MKL_CBWR": "COMPATIBLE"},
    "mkl-cbwr-avx2": {"OMP_NUM_THREADS": "1", "MKL_CBWR": "AVX2"},
    "mkl-cbwr-avx512": {"OMP_NUM_THREADS": "1", "MKL_CBWR": "AVX512"},
    "aten-default": {"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default"},
    "aten-avx2": {"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "avx2"},
    "mkl-instructions-avx512": {"OMP_NUM_THREADS": "1", "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
}

FINGERPRINT = r"""
import hashlib, json, torch
g = torch.Generator().manual_seed(0)
a, b = torch.randn(256, 784, generator=g), torch.randn(784, 512, generator=g)
c = a @ b
print(json.dumps({"gemm": hashlib.sha256(c.numpy().tobytes()).hexdigest()[:12],
                  "threads": torch.get_num_threads(), "aten": torch.backends.cpu.get_cpu_capability()}))
"""


def run(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr, time.perf_counter() - t0
    except subprocess.TimeoutExpired as exc:
        return 124, f"timed out after {timeout:.0f} s\n{exc.stdout or ''}", time.perf_counter() - t0


def rehearse(name: str, extra: dict[str, str], out: Path, timeout: float) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "OMP_NUM_THREADS",
                        "MKL_NUM_THREADS", "PYTEST_ADDOPTS", "VOLBENCH_BASELINE")}
    env.update(extra)
    env["VOLBENCH_BASELINE_MATCH"] = "strict"
    env["VOLBENCH_PROGRESS"] = "off"
    row: dict = {"setting": name, "env": extra}
    rc, text, _ = run([sys.executable, "-c", FINGERPRINT], env, 120)
    row["fingerprint"] = json.loads(text.strip().splitlines()[-1]) if rc == 0 else {"error": text[-300:]}
    with tempfile.TemporaryDirectory(prefix=f"volbench-{name}-") as store:
        env["VOLBENCH_STORE"] = store
        report_dir = out / name
        rc_cases, text_cases, s_cases = run(
            [sys.executable, "-m", "pytest", "cases", "-k", CASES, "-p", "no:xdist", "-q",
             f"--volbench-report-dir={report_dir}"], env, timeout)
        rc_unit, text_unit, s_unit = run([sys.executable, "-m", "pytest", *UNIT_TESTS, "-p", "no:xdist", "-q"],
                                         env, timeout)
    (out / f"{name}.log").write_text(text_cases + "\n\n---- unit tests\n" + text_unit)
    row.update(cases_rc=rc_cases, cases_seconds=round(s_cases), unit_rc=rc_unit, unit_seconds=round(s_unit),
               cases_tail=text_cases.strip().splitlines()[-1] if text_cases.strip() else "",
               unit_tail=text_unit.strip().splitlines()[-1] if text_unit.strip() else "")
    moved = [line.strip() for line in text_cases.splitlines() if "->" in line and "[" in line and "]" in line
             and ("statement (" in line or " verdict:" in line)]
    row["moved"] = moved
    return row


def table(rows: list[dict]) -> str:
    lines = ["| setting | GEMM fingerprint | threads | ATen | cases (E3 E4 F12 F13 S4) | numerics unit tests |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        fp = r["fingerprint"]
        lines.append(f"| {r['setting']} | {fp.get('gemm', '?')} | {fp.get('threads', '?')} | {fp.get('aten', '?')} | "
                     f"{'ok' if r['cases_rc'] == 0 else 'FAILED'} ({r['cases_tail']}, {r['cases_seconds']} s) | "
                     f"{'ok' if r['unit_rc'] == 0 else 'FAILED'} ({r['unit_tail']}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(SETTINGS), help="run only these settings")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "numerics", help="logs and reports go here")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per pytest run")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.only or SETTINGS:
        print(f"[numerics] {name}: {SETTINGS[name]}", flush=True)
        rows.append(rehearse(name, SETTINGS[name], args.out, args.timeout))
        r = rows[-1]
        print(f"[numerics] {name}: cases rc={r['cases_rc']} ({r['cases_seconds']} s), unit rc={r['unit_rc']}; "
              f"gemm {r['fingerprint'].get('gemm')}", flush=True)
        for line in r["moved"]:
            print(f"    moved: {line}", flush=True)
    text = table(rows)
    print(text)
    (args.out / "rehearsal.md").write_text(text + "\n")
    (args.out / "rehearsal.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if all(r["cases_rc"] == 0 and r["unit_rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
