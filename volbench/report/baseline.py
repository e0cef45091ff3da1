"""The verdict baseline: the smoke tier's expected verdict for every case, statement and
estimator, checked in, so that CI fails when a verdict moves.

The file (default ``cases/baseline/smoke.json``) maps ``case_id -> estimator -> entry`` where an
entry is the result's verdict, its statistic, and each statement's verdict and statistic. A claim
case compares its fresh result with the entry (``cases/_support.finish``) and fails its test,
naming the case, the old and new verdict and both statistics, when they differ; a case with no
entry fails too (record it). Statistics are shown, never compared: they move with the machine's
rounding, the verdicts must not.

Updating is one command, whose diff goes in the same commit as the change that moved it, with
the reason in the commit message::

    volbench baseline update            # from reports/latest (a smoke run)
    volbench baseline update RUN --prune  # and drop cases the run no longer has

Example:
    >>> from volbench.report.schema import CaseResult, Statistic
    >>> r = CaseResult(claim="F5", case_id="F5-x", estimator="reference", verdict="pass",
    ...                statistic=Statistic("alpha", -0.2, low=-0.3, high=-0.1, level=0.95), rule="r")
    >>> base = {"F5-x": {"reference": entry_of(r)}}
    >>> moved(r, base)
    []
    >>> import dataclasses
    >>> moved(dataclasses.replace(r, verdict="fail"), base)[0].split(":")[0]
    'F5-x [reference] verdict'
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .schema import CaseResult, RunReport, Statistic, combine_verdicts

__all__ = ["BASELINE_ENV", "default_baseline_path", "load_baseline", "entry_of", "moved", "unchecked",
           "update_baseline", "baseline_as_run", "BaselineError"]

BASELINE_ENV = "VOLBENCH_BASELINE"  # a path, or "off" to skip the check
FORMAT = 1


class BaselineError(ValueError):
    """The baseline file is missing or malformed; the message names it and the fix."""


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


def load_baseline(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BaselineError(f"no verdict baseline at {path}; create it from a smoke run with "
                            f"`volbench baseline update` (or set {BASELINE_ENV}=off to skip the check)") from None
    except (OSError, ValueError) as exc:
        raise BaselineError(f"the verdict baseline {path} cannot be read ({exc}); restore it from git") from None
    if not isinstance(data, Mapping) or data.get("format") != FORMAT or not isinstance(data.get("cases"), Mapping):
        raise BaselineError(f"{path} is not a volbench verdict baseline (format {FORMAT}); restore it from git")
    return dict(data["cases"])


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


def moved(result: CaseResult, baseline: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """The differences between ``result`` and its baseline entry, one line each (empty: none).
    Statements that need a missing extra are not compared (:func:`unchecked`)."""
    entry = baseline.get(result.case_id, {}).get(result.estimator)
    where = f"{result.case_id} [{result.estimator or '-'}]"
    if entry is None:
        return [f"{where}: not in the verdict baseline (new case?): verdict {result.verdict}, "
                f"{_stat_text(result.statistic)}; record it with `volbench baseline update`"]
    out = []
    skipped = unchecked(result)
    expected = _expected_verdict(entry, skipped)
    if expected != result.verdict:
        without = (f"; the baseline's {entry['verdict']} without the statements that need a missing extra "
                   f"({', '.join(sorted(skipped))})" if skipped else "")
        out.append(f"{where} verdict: {expected} -> {result.verdict} "
                   f"(baseline {_stat_text(entry.get('statistic'))}; now {_stat_text(result.statistic)}{without})")
    old = entry.get("statements", {})
    new = {st.id: st for st in result.statements}
    for sid in sorted(set(old) | set(new)):
        if sid in skipped:
            continue
        if sid not in new:
            out.append(f"{where} statement ({sid}): {old[sid]['verdict']} -> missing")
        elif sid not in old:
            out.append(f"{where} statement ({sid}): new, {new[sid].verdict} ({_stat_text(new[sid].statistic)})")
        elif old[sid]["verdict"] != new[sid].verdict:
            out.append(f"{where} statement ({sid}): {old[sid]['verdict']} -> {new[sid].verdict} "
                       f"(baseline {_stat_text(old[sid].get('statistic'))}; now {_stat_text(new[sid].statistic)})")
    return out


def update_baseline(results: Iterable[CaseResult], path: Path, *, prune: bool = False) -> tuple[int, list[str]]:
    """Write the smoke, non-quick ``results`` into the baseline at ``path`` (atomically), keeping
    entries of cases the run did not include unless ``prune``. Returns (entries written, the
    lines of what moved)."""
    from .._writes import explain_write_error

    path = Path(path)
    try:
        cases = load_baseline(path)
    except BaselineError:
        if path.exists():
            raise
        cases = {}
    fresh: dict[str, dict[str, Any]] = {}
    changes: list[str] = []
    for r in results:
        if r.tier != "smoke" or r.quick or r.verdict == "error":
            continue
        changes += [line for line in moved(r, cases) if "not in the verdict baseline" not in line]
        fresh.setdefault(r.case_id, {})[r.estimator] = _merged_entry(r, cases.get(r.case_id, {}).get(r.estimator))
    merged = fresh if prune else {**cases, **{k: {**cases.get(k, {}), **v} for k, v in fresh.items()}}
    text = json.dumps({"format": FORMAT, "tier": "smoke",
                       "note": "expected smoke verdicts; update with `volbench baseline update` and commit the diff "
                               "with the reason in the commit message",
                       "cases": {k: merged[k] for k in sorted(merged)}}, indent=1, sort_keys=False, allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise explain_write_error(exc, path, what="the verdict baseline",
                                  kept="the previous baseline is unchanged") from exc
    return sum(len(v) for v in fresh.values()), changes


def baseline_as_run(path: Path) -> RunReport:
    """The baseline as a run, so ``volbench compare RUN baseline`` can compare against it."""
    from .schema import Statement

    cases = load_baseline(path)
    results = []
    for case_id, per_est in cases.items():
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
                                      reason="as recorded in the baseline", statements=tuple(statements)))
    return RunReport(run_id="baseline", started="(checked in)", status="complete",
                     environment={"source": str(path)}, results=tuple(results))
