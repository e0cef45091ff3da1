"""The claim-level table that heads ``report.md`` and ``index.html``: one row per claim.

Each row puts the paper's statement and number (:mod:`volbench.claims.registry`) beside what
each estimator found: the reference estimator (the main paper's fixed-grid procedure) and the
principled one (volbench's), each with its verdict and key number, any other estimator (e.g.
``nngp-ep``, ``sampling``), and whether the estimators agree. Its statements (sub-verdicts,
:class:`~volbench.results.Statement`) are listed on expansion.

Verdict of an estimator over a claim's cases: "error" if any case broke, else the conjunction of
the case verdicts (:func:`~volbench.results.combine_verdicts`, fail dominating, then
inconclusive; skipped cases are left out, and a claim with nothing judged is "skip").

Agreement, over the estimators with a judged verdict (pass, fail, inconclusive): "agree" (all
the same), "disagree" (one passes where another fails), "differ" (otherwise, e.g. pass against
inconclusive), "one estimator" (fewer than two judged).

Example:
    >>> from volbench.report.example import example_run
    >>> rows = claim_rows(example_run())
    >>> [(r.claim, r.agreement) for r in rows][:3]
    [('E1', 'one estimator'), ('F1', 'one estimator'), ('F2', 'one estimator')]
    >>> f5 = next(r for r in rows if r.claim == "F5")
    >>> f5.agreement, f5.estimators["reference"].verdict, f5.info.number[:23]
    ('agree', 'pass', 'Table 1 alphas (r_max ∝')
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from volbench.claims.registry import CLAIM_IDS, ClaimInfo, claim_info
from volbench.report.formatting import claim_sort_key
from volbench.results import CaseResult, Statement, combine_verdicts

__all__ = ["EstimatorSummary", "ClaimRow", "claim_rows", "missing_claims", "MAIN_ESTIMATORS"]

#: The two estimators the table gives columns of their own.
MAIN_ESTIMATORS = ("reference", "principled")
_JUDGED = ("pass", "fail", "inconclusive")


@dataclass(frozen=True)
class EstimatorSummary:
    """What one estimator found for one claim, over its cases.

    ``cases`` are (index in the run, result) in recording order; ``key`` is the headline number
    of the first case with a statistic (``"-"`` if none), with a count of further cases.
    """

    estimator: str
    verdict: str
    key: str
    cases: tuple[tuple[int, CaseResult], ...]

    @property
    def judged_cases(self) -> int:
        return sum(1 for _, r in self.cases if r.verdict in _JUDGED)


@dataclass(frozen=True)
class ClaimRow:
    """One claim of a run: registry text, per-estimator summaries and statements."""

    claim: str
    info: ClaimInfo | None
    title: str
    estimators: Mapping[str, EstimatorSummary]
    agreement: str
    statements: tuple[tuple[int, CaseResult, Statement], ...] = field(default=())
    quick: bool = False

    def summary(self) -> str:
        """``F5: 4 statements in 2 results`` (the line a collapsed row shows)."""
        n_st = len(self.statements)
        n_res = sum(len(s.cases) for s in self.estimators.values())
        return (f"{self.claim}: {n_st} statement{'' if n_st == 1 else 's'} in {n_res} "
                f"result{'' if n_res == 1 else 's'}")

    @property
    def others(self) -> list[EstimatorSummary]:
        """Summaries of estimators other than :data:`MAIN_ESTIMATORS`."""
        return [s for name, s in self.estimators.items() if name not in MAIN_ESTIMATORS]


def _combined(results: Sequence[CaseResult]) -> str:
    verdicts = [r.verdict for r in results]
    if "error" in verdicts:
        return "error"
    return combine_verdicts(["not-judged" if v == "skip" else v for v in verdicts])


def _key(results: Sequence[CaseResult]) -> str:
    with_stat = [r for r in results if r.statistic is not None]
    if not with_stat:
        first = results[0]
        return first.reason.split(";")[0][:120] if first.reason else "-"
    text = with_stat[0].statistic.format(3)
    if len(results) > 1:
        text += f" ({with_stat[0].case_id}; {len(results)} cases)"
    return text


def _agreement(summaries: Iterable[EstimatorSummary]) -> str:
    judged = {s.verdict for s in summaries if s.verdict in _JUDGED}
    count = sum(1 for s in summaries if s.verdict in _JUDGED)
    if count < 2:
        return "one estimator"
    if len(judged) == 1:
        return "agree"
    if {"pass", "fail"} <= judged:
        return "disagree"
    return "differ"


def claim_rows(results: Sequence[CaseResult] | object) -> list[ClaimRow]:
    """One :class:`ClaimRow` per claim present in ``results`` (a RunReport or its results), in
    natural claim order."""
    results = list(getattr(results, "results", results))
    by_claim: dict[str, list[tuple[int, CaseResult]]] = {}
    for index, result in enumerate(results):
        by_claim.setdefault(result.claim, []).append((index, result))
    rows = []
    for claim in sorted(by_claim, key=claim_sort_key):
        members = by_claim[claim]
        per_estimator: dict[str, list[tuple[int, CaseResult]]] = {}
        for index, result in members:
            per_estimator.setdefault(result.estimator or "-", []).append((index, result))
        order = [e for e in MAIN_ESTIMATORS if e in per_estimator] + [
            e for e in per_estimator if e not in MAIN_ESTIMATORS]
        summaries = {
            name: EstimatorSummary(name, _combined([r for _, r in per_estimator[name]]),
                                   _key([r for _, r in per_estimator[name]]), tuple(per_estimator[name]))
            for name in order
        }
        info = claim_info(claim)
        title = info.title if info else next((r.title for _, r in members if r.title), "")
        statements = tuple((index, r, st) for index, r in members for st in r.statements)
        rows.append(ClaimRow(claim, info, title, summaries, _agreement(summaries.values()), statements,
                             quick=any(r.quick for _, r in members)))
    return rows


def missing_claims(rows: Sequence[ClaimRow]) -> list[str]:
    """Registered claims (CLAIMS.md) that no result of the run belongs to."""
    present = {row.claim for row in rows}
    return [claim for claim in CLAIM_IDS if claim not in present]
