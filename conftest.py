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
    """Tests marked `gpu` skip cleanly, with the reason, where torch sees no CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    import pytest

    skip = pytest.mark.skip(reason="needs a CUDA device (gpu marker); none is visible to torch")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


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
