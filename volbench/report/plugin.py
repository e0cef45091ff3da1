"""pytest plugin: the hooks that collect claim-case results into ``reports/<run-id>/`` (the
collecting and writing is ``volbench.report.session.ReportRecorder``'s).

Registered through the ``pytest11`` entry point, so it is loaded for every pytest run: importing
it costs only the standard library and pytest (torch and matplotlib are imported when a run has
recorded something and the report is written).

What it does
------------
* ``record_case`` fixture: a case calls ``record_case(result)`` with a
  :class:`~volbench.results.CaseResult` (several per test are fine, e.g. one per
  estimator). The result travels as JSON in the test's ``user_properties``, which pytest-xdist
  ships from its workers to the controller, so one process (the controller, or the only process
  without xdist) sees every result and is the only writer.
* After every test that recorded something (or any case test that failed, errored or was
  skipped), ``reports/<run-id>/results.json`` is rewritten atomically (temp file + os.replace):
  a crash or SIGKILL loses nothing already measured. The run directory is created only then,
  so ordinary unit-test runs leave no trace.
* Case tests (under a ``cases/`` directory, or using ``record_case``) that fail, error or are
  skipped without recording anything still get a row ("error" / "skip" with pytest's message).
* At session end: ``report.md`` (+ ``figures/*.png``) and a self-contained ``index.html``, and a
  verdict table in the terminal summary, followed by the verdicts that moved against a baseline
  recorded on another machine class without failing. ``reports/latest`` points at the newest run.
* pytest-benchmark's hooks are another plugin's (``volbench.bench.plugin``).

Options: ``--volbench-report-dir DIR`` (else ``$VOLBENCH_REPORT_DIR``, else ``<rootdir>/reports``)
and ``--volbench-no-report``. A report directory that cannot be written gives one warning in the
terminal summary; the tests themselves run and pass as usual.

Example (in a case module)::

    def test_f12_toy_basin(record_case):
        record_case(CaseResult(claim="F12", case_id="F12-toy-basin", estimator="principled",
                               verdict="pass", statistic=Statistic("max |error|", 1e-4),
                               rule="pass if max |error| < 1e-3", seconds=0.2))
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from volbench.report.files import (
    REPORT_DIR_ENV,
)
from volbench.report.session import CASE_PROPERTY, RESULT_PROPERTY, ReportRecorder, case_meta
from volbench.results import CaseResult

__all__ = ["record_case", "pytest_addoption", "pytest_configure", "pytest_collection_modifyitems"]

_RECORDER_NAME = "volbench-report-recorder"


# --------------------------------------------------------------------------- options, fixture


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("volbench", "volbench benchmark reports")
    group.addoption(
        "--volbench-report-dir", dest="volbench_report_dir", metavar="DIR", default=None,
        help=f"root of the benchmark reports (a run writes DIR/<run-id>/); default: "
             f"${REPORT_DIR_ENV} or <rootdir>/reports",
    )
    group.addoption(
        "--volbench-no-report", dest="volbench_no_report", action="store_true", default=False,
        help="do not write benchmark reports (record_case still validates results)",
    )


@pytest.fixture
def record_case(request: pytest.FixtureRequest) -> Callable[[CaseResult], CaseResult]:
    """Record a :class:`CaseResult` for the report: ``record_case(result) -> result``.

    Fills in ``nodeid`` when empty and returns the stored record. Recording the same
    (case_id, estimator) twice in one test is an error.
    """
    seen: set[tuple[str, str]] = set()

    def record(result: CaseResult) -> CaseResult:
        if not isinstance(result, CaseResult):
            raise TypeError(f"record_case takes a volbench.results.CaseResult, got "
                            f"{type(result).__name__}")
        if not result.nodeid:
            result = replace(result, nodeid=request.node.nodeid)
        if result.key in seen:
            raise ValueError(f"case {result.case_id!r} with estimator {result.estimator!r} was "
                             f"already recorded in this test; give each record its own "
                             f"estimator or case_id")
        seen.add(result.key)
        request.node.user_properties.append((RESULT_PROPERTY, result.to_json()))
        return result

    return record


# --------------------------------------------------------------------------- hooks (all processes)


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: results go to the controller
        return
    if config.getoption("volbench_no_report", default=False):
        return
    if config.option.collectonly:  # nothing runs, so no run is recorded (and reports/latest stays put)
        return
    config.pluginmanager.register(ReportRecorder(config, _report_root(config)), _RECORDER_NAME)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Runs where the items live (xdist workers included): mark case tests so that the
    # controller can report them even if they fail or are skipped before recording anything.
    for item in items:
        if _is_case_item(config, item):
            item.user_properties.append((CASE_PROPERTY, json.dumps(case_meta(item))))


def _report_root(config: pytest.Config) -> Path:
    option = config.getoption("volbench_report_dir", default=None)
    env = os.environ.get(REPORT_DIR_ENV, "").strip()
    chosen = option or env
    if not chosen:
        return Path(config.rootpath) / "reports"
    # relative to where pytest was started (tests may chdir later)
    return (Path(config.invocation_params.dir) / Path(chosen).expanduser()).absolute()


def _is_case_item(config: pytest.Config, item: pytest.Item) -> bool:
    if "record_case" in getattr(item, "fixturenames", ()):
        return True
    try:
        parts = Path(item.path).resolve().relative_to(Path(config.rootpath).resolve()).parts
    except ValueError:  # outside the rootdir: only record_case makes it a case
        return False
    return "cases" in parts[:-1]


# --------------------------------------------------------------------------- the writer


