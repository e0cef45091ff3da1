"""Rules of the cross-check claims E4 (star-domain estimate vs direct sampling) and E5 (volume
scaling slope vs the local learning coefficient): measurements in, sub-verdicts out.

Both are *agreement* claims, so both use an equivalence rule on an interval of the difference:

* pass — the whole interval lies inside (-tolerance, +tolerance): the data show agreement;
* fail — the whole interval lies outside [-tolerance, +tolerance] on one side: the data show a
  disagreement larger than the tolerance;
* inconclusive — otherwise (the interval is too wide to tell, or straddles a tolerance edge).

A wide interval is therefore never a pass (unlike "the interval contains 0"), and a small,
well-resolved difference within the tolerance is never a fail.

E4: the difference is log mu_hat (estimator) - log p_hat (direct sampling). Each interval enters at
97.5% (the estimator's percentile bootstrap over directions, computed from the inside-radius terms
for its lower end and the outside-radius terms for its upper end, so the search's resolution is
included; sampling's Clopper-Pearson from the sure-accept count for its lower end and the
not-excluded count for its upper end), so the difference interval [lo_e - hi_s, hi_e - lo_s]
covers at >= 95% (Bonferroni). Tolerance ``E4_TOLERANCE`` = log 1.25: agreement to 25% of the
measure. Fixed before any network was measured: it is ten times finer than the 2-4 nats by which
isotropic directions were found to miss (issue Q5) and coarser than the ~0.05-0.1 nat sampling
error of a few thousand prior-directed rays, so both outcomes are decidable at smoke scale.

Informative range (E4). A comparison can only show the underestimation E4 is about where some of
the measure lies outside the star domain along most rays. Where the sampled measure is near 1
every ray's fraction is near 1 and the comparison is true by construction (both logs are near 0;
at p >= 1/1.25 any two estimates in [p, 1] pass the tolerance); where it is below ~1e-4 direct
sampling cannot count it in a CI budget. So a statement is judged only when the sampled rate lies
in ``E4_INFORMATIVE`` = [1e-4, 0.5]; outside, it is reported ("not-judged") with its numbers, never
counted as support. The levels of case E4 are chosen by stated rules
(``volbench.crosscheck.sampling.THRESHOLD_RULE`` and ``SCALE_RULE``) to land inside that range.

Power (E4). An inconclusive statement carries ``scale_to_decide``: the factor by which both the
draws and the rays must grow for the interval, shrinking as 1/sqrt(count) around the same point
difference, to fall wholly inside the tolerance (or wholly outside it, where the point difference
is beyond it). A measured projection, not a promise: the point difference moves too.

Exit rule (E4). ``e4_exit_rule`` judges the search's first-exit rule itself against an
independent grid along the accepted segments (``volbench.crosscheck.sampling``, ``segment_check``): the
rule's count over-states the grid-checked count by log(k / (k - m)) for m missed exits among k
accepts; an exact interval comes from Clopper-Pearson on m / k.

E5: the difference is log(lambda_hat / lambda), lambda the true value (n/2 for a regular quadratic,
Aoyagi's formula for a deep linear network) or devinterp's estimate with its interval. Tolerance
``E5_TOLERANCE`` = log 1.1 (10% of lambda): a slope that misses by more than a tenth does not
"estimate lambda".

Example:
    >>> st = e4_agreement("a", "2-4-1: estimate agrees with sampling", estimate=(-2.0, -2.1, -1.95),
    ...                   sampled=(-2.01, -2.05, -1.97))
    >>> st.verdict, round(st.statistic.value, 3)
    ('pass', 0.01)
    >>> e4_agreement("a", "isotropic", estimate=(-10.1, -12.0, -9.0), sampled=(-2.0, -2.05, -1.97)).verdict
    'fail'
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from volbench.claims.core import not_judged
from volbench.results import Statement, Statistic

__all__ = ["E4_TOLERANCE", "E5_TOLERANCE", "E4_LEVEL", "E4_INFORMATIVE", "equivalence", "scale_to_decide",
           "e4_agreement", "e4_same_law", "e4_exit_rule", "e4_lower_bounds", "e4_parting", "e5_against_truth",
           "e5_against_estimate", "e5_not_judged"]

E4_TOLERANCE = math.log(1.25)
E5_TOLERANCE = math.log(1.1)
#: Level of each of the two intervals entering an E4 difference (Bonferroni: the pair covers >= 95%).
E4_LEVEL = 0.975
#: Sampled acceptance rates at which an E4 comparison is informative (see the module docstring).
E4_INFORMATIVE = (1e-4, 0.5)


def equivalence(low: float, high: float, tolerance: float) -> str:
    """The equivalence verdict of an interval [low, high] of a difference (see module docstring).
    NaN bounds are inconclusive; infinite bounds are bounds.

    >>> equivalence(-0.1, 0.1, 0.2), equivalence(0.3, 0.9, 0.2), equivalence(-0.1, 0.5, 0.2)
    ('pass', 'fail', 'inconclusive')
    """
    if not tolerance > 0:
        raise ValueError(f"tolerance must be positive, got {tolerance!r}")
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if low > high:
        raise ValueError(f"interval is reversed: [{low}, {high}]")
    if -tolerance < low and high < tolerance:
        return "pass"
    if low > tolerance or high < -tolerance:
        return "fail"
    return "inconclusive"


def _triple(x, what: str) -> tuple[float, float, float]:
    try:
        point, low, high = (float(v) for v in x)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be (point, low, high), got {x!r}") from None
    if not low <= high or (math.isfinite(point) and not low <= point <= high):
        raise ValueError(f"{what} must satisfy low <= point <= high, got {x!r}")
    return point, low, high


def _reason(verdict: str, low: float, high: float, tol: float, what: str) -> str:
    if verdict != "inconclusive":
        return ""
    return (f"the interval [{low:.3g}, {high:.3g}] of {what} is neither inside (-{tol:.3g}, {tol:.3g}) nor outside it; "
            f"more directions or draws narrow it")


def scale_to_decide(point: float, low: float, high: float, tolerance: float) -> float:
    """Factor m by which the sample sizes behind an interval [low, high] of a difference must
    grow for equivalence to decide, if the half-widths shrink as 1/sqrt(m) around ``point``
    (1.0: already decided; inf: the point sits on a tolerance edge or a bound is not finite).

    >>> round(scale_to_decide(0.0, -0.3, 0.3, 0.2), 9)    # half-width 0.3 must become < 0.2: (0.3/0.2)^2
    2.25
    >>> round(scale_to_decide(-0.5, -0.8, -0.1, 0.2), 9)  # beyond it: the upper half-width 0.4 must be < 0.3
    1.777777778
    """
    if not all(math.isfinite(x) for x in (point, low, high)):
        return math.inf
    if equivalence(low, high, tolerance) != "inconclusive":
        return 1.0
    up, down = high - point, point - low
    if abs(point) < tolerance:  # to pass: point + up/sqrt(m) < tol and point - down/sqrt(m) > -tol
        need = max(up / (tolerance - point), down / (tolerance + point))
    elif point > tolerance:      # to fail: point - down/sqrt(m) > tol
        need = down / (point - tolerance)
    elif point < -tolerance:     # to fail: point + up/sqrt(m) < -tol
        need = up / (-tolerance - point)
    else:
        return math.inf
    return max(1.0, need * need)


def e4_agreement(id: str, text: str, *, estimate: tuple[float, float, float], sampled: tuple[float, float, float],
                 tolerance: float = E4_TOLERANCE, informative: tuple[float, float] = E4_INFORMATIVE,
                 numbers: Mapping[str, Any] | None = None) -> Statement:
    """E4: the estimator's log-measure (point, low, high; 97.5% each) agrees with direct sampling's.

    ``estimate`` and ``sampled`` are (log value, log lower bound, log upper bound) at ``E4_LEVEL``;
    the statistic is their difference with the Bonferroni interval [lo_e - hi_s, hi_e - lo_s].
    A sampled rate exp(sampled[0]) outside ``informative`` makes the statement "not-judged"
    (reported with its statistic; see the module docstring).

    >>> e4_agreement("a", "t", estimate=(-0.01, -0.02, 0.0), sampled=(-0.01, -0.015, -0.005)).verdict
    'not-judged'
    """
    e, e_lo, e_hi = _triple(estimate, "estimate")
    s, s_lo, s_hi = _triple(sampled, "sampled")
    lo_rate, hi_rate = informative
    if not 0 < lo_rate < hi_rate < 1:
        raise ValueError(f"informative must be a range (low, high) inside (0, 1), got {informative!r}")
    low, high = e_lo - s_hi, e_hi - s_lo
    if math.isnan(low) or math.isnan(high):
        low = high = math.nan
    verdict = equivalence(low, high, tolerance)
    point = e - s
    stat = Statistic("log mu_est - log p_sampled", point if math.isfinite(point) else low,
                     low=None if math.isnan(low) else low, high=None if math.isnan(high) else high,
                     level=0.95, unit="nats")
    rule = (f"equivalence: pass if the >= 95% interval of the difference (two {E4_LEVEL:.1%} intervals, Bonferroni; "
            f"search resolution and Clopper-Pearson included) lies inside +-{tolerance:.3f} nats (+-25% of the "
            f"measure), fail if it lies outside on one side, else inconclusive; judged only where the sampled rate "
            f"is in [{lo_rate:g}, {hi_rate:g}]")
    scale = scale_to_decide(point, low, high, tolerance) if verdict == "inconclusive" else 1.0
    nums = {"estimate": list((e, e_lo, e_hi)), "sampled": list((s, s_lo, s_hi)), "tolerance": tolerance,
            "sampled_rate": math.exp(s), "informative_range": [lo_rate, hi_rate], "scale_to_decide": scale}
    nums.update(numbers or {})
    rate = math.exp(s)
    if not lo_rate <= rate <= hi_rate:
        side = "near 1: every ray's fraction is near 1, so agreement is true by construction" if rate > hi_rate \
            else "too small for direct sampling to count in this budget"
        return Statement(id=id, text=text, verdict="not-judged", statistic=stat, rule=rule, numbers=nums,
                         reason=f"uninformative level: the sampled rate {rate:.3g} lies outside [{lo_rate:g}, "
                                f"{hi_rate:g}] ({side}); reported, not counted (its equivalence verdict would be "
                                f"{verdict!r})")
    reason = _reason(verdict, low, high, tolerance, "the log difference")
    if verdict == "inconclusive":
        reason += (f"; at the same point difference about {scale:.3g}x the draws and rays would decide it"
                   if math.isfinite(scale) else "; the point difference sits on the tolerance's edge")
    return Statement(id=id, text=text, verdict=verdict, statistic=stat, rule=rule, reason=reason, numbers=nums)


def e4_same_law(id: str, text: str, *, numbers: Mapping[str, Any] | None = None) -> Statement:
    """E4: a prior-directed statement where the measure is an isotropic Gaussian centred at the
    anchor. There the ray density p(u) is uniform and each prior-directed term equals the
    isotropic estimator's (tested in tests/test_crosscheck_methods.py), so the two statements
    would be one estimator judged twice: reported, not counted."""
    return not_judged(id, text, "the measure is an isotropic Gaussian centred at the anchor: prior-directed rays are "
                                "uniform there and each term equals the isotropic estimator's, so this is the "
                                "isotropic statement again (not counted twice)", numbers=dict(numbers or {}))


def e4_exit_rule(id: str, text: str, *, n_accepted: int, n_missed: int, grid: int, tolerance: float = E4_TOLERANCE,
                 numbers: Mapping[str, Any] | None = None) -> Statement:
    """E4: the first-exit rule shared by the estimator and direct sampling against an independent
    ``grid``-point check of each accepted segment. The statistic is log(k / (k - m)) (k accepts,
    m of them exits the grid finds), the amount by which the rule's measure over-states the
    grid-checked one; its interval comes from the Clopper-Pearson interval of m / k at 95%.

    >>> e4_exit_rule("x", "t", n_accepted=1000, n_missed=3, grid=64).verdict
    'pass'
    >>> e4_exit_rule("x", "t", n_accepted=500, n_missed=290, grid=64).verdict
    'fail'
    """
    from volbench.crosscheck.sampling import clopper_pearson

    if isinstance(n_accepted, bool) or not isinstance(n_accepted, int) or n_accepted < 1:
        raise ValueError(f"n_accepted must be a positive int, got {n_accepted!r}")
    if isinstance(n_missed, bool) or not isinstance(n_missed, int) or not 0 <= n_missed <= n_accepted:
        raise ValueError(f"n_missed must be an int in [0, n_accepted], got {n_missed!r}")
    q_lo, q_hi = clopper_pearson(n_missed, n_accepted, 0.95)

    def over(q: float) -> float:
        return -math.log1p(-q) if q < 1 else math.inf

    point, low, high = over(n_missed / n_accepted), over(q_lo), over(q_hi)
    verdict = equivalence(low, high, tolerance)
    stat = Statistic("log(k_rule / k_grid)", point, low=low, high=high if math.isfinite(high) else None, level=0.95,
                     unit="nats")
    rule = (f"equivalence: pass if the 95% interval of log(k / (k - m)) (Clopper-Pearson on the m of k accepted "
            f"segments on which a {grid}-point grid finds an exit) lies below {tolerance:.3f} nats, fail if it lies "
            f"above, else inconclusive")
    nums = {"n_accepted": n_accepted, "n_missed": n_missed, "grid": grid, "tolerance": tolerance}
    nums.update(numbers or {})
    return Statement(id=id, text=text, verdict=verdict, statistic=stat, rule=rule, numbers=nums,
                     reason=_reason(verdict, low, high, tolerance, "log(k_rule / k_grid)"))


def e4_lower_bounds(id: str, text: str, *, estimates: Mapping[str, tuple[float, float, float]],
                    differences: Mapping[str, tuple[float, float, float]] | None = None, reference: str = "prior",
                    numbers: Mapping[str, Any] | None = None) -> Statement:
    """E4 at large n, where direct sampling cannot count: the log-estimates of one measure by
    several unbiased estimators (isotropic, prior-directed, preconditioned), each biased low in
    log (Jensen), so each is a lower bound in expectation and the highest the tightest. Which is
    highest is reported, not judged: E4 claims agreement with sampling, and no sampler can decide
    here. ``differences`` are (point, low, high) of log(reference) - log(other) (bootstrap)."""
    if reference not in estimates:
        raise ValueError(f"reference {reference!r} is not one of the estimates {sorted(estimates)}")
    parsed = {k: _triple(v, f"estimates[{k!r}]") for k, v in estimates.items()}
    ranking = sorted(parsed, key=lambda k: -parsed[k][0])
    diffs = {k: _triple(v, f"differences[{k!r}]") for k, v in (differences or {}).items()}
    best_other = max((k for k in parsed if k != reference), key=lambda k: parsed[k][0], default=None)
    stat = None
    if best_other is not None and best_other in diffs:
        d, lo, hi = diffs[best_other]
        stat = Statistic(f"log mu({reference}) - log mu({best_other})", d, low=lo, high=hi, level=0.95, unit="nats")
    nums = {"estimates": {k: list(v) for k, v in parsed.items()}, "ranking": ranking,
            "differences": {k: list(v) for k, v in diffs.items()}}
    nums.update(numbers or {})
    return Statement(id=id, text=text, verdict="not-judged", statistic=stat, numbers=nums,
                     reason=f"reported: no sampler can count this measure; highest first: {', '.join(ranking)} "
                            f"(each log-estimate is a lower bound in expectation, Jensen)")


def e4_parting(levels: list[float], statements: list[Statement]) -> dict[str, Any]:
    """Where an estimator parts from sampling along a ladder of shrinking measures: the first
    level (in the order given, largest measure first) whose statement failed, the difference
    there, and the differences at every level."""
    if len(levels) != len(statements):
        raise ValueError("one statement per level")
    first = next((i for i, st in enumerate(statements) if st.verdict == "fail"), None)
    return {"levels": list(levels),
            "differences": [st.statistic.value if st.statistic is not None else math.nan for st in statements],
            "verdicts": [st.verdict for st in statements],
            "parts_at": None if first is None else levels[first],
            "difference_there": None if first is None else statements[first].statistic.value}


def e5_against_truth(id: str, text: str, *, fit: tuple[float, float, float], true_lambda: float,
                     tolerance: float = E5_TOLERANCE, numbers: Mapping[str, Any] | None = None) -> Statement:
    """E5 (a)/(b): lambda_hat = (slope, low, high) recovers a known lambda within ``tolerance`` on
    the log scale."""
    slope, low, high = _triple(fit, "fit")
    if not true_lambda > 0:
        raise ValueError(f"true_lambda must be positive, got {true_lambda!r}")
    if low <= 0:
        lo_r, hi_r = -math.inf, math.log(high / true_lambda) if high > 0 else -math.inf
    else:
        lo_r, hi_r = math.log(low / true_lambda), math.log(high / true_lambda)
    point = math.log(slope / true_lambda) if slope > 0 else lo_r
    verdict = equivalence(lo_r, hi_r, tolerance)
    stat = Statistic("log(lambda_hat / lambda)", point, low=lo_r, high=hi_r, level=0.95)
    rule = (f"equivalence: pass if the 95% bootstrap interval of log(lambda_hat / lambda) lies inside "
            f"+-{tolerance:.4f} "
            f"(+-10% of lambda), fail if it lies outside on one side, else inconclusive")
    nums = {"lambda_hat": [slope, low, high], "true_lambda": true_lambda, "tolerance": tolerance}
    nums.update(numbers or {})
    return Statement(id=id, text=text, verdict=verdict, statistic=stat, rule=rule,
                     reason=_reason(verdict, lo_r, hi_r, tolerance, "log(lambda_hat / lambda)"), numbers=nums)


def e5_against_estimate(id: str, text: str, *, fit: tuple[float, float, float], other: tuple[float, float, float],
                        tolerance: float = E5_TOLERANCE, numbers: Mapping[str, Any] | None = None) -> Statement:
    """E5 (c): our lambda_hat beside another estimate (devinterp's SGLD LLC), both (point, low,
    high) at 97.5% (Bonferroni, as in E4): the interval of log(ours / theirs) decides."""
    slope, low, high = _triple(fit, "fit")
    o, o_lo, o_hi = _triple(other, "other")

    def safe_log(x: float) -> float:
        return math.log(x) if x > 0 else -math.inf

    lo_r = safe_log(low) - (safe_log(o_hi) if o_hi > 0 else math.inf)
    hi_r = safe_log(high) - safe_log(o_lo) if o_lo > 0 else math.inf
    if not (o_hi > 0 and high > 0):
        lo_r = hi_r = math.nan
    verdict = equivalence(lo_r, hi_r, tolerance)
    point = safe_log(slope) - safe_log(o) if slope > 0 and o > 0 else math.nan
    value = point if math.isfinite(point) else (lo_r if math.isfinite(lo_r) else 0.0)
    stat = Statistic("log(lambda_hat / llc_devinterp)", value, low=None if math.isnan(lo_r) else lo_r,
                     high=None if math.isnan(hi_r) else hi_r, level=0.95)
    rule = (f"equivalence on log(ours / devinterp's): two 97.5% intervals (Bonferroni); pass inside +-{tolerance:.4f}, "
            f"fail outside on one side, else inconclusive")
    nums = {"lambda_hat": [slope, low, high], "devinterp": [o, o_lo, o_hi], "tolerance": tolerance}
    nums.update(numbers or {})
    reason = _reason(verdict, lo_r, hi_r, tolerance, "log(ours / devinterp's)")
    if verdict == "inconclusive" and math.isnan(lo_r):
        reason = "an estimate's interval reaches 0 or below, so the log-ratio is undefined; more chains or draws"
    return Statement(id=id, text=text, verdict=verdict, statistic=stat, rule=rule, reason=reason, numbers=nums)


def e5_not_judged(id: str, text: str, reason: str, *, needs: str = "", **numbers: Any) -> Statement:
    """A statement the run cannot judge (devinterp missing: ``needs="crosscheck"``; a fit range
    without finite log V)."""
    return not_judged(id, text, reason, numbers=numbers, needs=needs)
