"""The report session: the object that collects every claim-case result of a pytest run and
writes ``reports/<run-id>/`` (``results.json`` after every test, ``report.md`` and ``index.html``
at the end), and the terminal summary's verdict table.

:class:`ReportRecorder` is registered by the plugin (``volbench.report.plugin``) in the process
that sees every result (the xdist controller, or the only process), as pytest-benchmark registers
its session object; the plugin itself holds the hooks only.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from volbench._io import write_fix
from volbench.report.files import (
    REPORT_DIR_ENV,
    RESULTS_NAME,
    create_run_dir,
    point_latest,
    save_run,
    utc_now,
)
from volbench.results import TIERS, CaseResult, RunReport, SchemaError

__all__ = ["ReportRecorder", "RESULT_PROPERTY", "CASE_PROPERTY", "case_meta", "summary_lines", "baseline_move_lines"]


#: user_properties key of a recorded result (value: CaseResult JSON text).
RESULT_PROPERTY = "volbench_result"


#: user_properties key set at collection on case tests (value: JSON with claim/case_id/tier).
CASE_PROPERTY = "volbench_case"


_CLAIM_RE = re.compile(r"(?<![A-Za-z0-9])([A-Z]{1,2}[0-9]{1,3})(?![0-9])")


_MESSAGE_LIMIT = 600  # characters of a failure message kept in the report


_VERDICT_MARKUP = MappingProxyType({
    "pass": {"green": True},
    "fail": {"red": True, "bold": True},
    "error": {"red": True},
    "inconclusive": {"yellow": True},
    "skip": {"yellow": True},
})


def case_meta(item: pytest.Item) -> dict[str, Any]:
    """Claim, case id, title and tier of a case test, for the row it gets if it records nothing.

    In order: a parameter that looks like a case record (str attributes ``claim`` and ``id``,
    optionally ``title`` and ``tier``, e.g. ``cases/_support.Case``); else the first claim id
    (``F1``, ``S10``, …) in the parameter id, the test name or the test's docstring, with the
    parameter id (or the test name without ``test_``) as case id.
    """
    callspec = getattr(item, "callspec", None)
    params = list(getattr(callspec, "params", {}).values()) if callspec is not None else []
    record = next((p for p in params if isinstance(getattr(p, "claim", None), str)
                   and isinstance(getattr(p, "id", None), str)), None)
    marks = {mark.name for mark in item.iter_markers()}
    env_tier = os.environ.get("VOLBENCH_TIER", "")
    tier = "nightly" if "nightly" in marks else (
        "smoke" if "smoke" in marks else (env_tier if env_tier in TIERS else "smoke"))
    if record is not None:
        record_tier = getattr(record, "tier", None)
        return {
            "claim": record.claim, "case_id": re.sub(r"\s+", "_", record.id),
            "title": getattr(record, "title", "") if isinstance(getattr(record, "title", ""),
                                                                 str) else "",
            "tier": record_tier if record_tier in TIERS else tier,
            "uses_record_case": "record_case" in getattr(item, "fixturenames", ()),
            "quick": getattr(record, "quick", False) is True or "quick" in marks,
        }
    name = item.name
    doc = getattr(getattr(item, "function", None), "__doc__", None) or ""
    places = ([callspec.id] if callspec is not None else []) + [name, doc]
    match = next((m for m in map(_CLAIM_RE.search, places) if m), None)
    if callspec is not None:
        case_id = callspec.id
    else:
        case_id = name[5:] if name.startswith("test_") else name
    return {
        "claim": match.group(1) if match else "?",
        "case_id": re.sub(r"\s+", "_", case_id) or item.nodeid,
        "title": "",
        "tier": tier,
        "uses_record_case": "record_case" in getattr(item, "fixturenames", ()),
    }


@dataclass
class _Entry:
    """What the controller knows about one test (private, mutable bookkeeping)."""

    nodeid: str
    meta: dict[str, Any] | None = None
    recorded: list[str] = field(default_factory=list)  # CaseResult JSON texts
    outcome: str = ""
    message: str = ""
    durations: dict[str, float] = field(default_factory=dict)


def _phase_outcome(report: pytest.TestReport) -> str | None:
    if report.when == "call":
        if hasattr(report, "wasxfail"):
            return "xfailed" if report.skipped else "xpassed"
        return report.outcome
    if report.failed:
        return "error"  # setup/teardown failure, or an xdist worker crash (when "???")
    if report.skipped:
        return "skipped"
    return None


def _message(report: pytest.TestReport | pytest.CollectReport) -> str:
    if hasattr(report, "wasxfail") and report.skipped:
        return f"expected failure (xfail): {report.wasxfail}".rstrip(": ")
    longrepr = report.longrepr
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # skip: (path, lineno, reason)
        text = str(longrepr[2])
        return text[len("Skipped: "):] if text.startswith("Skipped: ") else text
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        text = crash.message
    else:
        lines = [line for line in str(longrepr).strip().splitlines() if line.strip()]
        text = re.sub(r"^E\s+", "", lines[-1]) if lines else ""  # pytest's "E   " error marker
    text = " ".join(text.split())  # one line: it goes into table cells
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


class ReportRecorder:
    """Controller-side collector and writer (registered by ``pytest_configure``)."""

    def __init__(self, config: pytest.Config, root: Path) -> None:
        self.config = config
        self.root = root
        self.run_id: str | None = None
        self.run_dir: Path | None = None
        self.started = utc_now()
        self.problem: str | None = None  # the one warning shown in the terminal summary
        self.rendered: Any = None  # a render.RenderedReport once written
        self._entries: dict[str, _Entry] = {}
        self._environment: dict[str, Any] | None = None
        self._status = "running"
        self._finished: str | None = None
        self._exit_status: int | None = None
        self._pointed_latest = False

    # -- collecting

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = list(getattr(report, "user_properties", ()) or ())
        recorded = [value for name, value in props if name == RESULT_PROPERTY]
        meta = next((value for name, value in props if name == CASE_PROPERTY), None)
        entry = self._entries.get(report.nodeid)
        if entry is None:
            if not recorded and meta is None:
                return  # not a case test: nothing to report
            entry = self._entries[report.nodeid] = _Entry(report.nodeid)
        before = (entry.outcome, len(entry.recorded))
        if meta is not None and entry.meta is None:
            entry.meta = json.loads(meta)
        if len(recorded) > len(entry.recorded):  # user_properties only grow within a test
            entry.recorded = recorded
        entry.durations[str(report.when)] = float(getattr(report, "duration", 0.0) or 0.0)
        outcome = _phase_outcome(report)
        # phases arrive in order (setup, call, teardown); an error is final
        if outcome is not None and entry.outcome != "error":
            entry.outcome = outcome
            if outcome != "passed":
                message = _message(report)
                entry.message = f"{entry.message}; then {message}" if entry.message else message
        if (entry.outcome, len(entry.recorded)) != before:  # something to report changed
            self._write()

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if not report.failed or "cases" not in Path(report.nodeid.split("::")[0]).parts[:-1]:
            return
        entry = self._entries.setdefault(report.nodeid, _Entry(report.nodeid))
        stem = Path(report.nodeid.split("::")[0]).stem
        match = _CLAIM_RE.search(stem.upper())
        entry.meta = {"claim": match.group(1) if match else "?", "case_id": stem,
                      "tier": "smoke", "uses_record_case": False, "collection": True}
        entry.outcome = "error"
        entry.message = "collection failed: " + _message(report)
        self._write()

    def results(self) -> list[CaseResult]:
        """Every result so far: recorded ones (with pytest's outcome) and synthesized rows for
        case tests that failed, errored or were skipped without recording anything."""
        out: list[CaseResult] = []
        for entry in self._entries.values():
            if entry.recorded:
                for text in entry.recorded:
                    try:
                        result = CaseResult.from_json(text)
                    except (SchemaError, TypeError, ValueError) as exc:
                        # record_case validated it, so only a foreign user_property with our
                        # key gets here; report it and keep the run going
                        self.problem = self.problem or (
                            f"volbench: dropped an invalid result from {entry.nodeid}: {exc}")
                        continue
                    out.append(replace(result, outcome=entry.outcome))
                continue
            synthesized = self._synthesize(entry)
            if synthesized is not None:
                out.append(synthesized)
        return out

    def _synthesize(self, entry: _Entry) -> CaseResult | None:
        meta = entry.meta
        if meta is None or not entry.outcome:
            return None
        if entry.outcome == "passed":
            if not meta.get("uses_record_case"):
                return None  # a helper test in cases/ that records nothing by design
            verdict, reason = "error", "the test passed but recorded no result (call record_case)"
        elif entry.outcome == "skipped":
            verdict, reason = "skip", entry.message or "skipped"
        elif entry.outcome in ("xfailed", "xpassed"):
            verdict = "inconclusive"
            reason = entry.message or f"{entry.outcome} without recording a result"
        elif meta.get("collection"):
            verdict, reason = "error", entry.message
        else:
            verdict = "error"
            reason = f"{entry.outcome} before recording a result: {entry.message or '?'}"
        return CaseResult(
            claim=meta.get("claim") or "?", case_id=meta.get("case_id") or entry.nodeid,
            title=meta.get("title", ""),
            verdict=verdict, tier=meta.get("tier", "smoke"), nodeid=entry.nodeid,
            reason=reason, seconds=sum(entry.durations.values()), device="",
            outcome=entry.outcome, quick=meta.get("quick", False) is True,  # a quick case's row stays quick
        )

    # -- writing

    def _tier(self, results: list[CaseResult]) -> str | None:
        tier = self.config.getoption("tier", default=None) or os.environ.get("VOLBENCH_TIER")
        if tier:
            return str(tier)
        tiers = sorted({result.tier for result in results})
        return ",".join(tiers) or None

    @staticmethod
    def _seed_summary(results: list[CaseResult]) -> dict[str, list]:
        summary: dict[str, set] = {}
        for result in results:
            for key, value in result.seeds.items():
                values = value if isinstance(value, tuple) else (value,)
                summary.setdefault(key, set()).update(
                    v for v in values if isinstance(v, (int, str)) and not isinstance(v, bool))
        return {key: sorted(values, key=str)[:64] for key, values in summary.items()}

    def _environment_block(self, results: list[CaseResult]) -> dict[str, Any]:
        if self._environment is None:
            try:
                from volbench.report.envinfo import collect_environment

                self._environment = collect_environment()
            except Exception as exc:  # the report must never break the test run
                self._environment = {"error": f"could not collect the environment: {exc!r}"}
        env = dict(self._environment)
        env["tier"] = self._tier(results)
        env["seeds"] = self._seed_summary(results)
        return env

    def run_report(self) -> RunReport:
        results = self.results()
        return RunReport(
            run_id=self.run_id or "unwritten", started=self.started, status=self._status,
            finished=self._finished, exit_status=self._exit_status,
            environment=self._environment_block(results), results=tuple(results),
        )

    def _fail(self, what: str, path: Path | None, exc: BaseException) -> None:
        where = path if path is not None else self.root
        if path is not None and path.is_file():
            kept = f"{path} keeps its last complete version (the results recorded before this write)"
        else:
            kept = "benchmark results of this run are not saved"
        fix = "" if "Fix:" in str(exc) else write_fix(exc)  # atomic writes already name it
        self.problem = (
            f"volbench: could not {what} {where} ({type(exc).__name__}: {exc}); {kept}. "
            f"{fix + '; or c' if fix else 'C'}hoose a writable directory with --volbench-report-dir DIR "
            f"(or ${REPORT_DIR_ENV}), or turn reports off with --volbench-no-report."
        )

    def _write(self) -> None:
        if self.problem is not None and self.run_dir is None:
            return  # the directory could not be created: warned once, stay quiet
        if self.run_dir is None:
            try:
                self.run_id, self.run_dir = create_run_dir(self.root)
            except OSError as exc:
                self._fail("create the report directory under", self.root, exc)
                return
        results = self.run_dir / RESULTS_NAME
        try:
            save_run(self.run_report(), results)
        except OSError as exc:
            self._fail("write", results, exc)
            if not results.exists():
                # Nothing of this run is on disk: drop its empty directory, so `latest` and the
                # report root keep pointing at the previous complete run only.
                try:
                    self.run_dir.rmdir()
                except OSError:
                    pass
                else:
                    self.run_id = self.run_dir = None
            return
        if not self._pointed_latest:
            # Only after a complete results.json exists: a run that could not write anything
            # (full disk) must not move `latest` away from the previous report.
            try:
                point_latest(self.root, self.run_id)
                self._pointed_latest = True
            except OSError:  # the run itself is saved; only the convenience pointer is missing
                pass

    # -- end of session

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.run_dir is None:
            return
        self._status = "interrupted" if exitstatus == pytest.ExitCode.INTERRUPTED else "complete"
        self._finished = utc_now()
        self._exit_status = int(exitstatus)
        self._write()
        try:
            from volbench.report.render import render_run

            run = self.run_report()
            self.rendered = render_run(run, self.run_dir)
        except Exception as exc:  # results.json is safe; a broken renderer must not fail tests
            self.problem = self.problem or (
                f"volbench: rendering the report in {self.run_dir} failed ({exc!r}); "
                f"results.json is intact: re-render with `volbench report {self.run_dir}`"
            )

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        tr = terminalreporter
        results = self.results() if self._entries else []
        if results:
            counts: dict[str, int] = {}
            for result in results:
                counts[result.verdict] = counts.get(result.verdict, 0) + 1
            tr.write_sep("=", "volbench: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
            for line, verdict in summary_lines(results):
                tr.write_line(line, **(_VERDICT_MARKUP.get(verdict, {}) if verdict else {}))
            for text, markup in baseline_move_lines(results):
                tr.write_line(text, **markup)
            if self.run_dir is not None and self.problem is None:
                target = self.rendered.html if self.rendered else self.run_dir / RESULTS_NAME
                tr.write_line(f"volbench report: {target}")
        if self.problem:
            tr.write_line(self.problem, yellow=True, bold=True)


def baseline_move_lines(results: list[CaseResult]) -> list[tuple[str, dict[str, bool]]]:
    """The terminal summary's section of moves against the verdict baseline that this run, on
    another machine class, reports without failing (``CaseResult.baseline_moves``): (text, markup)
    lines, none when nothing was reported."""
    from volbench.report.baseline import reported_moves

    out: list[tuple[str, dict[str, bool]]] = []
    for group in reported_moves(results):
        out.append((f"moved against the baseline recorded on {group.recorded_on} (not failing: another machine class)",
                    {"bold": True}))
        out.append((f"  this run: {group.machine}; differs in {group.differs}", {}))
        out += [(f"  {line}", {"yellow": True}) for line in group.lines]
    return out


def summary_lines(results: list[CaseResult]) -> list[tuple[str, str | None]]:
    """Rows of the verdict table (claim, case id, estimator, verdict, statistic, seconds) as
    aligned text, each followed by one indented line per judged statement (sub-verdict); the
    header's verdict is None. A skip's reason is shown whole: it says how to get what is missing."""
    rows = [("claim", "case", "estimator", "verdict", "statistic", "seconds")]
    subs: list[list[tuple[str, str]]] = [[]]
    for r in results:
        reason = r.reason if (r.verdict == "skip" or len(r.reason) <= 60) else r.reason[:57] + "..."
        stat = r.statistic.format(3) if r.statistic is not None else (reason or "-")
        secs = f"{r.seconds:.1f}" if r.seconds is not None else "-"
        verdict = r.verdict + (" (quick)" if r.quick else "")
        rows.append((r.claim, r.case_id, r.estimator or "-", verdict, stat, secs))
        subs.append([(st.format(3), st.verdict) for st in r.statements])
    # A skip's long reason would stretch the statistic column for every row: cap its width there.
    widths = [max(len(row[i]) for row in rows) for i in range(4)] + [min(60, max(len(row[4]) for row in rows))]
    lines: list[tuple[str, str | None]] = []
    for i, row in enumerate(rows):
        text = "  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths)) + "  " + row[5].rjust(7)
        lines.append((text.rstrip(), None if i == 0 else row[3].split(" ")[0]))
        for sub, verdict in subs[i]:
            lines.append((" " * 6 + sub, verdict if verdict != "not-judged" else "skip"))
    return lines
