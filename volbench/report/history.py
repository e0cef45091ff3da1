"""Results tracked across runs, the way asv tracks benchmarks: ``volbench history``.

Every run in a reports folder (``reports/<run-id>/results.json``) is read, ordered by start time,
and for each claim the statistics it recorded are lined up across runs: the headline statistic of
every result (alpha, log V differences, correlations, …) and every statement's statistic
(sub-verdicts), with the run's machine and commit (from the environment block,
:func:`volbench.report.envinfo.collect_environment`) and the case's timing (computed seconds and
seconds per cost evaluation, :mod:`volbench.report.formatting`).

A series is one (claim, case, estimator, statistic, quick) across runs; quick runs (tiny scale,
CI) are never mixed with real ones.

Change rule (stated in every listing):

* a **statistic** changed significantly between two consecutive runs of a series when both
  have an interval and the intervals do not overlap (the newer interval lies wholly outside the
  previous one). Where either lacks an interval nothing is claimed ("no interval");
* a **verdict** change (e.g. pass→fail) is always flagged;
* **timing** changed when the seconds per cost evaluation of the computed measurements moved by
  more than a factor :data:`TIMING_FACTOR` between consecutive runs on the same machine (a case
  records one figure, not rounds, so there is no test; this is asv's factor rule without
  statistics). Runs on different machines are not compared on timing.

Example:
    >>> from volbench.report.example import example_run
    >>> from dataclasses import replace
    >>> a = example_run(seed=0)
    >>> b = replace(example_run(seed=1), run_id="20250102T000000Z-bbbbbb", started="2025-01-02T00:00:00Z")
    >>> series = build_history([(None, a), (None, b)], claims=["E1"])
    >>> [(s.label, len(s.points)) for s in series]
    [('log V(500) - log V(50)', 2)]
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from volbench.report.formatting import claim_sort_key, computed_seconds, format_seconds, seconds_per_cost_eval
from volbench.results import CaseResult, RunReport, Statistic

__all__ = ["TIMING_FACTOR", "RULE", "RunInfo", "HistoryPoint", "Series", "load_runs", "build_history",
           "history_rows", "format_history", "history_plot", "machine_key"]

#: Factor by which seconds per cost evaluation must move between consecutive runs on one machine
#: to be flagged. Shared machines show 5-15% timing noise (issue Q4); 1.5x is well outside it.
TIMING_FACTOR = 1.5

RULE = ("change rule: a statistic changed when its interval and the previous run's do not overlap "
        "(no interval: not judged); a verdict change is always flagged; timing changed when seconds per "
        f"cost evaluation moved by more than {TIMING_FACTOR:g}x from the previous run on the same machine")


def machine_key(env: Mapping[str, Any]) -> str:
    """``host (GPU names)`` or ``host (CPU model)`` from an environment block; ``unknown`` parts
    where the block does not record them."""
    host = env.get("hostname") or "unknown host"
    devices = env.get("devices") or ()
    names = ", ".join(str(d.get("name", "unknown GPU")) for d in devices if isinstance(d, Mapping))
    hardware = names or (f"CPU {env['cpu']}" if env.get("cpu") else "unknown hardware")
    return f"{host} ({hardware})"


def _commit(env: Mapping[str, Any]) -> str:
    commit = env.get("git_commit")
    if not commit:
        return "unknown"
    return str(commit)[:10] + ("+dirty" if env.get("git_dirty") else "")


@dataclass(frozen=True)
class RunInfo:
    """One run of the history: id, start, machine, commit, tier, status and where it was read."""

    run_id: str
    started: str
    machine: str
    commit: str
    tier: str
    status: str
    path: Path | None


@dataclass(frozen=True)
class HistoryPoint:
    """A statistic of one result in one run, with the result's verdict and timing, and the
    change against the previous point of its series."""

    run: RunInfo
    verdict: str
    statistic: Statistic | None
    computed_s: float | None
    s_per_eval: float | None
    wall_s: float | None
    paper_value: float | None = None
    changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Series:
    """One (claim, case, estimator, statistic label, quick) across runs, oldest first."""

    claim: str
    case_id: str
    estimator: str
    label: str
    quick: bool
    points: tuple[HistoryPoint, ...] = field(default=())

    @property
    def flagged(self) -> list[HistoryPoint]:
        return [p for p in self.points if p.changes]


def load_runs(root: str | os.PathLike) -> tuple[list[tuple[Path, RunReport]], list[str]]:
    """Every readable run under ``root`` (its ``*/results.json``; ``latest`` is skipped) and one
    problem line per run that could not be read (it is left out, not guessed)."""
    from volbench.report.files import ReportFileError, load_run

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no reports folder at {root}; run the cases first or pass --report-dir")
    runs, problems = [], []
    for path in sorted(root.glob("*/results.json")):
        if path.parent.is_symlink():
            continue
        try:
            runs.append((path, load_run(path)))
        except (ReportFileError, OSError) as exc:
            problems.append(f"skipped {path}: {exc}")
    return runs, problems


def _overlap(a: Statistic, b: Statistic) -> bool | None:
    if a.low is None or b.low is None:
        return None
    return a.low <= b.high and b.low <= a.high


def _changes(prev: HistoryPoint, point: HistoryPoint) -> tuple[str, ...]:
    out = []
    if prev.verdict != point.verdict:
        out.append(f"verdict {prev.verdict}→{point.verdict}")
    both = prev.statistic is not None and point.statistic is not None
    if both and _overlap(prev.statistic, point.statistic) is False:
        out.append(f"statistic: [{prev.statistic.low:.4g}, {prev.statistic.high:.4g}] → "
                   f"[{point.statistic.low:.4g}, {point.statistic.high:.4g}] do not overlap")
    if (prev.run.machine == point.run.machine and prev.s_per_eval and point.s_per_eval
            and not 1 / TIMING_FACTOR <= point.s_per_eval / prev.s_per_eval <= TIMING_FACTOR):
        out.append(f"timing {point.s_per_eval / prev.s_per_eval:.2f}x s/eval")
    return tuple(out)


def build_history(runs: Iterable[tuple[Path | None, RunReport]], *, claims: Sequence[str] | None = None,
                  case: str | None = None, estimator: str | None = None,
                  statistic: str | None = None) -> list[Series]:
    """Series of every result's statistics across ``runs``, filtered by claim ids, a substring of
    the case id, the estimator and a substring of the statistic's label; flagged by :data:`RULE`."""
    ordered = sorted(runs, key=lambda item: (item[1].started, item[1].run_id))
    wanted = {c.upper() for c in claims} if claims else None
    table: dict[tuple[str, str, str, str, bool], list[HistoryPoint]] = {}
    for path, run in ordered:
        env = run.environment
        info = RunInfo(run.run_id, run.started, machine_key(env), _commit(env), str(env.get("tier") or "-"),
                       run.status, path)
        for result in run.results:
            if wanted is not None and result.claim.upper() not in wanted:
                continue
            if case and case not in result.case_id:
                continue
            if estimator is not None and (result.estimator or "-") != estimator:
                continue
            for label, stat, verdict, paper in _statistics(result):
                if statistic and statistic not in label:
                    continue
                key = (result.claim, result.case_id, result.estimator or "-", label, result.quick)
                table.setdefault(key, []).append(HistoryPoint(
                    info, verdict, stat, computed_seconds(result), seconds_per_cost_eval(result),
                    result.seconds, paper))
    series = []
    for key, points in table.items():
        flagged = [points[0]]
        for prev, point in zip(points, points[1:]):
            flagged.append(replace(point, changes=_changes(prev, point)))
        series.append(Series(*key, points=tuple(flagged)))
    series.sort(key=lambda s: (claim_sort_key(s.claim), s.case_id, s.estimator, s.quick, s.label))
    return series


def _statistics(result: CaseResult) -> list[tuple[str, Statistic | None, str, float | None]]:
    """(label, statistic, verdict, paper value) of the result's headline and of each statement."""
    out = []
    head = result.statistic.name if result.statistic is not None else "verdict"
    out.append((head, result.statistic, result.verdict, result.paper_value))
    for st in result.statements:
        name = st.statistic.name if st.statistic is not None else st.text[:40]
        out.append((f"({st.id}) {name}", st.statistic, st.verdict, None))
    return out


HEADER = ("claim", "case", "estimator", "statistic", "run", "machine", "commit", "value [interval]", "verdict",
          "computed s", "s/eval", "change")


def _value_text(stat: Statistic | None) -> str:
    """``-0.1835 [-0.2, -0.17] (95%)`` without the name (names can contain " = ")."""
    if stat is None:
        return "-"
    text = stat.format(4)
    prefix = f"{stat.name} = "
    return text[len(prefix):] if text.startswith(prefix) else text


def history_rows(series: Sequence[Series]) -> list[list[str]]:
    rows = []
    for s in series:
        for i, p in enumerate(s.points):
            stat = _value_text(p.statistic)
            rows.append([
                s.claim if i == 0 else "", s.case_id + (" (quick)" if s.quick else "") if i == 0 else "",
                s.estimator if i == 0 else "", s.label if i == 0 else "",
                p.run.run_id, p.run.machine, p.run.commit, stat, p.verdict, format_seconds(p.computed_s),
                "-" if p.s_per_eval is None else f"{p.s_per_eval:.3g}", "; ".join(p.changes) or "",
            ])
    return rows


def format_history(series: Sequence[Series], *, markdown: bool = False) -> str:
    from volbench.report.formatting import render_table

    if not series:
        return "no matching results in these runs"
    flagged = sum(len(s.flagged) for s in series)
    return "\n\n".join([RULE, render_table(HEADER, history_rows(series), markdown),
                        f"{flagged} change(s) flagged in {len(series)} series"])


def history_plot(series: Sequence[Series], *, dpi: int = 110, limit: int = 8):
    """One panel per statistic label (the first ``limit``): value and interval per run (x: runs in
    start order), one line per case and estimator, flagged points ringed in red, the paper's value
    dashed where the result records one. Returns a :class:`~volbench.report.plots.PlotImage`."""
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure

    from volbench.report.plots import COLORS, RC, PlotImage, png_bytes

    drawable = [s for s in series if any(p.statistic is not None for p in s.points)]
    if not drawable:
        return None
    labels = list(dict.fromkeys(s.label for s in drawable))[:limit]
    runs = sorted({(p.run.started, p.run.run_id) for s in drawable for p in s.points})
    x_of = {run_id: i for i, (_, run_id) in enumerate(runs)}
    commit_of = {p.run.run_id: p.run.commit[:8] for s in drawable for p in s.points}
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(7.6, 1.2 + 2.3 * len(labels)), layout="constrained")
        axes = fig.subplots(len(labels), 1, squeeze=False)[:, 0]
        for ax, label in zip(axes, labels):
            members = [s for s in drawable if s.label == label]
            for j, s in enumerate(members):
                pts = [p for p in s.points if p.statistic is not None]
                x = np.array([x_of[p.run.run_id] for p in pts], dtype=float)
                y = np.array([p.statistic.value for p in pts])
                color = COLORS[j % len(COLORS)]
                name = f"{s.case_id} · {s.estimator}" + (" (quick)" if s.quick else "")
                if all(p.statistic.low is not None for p in pts):
                    lo = np.array([p.statistic.low for p in pts])
                    hi = np.array([p.statistic.high for p in pts])
                    ax.errorbar(x, y, yerr=np.vstack([y - lo, hi - y]), fmt="o-", color=color, ms=4,
                                capsize=3, label=name)
                else:
                    ax.plot(x, y, "o-", color=color, ms=4, label=name)
                hit = [i for i, p in enumerate(pts) if p.changes]
                if hit:
                    ax.plot(x[hit], y[hit], "o", ms=11, mfc="none", mec="#cf222e", mew=1.8,
                            label="changed (see the listing)" if j == 0 else None)
                paper = next((p.paper_value for p in pts if p.paper_value is not None), None)
                if paper is not None:
                    ax.axhline(paper, ls="--", color=color, lw=1.0, label=f"paper: {paper:g}")
            ax.set_ylabel(label if len(label) < 30 else label[:28] + "…")
            ax.set_xticks(range(len(runs)), labels=[f"{rid[:15]}\n{commit_of[rid]}" for _, rid in runs], fontsize=7)
            ax.legend(fontsize=7, loc="best")
        axes[-1].set_xlabel("run and commit (oldest first)")
        claims = ", ".join(dict.fromkeys(s.claim for s in drawable))
        fig.suptitle(f"History of {claims} across {len(runs)} runs", fontsize=10)
        png = png_bytes(fig, dpi)
    return PlotImage(
        key="history", title=f"History of {claims}",
        alt=f"{len(labels)} statistics of {claims} across {len(runs)} runs.", png=png,
        caption=("Each panel is one statistic across the runs of the reports folder (oldest first), one line "
                 "per case and estimator, with its interval; a red ring marks a change by the rule "
                 "(intervals of consecutive runs do not overlap, or the verdict changed). A claim that "
                 "reproduces stably shows overlapping intervals on the claimed side of its boundary."))
