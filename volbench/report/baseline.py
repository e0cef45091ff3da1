"""The verdict baseline: the smoke tier's expected verdict for every case, statement and
estimator, checked in with the machine class that recorded it, so that CI fails when a verdict
moves.

The file (default ``cases/baseline/smoke.json``, format 2) holds ``machine`` (the
:class:`~volbench.report.machine.MachineClass` of the run that recorded it) and ``cases``:
``case_id -> estimator -> entry``, where an entry is the result's verdict, its statistic, and each
statement's verdict and statistic. A claim case compares its fresh result with the entry
(``cases/_support.py``); statistics are shown, never compared.

What fails the case's test (:func:`compare_with_baseline`):

* on the baseline's own machine class, any moved verdict, of the case or of a statement;
* on another class (another CPU vendor, ISA level, thread count, a GPU, another torch), where
  trained minima round differently, only a flip between pass and fail and a changed set of
  statements (one missing, new, or no longer judged); a move between pass or fail and
  inconclusive (:func:`is_borderline`) is *reported* (``CaseResult.baseline_moves``, shown in
  the terminal summary and the report) and does not fail;
* everywhere, a case missing from the baseline (record it).

``VOLBENCH_BASELINE_MATCH=strict`` compares every machine as the baseline's own class (a rehearsal
that must show every verdict equal under other thread counts or MKL settings). A format-1 file,
or a run whose class is unknown, is compared strictly too: nothing says the classes differ.

Updating is one command, whose diff goes in the same commit as the change that moved it, with
the reason in the commit message::

    volbench baseline update            # from reports/latest (a smoke run)
    volbench baseline update RUN --prune  # and drop cases the run no longer has

Example:
    >>> from volbench.results import CaseResult, Statistic
    >>> r = CaseResult(claim="F5", case_id="F5-x", estimator="reference", verdict="pass",
    ...                statistic=Statistic("alpha", -0.2, low=-0.3, high=-0.1, level=0.95), rule="r")
    >>> base = Baseline({"F5-x": {"reference": entry_of(r)}})
    >>> moved(r, base)
    []
    >>> import dataclasses
    >>> moved(dataclasses.replace(r, verdict="fail"), base)[0].split(":")[0]
    'F5-x [reference] verdict'

    Recorded on one thread, judged on four: a borderline move is reported, a flip fails.

    >>> from volbench.report.machine import MachineClass
    >>> amd = MachineClass("AuthenticAMD", "AVX512", 1, "cpu", "", "float32", False, "2.13.0")
    >>> base = Baseline(base.cases, machine=amd)
    >>> run = dataclasses.replace(r, machine=dataclasses.replace(amd, threads=4).to_dict())
    >>> c = compare_with_baseline(dataclasses.replace(run, verdict="inconclusive", reason="straddles 0"), base,
    ...                           strict=False)
    >>> len(c.failures), len(c.reported)
    (0, 1)
    >>> len(compare_with_baseline(dataclasses.replace(run, verdict="fail"), base, strict=False).failures)
    1
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from volbench.report.machine import MachineClass, describe_machine
from volbench.results import CaseResult, RunReport, Statistic, combine_verdicts

__all__ = ["BASELINE_ENV", "MATCH_ENV", "Baseline", "BaselineComparison", "BaselineError", "ReportedMoves",
           "default_baseline_path", "load_baseline", "entry_of", "moved", "is_borderline", "strict_match",
           "compare_with_baseline", "reported_moves", "machine_of", "unchecked", "update_baseline",
           "baseline_as_run", "REPORTED_NOTE"]

BASELINE_ENV = "VOLBENCH_BASELINE"  # a path, or "off" to skip the check
MATCH_ENV = "VOLBENCH_BASELINE_MATCH"  # "class" (the default) or "strict"
FORMAT = 2
_READABLE = (1, 2)  # format 1: no machine block (compared strictly)
_BORDERLINE = frozenset({frozenset({"pass", "inconclusive"}), frozenset({"fail", "inconclusive"})})

#: What the terminal summary, the report and ``volbench baseline check`` say under reported moves.
REPORTED_NOTE = ("Not failing: this run is on another machine class, where trained minima round differently and "
                 "a statistic near its rule's boundary can land on the other side, so a move between pass or "
                 "fail and inconclusive is reported; a flip between pass and fail, or a changed set of "
                 f"statements, fails the case's test. {MATCH_ENV}=strict fails every move.")


class BaselineError(ValueError):
    """The baseline file is missing or malformed, or an update would mix machine classes; the
    message names it and the fix."""


@dataclass(frozen=True)
class Baseline:
    """A loaded baseline: ``cases`` (case_id -> estimator -> entry) and the ``machine`` class that
    recorded them (None: unknown, as in a format-1 file)."""

    cases: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    machine: MachineClass | None = None

    def entry(self, result: CaseResult) -> Mapping[str, Any] | None:
        return self.cases.get(result.case_id, {}).get(result.estimator)


def default_baseline_path(root: Path | None = None) -> Path:
    """``$VOLBENCH_BASELINE`` if it names a file, else ``<root>/cases/baseline/smoke.json``."""
    env = os.environ.get(BASELINE_ENV, "").strip()
    if env and env.lower() != "off":
        return Path(env)
    return (root or Path.cwd()) / "cases" / "baseline" / "smoke.json"


def _stat_text(stat: Statistic | Mapping | None) -> str:
    if stat is None:
        return "-"
    if isinstance(stat, Mapping):
        stat = Statistic.from_dict(stat)
    return stat.format(4)


def entry_of(result: CaseResult) -> dict[str, Any]:
    """What the baseline keeps of one result."""
    return {
        "claim": result.claim,
        "verdict": result.verdict,
        "statistic": result.statistic.to_dict() if result.statistic is not None else None,
        "statements": {st.id: {"verdict": st.verdict,
                               "statistic": st.statistic.to_dict() if st.statistic is not None else None}
                       for st in result.statements},
    }


def _merged_entry(result: CaseResult, old: Mapping[str, Any] | None) -> dict[str, Any]:
    """``entry_of(result)``, keeping the old entry's judgement of statements that need a missing
    extra, so that an update from a run without the extra does not forget them."""
    entry = entry_of(result)
    skipped = unchecked(result) & set((old or {}).get("statements", {}))
    if not skipped:
        return entry
    for sid in skipped:
        entry["statements"][sid] = dict(old["statements"][sid])
    entry["verdict"] = combine_verdicts([st["verdict"] for st in entry["statements"].values()])
    return entry


def load_baseline(path: Path) -> Baseline:
    """The baseline at ``path`` (format 1 or 2; a format-1 file has no machine class)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BaselineError(f"no verdict baseline at {path}; create it from a smoke run with "
                            f"`volbench baseline update` (or set {BASELINE_ENV}=off to skip the check)") from None
    except (OSError, ValueError) as exc:
        raise BaselineError(f"the verdict baseline {path} cannot be read ({exc}); restore it from git") from None
    if (not isinstance(data, Mapping) or data.get("format") not in _READABLE
            or not isinstance(data.get("cases"), Mapping)):
        raise BaselineError(f"{path} is not a volbench verdict baseline (format {FORMAT}); restore it from git")
    machine = data.get("machine")
    try:
        machine = MachineClass.from_dict(machine) if machine is not None else None
    except ValueError as exc:
        raise BaselineError(f"{path} names its machine class wrongly ({exc}); restore it from git") from None
    return Baseline(dict(data["cases"]), machine)


def unchecked(result: CaseResult) -> set[str]:
    """The statements of ``result`` left "not-judged" because an optional extra is missing
    (``Statement.needs``): the baseline records them as judged with the extra, so a run without it
    leaves them, and their share of the case's verdict, unchecked."""
    return {st.id for st in result.statements if st.needs}


def _expected_verdict(entry: Mapping[str, Any], skipped: set[str]) -> str:
    """The baseline's case verdict, recomputed with the ``skipped`` statements not judged."""
    if not skipped:
        return entry["verdict"]
    old = entry.get("statements", {})
    return combine_verdicts(["not-judged" if sid in skipped else old[sid]["verdict"] for sid in old])


def is_borderline(old: str, new: str) -> bool:
    """True for a move between pass or fail and inconclusive (either way): what another machine
    class's rounding can do to a statistic near its rule's boundary. A flip between pass and fail,
    and a move to or from not-judged, skip or error, is not.

    >>> is_borderline("pass", "inconclusive"), is_borderline("inconclusive", "fail")
    (True, True)
    >>> is_borderline("pass", "fail"), is_borderline("not-judged", "inconclusive")
    (False, False)
    """
    return frozenset({old, new}) in _BORDERLINE


def _differences(result: CaseResult, baseline: Baseline) -> list[tuple[str, bool]]:
    """Each difference between ``result`` and its entry: (line, borderline). Statements that need
    a missing extra are not compared (:func:`unchecked`)."""
    entry = baseline.entry(result)
    where = f"{result.case_id} [{result.estimator or '-'}]"
    if entry is None:
        return [(f"{where}: not in the verdict baseline (new case?): verdict {result.verdict}, "
                 f"{_stat_text(result.statistic)}; record it with `volbench baseline update`", False)]
    out = []
    skipped = unchecked(result)
    expected = _expected_verdict(entry, skipped)
    if expected != result.verdict:
        without = (f"; the baseline's {entry['verdict']} without the statements that need a missing extra "
                   f"({', '.join(sorted(skipped))})" if skipped else "")
        out.append((f"{where} verdict: {expected} -> {result.verdict} "
                    f"(baseline {_stat_text(entry.get('statistic'))}; now {_stat_text(result.statistic)}{without})",
                    is_borderline(expected, result.verdict)))
    old = entry.get("statements", {})
    new = {st.id: st for st in result.statements}
    for sid in sorted(set(old) | set(new)):
        if sid in skipped:
            continue
        if sid not in new:
            out.append((f"{where} statement ({sid}): {old[sid]['verdict']} -> missing", False))
        elif sid not in old:
            out.append((f"{where} statement ({sid}): new, {new[sid].verdict} ({_stat_text(new[sid].statistic)})",
                        False))
        elif old[sid]["verdict"] != new[sid].verdict:
            out.append((f"{where} statement ({sid}): {old[sid]['verdict']} -> {new[sid].verdict} "
                        f"(baseline {_stat_text(old[sid].get('statistic'))}; now {_stat_text(new[sid].statistic)})",
                        is_borderline(old[sid]["verdict"], new[sid].verdict)))
    return out


def moved(result: CaseResult, baseline: Baseline) -> list[str]:
    """Every difference between ``result`` and its baseline entry, one line each (empty: none),
    whatever the machine class: what fails on the baseline's own class, and what an update moves."""
    return [line for line, _ in _differences(result, baseline)]


def strict_match() -> bool:
    """True when ``VOLBENCH_BASELINE_MATCH=strict``: every machine compared as the baseline's own
    class. Unset, empty or "class": class-aware (the default)."""
    value = os.environ.get(MATCH_ENV, "").strip().lower()
    if value in ("", "class"):
        return False
    if value == "strict":
        return True
    raise BaselineError(f"{MATCH_ENV}={value!r}: use 'class' (the default: borderline moves on another machine "
                        f"class are reported, not failed) or 'strict' (every moved verdict fails)")


def _as_class(machine: MachineClass | Mapping[str, Any] | None) -> MachineClass | None:
    if machine is None or isinstance(machine, MachineClass):
        return machine
    return MachineClass.from_dict(machine) if machine else None


@dataclass(frozen=True)
class BaselineComparison:
    """One result against the baseline.

    Attributes:
        failures: the lines that fail the case's test.
        reported: the moves shown and not failing (borderline, on another machine class).
        recorded_on: the baseline's machine class (None: unknown).
        machine: the class the result was judged on (None: unknown).
        one_class: compared as one class (the same class, an unknown one, or ``strict``).
    """

    failures: tuple[str, ...]
    reported: tuple[str, ...]
    recorded_on: MachineClass | None
    machine: MachineClass | None
    one_class: bool

    def moves_block(self) -> dict[str, Any]:
        """``CaseResult.baseline_moves`` for the reported moves ({} when none)."""
        if not self.reported:
            return {}
        return {"recorded_on": self.recorded_on.to_dict() if self.recorded_on else None,
                "lines": list(self.reported)}


def compare_with_baseline(result: CaseResult, baseline: Baseline,
                          machine: MachineClass | Mapping[str, Any] | None = None, *,
                          strict: bool | None = None) -> BaselineComparison:
    """Compare ``result`` with ``baseline`` under the policy of the module's docstring.

    ``machine`` is the class the result was judged on (default: ``result.machine``); ``strict``
    compares it as the baseline's own class whatever it is (default: :func:`strict_match`). The
    classes count as one when either is unknown.
    """
    machine = _as_class(machine) if machine is not None else _as_class(result.machine)
    strict = strict_match() if strict is None else strict
    one_class = strict or baseline.machine is None or machine is None or baseline.machine == machine
    failures, reported = [], []
    for line, borderline in _differences(result, baseline):
        (reported if borderline and not one_class else failures).append(line)
    return BaselineComparison(tuple(failures), tuple(reported), baseline.machine, machine, one_class)


@dataclass(frozen=True)
class ReportedMoves:
    """The reported moves of a run against one baseline: ``recorded_on`` (the baseline's class),
    ``machine`` (the run's), ``differs`` (how they differ) and the ``lines``."""

    recorded_on: str
    machine: str
    differs: str
    lines: tuple[str, ...]

    @property
    def title(self) -> str:
        return f"Moved against the baseline recorded on {self.recorded_on}"


def reported_moves(results: Iterable[CaseResult]) -> list[ReportedMoves]:
    """The ``baseline_moves`` of ``results``, grouped by baseline class and run class, in order."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for r in results:
        if not r.baseline_moves:
            continue
        recorded_on, machine = _as_class_or_none(r.baseline_moves["recorded_on"]), _as_class_or_none(r.machine)
        differs = ("; ".join(recorded_on.differences(machine)) if recorded_on and machine else "unknown")
        key = (describe_machine(recorded_on), describe_machine(machine), differs)
        groups.setdefault(key, []).extend(r.baseline_moves["lines"])
    return [ReportedMoves(*key, tuple(lines)) for key, lines in groups.items()]


def _as_class_or_none(machine: Mapping[str, Any] | None) -> MachineClass | None:
    """The class of a recorded dict, or None when it is absent or unreadable (a report must render)."""
    try:
        return _as_class(machine)
    except ValueError:
        return None


def machine_of(results: Iterable[CaseResult]) -> MachineClass | None:
    """The one machine class of ``results`` (None when none recorded one). Results without a class
    (rows the report plugin writes for tests that recorded nothing) do not count; two classes raise."""
    classes = {_as_class(r.machine) for r in results if r.machine} - {None}
    if len(classes) > 1:
        raise BaselineError("the run's results were judged on several machine classes ("
                            + "; ".join(sorted(m.describe() for m in classes))
                            + "); record a baseline from the results of one class")
    return next(iter(classes), None)


def _baseline_text(cases: Mapping[str, Any], machine: MachineClass | None) -> str:
    data = {"format": FORMAT, "tier": "smoke", "machine": machine.to_dict() if machine is not None else None,
            "note": "expected smoke verdicts, recorded on the machine class above; update with "
                    "`volbench baseline update` and commit the diff with the reason in the commit message",
            "cases": {k: cases[k] for k in sorted(cases)}}
    return json.dumps(data, indent=1, sort_keys=False, allow_nan=False) + "\n"


def update_baseline(results: Iterable[CaseResult], path: Path, *, prune: bool = False) -> tuple[int, list[str]]:
    """Write the smoke, non-quick ``results`` into the baseline at ``path`` (atomically), with the
    machine class they were judged on (:func:`machine_of`), keeping entries of cases the run did not
    include unless ``prune``. Keeping entries recorded on another class would mix classes under one
    machine block: that raises BaselineError. Returns (entries written, the lines of what moved)."""
    from volbench._io import atomic_write_text

    path = Path(path)
    try:
        old = load_baseline(path)
    except BaselineError:
        if path.exists():
            raise
        old = None
    previous = old or Baseline()
    cases = dict(previous.cases)
    results = [r for r in results if r.tier == "smoke" and not r.quick and r.verdict != "error"]
    machine = machine_of(results)
    fresh: dict[str, dict[str, Any]] = {}
    changes: list[str] = []
    for r in results:
        changes += [line for line in moved(r, previous) if "not in the verdict baseline" not in line]
        fresh.setdefault(r.case_id, {})[r.estimator] = _merged_entry(r, previous.entry(r))
    merged = fresh if prune else {**cases, **{k: {**cases.get(k, {}), **v} for k, v in fresh.items()}}
    kept = sorted(f"{k} [{est or '-'}]" for k, per in merged.items() for est in per if est not in fresh.get(k, {}))
    if old is not None and kept and old.machine != machine:
        raise BaselineError(
            f"{path} was recorded on {describe_machine(old.machine)}, this run on {describe_machine(machine)}; "
            f"keeping its {len(kept)} entries the run lacks (e.g. {kept[0]}) would mix machine classes. Record "
            f"every case from one run with --prune, or write another file with --baseline PATH")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, _baseline_text(merged, machine))
    return sum(len(v) for v in fresh.values()), changes


def baseline_as_run(path: Path) -> RunReport:
    """The baseline as a run, so ``volbench compare RUN baseline`` can compare against it."""
    from volbench.results import Statement

    baseline = load_baseline(path)
    results = []
    for case_id, per_est in baseline.cases.items():
        for est, e in per_est.items():
            statements = [Statement(sid, "", s["verdict"],
                                    statistic=s.get("statistic"),
                                    rule="as recorded in the baseline" if s.get("statistic") else "",
                                    reason="as recorded in the baseline")
                          for sid, s in e.get("statements", {}).items()]
            judged_without_stat = [st for st in statements if st.verdict in ("pass", "fail") and st.statistic is None]
            if judged_without_stat:
                statements = []
            results.append(CaseResult(claim=e.get("claim", "?"), case_id=case_id, estimator=est, verdict=e["verdict"],
                                      statistic=e.get("statistic"), rule="as recorded in the baseline",
                                      reason="as recorded in the baseline", statements=tuple(statements),
                                      machine=baseline.machine.to_dict() if baseline.machine else {}))
    return RunReport(run_id="baseline", started="(checked in)", status="complete",
                     environment={"source": str(path), "machine": describe_machine(baseline.machine)},
                     results=tuple(results))

