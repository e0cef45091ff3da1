"""Repository-level pytest configuration.

* Points the data root at ``../shared/data`` (the real MNIST test split shipped beside this
  repository) when present; a user's own ``VOLBENCH_DATA`` comes first.
* ``--tier smoke|nightly`` (or ``VOLBENCH_TIER``) picks the claim cases' scale; smoke by default.
* Under pytest-xdist each worker gets its share of the CPU threads and, on a multi-GPU host, its
  own GPU (worker gwN -> cuda:N mod device count), so workers map to devices.
"""
from __future__ import annotations

import os
from pathlib import Path

_SHIPPED = Path(__file__).resolve().parent.parent / "shared" / "data"
TIERS = ("smoke", "nightly")


def pytest_addoption(parser):
    group = parser.getgroup("volbench-cases", "volbench claim cases")
    group.addoption("--tier", choices=TIERS, default=None,
                    help="claim-case tier: smoke (CPU minutes, the default) or nightly (paper scale, "
                         "GPU); also VOLBENCH_TIER")
    group.addoption("--strict-claims", action="store_true", default=False,
                    help="fail the test of a claim case whose verdict is fail or inconclusive "
                         "(by default verdicts go to the report and the test passes if it ran)")


def pytest_configure(config):
    if _SHIPPED.is_dir():
        roots = [p for p in os.environ.get("VOLBENCH_DATA", "").split(os.pathsep) if p]
        if str(_SHIPPED) not in roots:
            os.environ["VOLBENCH_DATA"] = os.pathsep.join(roots + [str(_SHIPPED)])
    tier = config.getoption("--tier") or os.environ.get("VOLBENCH_TIER", "smoke")
    if tier not in TIERS:
        raise ValueError(f"VOLBENCH_TIER must be one of {TIERS}, got {tier!r}")
    os.environ["VOLBENCH_TIER"] = tier  # so xdist workers and subprocesses agree
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
