"""volbench.store.inspect and `volbench cache list | du | prune`: what is current, what is stale, and
pruning that never deletes an entry whose lock another process holds."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from volbench.cli import main
from volbench.lab import MinimumSpec, measure, train_minimum
from volbench.lab.train import TrainConfig
from volbench.store import inspect as vcache
from volbench.store.minima import MinimaStore
from volbench.store.provenance import training_provenance


def _spec(seed=0):
    return MinimumSpec("swiss_roll", "swiss_mlp", train_size=40, seed=seed, base=20,
                       train=TrainConfig(epochs=20, loss="bce"))


@pytest.fixture
def filled(tmp_path):
    """A store with one current minimum and its measurement, one stale minimum (older code) and
    a minimum without provenance (an older volbench)."""
    store = MinimaStore(tmp_path / "store")
    m = train_minimum(_spec(), store)
    meas = measure(m, 20, estimator="reference", n_directions=4, threshold=1.0, store=store)
    stale_config = {**_spec(1).config()}
    stale_config["code"] = {**stale_config["code"], "digest": "0" * 64}
    store.get_or_train(stale_config, lambda: ({"params": torch.zeros(3)}, {}))
    store.get_or_train({"what": "legacy"}, lambda: ({"params": torch.zeros(2)}, {}))
    return store, m, meas


def test_entries_say_current_and_why_stale(filled):
    store, m, _ = filled
    found = vcache.entries(store.root)
    kinds = sorted((e.kind, e.current) for e in found)
    assert kinds == [("measurement", True), ("minimum", False), ("minimum", False), ("minimum", True)]
    current = next(e for e in found if e.kind == "minimum" and e.current)
    assert current.key == m.key and "swiss_mlp D=40" in current.label and current.bytes > 0
    whys = sorted(e.why for e in found if not e.current)
    assert any(w.startswith("code changed") for w in whys) and any("older volbench" in w for w in whys)
    rows = {r["kind"]: r for r in vcache.summarise(found)}
    assert rows["minimum"]["entries"] == 3 and rows["minimum"]["stale"] == 2 and rows["measurement"]["current"] == 1


def test_prune_stale_keeps_current_and_reports_freed_bytes(filled):
    store, m, meas = filled
    before = {e.path for e in vcache.entries(store.root)}
    dry = vcache.prune(store.root, stale=True, dry_run=True)
    assert len(dry.deleted) == 2 and {e.path for e in vcache.entries(store.root)} == before, "dry run deletes nothing"
    report = vcache.prune(store.root, stale=True)
    assert len(report.deleted) == 2 and not report.locked and report.freed_bytes > 0
    left = vcache.entries(store.root)
    assert all(e.current for e in left) and len(left) == 2
    # The current minimum and its measurement are still served.
    assert store.get(m.key) is not None
    again = measure(m, 20, estimator="reference", n_directions=4, threshold=1.0, store=store)
    assert again.log_terms == meas.log_terms


def test_measurement_of_a_deleted_minimum_is_stale(filled):
    store, m, _ = filled
    import shutil

    shutil.rmtree(store.path(m.key))
    meas = next(e for e in vcache.entries(store.root) if e.kind == "measurement")
    assert not meas.current and "not in the store" in meas.why


def test_prune_by_age(filled):
    store, _, _ = filled
    assert vcache.prune(store.root, older_than_days=1).deleted == (), "nothing is a day old"
    old = time.time() - 3 * 86_400
    for e in vcache.entries(store.root):
        if e.kind == "measurement":
            os.utime(e.path, (old, old))
    report = vcache.prune(store.root, older_than_days=2)
    assert [e.kind for e in report.deleted] == ["measurement"]
    with pytest.raises(ValueError, match="say what to prune"):
        vcache.prune(store.root)
    with pytest.raises(ValueError, match="days >= 0"):
        vcache.prune(store.root, older_than_days=-1)


_HOLD = textwrap.dedent('''
    import sys, time
    from filelock import FileLock
    lock = FileLock(sys.argv[1])
    lock.acquire()
    print("held", flush=True)
    time.sleep(120)
''')


def test_prune_never_deletes_an_entry_another_process_has_locked(filled, tmp_path):
    store, _, _ = filled
    stale = [e for e in vcache.entries(store.root) if not e.current]
    victim = stale[0]
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(store.root / ".locks" / f"{victim.key}.lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        report = vcache.prune(store.root, stale=True)
        assert [e.key for e in report.locked] == [victim.key], "the locked entry is reported as kept"
        assert victim.path.exists(), "the locked entry is not deleted"
        assert {e.key for e in report.deleted} == {e.key for e in stale[1:]}
    finally:
        holder.kill()
        holder.wait()
    assert vcache.prune(store.root, stale=True).deleted[0].key == victim.key, "once released it goes"


def test_leftovers_are_listed_and_pruned(tmp_path):
    root = tmp_path / "store"
    key = "a" * 64
    (root / f".tmp-{key}-x1").mkdir(parents=True)
    (root / f".tmp-{key}-x1" / "weights.safetensors").write_bytes(b"123")
    (root / "measurements").mkdir()
    (root / "measurements" / f"{'b' * 64}.json.corrupt-17").write_text("{")
    found = vcache.entries(root)
    assert sorted(e.kind for e in found) == ["corrupt", "temporary"] and not any(e.current for e in found)
    assert len(vcache.prune(root, stale=True).deleted) == 2 and vcache.entries(root) == []


def test_cache_cli(filled, capsys):
    store, _, _ = filled
    root = str(store.root)
    assert main(["cache", "list", "--store", root]) == 0
    out = capsys.readouterr().out
    assert "4 entries" in out and "current" in out and "stale: code changed" in out
    assert main(["cache", "du", "--store", root]) == 0
    out = capsys.readouterr().out
    assert "minimum" in out and "volbench cache prune --stale" in out
    assert main(["cache", "prune", "--store", root]) == 2
    assert "--older-than DAYS and/or --stale" in capsys.readouterr().err
    assert main(["cache", "prune", "--stale", "--dry-run", "--store", root]) == 0
    assert "would delete 2 entries" in capsys.readouterr().out
    assert main(["cache", "prune", "--stale", "--store", root]) == 0
    assert "deleted 2 entries" in capsys.readouterr().out
    assert main(["cache", "list", "--stale", "--store", root]) == 0
    assert "stale" not in capsys.readouterr().out.split("\n", 1)[1]
    assert main(["cache", "list", "--store", str(Path(root) / "nope")]) == 0
    assert "empty" in capsys.readouterr().out


def test_cases_store_keys_own_configurations_by_training_code(tmp_path):
    """The claim cases' store adds the training provenance to configurations without one."""
    plain, stamped = MinimaStore(tmp_path / "a"), MinimaStore(tmp_path / "b", provenance=training_provenance)
    a = plain.get_or_train({"what": "x"}, lambda: ({"params": torch.zeros(1)}, {}))
    b = stamped.get_or_train({"what": "x"}, lambda: ({"params": torch.zeros(1)}, {}))
    assert a.key != b.key and b.info["config"]["code"] == training_provenance()["code"]
    assert [e.current for e in vcache.entries(tmp_path / "b")] == [True]
    with pytest.raises(TypeError, match="provenance must be"):
        MinimaStore(tmp_path / "c", provenance="yes")
