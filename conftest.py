"""Repository-level pytest configuration.

* Points the data root at ``../shared/data`` (the real MNIST test split shipped beside this
  repository) when present; a user's own ``VOLBENCH_DATA`` comes first.
* ``--tier smoke|nightly`` (or ``VOLBENCH_TIER``) picks the claim cases' scale; smoke by default.
* ``--quick`` (or ``VOLBENCH_QUICK=1``) runs the nightly cases at tiny scale on the CPU: their own
  code paths, in minutes. The data sets absent here that nightly reads in full (MNIST's training
  files, CIFAR-10, SVHN, Fashion-MNIST without Debian's package) are written as small generated
  files in their real formats (``volbench.data.fixtures``, marked synthetic) into a temporary
  data root searched first, and minima go to a temporary store, so a quick run trains everything
  it measures and leaves the user's store alone.
* Under pytest-xdist each worker gets its share of the CPU threads and, on a multi-GPU host, its
  own GPU (worker gwN -> cuda:N mod device count), so workers map to devices.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_SHIPPED = Path(__file__).resolve().parent.parent / "shared" / "data"
TIERS = ("smoke", "nightly")
_QUICK_ROOT = "VOLBENCH_QUICK_ROOT"  # the quick run's temporary folder, shared with xdist workers
_QUICK_KEY = pytest.StashKey[tuple]()


def pytest_addoption(parser):
    group = parser.getgroup("volbench-cases", "volbench claim cases")
    group.addoption("--tier", choices=TIERS, default=None,
                    help="claim-case tier: smoke (CPU minutes, the default) or nightly (paper scale: hours "
                         "on a CPU, fast on GPUs); also VOLBENCH_TIER")
    group.addoption("--quick", action="store_true", default=False,
                    help="run every nightly case's code path at tiny scale on the CPU (generated stand-ins "
                         "for absent data sets, a temporary store); verdicts are marked quick; also "
                         "VOLBENCH_QUICK=1")
    group.addoption("--store-durations", action="store_true", default=False,
                    help="merge this run's tests of >= 2 s into .test_durations, which orders later runs "
                         "longest first (even xdist workers)")
    group.addoption("--strict-claims", action="store_true", default=False,
                    help="fail the test of a claim case whose verdict is fail or inconclusive "
                         "(by default verdicts go to the report and the test passes if it ran)")


def pytest_configure(config):
    if _SHIPPED.is_dir():
        roots = [p for p in os.environ.get("VOLBENCH_DATA", "").split(os.pathsep) if p]
        if str(_SHIPPED) not in roots:
            os.environ["VOLBENCH_DATA"] = os.pathsep.join(roots + [str(_SHIPPED)])
    quick = config.getoption("--quick") or os.environ.get("VOLBENCH_QUICK", "") not in ("", "0")
    tier = config.getoption("--tier") or ("nightly" if quick else os.environ.get("VOLBENCH_TIER", "smoke"))
    if tier not in TIERS:
        raise ValueError(f"VOLBENCH_TIER must be one of {TIERS}, got {tier!r}")
    if quick and tier != "nightly":
        raise pytest.UsageError("--quick runs the nightly cases at tiny scale; it cannot be combined with "
                                f"--tier {tier}")
    os.environ["VOLBENCH_TIER"] = tier  # so xdist workers and subprocesses agree
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "maxschedchunk", 0) is None:
        config.option.maxschedchunk = 1  # one test at a time: see "longest first" below
    if quick:
        os.environ["VOLBENCH_QUICK"] = "1"
        if not os.environ.get("PYTEST_XDIST_WORKER"):
            _quick_setup(config)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        import torch

        n_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_workers))
        if torch.cuda.is_available() and "VOLBENCH_DEVICE" not in os.environ:
            os.environ["VOLBENCH_DEVICE"] = f"cuda:{int(worker.removeprefix('gw')) % torch.cuda.device_count()}"


def pytest_collection_modifyitems(config, items):
    """Longest tests first (see :func:`_longest_first`); tests marked `gpu` skip cleanly, with the
    reason, where torch sees no CUDA device."""
    import torch

    _longest_first(items)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (gpu marker); none is visible to torch")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# ----------------------------------------------------------------------------- longest first
# On two xdist workers a run ends when its slowest worker does, and xdist's default scheduler
# hands each worker a contiguous chunk of the collection: the quick tier's three 115-135 s cases,
# collected side by side, ran one after another on one worker (417 s wall for 560 s of work).
# Under xdist we therefore (1) have the controller send tests one at a time (`--maxschedchunk 1`
# unless given: each worker then holds its running test and one queued), and (2) order the
# collection longest-processing-time-first from measured durations, the rule pytest-split applies
# with the same kind of file: worker w's first two slots are the w-th longest test and a short
# one, so the W longest start at once; the other known ones follow, longest first, then every
# test absent from the file in collection order. `.test_durations` holds measured call times
# (seconds, >= 2 s) by node id; `--store-durations` merges a run's into it. Every worker reads
# the same file, so all collect the same order, as xdist requires. Without xdist nothing moves.
DURATIONS = Path(__file__).resolve().parent / ".test_durations"
_STORE_DURATIONS_MIN_S = 2.0


def _known_durations() -> dict[str, float]:
    import json

    try:
        data = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def longest_first(items: list, durations: dict[str, float], workers: int) -> list:
    """``items`` reordered for ``workers`` xdist workers fed one test at a time (see above).

    Example:
        >>> class T:
        ...     def __init__(self, nodeid): self.nodeid = nodeid
        ...     def __repr__(self): return self.nodeid
        >>> longest_first([T(n) for n in "abcdef"], {"c": 9.0, "e": 7.0, "f": 5.0}, workers=2)
        [c, a, e, b, f, d]
    """
    known = sorted((it for it in items if it.nodeid in durations), key=lambda it: -durations[it.nodeid])
    unknown = [it for it in items if it.nodeid not in durations]
    head = []
    for first in known[:workers]:
        head.append(first)
        if unknown:
            head.append(unknown.pop(0))
    return head + known[workers:] + unknown


def _longest_first(items) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    known = _known_durations()
    if workers > 1 and known:
        items[:] = longest_first(items, known, workers)


_RUN_DURATIONS: dict[str, float] = {}  # this session's long calls (on xdist: the controller gets every report)


def pytest_runtest_logreport(report):
    if report.when == "call" and report.duration >= _STORE_DURATIONS_MIN_S:
        _RUN_DURATIONS[report.nodeid] = round(float(report.duration), 1)


def pytest_sessionfinish(session, exitstatus):
    """With --store-durations, merge this run's long tests into `.test_durations` (atomically)."""
    config = session.config
    if not config.getoption("--store-durations") or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    import json

    merged = {**_known_durations(), **_RUN_DURATIONS}
    tmp = DURATIONS.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(sorted(merged.items(), key=lambda kv: -kv[1])), indent=1) + "\n")
    os.replace(tmp, DURATIONS)


def _quick_setup(config) -> None:
    """Controller side of --quick: a temporary data root with generated stand-ins for the data sets
    absent here, searched first, and a temporary store. xdist workers inherit the environment."""
    from volbench.data import fetch, fixtures

    if os.environ.get(_QUICK_ROOT) and Path(os.environ[_QUICK_ROOT]).is_dir():
        return  # a surrounding quick run set it up
    work = Path(tempfile.mkdtemp(prefix="volbench-quick-"))
    data = work / "data"
    written = []
    for name in fixtures.SYNTHETIC_SETS:
        if not fetch.status(name).full:  # the real full set is not here: use a generated stand-in
            fixtures.write_synthetic(name, data, seed=0)
            written.append(name)
    roots = [p for p in os.environ.get("VOLBENCH_DATA", "").split(os.pathsep) if p]
    os.environ["VOLBENCH_DATA"] = os.pathsep.join([str(data), *roots])
    os.environ["VOLBENCH_STORE"] = str(work / "store")
    os.environ[_QUICK_ROOT] = str(work)
    config.stash[_QUICK_KEY] = (work, written)


def pytest_report_header(config):
    info = config.stash.get(_QUICK_KEY, None)
    if info is not None:
        work, written = info
        return [f"volbench quick: nightly cases at tiny scale; generated stand-ins for "
                f"{', '.join(written) or 'no data set'} in {work / 'data'}; temporary store {work / 'store'}"]
    return None


def pytest_unconfigure(config):
    info = config.stash.get(_QUICK_KEY, None)
    if info is not None:
        shutil.rmtree(info[0], ignore_errors=True)
