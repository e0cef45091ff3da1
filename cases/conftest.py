"""Claim cases as data: each test module holds ``CASES = {test_name: [Case, ...]}`` and this
conftest parametrizes every test with the cases of the selected tier, with stable ids that start
with the claim id (``F1-poison-smaller[mnist-mlp]``), so ``-k F1`` or ``-k mnist`` select them.

Quick mode (``--quick`` or ``VOLBENCH_QUICK=1``, see the repository conftest) parametrizes the
nightly cases instead, each through ``_support.quick_case`` (the generic shrink, then the module's
optional ``QUICK = {test_name: {param: value}}`` table).

Data. Before a case runs, the data sets it needs (its ``dataset`` parameter, else the data set its
setting names, else the module's optional ``DATASETS`` tuple) are located; a missing one is
downloaded into the user cache where a network exists (SHA-256 checked, with a progress bar on a
terminal) unless ``VOLBENCH_OFFLINE=1`` or quick mode; if it stays missing the case *skips* with
one line naming the data set, how to get it and where its files go. A ``DatasetNotFoundError``
raised anywhere inside a case skips it the same way.
"""
from __future__ import annotations

import os
import sys
import threading
import time

import pytest
import torch
from _support import Case, quick_case, reproducing, reproduction_case  # noqa: E402  (cases/ is on sys.path under pytest's rootdir import mode)

from volbench.data import DatasetNotFoundError
from volbench.report.machine import default_device
from volbench.store.minima import MinimaStore
from volbench.store.provenance import training_provenance

# Data sets a case setting names when it has no "dataset" parameter (Zhang's binarised MNIST, the
# digits MLP of Scherlis & Belrose); matched against the setting's dash-separated words.
_SETTING_DATA = (("fashion", "fashion_mnist"), ("binary", "mnist_binary"), ("mnist", "mnist"),
                 ("cifar10", "cifar10"), ("svhn", "svhn"), ("digits", "digits"))


def _tier(config) -> str:
    return config.getoption("--tier") or os.environ.get("VOLBENCH_TIER", "smoke")


def _quick(config) -> bool:
    return os.environ.get("VOLBENCH_QUICK", "") not in ("", "0")


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    table = getattr(metafunc.module, "CASES", {})
    cases: list[Case] = table.get(metafunc.function.__name__, [])
    tier = _tier(metafunc.config)
    quick = _quick(metafunc.config)
    chosen = [c for c in cases if c.tier == tier]
    if quick:
        overrides = getattr(metafunc.module, "QUICK", {}).get(metafunc.function.__name__)
        chosen = [quick_case(c, overrides) if not c.skip else c for c in chosen]
    elif reproducing() and tier == "smoke":
        chosen = [reproduction_case(c) if not c.skip else c for c in chosen]
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
    """VOLBENCH_DEVICE, else the first CUDA device, else the CPU (the device of the machine class
    the verdict baseline compares: ``volbench.report.machine.default_device``)."""
    return torch.device(default_device())


@pytest.fixture(scope="session")
def store() -> MinimaStore:
    """The cache of trained minima (VOLBENCH_STORE or ~/.cache/volbench/minima); shared safely by
    xdist workers (file locks, atomic writes) and reused across runs. Minima a case trains under
    its own configuration are keyed by the training code's provenance as well."""
    return MinimaStore(provenance=training_provenance)


@pytest.fixture
def strict(request) -> bool:
    return bool(request.config.getoption("--strict-claims", default=False))


# ----------------------------------------------------------------------------- data


def case_datasets(case: Case, module) -> tuple[str, ...]:
    """The data sets ``case`` reads: its ``dataset`` parameter, else those its setting names,
    else the module's ``DATASETS``."""
    if "dataset" in case.params:
        return (case.params["dataset"],)
    words = case.setting.split("-")
    for word, name in _SETTING_DATA:
        if word in words:
            return (name,)
    return tuple(getattr(module, "DATASETS", ()))


def examples_needed(case: Case) -> int:
    """Training examples the case draws from its data set's train split: the largest nested size,
    or the base set plus the extras drawn outside it (poison, imbalance), or Zhang's S plus its
    largest attack set; 0 if its parameters do not say."""
    p = case.params
    sizes = [v for v in (*p.get("sizes", ()), p.get("size")) if isinstance(v, int)]
    extras = [v for v in (*p.get("poison", ()), p.get("n_extra")) if isinstance(v, int)]
    base = p.get("base_size") if isinstance(p.get("base_size"), int) else 0
    need = max(max(sizes, default=0), base + max(extras, default=0))
    if isinstance(p.get("n_train"), int):
        need = max(need, p["n_train"] + max((a for a in p.get("attack", ()) if isinstance(a, int)), default=0))
    return need


def _allow_download(case: Case) -> bool:
    from volbench.data.fetch import offline

    return not case.quick and not offline()


@pytest.fixture(autouse=True)
def _case_data(request):
    """Locate (and where allowed, download) the case's data; skip it with one line if absent."""
    case = getattr(request.node, "callspec", None) and request.node.callspec.params.get("case")
    if not isinstance(case, Case) or case.skip:
        return
    from volbench.data import fetch

    need = examples_needed(case)
    bar = _progress_stream() or False  # downloads draw their progress bar on the terminal, past pytest's capture
    try:
        for name in case_datasets(case, request.module):
            if fetch.fetchable(name) or fetch.installable(name):  # generated and bundled ones are always there
                _check_data(case, name, need, bar)
    finally:
        if bar and bar is not sys.__stderr__:
            bar.close()


def _check_data(case: Case, name: str, need: int, bar) -> None:
    from volbench.data import fetch
    from volbench.lab import forget_datasets, load_dataset

    try:
        if _allow_download(case):
            fetch.ensure(name, progress=bar)
        elif fetch.status(name).folder is None:
            cause = "" if fetch.installable(name) else "quick mode does not download" if case.quick else \
                f"{fetch.OFFLINE_VAR}={os.environ.get(fetch.OFFLINE_VAR)} forbids downloads"
            pytest.skip(fetch.unavailable_message(name, cause=cause))
        ds = load_dataset(name)
        if ds.n_train < need and _allow_download(case):
            fetch.ensure(name, full=True, progress=bar)
            forget_datasets()  # the lab's in-process cache still holds the smaller variant
            ds = load_dataset(name)
    except DatasetNotFoundError as err:
        pytest.skip(err.reason)
    if ds.n_train < need:
        how = fetch.unavailable_message(name).split(". Get it with ", 1)[-1]
        pytest.skip(f"{case.tier} landscapes of {case.id} need {need} training examples of {name} but "
                    f"{ds.variant} (in {ds.source}) has {ds.n_train}; get the full set with {how}")


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    """A data set missing anywhere inside a case skips it with the one-line reason (never an error)."""
    try:
        return (yield)
    except DatasetNotFoundError as err:
        pytest.skip(err.reason)


# ----------------------------------------------------------------------------- progress

_HEARTBEAT_SECONDS = 60.0  # default interval of the nightly progress line (VOLBENCH_PROGRESS_SECONDS)


def _progress_stream():
    """Where progress lines go while pytest captures output: the controlling terminal if there is
    one (works under capture and under xdist), else nowhere."""
    target = os.environ.get("VOLBENCH_PROGRESS", "tty")
    if target in ("0", "off", "none"):
        return None
    if target == "stderr":
        return sys.__stderr__
    try:
        return open("/dev/tty", "w", buffering=1)  # noqa: SIM115 (closed by the fixture)
    except OSError:
        return None


@pytest.fixture(autouse=True)
def _nightly_progress(request):
    """Nightly cases run for minutes to hours on a CPU: print a line when one starts and then every
    VOLBENCH_PROGRESS_SECONDS (default 60) with what the lab has done so far (minima trained and
    served, measurements computed and served), to the terminal (VOLBENCH_PROGRESS=tty, the default;
    =stderr for logs, with -s; =off)."""
    case = getattr(request.node, "callspec", None) and request.node.callspec.params.get("case")
    if not isinstance(case, Case) or case.tier != "nightly" or case.quick or case.skip:
        yield
        return
    stream = _progress_stream()
    if stream is None:
        yield
        return
    from volbench.lab import LEDGER

    every = float(os.environ.get("VOLBENCH_PROGRESS_SECONDS", _HEARTBEAT_SECONDS))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    tag = f"[volbench nightly{' ' + worker if worker else ''}] {case.id}"
    before, t0, done = LEDGER.snapshot(), time.perf_counter(), threading.Event()

    def line(what: str) -> None:
        try:
            stream.write(f"{tag}: {what}\n")
            stream.flush()
        except (OSError, ValueError):
            pass

    def beat() -> None:
        while not done.wait(every):
            d = LEDGER.since(before)
            line(f"{(time.perf_counter() - t0) / 60:.1f} min; trained {d['minima_trained']:.0f} minima "
                 f"({d['trained_seconds'] / 60:.1f} min), reused {d['minima_served']:.0f}; computed "
                 f"{d['measurements_computed']:.0f} measurements ({d['measured_seconds'] / 60:.1f} min), "
                 f"reused {d['measurements_served']:.0f}")

    line("started")
    thread = threading.Thread(target=beat, name="volbench-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(1.0)
        line(f"finished after {(time.perf_counter() - t0) / 60:.1f} min")
        if stream is not sys.__stderr__:
            stream.close()
