"""Caches keyed by what produced them (volbench.store.provenance): digests, the lab's keys, and a real
edit of a copy of the package in a subprocess making the next run recompute (or not)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import volbench
from volbench.store import provenance
from volbench.store.provenance import MEASUREMENT_SOURCES, TRAINING_SOURCES, compare_provenance, entry_digest

PACKAGE = Path(volbench.__file__).resolve().parent


def _module(tmp_path, monkeypatch, name: str, text: str) -> str:
    package = f"provpkg_{name}"  # one package per test: the import system caches a package's path
    pkg = tmp_path / package
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / f"{name}.py").write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{package}.{name}"


def test_every_listed_source_exists():
    for entry in TRAINING_SOURCES + MEASUREMENT_SOURCES:
        assert len(entry_digest(entry)) == 64, entry


def test_unrelated_code_is_not_in_the_keys():
    listed = {e.partition(":")[0] for e in TRAINING_SOURCES + MEASUREMENT_SOURCES}
    whole = {e for e in TRAINING_SOURCES + MEASUREMENT_SOURCES if ":" not in e}
    for module in ("volbench.cli", "volbench.report", "volbench.data.fetch", "volbench.data.download",
                   "volbench.data.roots", "volbench.data.fixtures", "volbench.store.minima", "volbench.store.inspect",
                   "volbench.store.measurements", "volbench.lab.ledger", "volbench.claims.analysis",
                   "volbench.estimator.preconditioners", "volbench.estimator.agreement"):
        assert module not in listed, f"an edit to {module} must not invalidate cached results"
    # ... and the lab's measuring module contributes its computing functions only, not its caching.
    measuring = {e.partition(":")[2] for e in MEASUREMENT_SOURCES if e.startswith("volbench.lab.measure:")}
    assert "volbench.lab.measure" not in whole and not {"measure_many", "measure"} & measuring


def test_comments_docstrings_and_layout_do_not_change_the_digest(tmp_path, monkeypatch):
    name = _module(tmp_path, monkeypatch, "m", '''
        """Module doc."""
        def f(x):
            """Doc."""
            return x + 1  # a comment
        ''')
    before = entry_digest(name)
    path = tmp_path / "provpkg_m" / "m.py"
    path.write_text('"""Another doc."""\n\n\ndef f(x):\n    # new comment\n    return x + 1\n')
    os.utime(path, ns=(1, 10**9 + 7))  # a new mtime even within the file system's resolution
    assert entry_digest(name) == before, "comments, docstrings and blank lines are not code"
    path.write_text('def f(x):\n    if x is None:\n        raise ValueError("a message")\n    return x + 1\n')
    os.utime(path, ns=(1, 10**9 + 9))
    with_raise = entry_digest(name)
    path.write_text('def f(x):\n    if x is None:\n        raise ValueError(f"another {x}") from None\n'
                    '    return x + 1\n')
    os.utime(path, ns=(1, 10**9 + 11))
    assert entry_digest(name) == with_raise, "an error's message is not code that computes a result"
    path.write_text('def f(x):\n    if x is None:\n        raise TypeError("a message")\n    return x + 1\n')
    os.utime(path, ns=(1, 10**9 + 13))
    assert entry_digest(name) != with_raise, "the exception's type is kept"
    path.write_text("def f(x):\n    return x + 2\n")
    os.utime(path, ns=(1, 2 * 10**9 + 7))
    assert entry_digest(name) != before, "a change of what the code does changes the digest"


def test_top_level_entries_cover_only_their_definition(tmp_path, monkeypatch):
    name = _module(tmp_path, monkeypatch, "n", "def a():\n    return 1\n\ndef b():\n    return 2\n")
    path = tmp_path / "provpkg_n" / "n.py"
    da, db = entry_digest(f"{name}:a"), entry_digest(f"{name}:b")
    path.write_text("def a():\n    return 1\n\ndef b():\n    return 3\n")
    os.utime(path, ns=(1, 3 * 10**9))
    assert entry_digest(f"{name}:a") == da and entry_digest(f"{name}:b") != db
    with pytest.raises(LookupError, match="no top-level function or class 'c'"):
        entry_digest(f"{name}:c")
    with pytest.raises(LookupError, match="no Python source"):
        entry_digest("provpkg_n.missing_module")


def test_compare_provenance_says_what_differs():
    now = provenance.training_provenance()
    assert compare_provenance(now, now) == ""
    old = json.loads(json.dumps(now))
    old["versions"]["torch"] = "1.0"
    first = next(iter(old["code"]["sources"]))
    old["code"]["sources"][first] = "0" * 16
    old["code"]["digest"] = "0" * 64
    why = compare_provenance(old, now)
    assert "torch 1.0 ->" in why and f"code changed: {first}" in why
    assert "older volbench" in compare_provenance({"kind": "x"}, now)


def test_lab_keys_carry_the_provenance():
    from volbench.lab import MinimumSpec
    from volbench.lab.train import TrainConfig

    config = MinimumSpec("swiss_roll", "swiss_mlp", train_size=40, seed=0, base=20,
                         train=TrainConfig(epochs=5, loss="bce")).config()
    assert config["code"] == provenance.training_provenance()["code"]
    assert config["versions"] == provenance.versions() and set(config["versions"]) == {"volbench", "torch"}


_SCRIPT = r'''
import json, sys
from volbench.lab import LEDGER, MinimumSpec, measure, train_minimum
from volbench.store.minima import MinimaStore
from volbench.lab.train import TrainConfig
store = MinimaStore(sys.argv[1])
spec = MinimumSpec("swiss_roll", "swiss_mlp", train_size=40, seed=0, base=20, train=TrainConfig(epochs=40, loss="bce"))
m = train_minimum(spec, store)
measure(m, 20, estimator="principled", n_directions=4, threshold=1.0, store=store)
print(json.dumps({k: LEDGER.snapshot()[k] for k in ("minima_trained", "minima_served",
                                                    "measurements_computed", "measurements_served")}))
'''


@pytest.mark.slow
def test_a_real_source_change_recomputes_and_an_unchanged_one_reuses(tmp_path):
    """A copy of the package, edited as a developer would: a comment in the estimator's search
    reuses everything; a code change there recomputes the measurement but reuses the minimum;
    a code change in training retrains too."""
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "volbench", ignore=shutil.ignore_patterns("__pycache__"))
    store = tmp_path / "store"
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def run() -> dict:
        out = subprocess.run([sys.executable, str(script), str(store)], env=env, capture_output=True, text=True,
                             timeout=600, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    def edit(relative: str, old: str, new: str) -> None:
        path = copy / "volbench" / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, 1))

    first = run()
    assert first == {"minima_trained": 1, "minima_served": 0, "measurements_computed": 1, "measurements_served": 0}
    edit("estimator/search.py", "from __future__ import annotations",
         "from __future__ import annotations  # a comment edit")
    edit("lab/train.py", "from __future__ import annotations", "from __future__ import annotations  # another")
    assert run() == {"minima_trained": 0, "minima_served": 1, "measurements_computed": 0,
                     "measurements_served": 1}, "comment edits must reuse the caches"
    edit("estimator/search.py", "from __future__ import annotations  # a comment edit",
         "from __future__ import annotations\n_EDITED = 1  # a code change")
    assert run() == {"minima_trained": 0, "minima_served": 1, "measurements_computed": 1,
                     "measurements_served": 0}, "an estimator change recomputes the measurement, not the minimum"
    edit("lab/train.py", "from __future__ import annotations  # another",
         "from __future__ import annotations\n_EDITED = 1  # a code change")
    assert run() == {"minima_trained": 1, "minima_served": 0, "measurements_computed": 1,
                     "measurements_served": 0}, "a training change retrains and remeasures"
