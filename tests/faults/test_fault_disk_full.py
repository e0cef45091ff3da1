"""A full disk (or a file-size limit) while writing reports, store entries and cached measurements.

Two real kernel-level faults, no mocked ``write``:

* **EFBIG**: a child process runs with ``RLIMIT_FSIZE`` set and ``SIGXFSZ`` ignored, so the kernel
  cuts its writes short at the limit and then fails them with ``EFBIG`` ("File too large"),
  mid-file. Used for the renderers, the ``volbench report`` CLI, the pytest plugin's
  ``results.json`` and the minima store.
* **ENOSPC**: the temporary file a writer creates is swapped for a descriptor of ``/dev/full``, on
  which every ``write(2)`` fails with ``ENOSPC`` ("No space left on device"). Used in-process
  for ``results.json``, the renderers, the CLI, the minima store and the measurement cache.

Every test checks that the previous files are byte-for-byte intact, that no partial or temporary
file is left behind, and that the error names the problem and the fix.
"""
from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import types
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import volbench
from volbench import _io
from volbench.report import files
from volbench.report.example import example_run
from volbench.report.render import render_run
from volbench.store.minima import CorruptEntryWarning, MinimaStore

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file-size limits"),
]

REPO = Path(volbench.__file__).resolve().parents[1]
TIMEOUT_S = 240  # generous for a busy CI machine; never reached normally
DEV_FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="/dev/full is not available")


# --------------------------------------------------------------------------- helpers


def _limit_file_size(limit: int):
    """preexec_fn: files this process writes may not exceed ``limit`` bytes; a write past it fails
    with EFBIG instead of killing the process with SIGXFSZ."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("VOLBENCH_REPORT_DIR", "PYTEST_ADDOPTS")
           and not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"  # the children's torch work is tiny; extra threads only contend
    env.update(extra)
    return env


def _run_limited(cmd: list[str], limit: int, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=_child_env(**env), capture_output=True, text=True,
                          timeout=TIMEOUT_S, preexec_fn=_limit_file_size(limit))


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every regular file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(folder: Path) -> list[str]:
    """Temporary or partial files an atomic writer could have left behind."""
    return [str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.name.endswith(".tmp") or p.name.startswith((".tmp-", ".old-"))]


def _small_run(seed: int):
    """Two results of the example run: three PNGs of ~40-60 kB each (two plots and the timing
    plot), a report.md of ~2 kB and an index.html of ~230 kB that inlines every PNG."""
    run = example_run(seed=seed)
    return replace(run, results=run.results[:2])


@pytest.fixture(autouse=True)
def one_thread():
    """The torch work here is tiny; on a shared 2-core CI machine more threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def rendered_seed0(tmp_path_factory) -> Path:
    """The "previous report": the small run (seed 0) rendered once for the module."""
    folder = tmp_path_factory.mktemp("previous") / "run"
    render_run(_small_run(seed=0), folder)
    return folder


def _previous_report(rendered: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(rendered, run_dir)
    files.save_run(_small_run(seed=1), run_dir / "results.json")  # what `volbench report` re-renders
    return run_dir


def _dev_full_mkstemp(match: str):
    """A stand-in for ``tempfile`` whose mkstemp creates the real temporary file (so the writer's
    clean-up has something to remove) but hands back a descriptor of /dev/full for names
    containing ``match``: every write(2) on it fails with ENOSPC in the kernel."""

    def mkstemp(*args, **kwargs):
        fd, name = tempfile.mkstemp(*args, **kwargs)
        if match in os.path.basename(name):
            os.close(fd)
            fd = os.open(DEV_FULL, os.O_WRONLY)
        return fd, name

    return types.SimpleNamespace(mkstemp=mkstemp, mkdtemp=tempfile.mkdtemp)


# --------------------------------------------------------------------------- reports: EFBIG


def test_file_size_limit_mid_report_keeps_the_previous_report(tmp_path, rendered_seed0):
    """`volbench report RUN` under a 120 kB file-size limit: the PNGs and report.md fit, index.html
    (~230 kB) is cut off mid-write with EFBIG. The previous rendering must survive whole: not a
    new report.md and new figures beside an old index.html."""
    run_dir = _previous_report(rendered_seed0, tmp_path)
    before = _snapshot(run_dir)
    assert 120_000 < len(before["index.html"]) and len(before["report.md"]) < 120_000
    assert all(len(data) < 120_000 for name, data in before.items() if name.endswith(".png"))
    proc = _run_limited([sys.executable, "-m", "volbench.cli", "report", str(run_dir)], 120_000, tmp_path)
    assert proc.returncode == 1, f"rc {proc.returncode}: {proc.stdout}\n{proc.stderr[-3000:]}"
    message = proc.stderr
    assert message.startswith("volbench: error: cannot write the report into") and message.count("\n") == 1, (
        f"the CLI must print one line, no traceback: {message!r}")
    assert "File too large" in message and "index.html" in message, f"the error must name the problem: {message}"
    assert "file-size limit" in message and "Fix:" in message and "--out DIR" in message, (
        f"the error must name the fix: {message}")
    assert _snapshot(run_dir) == before, "the previous report (every file) must be byte-for-byte intact"
    assert not _leftovers(run_dir), f"temporary files left behind: {_leftovers(run_dir)}"


# --------------------------------------------------------------------------- plugin: EFBIG

BIG_CASES = '''
from volbench.results import CaseResult, Statistic

def _result(claim):
    # ~50 kB of JSON per result, so results.json grows by that much after every test
    return CaseResult(claim=claim, case_id=f"{claim}-big", estimator="principled", verdict="pass",
                      statistic=Statistic("slope", -0.2), rule="pass if below 0",
                      numbers={"log_terms": [i / 7 for i in range(2500)]}, seeds={"model": 0})

def test_F1(record_case):
    record_case(_result("F1"))

def test_F2(record_case):
    record_case(_result("F2"))

def test_F3(record_case):
    record_case(_result("F3"))
'''


@pytest.mark.parametrize("limit, kept", [(125_000, 2), (20_000, 0)], ids=["third-write-fails", "first-write-fails"])
def test_plugin_results_json_over_the_limit_keeps_the_last_complete_version(tmp_path, limit, kept):
    root = tmp_path / "reports"
    previous_id, previous_dir = files.create_run_dir(root)
    files.save_run(_small_run(seed=0), previous_dir / "results.json")
    files.point_latest(root, previous_id)
    previous = _snapshot(previous_dir)
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "test_big.py").write_text(BIG_CASES)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    proc = _run_limited([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q",
                         "cases", f"--volbench-report-dir={root}"], limit, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"a report that cannot be written must not fail the tests:\n{out[-3000:]}"
    line = next((ln for ln in out.splitlines() if ln.startswith("volbench: could not write")), None)
    assert line is not None, f"no warning about the failed write:\n{out[-3000:]}"
    assert "File too large" in line and "Fix:" in line and "--volbench-report-dir" in line, line
    assert _snapshot(previous_dir) == previous, "the previous run's report must be intact"
    new_dirs = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and p != previous_dir]
    if kept == 0:
        assert "are not saved" in line, line
        assert new_dirs == [], f"a run that saved nothing must leave no (empty) run directory: {new_dirs}"
        assert os.readlink(root / "latest") == previous_id, "`latest` must still point at the previous run"
    else:
        (run_dir,) = new_dirs
        assert "keeps its last complete version" in line, line
        saved = files.load_run(run_dir / "results.json")  # parses: never a torn file
        assert [r.case_id for r in saved.results] == ["F1-big", "F2-big"][:kept], (
            "results.json must hold exactly the results written before the limit was hit")
        assert os.readlink(root / "latest") == run_dir.name
        assert not _leftovers(run_dir), f"temporary files left behind: {_leftovers(run_dir)}"
        for name in ("report.md", "index.html"):  # rendered from memory, or not at all: never partial
            if (run_dir / name).exists():
                assert (run_dir / name).stat().st_size < limit
    assert not _leftovers(root)


# --------------------------------------------------------------------------- minima store: EFBIG

STORE_CHILD = r"""
import json, sys, torch
from volbench.store.minima import MinimaStore
store = MinimaStore(sys.argv[1])
big = {"params": torch.arange(100_000, dtype=torch.float32)}  # 400 kB of weights
errors = []
try:
    store.put(sys.argv[2], big, {"loss": 0.0}, overwrite=True)
except OSError as exc:
    errors.append({"errno": exc.errno, "message": str(exc)})
try:
    store.get_or_train({"model": "toy", "seed": 99}, lambda: (big, {"loss": 0.0}))
except OSError as exc:
    errors.append({"errno": exc.errno, "message": str(exc)})
print(json.dumps(errors))
"""


def test_file_size_limit_while_storing_a_minimum_keeps_the_previous_entry(tmp_path):
    store = MinimaStore(tmp_path / "store")
    old = store.put(store.key({"model": "toy", "seed": 0}), {"params": torch.ones(8)}, {"loss": 0.5})
    before = _snapshot(old.path)
    proc = _run_limited([sys.executable, "-c", STORE_CHILD, str(store.root), old.key], 100_000, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [e["errno"] for e in errors] == [errno.EFBIG, errno.EFBIG], errors
    for e in errors:
        msg = e["message"]
        assert "File too large" in msg and "minima store entry" in msg, msg
        assert "previous entry under this key is intact" in msg and "VOLBENCH_STORE" in msg and "Fix:" in msg, msg
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptEntryWarning)
        again = store.get(old.key)
    assert again is not None and torch.equal(again.params, torch.ones(8)), "the previous entry must still verify"
    assert _snapshot(old.path) == before, "the previous entry's files must be byte-for-byte intact"
    assert store.keys() == [old.key], "the failed get_or_train must not leave an entry"
    assert not _leftovers(store.root), f"temporary entry folders left behind: {_leftovers(store.root)}"


# --------------------------------------------------------------------------- ENOSPC via /dev/full


@needs_dev_full
def test_no_space_while_saving_results_json_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    files.save_run(_small_run(seed=0), target)
    before = target.read_bytes()
    monkeypatch.setattr(_io, "tempfile", _dev_full_mkstemp("results.json"))
    with pytest.raises(OSError) as info:
        files.save_run(_small_run(seed=1), target)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    msg = str(info.value)
    assert "No space left on device" in msg and str(target) in msg, msg
    assert "previous file is unchanged" in msg and "Fix: free space" in msg, msg
    assert target.read_bytes() == before and not _leftovers(tmp_path)


@needs_dev_full
@pytest.mark.parametrize("via", ["render_run", "cli"])
def test_no_space_for_index_html_keeps_every_file_of_the_previous_report(tmp_path, monkeypatch, capsys, via,
                                                                         rendered_seed0):
    """report.md and the PNGs are written (to temporary files) before index.html fails: none of
    them may replace the previous report's files, and stale figures are not deleted."""
    from volbench.cli import main

    run_dir = _previous_report(rendered_seed0, tmp_path)
    (run_dir / "figures" / "999-only-in-the-old-report.png").write_bytes(b"\x89PNG old")
    before = _snapshot(run_dir)
    monkeypatch.setattr(_io, "tempfile", _dev_full_mkstemp("index.html"))
    if via == "render_run":
        with pytest.raises(OSError) as info:
            render_run(_small_run(seed=1), run_dir)
        assert info.value.errno == errno.ENOSPC
        msg = str(info.value)
    else:
        assert main(["report", str(run_dir)]) == 1
        msg = capsys.readouterr().err
        assert msg.startswith("volbench: error: ") and msg.count("\n") == 1 and "--out DIR" in msg, msg
    monkeypatch.undo()
    assert "No space left on device" in msg and "index.html" in msg and "Fix: free space" in msg, msg
    assert "every previous file of this set is unchanged" in msg, msg
    assert _snapshot(run_dir) == before, "report.md, index.html and figures must all be the previous ones"
    assert not _leftovers(run_dir), f"temporary files left behind: {_leftovers(run_dir)}"


@needs_dev_full
def test_no_space_while_storing_a_minimum_keeps_the_previous_entry(tmp_path, monkeypatch):
    import volbench.store.minima as store_module

    def write_to_dev_full(path: Path, data: bytes) -> None:
        path.touch()  # the file exists, as after open(path, "wb"); its bytes go nowhere
        with open(DEV_FULL, "wb") as fh:
            fh.write(data)
            fh.flush()

    store = MinimaStore(tmp_path)
    old = store.put(store.key({"model": "toy", "seed": 1}), {"params": torch.zeros(4)}, {"loss": 0.1})
    before = _snapshot(old.path)
    monkeypatch.setattr(store_module, "write_durably", write_to_dev_full)
    with pytest.raises(OSError) as info:
        store.put(old.key, {"params": torch.ones(50_000)}, {"loss": 0.2}, overwrite=True)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    msg = str(info.value)
    assert "No space left on device" in msg and old.key in msg and "Fix: free space" in msg, msg
    assert _snapshot(old.path) == before and torch.equal(store.get(old.key).params, torch.zeros(4))
    assert not _leftovers(tmp_path), _leftovers(tmp_path)


@needs_dev_full
def test_no_space_while_caching_a_measurement_leaves_no_partial_file(tmp_path, monkeypatch):
    import volbench.lab as lab
    from volbench.lab.train import TrainConfig

    store = MinimaStore(tmp_path / "store")
    spec = lab.MinimumSpec("swiss_roll", "swiss_mlp", train_size=40, seed=0, base=20,
                           train=TrainConfig(epochs=20, loss="bce", history_every=20))
    minimum = lab.train_minimum(spec, store)

    def run():
        return lab.measure(minimum, 20, estimator="reference", n_directions=4, threshold=0.7, store=store)

    cache = store.root / "measurements"
    monkeypatch.setattr(_io, "tempfile", _dev_full_mkstemp(".json"))
    with pytest.warns(lab.CacheWriteWarning) as caught:
        uncached = run()  # the work is not lost: the measurement comes back, uncached
    msg = str(caught[0].message)
    assert "No space left on device" in msg and "measurement cache" in msg and "recomputed" in msg, msg
    assert "Fix: free space" in msg, msg
    assert list(cache.iterdir()) == [], f"no partial cache file may be left: {list(cache.iterdir())}"
    monkeypatch.undo()
    first = run()  # space again: computed and cached
    assert first.log_volume == uncached.log_volume, "the uncached result must equal the recomputed one"
    (path,) = cache.glob("*.json")
    cached = path.read_bytes()
    monkeypatch.setattr(_io, "tempfile", _dev_full_mkstemp(".json"))
    again = run()  # disk full again: a cache hit writes nothing, so it still works
    assert again == first and path.read_bytes() == cached and not _leftovers(cache)


def test_unwritable_report_folder_is_one_clear_cli_line(tmp_path, capsys):
    """A report directory that cannot be created (a file is in the way; works as root too)."""
    from volbench.cli import main

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    files.save_run(_small_run(seed=0), run_dir / "results.json")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    assert main(["report", str(run_dir), "--out", str(blocker / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"volbench: error: cannot write the report into {blocker / 'out'}") and err.count("\n") == 1
    assert "Not a directory" in err and "--out DIR" in err and "Fix:" in err, err
    assert sorted(p.name for p in run_dir.iterdir()) == ["results.json"]


def test_write_fix_advice_per_errno():
    from volbench._io import explain_write_error, write_fix

    assert "free space" in write_fix(OSError(errno.ENOSPC, "x"))
    assert "ulimit -f" in write_fix(OSError(errno.EFBIG, "x"))
    assert "writable" in write_fix(OSError(errno.EROFS, "x")) and "writable" in write_fix(OSError(errno.EACCES, "x"))
    assert write_fix(OSError("no errno")) == ""
    exc = explain_write_error(PermissionError(errno.EACCES, "Permission denied"), "/r/a.md")
    assert isinstance(exc, PermissionError), "the errno, hence the OSError subclass, is kept"
    plain = OSError("disk full")
    assert explain_write_error(plain, "/r/a.md") is plain
