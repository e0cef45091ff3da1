"""Is one set of timing rounds different from another? airspeed velocity's (asv) convention.

asv (``asv compare``, ``asv.statistics.is_different``) decides whether two benchmark results
differ from their raw rounds as follows, and volbench does the same:

1. where the rounds of both sides are at hand and numerous enough for the test to be able to
   reach the threshold, a two-sided **Mann-Whitney U test** at ``p < 0.002``;
   (exact null distribution without ties, normal approximation with tie correction otherwise);
2. otherwise, the two **99% intervals of the median** must not overlap.

A ratio that is not significant is printed with a ``~`` (asv: ``~1.05``).

"Numerous enough": the smallest two-sided p-value a Mann-Whitney U test of m and n rounds can
give is ``2 / C(m + n, m)`` (every round of one side below every round of the other). The test is
used only where that is below the threshold, e.g. 7 rounds each (2 / 3432 = 0.00058); with 6 each
it is 2 / 924 = 0.0022, so even complete separation could not count. (asv checks ``1 / C(m + n,
m)``, the one-sided bound; the two-sided bound used here is the one the test can attain.)

The 99% interval of a median of n rounds is the order-statistic interval ``[x_(r), x_(n+1-r)]``
with the largest r whose coverage ``1 - 2 P(Binomial(n, 1/2) <= r - 1)`` is at least 99%; it
exists from n = 8 (``2 * 0.5**8 = 0.0078 <= 0.01``). With 2 to 7 rounds no such interval exists
(asv then widens it with a Laplace posterior); volbench uses a Student-t 99% interval of the
mean of log seconds instead (timing noise is multiplicative and right-skewed, hence logs), which
for so few rounds is wide (t = 63.7 at 2 rounds, 9.9 at 3), i.e. conservative. One round gives
no interval: nothing is significant.

Example:
    >>> fast = [1.00, 1.02, 0.99, 1.01, 1.03, 0.98, 1.005]
    >>> compare_rounds(fast, [2 * t for t in fast]).mark
    'slower'
    >>> compare_rounds(fast, [1.01 * t for t in fast]).mark
    '~'
    >>> compare_rounds(fast, [1.01 * t for t in fast]).ratio_text()
    '~1.01x'
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "P_THRESHOLD",
    "INTERVAL_LEVEL",
    "MedianInterval",
    "Significance",
    "median_interval",
    "mann_whitney_can_decide",
    "compare_rounds",
]

#: asv's threshold of the Mann-Whitney U test (``asv.statistics.is_different``).
P_THRESHOLD = 0.002
#: Coverage of the interval of the median used where the test cannot decide (asv: ``ci_99``).
INTERVAL_LEVEL = 0.99
#: Largest sample size for which the exact null distribution of U is used (scipy computes it in
#: well under a second up to here); larger samples use the normal approximation.
_EXACT_MAX = 50


@dataclass(frozen=True)
class MedianInterval:
    """The median of some rounds (seconds) with an interval of it.

    ``method`` is ``"order statistics"`` (nonparametric, n >= 8 at 99%), ``"student-t on log
    seconds"`` (2 <= n < 8) or ``"none"`` (one round: ``low``/``high`` are None).
    """

    median: float
    low: float | None
    high: float | None
    level: float
    n: int
    method: str

    def overlaps(self, other: MedianInterval) -> bool | None:
        """Whether the two intervals overlap; None where either has none."""
        if self.low is None or other.low is None:
            return None
        return self.low <= other.high and other.low <= self.high


def _clean(samples: Sequence[float], name: str) -> list[float]:
    values = [float(x) for x in samples]
    if not values:
        raise ValueError(f"{name} holds no rounds")
    bad = [x for x in values if not (math.isfinite(x) and x > 0)]
    if bad:
        raise ValueError(f"{name} holds rounds that are not positive finite seconds: {bad[:3]}")
    return values


def median_interval(samples: Sequence[float], level: float = INTERVAL_LEVEL) -> MedianInterval:
    """Median of ``samples`` (seconds > 0) and an interval of it with coverage ``level``.

    >>> iv = median_interval([float(x) for x in range(1, 11)])
    >>> iv.median, iv.low, iv.high, iv.method
    (5.5, 1.0, 10.0, 'order statistics')
    >>> median_interval([2.0]).low is None
    True
    """
    from scipy import stats

    if not 0 < level < 1:
        raise ValueError(f"level is a coverage in (0, 1), got {level!r}")
    values = sorted(_clean(samples, "samples"))
    n = len(values)
    median = float(stats.scoreatpercentile(values, 50)) if n > 1 else values[0]
    alpha = 1.0 - level
    if n == 1:
        return MedianInterval(median, None, None, level, n, "none")
    # largest r (1-based) with P(K <= r - 1) <= alpha / 2, K ~ Binomial(n, 1/2)
    r = 0
    while r + 1 <= n // 2 and stats.binom.cdf(r, n, 0.5) <= alpha / 2:
        r += 1
    if r >= 1:
        return MedianInterval(median, values[r - 1], values[n - r], level, n, "order statistics")
    logs = [math.log(x) for x in values]
    mean = sum(logs) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / (n - 1))
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * sd / math.sqrt(n)
    return MedianInterval(median, math.exp(mean - half), math.exp(mean + half), level, n,
                          "student-t on log seconds")


def mann_whitney_can_decide(m: int, n: int, p_threshold: float = P_THRESHOLD) -> bool:
    """Whether a two-sided Mann-Whitney U test of m and n rounds can reach ``p < p_threshold``
    (its smallest p-value, ``2 / C(m + n, m)``, is below it).

    >>> mann_whitney_can_decide(7, 7), mann_whitney_can_decide(6, 6), mann_whitney_can_decide(20, 2)
    (True, False, False)
    """
    if m < 1 or n < 1:
        return False
    return 2.0 / math.comb(m + n, m) < p_threshold


@dataclass(frozen=True)
class Significance:
    """Outcome of comparing the rounds of ``other`` with those of ``baseline``.

    Attributes:
        ratio: median(other) / median(baseline): time ratio, above 1 = slower than the baseline.
        significant: whether the difference is significant by asv's rule.
        test: ``"mann-whitney"``, ``"interval overlap"`` or ``"none"`` (no interval to compare).
        p_value: the test's two-sided p-value (None for the interval rule).
        baseline, other: the medians with their intervals.
        p_threshold: the threshold used.
    """

    ratio: float
    significant: bool
    test: str
    p_value: float | None
    baseline: MedianInterval
    other: MedianInterval
    p_threshold: float = P_THRESHOLD

    @property
    def mark(self) -> str:
        """``"faster"`` / ``"slower"`` where significant, else ``"~"``."""
        if not self.significant:
            return "~"
        return "slower" if self.ratio > 1 else "faster"

    def ratio_text(self, digits: int = 2) -> str:
        """``0.52x``; ``~1.01x`` where not significant (asv's mark)."""
        return ("" if self.significant else "~") + f"{self.ratio:.{digits}f}x"

    def describe(self) -> str:
        """The test and its outcome in words, e.g. ``Mann-Whitney U p = 0.00058 (7 vs 7)``."""
        counts = f"{self.baseline.n} vs {self.other.n} rounds"
        if self.test == "mann-whitney":
            return f"Mann-Whitney U p = {self.p_value:.2g} ({counts})"
        if self.test == "interval overlap":
            state = "overlap" if self.baseline.overlaps(self.other) else "do not overlap"
            return f"99% intervals {state} ({counts})"
        return f"no interval ({counts}): cannot be significant"


def compare_rounds(baseline: Sequence[float], other: Sequence[float], *,
                   p_threshold: float = P_THRESHOLD, level: float = INTERVAL_LEVEL) -> Significance:
    """Compare two sets of rounds (seconds) by asv's rule (module docstring)."""
    from scipy import stats

    a = _clean(baseline, "baseline")
    b = _clean(other, "other")
    ia, ib = median_interval(a, level), median_interval(b, level)
    ratio = ib.median / ia.median
    if mann_whitney_can_decide(len(a), len(b), p_threshold):
        # exact null distribution where it is valid (no ties) and cheap; with ties, the normal
        # approximation with scipy's tie correction
        tied = len(set(a) | set(b)) < len(a) + len(b)
        method = "asymptotic" if tied or max(len(a), len(b)) > _EXACT_MAX else "exact"
        p = float(stats.mannwhitneyu(a, b, alternative="two-sided", method=method).pvalue)
        return Significance(ratio, p < p_threshold, "mann-whitney", p, ia, ib, p_threshold)
    overlap = ia.overlaps(ib)
    if overlap is None:
        return Significance(ratio, False, "none", None, ia, ib, p_threshold)
    return Significance(ratio, not overlap, "interval overlap", None, ia, ib, p_threshold)
