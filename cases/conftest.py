"""Claim cases as data: each test module holds ``CASES = {test_name: [Case, ...]}`` and this
conftest parametrizes every test with the cases of the selected tier, with stable ids that start
with the claim id (``F1-poison-smaller[mnist-mlp]``), so ``-k F1`` or ``-k mnist`` select them.
"""
from __future__ import annotations

import os

import pytest
import torch

from volbench.store import MinimaStore

from _support import Case  # noqa: E402  (cases/ is on sys.path under pytest's rootdir import mode)


def _tier(config) -> str:
    return config.getoption("--tier") or os.environ.get("VOLBENCH_TIER", "smoke")


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    table = getattr(metafunc.module, "CASES", {})
    cases: list[Case] = table.get(metafunc.function.__name__, [])
    tier = _tier(metafunc.config)
    chosen = [c for c in cases if c.tier == tier]
    if not chosen:  # keep the test visible: it says which tier carries it
        other = sorted({c.tier for c in cases})
        ref = cases[0] if cases else None
        placeholder = ref and Case(ref.claim, ref.slug, ref.setting, tier, {}, title=ref.title,
                                   skip=f"claim runs in tier(s) {other}; select with --tier")
        chosen_params = [placeholder.param() if placeholder else
                         pytest.param(None, id=f"{metafunc.function.__name__}-no-cases",
                                      marks=pytest.mark.skip(reason="no cases defined"))]
    else:
        chosen_params = [c.param() for c in chosen]
    metafunc.parametrize("case", chosen_params)


@pytest.fixture(scope="session")
def device() -> torch.device:
    """VOLBENCH_DEVICE, else the first CUDA device, else the CPU."""
    name = os.environ.get("VOLBENCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@pytest.fixture(scope="session")
def store() -> MinimaStore:
    """The cache of trained minima (VOLBENCH_STORE or ~/.cache/volbench/minima); shared safely by
    xdist workers (file locks, atomic writes) and reused across runs."""
    return MinimaStore()


@pytest.fixture
def strict(request) -> bool:
    return bool(request.config.getoption("--strict-claims", default=False))


@pytest.fixture(autouse=True)
def _nightly_needs_full_data(request):
    """A nightly case whose landscapes exceed the data found here skips, naming what is missing."""
    case = getattr(request.node, "callspec", None) and request.node.callspec.params.get("case")
    if not isinstance(case, Case) or case.tier != "nightly" or "dataset" not in case.params:
        return
    from volbench.data import DatasetNotFoundError
    from volbench.lab import load_dataset

    try:
        ds = load_dataset(case["dataset"])
    except DatasetNotFoundError as err:
        pytest.skip(f"nightly data missing: {err}")
    need = max(case.params.get("sizes", (0,)))
    if ds.n_train < need:
        pytest.skip(f"nightly landscapes go to {need} examples but {ds.variant} has {ds.n_train}; "
                    f"put the full data set under $VOLBENCH_DATA")
