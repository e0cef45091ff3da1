"""Statements (sub-verdicts) and how an interval decides one.

A claim in ``../shared/CLAIMS.md`` lists the statements a case must judge. A rule turns
measurements into one :class:`~volbench.results.Statement` per statement; the claim's verdict
is their conjunction (:func:`~volbench.results.combine_verdicts`: fail dominates, then
inconclusive; "not-judged" never counts as a pass).

Example:
    >>> from volbench.results import Statistic
    >>> st = interval_statement("a", "log V(clean) > log V(poisoned)",
    ...                         Statistic("log V difference", 900.0, low=120.0, high=1400.0, level=0.95),
    ...                         above=0.0, rule="pass if the interval is above 0")
    >>> st.verdict
    'pass'
    >>> not_judged("b", "SGD variant", "needs 10 more minima (~40 min on 2 cores)").verdict
    'not-judged'
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from volbench.claims.stats import margins_of, side_verdict
from volbench.results import STATEMENT_VERDICTS, Statement, Statistic, combine_verdicts

__all__ = ["Statement", "Statistic", "STATEMENT_VERDICTS", "combine_verdicts", "decide", "interval_statement",
           "not_judged", "claim_verdict", "deciding_statement"]


def decide(low: float | None, high: float | None, *, above: float | None = None,
           below: float | None = None, effect: float = 0.0) -> str:
    """'pass' if [low, high] lies entirely above ``above`` (or below ``below``), 'fail' if it lies
    entirely short of the smallest effect of interest ``effect`` on the claimed side (with 0: on
    the other side; ``volbench.claims.stats.side_verdict``), else 'inconclusive'. Missing or NaN
    bounds are inconclusive; an infinite bound is a bound (a minimum that left the basin has
    log V = -inf)."""
    if (above is None) == (below is None):
        raise ValueError("give exactly one of above= or below=")
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "inconclusive"
    interval = (float(low), float(high))
    return side_verdict(interval, interval, boundary=above if above is not None else below, below=below is not None,
                        effect=effect)


def interval_statement(id: str, text: str, statistic: Statistic, *, rule: str, above: float | None = None,
                       below: float | None = None, paper: str = "", numbers: Mapping[str, Any] | None = None,
                       undecided: str = "", effect: float = 0.0) -> Statement:
    """A statement decided by whether ``statistic``'s interval lies on the claimed side of a
    boundary, and fails short of the smallest effect of interest ``effect`` (:func:`decide`).
    ``undecided`` is the reason given when it straddles it (say what would decide it); a default
    is used otherwise."""
    verdict = decide(statistic.low, statistic.high, above=above, below=below, effect=effect)
    reason = ""
    if verdict == "fail" and effect > 0:
        reason = f"the interval lies short of the smallest effect of interest ({effect:.4g}): absent at this scale"
    if verdict == "inconclusive":
        bound = above if above is not None else below
        reason = undecided or (f"the {statistic.level or 0.95:.0%} interval [{statistic.low}, {statistic.high}] "
                               f"straddles {bound}")
    margins = margins_of(boundary=above if above is not None else below, below=below is not None, effect=effect)
    return Statement(id=id, text=text, verdict=verdict, statistic=statistic, rule=rule, reason=reason,
                     paper=paper, numbers=dict(numbers or {}), margins=margins)


def not_judged(id: str, text: str, reason: str, *, paper: str = "", numbers: Mapping[str, Any] | None = None,
               needs: str = "") -> Statement:
    """A statement this tier cannot afford, with the measured reason (never a pass); ``needs`` names
    the optional extra whose absence is that reason (the baseline then leaves it unchecked)."""
    return Statement(id=id, text=text, verdict="not-judged", reason=reason, paper=paper, numbers=dict(numbers or {}),
                     needs=needs)


def deciding_statement(statements: list[Statement]) -> Statement | None:
    """The statement that decided the claim's verdict, whose statistic is the claim's headline:
    the first statement with the conjunction's verdict (the first fail of a failing claim, the
    first undecided statement of an inconclusive one, the first pass of a passing one) that has a
    statistic; else the first judged statement with one; None when none has a statistic.

    >>> a = Statement("a", "x", "pass", Statistic("a", 1.0), rule="r")
    >>> b = Statement("b", "y", "fail", Statistic("b", -1.0), rule="r")
    >>> deciding_statement([a, b]).id
    'b'
    """
    verdict = claim_verdict(statements)
    with_stat = [st for st in statements if st.statistic is not None and st.verdict != "not-judged"]
    for st in with_stat:
        if st.verdict == verdict:
            return st
    return with_stat[0] if with_stat else None


def claim_verdict(statements: list[Statement]) -> str:
    """The claim's verdict: the conjunction of its statements."""
    return combine_verdicts([st.verdict for st in statements])
