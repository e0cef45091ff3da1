"""A sweep killed with SIGKILL mid-way resumes from the store and the measurement cache.

A child process trains and measures six tiny swiss-roll minima through ``volbench.lab`` and
prints one line per finished minimum; the parent SIGKILLs it after the second line (so it is
killed while training or measuring a later one). The rerun must read back every finished entry
(no corrupt-entry warning, no leftover temporary folder counts as an entry) and train only the
rest, with the cached measurements returned bit-for-bit. (~25 s: two child processes, each
paying torch's import and first-step start-up.)
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[2]
N_MINIMA = 4
KILL_AFTER = 2

SWEEP = r"""
import json, sys
from volbench.lab import MinimumSpec, measure, train_minimum
from volbench.store.minima import MinimaStore
from volbench.lab.train import TrainConfig
store = MinimaStore(sys.argv[1])
for seed in range(int(sys.argv[2])):
    spec = MinimumSpec("swiss_roll", "swiss_mlp", train_size=40, seed=seed, base=20,
                       train=TrainConfig(epochs=20, history_every=20, loss="bce"))
    m = train_minimum(spec, store)
    r = measure(m, landscape_size=20, estimator="reference", n_directions=4, threshold=0.7, store=store)
    print(json.dumps({"seed": seed, "trained": m.trained_now, "log_volume": r.log_volume}), flush=True)
"""


def _run_sweep(store: Path) -> list[dict]:
    out = subprocess.run([sys.executable, "-c", SWEEP, str(store), str(N_MINIMA)], cwd=REPO,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONWARNINGS": "error::UserWarning"})
    assert out.returncode == 0, f"sweep failed (rc {out.returncode}):\n{out.stderr[-3000:]}"
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_sigkill_mid_sweep_then_resume(tmp_path):
    store = tmp_path / "store"
    child = subprocess.Popen([sys.executable, "-c", SWEEP, str(store), str(N_MINIMA)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = []
    try:
        deadline = time.monotonic() + 240
        while len(done) < KILL_AFTER and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            done.append(json.loads(line))
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL, f"the sweep ended on its own (rc {child.returncode}) before the kill"
    assert len(done) == KILL_AFTER, f"expected {KILL_AFTER} finished minima before the kill, got {done}"
    assert all(d["trained"] for d in done), "the first run must train everything it finished"

    # Whatever the kill left behind, every complete-looking entry verifies (no warning).
    from volbench.store.minima import CorruptEntryWarning, MinimaStore

    s = MinimaStore(store)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptEntryWarning)
        entries = [s.get(k) for k in s.keys()]
    assert all(e is not None for e in entries), "a complete-looking entry failed verification after SIGKILL"
    assert KILL_AFTER <= len(entries) <= KILL_AFTER + 1, f"{len(entries)} entries after killing at minimum {KILL_AFTER}"
    for f in (store / "measurements").glob("*.json"):
        json.loads(f.read_text())  # every cached measurement parses (atomic writes)

    resumed = _run_sweep(store)
    assert [r["seed"] for r in resumed] == list(range(N_MINIMA)), f"rerun did not finish: {resumed}"
    trained = [r["seed"] for r in resumed if r["trained"]]
    assert not set(trained) & {d["seed"] for d in done}, f"the rerun retrained finished minima {trained}"
    assert len(trained) == N_MINIMA - len(entries), (
        f"the rerun trained {trained}; expected exactly the {N_MINIMA - len(entries)} minima missing from the store")
    for d in done:  # cached measurements come back bit-for-bit
        assert resumed[d["seed"]]["log_volume"] == d["log_volume"], f"seed {d['seed']}: cached log-volume changed"
    assert not list(store.glob(".tmp-*")), "temporary entry folders remain after a clean rerun"
    assert len(list((store / "measurements").glob("*.json"))) == N_MINIMA, "one cached measurement per minimum"
    assert not list((store / "measurements").glob(".*.tmp")), "temporary measurement files remain"
