"""benchmarks/gpu_check.sh, the check for the first lent GPU, checked statically (CI has no GPU):
it exists and is executable, stops on errors, bounds every step by a timeout within its 8-minute
budget, refuses to run without CUDA, and nothing CI runs calls it."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def _text() -> str:
    return SCRIPT.read_text(encoding="utf-8")


def test_script_exists_is_executable_bash_and_stops_on_errors():
    assert SCRIPT.is_file()
    assert os.access(SCRIPT, os.X_OK), "chmod +x benchmarks/gpu_check.sh"
    text = _text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert re.search(r"^set -euo pipefail$", text, re.M)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_every_step_has_a_timeout_and_the_limits_fit_the_budget():
    text = _text()
    assert 'timeout -s INT -k "$grace" "$limit" "$@"' in text, "the step runner bounds each command"
    assert "budget=${GPU_CHECK_BUDGET:-480}" in text, "8 minutes in all"
    # Every pytest and volbench command runs through `step NAME LIMIT` (or the `bench` array it uses).
    code = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    for line in code:
        if re.search(r"-m (pytest|volbench\.cli)\b", line) and not line.lstrip().startswith("bench=("):
            assert re.search(r"\bstep [a-z0-9-]+ \d+ ", line), f"not run through step: {line}"
    limits = [int(n) for n in re.findall(r"\bstep [a-z0-9-]+ (\d+) ", "\n".join(code))]
    assert len(limits) >= 8 and sum(limits) <= 480, f"per-step limits {limits} exceed the 480 s budget"


def test_nothing_ci_runs_calls_it():
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_commands", REPO / ".ci" / "readme_commands.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    commands = module.commands((REPO / "README.md").read_text(encoding="utf-8"))
    for where, text in [("README command " + k, v) for k, v in commands.items()] + [
            (".ci/run", (REPO / ".ci" / "run").read_text(encoding="utf-8")),
            ("tox.ini", (REPO / "tox.ini").read_text(encoding="utf-8"))]:
        assert "gpu_check" not in text, f"{where} must not run the GPU check (CI has no GPU)"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_refuses_without_cuda(tmp_path):
    stub = tmp_path / "python"  # answers the script's torch.cuda.is_available() probe
    stub.write_text("#!/bin/sh\necho False\n")
    stub.chmod(0o755)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "GPU_CHECK_ALLOW_CPU"}
    res = subprocess.run([str(SCRIPT), str(out)], env={**env, "PYTHON": str(stub)},
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 2, res.stderr
    assert "no CUDA device" in res.stderr and "--dry-run" in res.stderr
    assert not out.exists(), "a refused run writes nothing"
