"""Text formatting shared by the Markdown, HTML and terminal renderers (standard library only).

Example:
    >>> format_value(-1234567.5), format_value(60000.0), format_value(float("-inf"))
    ('-1.235e+06', '60000', '-inf')
    >>> format_value(list(range(20)))
    '[0, 1, 2, 3, 4, 5, … (20 values)]'
    >>> sorted(["F10", "F2", "E1", "S3"], key=claim_sort_key)
    ['E1', 'F2', 'F10', 'S3']
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from volbench.results import CaseResult, RunReport

__all__ = ["render_table",
    "format_value",
    "format_seconds",
    "claim_sort_key",
    "group_by_claim",
    "statistic_text",
    "seeds_text",
    "run_headline",
    "group_cases",
    "by_claim",
    "computed_seconds",
    "seconds_per_cost_eval",
    "timing_text",
]

_LIST_HEAD = 6  # list items shown before "…"


def format_value(value: Any, digits: int = 4) -> str:
    """Short human text for a JSON-able value (numbers to ``digits`` significant digits)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return {"nan": "nan", "inf": "inf", "-inf": "-inf"}[repr(value)]
        if value.is_integer() and abs(value) < 1e7:  # dataset sizes, counts: 60000, not 6e+04
            return str(int(value))
        return f"{value:.{digits}g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={format_value(v, digits)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        items = [format_value(v, digits) for v in value[:_LIST_HEAD]]
        if len(value) > _LIST_HEAD:
            items.append(f"… ({len(value)} values)")
        return "[" + ", ".join(items) + "]"
    return str(value)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}"
    if seconds < 3600:
        return f"{seconds:.1f}"
    return f"{seconds:.0f}"


def _timing_number(result: CaseResult, key: str) -> float | None:
    value = result.timing.get(key) if result.timing else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def computed_seconds(result: CaseResult) -> float | None:
    """Seconds this run computed for ``result``: measurements computed plus minima trained
    (``timing["measured_seconds"] + timing["trained_seconds"]``); None without a timing record.
    Seconds served from caches are not in it, so it is the figure to compare across runs.

    >>> r = CaseResult(claim="F1", case_id="F1-x", verdict="skip", reason="demo",
    ...                timing={"measured_seconds": 3.0, "trained_seconds": 1.5, "wall_seconds": 9.0})
    >>> computed_seconds(r)
    4.5
    """
    measured = _timing_number(result, "measured_seconds")
    trained = _timing_number(result, "trained_seconds")
    if measured is None and trained is None:
        return None
    return (measured or 0.0) + (trained or 0.0)


def seconds_per_cost_eval(result: CaseResult) -> float | None:
    """Seconds per cost evaluation of the measurements this run computed (the speed of the
    estimator on this hardware, free of caching): ``measured_seconds / measured_cost_evals``, or
    None where nothing was computed."""
    seconds = _timing_number(result, "measured_seconds")
    evals = _timing_number(result, "measured_cost_evals")
    if seconds is None or evals is None or not evals > 0 or not seconds > 0:
        return None
    return seconds / evals


def _count(value: float | None, one: str, many: str) -> str:
    n = int(value or 0)
    return f"{n:,} {one if n == 1 else many}"


def timing_text(result: CaseResult) -> str:
    """Where the case's time went, e.g. ``computed 4.50 s (measurements 3.00 s, 1,200 cost
    evaluations; training 1.50 s, 1 minimum) · served from caches: 2 measurements (had cost 20.0 s),
    3 minima · wall 9.00 s``; the wall seconds alone for results without a timing record.

    >>> r = CaseResult(claim="F1", case_id="F1-x", verdict="skip", reason="demo", seconds=2.0)
    >>> timing_text(r)
    'wall 2.00 s (no record of computed vs cached work)'
    """
    wall = _timing_number(result, "wall_seconds")
    wall = result.seconds if wall is None else wall
    computed = computed_seconds(result)
    if computed is None:
        return f"wall {format_seconds(wall)} s (no record of computed vs cached work)"
    t = result.timing
    measured = _timing_number(result, "measured_seconds") or 0.0
    trained = _timing_number(result, "trained_seconds") or 0.0
    parts = [f"computed {format_seconds(computed)} s (measurements {format_seconds(measured)} s, "
             f"{_count(t.get('measured_cost_evals'), 'cost evaluation', 'cost evaluations')} in "
             f"{_count(t.get('measurements_computed'), 'measurement', 'measurements')}; training "
             f"{format_seconds(trained)} s, {_count(t.get('minima_trained'), 'minimum', 'minima')})"]
    served_m = int(t.get("measurements_served") or 0)
    served_t = int(t.get("minima_served") or 0)
    if served_m or served_t:
        had = _timing_number(result, "served_seconds")
        parts.append(f"served from caches: {_count(served_m, 'measurement', 'measurements')}"
                     + (f" (had cost {format_seconds(had)} s)" if had else "")
                     + f", {_count(served_t, 'minimum', 'minima')}")
    else:
        parts.append("nothing served from caches")
    parts.append(f"wall {format_seconds(wall)} s")
    return " · ".join(parts)


def claim_sort_key(claim: str) -> tuple:
    """Natural order of claim ids: E1, E2, F1, F2, …, F10, S1, Z1; others last by name."""
    match = re.fullmatch(r"([A-Za-z]+)([0-9]+)(.*)", claim)
    if match:
        return (0, match.group(1), int(match.group(2)), match.group(3))
    return (1, claim, 0, "")


def group_by_claim(results: Iterable[CaseResult]) -> list[tuple[str, list[tuple[int, CaseResult]]]]:
    """[(claim, [(index in run, result), ...]), ...] in natural claim order; results keep their
    recording order within a claim."""
    groups: dict[str, list[tuple[int, CaseResult]]] = {}
    for index, result in enumerate(results):
        groups.setdefault(result.claim, []).append((index, result))
    return sorted(groups.items(), key=lambda item: claim_sort_key(item[0]))


def by_claim(results: Iterable[CaseResult]) -> list[tuple[int, CaseResult]]:
    """(index in run, result) pairs in natural claim order, recording order within a claim."""
    return [pair for _, members in group_by_claim(results) for pair in members]


def statistic_text(result: CaseResult) -> str:
    return result.statistic.format() if result.statistic is not None else "-"


def seeds_text(seeds: Mapping[str, Any]) -> str:
    return "; ".join(f"{key}: {format_value(value)}" for key, value in seeds.items()) or "-"


def run_headline(run: RunReport) -> str:
    """e.g. ``complete (pytest exit 1), 9 results: 4 pass, 1 fail, …``"""
    status = run.status + (f" (pytest exit {run.exit_status})" if run.exit_status is not None
                           else "")
    counts = ", ".join(f"{n} {verdict}" for verdict, n in run.verdict_counts().items())
    return f"{status}, {len(run.results)} results" + (f": {counts}" if counts else "")


def group_cases(
    results: Iterable[CaseResult],
) -> list[tuple[str, list[tuple[str, str, list[tuple[int, CaseResult]]]]]]:
    """Results grouped by claim (natural order), then by case id (first-recorded order):
    ``[(claim, [(case_id, title, [(index in run, result), ...]), ...]), ...]``; a case's title
    is the first non-empty title among its results."""
    out = []
    for claim, members in group_by_claim(results):
        cases: dict[str, list[tuple[int, CaseResult]]] = {}
        for index, result in members:
            cases.setdefault(result.case_id, []).append((index, result))
        out.append((claim, [
            (case_id, next((r.title for _, r in rows if r.title), ""), rows)
            for case_id, rows in cases.items()
        ]))
    return out


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False) -> str:
    """A table as aligned plain text (columns padded) or as Markdown (``|`` escaped, empty cells
    kept visible): the one table builder of the CLI, the history and the benchmark comparison.

    >>> print(render_table(["a", "bb"], [["1", "2"]]))
    a  bb
    1  2
    """
    header = list(header)
    rows = [list(r) for r in rows]
    if markdown:
        esc = [[c.replace("|", "\\|") or " " for c in row] for row in [header, *rows]]
        lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in esc[1:]])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows])
