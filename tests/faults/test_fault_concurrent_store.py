"""Several processes asking the store for the same entry: one trains, all read the same bytes."""
from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import pytest
import torch

from volbench.store.minima import MinimaStore

pytestmark = pytest.mark.faults

N_PROCS = 4
CONFIG = {"model": "toy", "seed": 7}


def _worker(root: str, marker_dir: str, barrier, queue) -> None:
    store = MinimaStore(root)

    def train_fn():
        # Leave a trace per training call; the sleep widens the window for a second trainer.
        Path(marker_dir, f"trained-{os.getpid()}").touch()
        import time

        time.sleep(0.5)
        g = torch.Generator().manual_seed(123)
        return {"params": torch.randn(1000, generator=g)}, {"pid": os.getpid()}

    barrier.wait()  # all start together
    entry = store.get_or_train(CONFIG, train_fn)
    queue.put((os.getpid(), entry.trained, entry.params.numpy().tobytes(), entry.metadata["pid"]))


def test_concurrent_get_or_train_trains_once(tmp_path):
    ctx = mp.get_context("fork")  # the workers only need torch and the store; fork starts fast
    barrier, queue = ctx.Barrier(N_PROCS), ctx.Queue()
    markers = tmp_path / "markers"
    markers.mkdir()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "store"), str(markers), barrier, queue))
             for _ in range(N_PROCS)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert all(p.exitcode == 0 for p in procs), f"worker exit codes {[p.exitcode for p in procs]}"
    trainers = sorted(markers.iterdir())
    assert len(trainers) == 1, f"exactly one process may train a key; {len(trainers)} did: {trainers}"
    assert sum(r[1] for r in results) == 1, "exactly one get_or_train reports trained=True"
    assert len({r[2] for r in results}) == 1, "every process must read byte-identical params"
    assert len({r[3] for r in results}) == 1, "every process sees the trainer's metadata"
    store = MinimaStore(tmp_path / "store")
    assert len(store.keys()) == 1 and not list((tmp_path / "store").glob(".tmp-*")), "one entry, no temp folders"


def _putter(root: str, value: float, barrier) -> None:
    store = MinimaStore(root)
    key = store.key(CONFIG)
    barrier.wait()
    for _ in range(5):
        store.put(key, {"params": torch.full((64,), value)}, {"value": value}, overwrite=True)
        entry = store.get(key)
        assert entry is not None and float(entry.params[0]) == entry.metadata["value"], "torn entry read"


def test_concurrent_overwrites_never_tear(tmp_path):
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(N_PROCS)
    procs = [ctx.Process(target=_putter, args=(str(tmp_path), float(i), barrier)) for i in range(N_PROCS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs), f"a writer saw a torn entry or failed: {[p.exitcode for p in procs]}"
    store = MinimaStore(tmp_path)
    entry = store.get(store.key(CONFIG))
    assert entry is not None and torch.all(entry.params == entry.metadata["value"]), "final entry is one writer's whole"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".old-"))]
    assert not leftovers, f"temporary folders left behind: {leftovers}"
