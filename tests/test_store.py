"""volbench.store.minima: keys, round trips, corrupt entries, and a real multi-process race."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import Timeout
from hypothesis import given
from hypothesis import strategies as st

from volbench.store import minima as store_mod
from volbench.store.minima import CorruptEntryWarning, MinimaStore, config_key, fingerprint

CONFIG = {
    "data": {"name": "mnist", "variant": "mnist-10k", "subset": {"base": 60, "extra": 0}, "seed": 10},
    "model": {"name": "mnist_mlp", "seed": 0, "options": {}},
    "train": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01, "epochs": 500, "betas": [0.9, 0.999]},
}


def tensors_for(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "params": torch.randn(1000, generator=g),
        "adam.exp_avg_sq": torch.rand(1000, generator=g, dtype=torch.float64),
        "checkpoint.000200": torch.randn(1000, generator=g),
        "indices": torch.randperm(50, generator=g),
    }


def test_key_is_stable_and_canonical():
    k = config_key(CONFIG)
    assert len(k) == 64 and int(k, 16) >= 0, "a key is 64 hex digits"
    shuffled = {key: CONFIG[key] for key in reversed(list(CONFIG))}
    assert config_key(shuffled) == k, "key order must not matter"
    as_tuple = json.loads(json.dumps(CONFIG))
    as_tuple["train"]["betas"] = (0.9, 0.999)
    assert config_key(as_tuple) == k, "tuples and lists are the same JSON"
    assert MinimaStore.key(CONFIG) == k, "MinimaStore.key is config_key"
    # A fixed config's key is pinned, so an accidental change of the canonical form shows up.
    assert config_key({"a": 1}) == config_key({"a": 1}) != config_key({"a": 1.0}), \
        "1 and 1.0 are different JSON numbers and give different keys"


def _leaves(d, path=()):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, path + (k,))
        else:
            yield path + (k,), v


@given(which=st.integers(0, 100))
def test_any_change_changes_the_key(which):
    leaves = list(_leaves(CONFIG))
    path, value = leaves[which % len(leaves)]
    changed = json.loads(json.dumps(CONFIG))
    node = changed
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = ({"x": 1} if isinstance(value, dict) else
                      value + "x" if isinstance(value, str) else
                      [*value, 1] if isinstance(value, list) else value * 2 + 1)
    assert config_key(changed) != config_key(CONFIG), f"changing {'/'.join(path)} must change the key"


def test_recipe_version_is_part_of_the_key(monkeypatch):
    k = config_key(CONFIG)
    monkeypatch.setattr(store_mod, "RECIPE_VERSION", store_mod.RECIPE_VERSION + 1)
    assert config_key(CONFIG) != k, "bumping RECIPE_VERSION must invalidate every key"


def test_key_refuses_ambiguous_configs():
    with pytest.raises(TypeError, match="fingerprint"):
        config_key({"indices": torch.arange(3)})
    with pytest.raises(ValueError, match="non-finite"):
        config_key({"lr": float("nan")})
    with pytest.raises(TypeError, match="non-str key"):
        config_key({"sizes": {1: 2}})
    with pytest.raises(ValueError, match="non-empty"):
        config_key({})
    assert fingerprint(torch.arange(5)) == fingerprint(np.arange(5, dtype=np.int64)), "same bytes, same fingerprint"
    assert fingerprint(torch.arange(5)) != fingerprint(torch.arange(5).int()), "dtype is part of the fingerprint"
    assert fingerprint(torch.arange(6)) != fingerprint(torch.arange(6).reshape(2, 3)), "shape is part of it"


def test_put_get_round_trip(tmp_path):
    s = MinimaStore(tmp_path)
    key = s.key(CONFIG)
    assert s.get(key) is None, "empty store: a miss"
    t = tensors_for(0)
    meta = {"train_loss": 0.01, "test_accuracy": 0.97, "n_params": 1000, "seconds": 1.5}
    put = s.put(key, t, meta, config=CONFIG)
    got = s.get(key)
    assert got is not None and got.metadata == meta, "metadata round-trips exactly"
    assert set(got.tensors) == set(t), "every named tensor is stored"
    for name in t:
        assert got.tensors[name].dtype == t[name].dtype and torch.equal(got.tensors[name], t[name]), \
            f"{name}: bit-identical after the round trip"
    assert torch.equal(got.params, t["params"]) and torch.equal(put.params, t["params"]), "params property"
    info = got.info
    assert info["config"] == json.loads(json.dumps(CONFIG)), "config recorded in meta.json"
    assert info["versions"]["torch"] == torch.__version__ and "volbench" in info["versions"], "versions recorded"
    assert len(info["weights_sha256"]) == 64 and info["created"], "checksum and time recorded"
    assert sorted(p.name for p in (tmp_path / key).iterdir()) == ["meta.json", "weights.safetensors"], "layout"
    assert not list(tmp_path.glob(".tmp-*")), "no temporary folder left behind"
    assert s.keys() == [key], "keys() lists the entry"
    assert not got.trained, "a plain get is never 'trained'"


def test_put_keeps_an_existing_entry_unless_overwrite(tmp_path):
    s = MinimaStore(tmp_path)
    key = s.key(CONFIG)
    s.put(key, tensors_for(0), {"v": 1})
    kept = s.put(key, tensors_for(1), {"v": 2})
    assert kept.metadata == {"v": 1} and torch.equal(s.get(key).params, tensors_for(0)["params"]), \
        "a second put without overwrite keeps the first entry"
    s.put(key, tensors_for(1), {"v": 2}, overwrite=True)
    assert s.get(key).metadata == {"v": 2} and torch.equal(s.get(key).params, tensors_for(1)["params"]), \
        "overwrite=True replaces the entry"
    assert not list(tmp_path.glob(".old-*")) and not list(tmp_path.glob(".tmp-*")), "no leftovers"


def test_get_or_train_trains_only_on_a_miss(tmp_path):
    s = MinimaStore(tmp_path)
    calls = []

    def train_fn():
        calls.append(1)
        return tensors_for(3), {"train_loss": 0.02}

    first = s.get_or_train(CONFIG, train_fn)
    second = s.get_or_train(CONFIG, train_fn)
    assert len(calls) == 1, "train_fn runs once; the second call is a hit"
    assert first.trained and not second.trained, "trained flag tells miss from hit"
    assert torch.equal(first.params, second.params), "the hit returns what was trained"
    other = s.get_or_train({**CONFIG, "model": {"name": "mnist_mlp", "seed": 1, "options": {}}}, train_fn)
    assert other.trained and len(calls) == 2, "a different config is a different entry"
    with pytest.raises(TypeError, match=r"\(tensors"):
        s.get_or_train({"x": 1}, lambda: tensors_for(0))
    with pytest.raises(TypeError, match="JSON"):
        s.get_or_train({"x": 2}, lambda: (tensors_for(0), {"loss": float("nan")}))
    assert s.get(s.key({"x": 1})) is None, "a failed train_fn stores nothing"


def _corrupt_weights(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte in the tensor payload
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip-byte", "truncate-weights", "delete-weights", "bad-meta", "empty-meta"])
def test_corrupt_entry_is_a_miss_moved_aside(tmp_path, damage):
    s = MinimaStore(tmp_path)
    key = s.key(CONFIG)
    s.put(key, tensors_for(0), {"train_loss": 0.01})
    folder = tmp_path / key
    weights, meta = folder / "weights.safetensors", folder / "meta.json"
    if damage == "flip-byte":
        _corrupt_weights(weights)
    elif damage == "truncate-weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "delete-weights":
        weights.unlink()
    elif damage == "bad-meta":
        meta.write_text(meta.read_text()[:-20])
    else:
        meta.write_text("")
    with pytest.warns(CorruptEntryWarning, match=key[:12]):
        assert s.get(key) is None, f"{damage}: a corrupt entry must read as a miss"
    assert not folder.exists(), "the corrupt entry is moved out of the way"
    aside = list(tmp_path.glob(f"{key}.corrupt-*"))
    assert len(aside) == 1 and aside[0].is_dir(), "kept aside as <key>.corrupt-<time> for inspection"
    again = s.get_or_train(CONFIG, lambda: (tensors_for(1), {"train_loss": 0.5}))
    assert again.trained and torch.equal(s.get(key).params, tensors_for(1)["params"]), "retrained after the miss"


def test_leftover_temp_folder_is_ignored_and_cleaned(tmp_path):
    s = MinimaStore(tmp_path)
    key = s.key(CONFIG)
    stale = tmp_path / f".tmp-{key}-dead"
    stale.mkdir()
    (stale / "weights.safetensors").write_bytes(b"half")
    assert s.get(key) is None and s.keys() == [], "a half-written temp folder is not an entry"
    s.put(key, tensors_for(0), {})
    assert not stale.exists(), "the writer removes temp folders left by a dead writer of the same key"


def test_bad_arguments(tmp_path):
    s = MinimaStore(tmp_path)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        s.get("../etc")
    key = s.key(CONFIG)
    with pytest.raises(TypeError, match="torch.Tensor"):
        s.put(key, {"params": [1.0, 2.0]}, {})
    with pytest.raises(TypeError, match="non-empty dict"):
        s.put(key, {}, {})
    with pytest.raises(TypeError, match="metadata must be a dict"):
        s.put(key, tensors_for(0), [])
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        MinimaStore(tmp_path / "file")


def test_default_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VOLBENCH_STORE", str(tmp_path / "env-store"))
    assert MinimaStore().root == tmp_path / "env-store", "$VOLBENCH_STORE sets the default root"
    monkeypatch.delenv("VOLBENCH_STORE")
    assert MinimaStore().root == Path.home() / ".cache" / "volbench" / "minima", "fallback under ~/.cache"


def test_views_share_nothing_with_the_caller(tmp_path):
    s = MinimaStore(tmp_path)
    t = tensors_for(0)
    entry = s.put(s.key(CONFIG), t, {})
    t["params"].zero_()
    assert not torch.equal(entry.params, t["params"]), "put copies the tensors it is given"
    assert torch.count_nonzero(s.get(entry.key).params) > 0, "the stored entry is unaffected"


# --------------------------------------------------------------------------- multi-process race
def _race_worker(root: str, marker: str, barrier, results) -> None:
    """Child process: all children start get_or_train on one key at once."""
    s = MinimaStore(root)

    def train_fn():
        with open(marker, "a") as f:  # O_APPEND: one line per training run, from any process
            f.write(f"{os.getpid()}\n")
        time.sleep(1.0)  # hold the lock long enough that the others must wait on it
        return tensors_for(42), {"trained_by": os.getpid()}

    barrier.wait()
    entry = s.get_or_train(CONFIG, train_fn)
    results.put((os.getpid(), entry.trained, fingerprint(entry.params),
                 fingerprint(entry.tensors["adam.exp_avg_sq"]), entry.metadata["trained_by"]))


@pytest.mark.faults
@pytest.mark.slow
def test_processes_racing_on_one_key_train_once(tmp_path):
    n = 3
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    marker = tmp_path / "trained.txt"
    procs = [ctx.Process(target=_race_worker, args=(str(tmp_path / "store"), str(marker), barrier, results))
             for _ in range(n)]
    for p in procs:
        p.start()
    out = [results.get(timeout=120) for _ in range(n)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0, f"worker {p.pid} exited with {p.exitcode}"
    trainers = marker.read_text().split()
    assert len(trainers) == 1, f"exactly one process may train the key, got {len(trainers)}"
    assert sum(trained for _, trained, *_ in out) == 1, "exactly one get_or_train reports trained=True"
    expected = (fingerprint(tensors_for(42)["params"]), fingerprint(tensors_for(42)["adam.exp_avg_sq"]))
    assert all((fp, fq) == expected for _, _, fp, fq, _ in out), "every process reads the same tensors"
    assert {by for *_, by in out} == {int(trainers[0])}, "every process reads the trainer's entry"
    assert not list((tmp_path / "store").glob(".tmp-*")), "no temporary folders left"


def _hold_lock_worker(root: str, marker: str) -> None:
    """Child process: starts training and never finishes (killed by the test)."""

    def train_fn():
        Path(marker).write_text("started")
        time.sleep(600)
        raise AssertionError("should have been killed")

    MinimaStore(root).get_or_train(CONFIG, train_fn)


def _wait_until_training(proc, marker, timeout: float = 120.0) -> None:
    """Wait until the spawned ``_hold_lock_worker`` holds the key's lock (it writes ``marker``)."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert time.monotonic() < deadline, f"worker did not start training within {timeout:.0f} s"
        assert proc.is_alive(), f"worker died early with exit code {proc.exitcode}"
        time.sleep(0.05)


@pytest.mark.faults
@pytest.mark.slow
def test_killed_trainer_does_not_block_the_others(tmp_path):
    root, marker = tmp_path / "store", tmp_path / "started"
    proc = mp.get_context("spawn").Process(target=_hold_lock_worker, args=(str(root), str(marker)))
    proc.start()
    try:
        _wait_until_training(proc, marker)
        with pytest.raises(Timeout):  # the trainer holds the key's lock
            MinimaStore(root, lock_timeout=0.2).get_or_train(CONFIG, lambda: (tensors_for(0), {}))
    finally:
        proc.kill()
        proc.join(timeout=30)
    entry = MinimaStore(root, lock_timeout=30).get_or_train(CONFIG, lambda: (tensors_for(1), {"by": "parent"}))
    assert entry.trained and entry.metadata == {"by": "parent"}, \
        "the OS releases a dead trainer's lock, so the next process trains instead of waiting forever"


@pytest.mark.slow
def test_status_says_missing_busy_stored_without_waiting(tmp_path):
    """``status`` answers at once: "busy" while another process trains the key (so a prefetch
    moves on to the next minimum), "stored" once it is written, "missing" before anyone starts."""
    root, marker = tmp_path / "store", tmp_path / "started"
    assert MinimaStore(root).status(CONFIG) == "missing"
    proc = mp.get_context("spawn").Process(target=_hold_lock_worker, args=(str(root), str(marker)))
    proc.start()
    try:
        _wait_until_training(proc, marker)
        t0 = time.monotonic()
        assert MinimaStore(root).status(CONFIG) == "busy"
        assert time.monotonic() - t0 < 5, "status must not wait for the lock"
    finally:
        proc.kill()
        proc.join(timeout=30)
    store = MinimaStore(root)
    store.get_or_train(CONFIG, lambda: (tensors_for(1), {}))
    assert store.status(CONFIG) == "stored"
