"""Statistics that fit the claims' design: paired over shared directions, replicated over seeds,
with the estimator's own resolution in the margin.

The design of every volume comparison in the main paper (Fan et al., Sec. 4): K directions drawn
once and shared by every minimum and landscape; S seeds, each a fresh (model, data order) pair that
training turns into one minimum per setting. So a claim such as "the minimum trained on D is larger
than the one trained on D' > D" is a statement about the minima training finds, and the unit of
replication is the seed:

1. **Per seed, paired over directions.** Two measurements of one seed share their K directions, so
   their difference d_s = log V_a - log V_b is computed from the same rays; its Monte Carlo spread
   (``boot_sd``) comes from resampling direction indices *jointly* (Efron & Tibshirani 1993,
   ch. 13, paired bootstrap). :func:`paired_difference` refuses measurements whose directions
   differ (:class:`PairingError`).
2. **Resolution.** Each term is only known to the estimator's resolution: the principled search
   returns an evaluated inside radius and the smallest evaluated outside radius (rtol apart), the
   paper's grid the last point inside and the first outside. :class:`Terms` keeps both bounds per
   direction, so d_s lies in [d_s^low, d_s^high] = [LME(a_low) - LME(b_high), LME(a_high) -
   LME(b_low)] (LME = log-mean-exp), which at n = 235,146 and one grid step is ~2 x 25,000 nats.
   The intervals put a fraction ``Terms.margin_fraction`` of each term's bracket in the margin:
   all of the search's (rtol wide), :data:`REFERENCE_MARGIN_FRACTION` of the grid's, set by the
   closed-form simulation where the verdicts live (``volbench.claims.coverage.simulate_scale``).
3. **Across seeds.** The claim is about E_seed[d] (the mean over the minima training finds). We use
   the random-effects t-interval on the per-seed estimates (each already carrying its direction
   noise), widened by the resolution bracket:

       [ mean_s d_s^low - t_{S-1, 1-a/2} sd/sqrt(S),  mean_s d_s^high + t_{S-1, 1-a/2} sd/sqrt(S) ]

   with sd the standard deviation of the per-seed point estimates d_s. Why not a hierarchical
   bootstrap: with S = 3..5 seeds a percentile bootstrap over seeds has ~10..100 distinct resamples
   and covers far below its nominal level; the t-interval is exact for normal d_s and its coverage
   is checked by simulation (``volbench.claims.coverage``; docs/STATISTICS.md). With one seed there
   is no seed-to-seed variation to estimate, so no interval (a verdict cannot rest on one draw).
4. **Many comparisons in one statement** ("every poisoned minimum is smaller"): pass only if every
   comparison's interval is above 0 (an intersection-union test, valid at level a without
   correction); fail if some comparison's Bonferroni interval (level 1 - a/m) lies below 0; else
   inconclusive. A comparison with a minimum that left the basin (volume zero) is reported but is
   never evidence (it is true by construction, not measured).
5. **Trends** (log V against poison, batch size, checkpoint): per seed the least-squares slope of
   the per-point log-volumes, paired over directions; its resolution bounds are the extremes of the
   slope over the per-point brackets (a linear functional: each point takes its low or high end by
   the sign of its weight); then step 3.
6. **Rules that can fail when the effect is absent** (minimum-effect testing; Lakens, Scheel &
   Isager 2018, "Equivalence testing for psychological research", Adv. Methods Pract. Psychol.
   Sci. 1(2)). "Above 0" alone can never fail a true effect of 0: more seeds narrow the interval
   around 0 and it stays inconclusive for ever. So every ordering and trend rule states its
   smallest effect of interest e > 0 (:class:`SmallestEffect`, fixed with the rule from the
   paper's own numbers, never from a result) and a comparison *fails* when its Bonferroni interval
   lies entirely below e on the claimed side: whatever effect there is, it is smaller than the
   smallest one the claim is about (an interval inside (0, e) is "present but smaller than the
   paper's effect at this scale": fail). Pass is unchanged: every interval on the claimed side of
   the boundary. A true effect of 0 with enough seeds therefore fails.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> def terms(shift, s):
    ...     t = rng.normal(size=40) + shift + 0.3 * s
    ...     return Terms(t, t - 0.01, t + 0.01, pairing=("principled", "filter", 0, 40))
    >>> diffs = [paired_difference(terms(5.0, s), terms(0.0, s)) for s in range(4)]
    >>> agg = aggregate(diffs)
    >>> low, high = agg.interval(0.95)
    >>> bool(0 < low < 5.0 < high), agg.n_seeds
    (True, 4)
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from volbench.estimator.measures import logmeanexp

__all__ = ["PairingError", "Terms", "SeedEstimate", "Aggregate", "paired_difference", "seed_slope",
           "seed_value", "aggregate", "all_above", "what_would_decide", "what_would_decide_equivalence", "lme_rows",
           "slope_weights", "DEFAULT_LEVEL",
           "REFERENCE_MARGIN_FRACTION", "margin_fraction_for", "SmallestEffect", "NO_EFFECT", "side_verdict",
           "judge_sides", "every_comparison", "side_rule", "margins_of"]

DEFAULT_LEVEL = 0.95
#: The fraction of the paper's grid bracket (per term: [previous grid point, crossing point]) that
#: the reference's intervals put in their margin (``Terms.margin_fraction``). Set by the closed-form
#: simulation where the verdicts live (``volbench.claims.coverage.simulate_scale``; n = 235,146,
#: S = 5 and 10, K = 64 and 128; docs/STATISTICS.md, "Coverage where the verdicts live"): the
#: smallest f on the grid 0, 0.1, 0.25, 0.5, 0.75, 1 whose coverage of the reference's own
#: expectation (and of 0 under the null) is not significantly below 95% in every design simulated
#: (effects of 0.1 to 1.8 grid steps, median crossing index 18 and 25). Why not 0: when the
#: effect is a fraction p of a grid step, every seed often lands on the same whole step (all 0 or
#: all 1 step: probability (1 - p)^S), the spread over seeds is ~0 and only the margin can hold
#: the expectation, which needs f >= p for the p where that happens more than 5% of the time
#: (p < 0.45 at S = 5); f = 0.25 left 0.87-0.88 coverage at p = 0.28-0.36. Why not 1: 0.5
#: already covers (at least 0.973 everywhere), and a whole step per side decides an effect of 1.75
#: steps in 0.70-0.77 of replications at S = 5, against 0.97-0.98 at 0.5. The principled search's
#: bracket (rtol wide) is kept whole.
REFERENCE_MARGIN_FRACTION = 0.5


def margin_fraction_for(estimator: str) -> float:
    """The margin fraction of a measurement by ``estimator``: :data:`REFERENCE_MARGIN_FRACTION`
    for the paper's grid ("reference"), the whole bracket (1) for the principled search, whose
    bracket is rtol wide (23.5 nats at rtol 1e-4, n = 235,146) and is kept in full."""
    return REFERENCE_MARGIN_FRACTION if estimator == "reference" else 1.0


N_BOOT = 400  # direction resamples per seed: enough for a standard error to ~4% (it feeds only the power estimate)


class PairingError(ValueError):
    """Two measurements compared as paired do not share their directions."""


def _lme(x: np.ndarray) -> float:
    """log-mean-exp over the finite-or-inf entries, NaN (dropped directions) ignored."""
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return math.nan
    return float(logmeanexp(x))


@dataclass(frozen=True)
class Terms:
    """One measurement's per-direction log-terms and their resolution bounds.

    Attributes:
        log_terms: [K] the estimator's terms (the volume is their log-mean-exp); NaN marks a
            direction the paper's procedure drops (it never crossed).
        low, high: [K] bounds of each term from the estimator's resolution (see the module doc).
        outside: the minimum left the basin in this landscape (volume zero): not evidence.
        pairing: what must match for two measurements to be paired: (estimator, direction kind,
            direction seed, K). Empty = unknown (never paired with a non-empty one).
        label: for messages.
        margin_fraction: the fraction f of each term's resolution bracket that the intervals put
            in their margin (:attr:`margin_bounds`): 1 = the whole bracket, 0 = none. The paper's
            grid gets :data:`REFERENCE_MARGIN_FRACTION` (``from_measurement``), set by simulation
            where the verdicts live (``volbench.claims.coverage``); the principled search keeps 1.
            ``low``/``high`` and :attr:`bracket` always hold the whole resolution bracket.
    """

    log_terms: np.ndarray
    low: np.ndarray
    high: np.ndarray
    outside: bool = False
    pairing: tuple = ()
    label: str = ""
    margin_fraction: float = 1.0

    def __post_init__(self) -> None:
        for name in ("log_terms", "low", "high"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        if not self.outside:
            if not (self.log_terms.shape == self.low.shape == self.high.shape) or self.log_terms.ndim != 1:
                raise ValueError(f"{self.label or 'terms'}: log_terms, low and high must be 1-D arrays of one length, "
                                 f"got {self.log_terms.shape}, {self.low.shape}, {self.high.shape}")
            ok = ~np.isnan(self.log_terms)
            # A guard against swapped or mismatched bounds, never a verdict: the estimators compute
            # low, log_terms and high by one monotone float64 formula from radii r_in <= r_out, so
            # rounding can disorder them only by that formula's error (Gaussian measure: gamma of a
            # few hundred operations of |term|, ~1e-13 relative); 1e-9 relative is above it.
            if np.any(self.low[ok] > self.log_terms[ok] + 1e-9 * np.abs(self.log_terms[ok])) or np.any(
                    self.high[ok] < self.log_terms[ok] - 1e-9 * np.abs(self.log_terms[ok])):
                raise ValueError(f"{self.label or 'terms'}: resolution bounds must satisfy low <= log_terms <= high")
        f = self.margin_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 <= f <= 1.0:
            raise ValueError(f"{self.label or 'terms'}: margin_fraction must be a number in [0, 1], got {f!r}")

    @classmethod
    def from_measurement(cls, m: Any) -> Terms:
        """From a ``volbench.lab.Measurement`` (its bounds, its direction seed and kind; the
        paper's grid with margin fraction :data:`REFERENCE_MARGIN_FRACTION`)."""
        low = m.log_terms_low if len(m.log_terms_low) == len(m.log_terms) else m.log_terms
        high = m.log_terms_high if len(m.log_terms_high) == len(m.log_terms) else m.log_terms
        return cls(np.asarray(m.log_terms, dtype=np.float64), np.asarray(low, dtype=np.float64),
                   np.asarray(high, dtype=np.float64), outside=bool(m.outside),
                   pairing=(m.estimator, m.directions, m.direction_seed, m.n_directions),
                   label=f"{m.minimum} in D={m.landscape_size}",
                   margin_fraction=margin_fraction_for(m.estimator))

    @property
    def log_volume(self) -> float:
        return -math.inf if self.outside else _lme(self.log_terms)

    @property
    def bracket(self) -> tuple[float, float]:
        """(log V from the low bounds, log V from the high bounds): the whole resolution bracket."""
        if self.outside:
            return -math.inf, -math.inf
        return _lme(self.low), _lme(self.high)

    @property
    def margin_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-term (low, high) as the intervals use them: each term's resolution bracket scaled
        about the term by ``margin_fraction`` (the whole bracket at 1, the term itself at 0)."""
        f = float(self.margin_fraction)
        if f == 1.0:
            return self.low, self.high
        t = self.log_terms
        with np.errstate(invalid="ignore"):  # an infinite bound (grid point 0: radius 0) stays infinite
            low = np.where(np.isfinite(self.low), t - f * (t - self.low), self.low if f > 0 else t)
            high = np.where(np.isfinite(self.high), t + f * (self.high - t), self.high if f > 0 else t)
        return low, high

    @property
    def margin_bracket(self) -> tuple[float, float]:
        """(log V from the margin's low bounds, from its high bounds); :attr:`bracket` at f = 1."""
        if self.outside:
            return -math.inf, -math.inf
        low, high = self.margin_bounds
        return _lme(low), _lme(high)


@dataclass(frozen=True)
class SeedEstimate:
    """One seed's value of a statistic (a paired difference, a slope, an accuracy gap).

    ``low``/``high`` bound it by the estimator's resolution; ``boot_sd`` is its Monte Carlo
    standard deviation over directions (0 where there is none). ``informative`` is False where it
    cannot be evidence (a minimum left the basin); ``note`` says why.
    """

    point: float
    low: float
    high: float
    boot_sd: float = 0.0
    informative: bool = True
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"point": self.point, "low": self.low, "high": self.high, "boot_sd": self.boot_sd,
                "informative": self.informative, "note": self.note}


def _check_pair(a: Terms, b: Terms) -> None:
    if not a.pairing or a.pairing != b.pairing:
        raise PairingError(
            f"{a.label or 'a'} and {b.label or 'b'} are compared as paired but do not share their directions "
            f"({a.pairing} vs {b.pairing}); measure both with the same estimator, direction kind, direction seed "
            f"and number of directions")
    if len(a.log_terms) != len(b.log_terms):
        raise PairingError(f"{a.label} has {len(a.log_terms)} directions and {b.label} {len(b.log_terms)}")


def _boot_indices(k: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, k, size=(n_boot, k))


def lme_rows(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The log-mean-exp of ``x`` over each bootstrap row of direction indices ``idx`` ``[n_boot, K]``."""
    return np.asarray(logmeanexp(x[idx], axis=1), dtype=np.float64)


def paired_difference(a: Terms, b: Terms, *, n_boot: int = N_BOOT, seed: int = 0) -> SeedEstimate:
    """log V_a - log V_b of one seed, paired over shared directions, with its resolution bounds
    (each measurement's :attr:`Terms.margin_bounds`) and its direction-bootstrap standard
    deviation. Raises :class:`PairingError` if the two measurements do not share directions."""
    if a.outside or b.outside:
        who = " and ".join(t.label or "a minimum" for t in (a, b) if t.outside)
        point = math.nan if (a.outside and b.outside) else (-math.inf if a.outside else math.inf)
        return SeedEstimate(point, point, point, informative=False,
                            note=f"{who} left the basin (volume zero): reported, not evidence")
    _check_pair(a, b)
    point = _lme(a.log_terms) - _lme(b.log_terms)
    (a_low, a_high), (b_low, b_high) = a.margin_bounds, b.margin_bounds
    low = _lme(a_low) - _lme(b_high)
    high = _lme(a_high) - _lme(b_low)
    idx = _boot_indices(len(a.log_terms), n_boot, seed)
    boots = lme_rows(a.log_terms, idx) - lme_rows(b.log_terms, idx)
    boots = boots[np.isfinite(boots)]
    sd = float(np.std(boots, ddof=1)) if boots.size > 1 else 0.0
    return SeedEstimate(point, min(low, point), max(high, point), boot_sd=sd)


def slope_weights(x: Sequence[float]) -> np.ndarray:
    """Least-squares slope weights: slope = sum_i w_i y_i, w_i = (x_i - mean x) / sum (x - mean x)^2."""
    x = np.asarray(x, dtype=np.float64)
    xc = x - x.mean()
    ss = float(np.sum(xc * xc))
    if not ss > 0:
        raise ValueError("a slope needs at least two distinct x values")
    return xc / ss


def seed_slope(x: Sequence[float], terms: Sequence[Terms], *, n_boot: int = N_BOOT, seed: int = 0) -> SeedEstimate:
    """Least-squares slope of log V on ``x`` for one seed's measurements (paired over directions),
    with resolution bounds (each point at the end of its bracket that moves the slope most) and a
    direction-bootstrap standard deviation (directions resampled jointly at every x). Points whose
    minimum left the basin are left out (noted); fewer than two usable points is not informative."""
    if len(x) != len(terms):
        raise ValueError(f"seed_slope needs one x per measurement, got {len(x)} and {len(terms)}")
    keep = [i for i, t in enumerate(terms) if not t.outside]
    note = "" if len(keep) == len(terms) else f"{len(terms) - len(keep)} point(s) left the basin and were left out"
    xs = np.asarray([x[i] for i in keep], dtype=np.float64)
    if len(keep) < 2 or len(np.unique(xs)) < 2:
        return SeedEstimate(math.nan, math.nan, math.nan, informative=False,
                            note=note or "fewer than two distinct x values")
    ts = [terms[i] for i in keep]
    for t in ts[1:]:
        _check_pair(ts[0], t)
    w = slope_weights(xs)
    y = np.array([t.log_volume for t in ts])
    lows = np.array([t.margin_bracket[0] for t in ts])
    highs = np.array([t.margin_bracket[1] for t in ts])
    point = float(w @ y)
    low = float(np.sum(np.where(w > 0, w * lows, w * highs)))
    high = float(np.sum(np.where(w > 0, w * highs, w * lows)))
    idx = _boot_indices(len(ts[0].log_terms), n_boot, seed)
    ys = np.stack([lme_rows(t.log_terms, idx) for t in ts], axis=1)  # [boot, points]
    boots = ys @ w
    boots = boots[np.isfinite(boots)]
    sd = float(np.std(boots, ddof=1)) if boots.size > 1 else 0.0
    return SeedEstimate(point, min(low, point), max(high, point), boot_sd=sd, note=note)


def seed_value(value: float, *, sd: float = 0.0, low: float | None = None, high: float | None = None,
               note: str = "") -> SeedEstimate:
    """A per-seed statistic known to its own precision (e.g. a test-accuracy gap with its binomial
    standard deviation ``sd``)."""
    ok = math.isfinite(value)
    return SeedEstimate(value, value if low is None else low, value if high is None else high, boot_sd=sd,
                        informative=ok, note=note or ("" if ok else "not finite"))


@dataclass(frozen=True)
class Aggregate:
    """A statistic over seeds: the mean of the per-seed estimates with a t-interval widened by the
    resolution bracket (see the module docstring, step 3)."""

    seeds: tuple[SeedEstimate, ...]
    label: str = ""
    unit: str = "nats"
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def used(self) -> list[SeedEstimate]:
        return [s for s in self.seeds if s.informative]

    @property
    def n_seeds(self) -> int:
        return len(self.used)

    @property
    def point(self) -> float:
        used = self.used
        return float(np.mean([s.point for s in used])) if used else math.nan

    @property
    def sd(self) -> float:
        used = self.used
        return float(np.std([s.point for s in used], ddof=1)) if len(used) > 1 else math.nan

    @property
    def resolution(self) -> tuple[float, float]:
        """(mean of the per-seed low bounds, mean of the high bounds)."""
        used = self.used
        if not used:
            return math.nan, math.nan
        return float(np.mean([s.low for s in used])), float(np.mean([s.high for s in used]))

    def interval(self, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
        """The t-interval over seeds at ``level``, widened by the resolution bracket; (nan, nan)
        with fewer than two informative seeds."""
        from scipy import stats

        used = self.used
        if len(used) < 2:
            return math.nan, math.nan
        half = float(stats.t.ppf(0.5 + level / 2, len(used) - 1)) * self.sd / math.sqrt(len(used))
        lo, hi = self.resolution
        return lo - half, hi + half

    def as_dict(self, level: float = DEFAULT_LEVEL) -> dict[str, Any]:
        lo, hi = self.interval(level)
        rlo, rhi = self.resolution
        return {"label": self.label, "mean": self.point, "low": lo, "high": hi, "level": level,
                "n_seeds": self.n_seeds, "sd_over_seeds": self.sd, "resolution_low": rlo, "resolution_high": rhi,
                "per_seed": [s.as_dict() for s in self.seeds], **dict(self.info)}


def aggregate(estimates: Sequence[SeedEstimate], *, label: str = "", unit: str = "nats",
              info: Mapping[str, Any] | None = None) -> Aggregate:
    return Aggregate(tuple(estimates), label=label, unit=unit, info=dict(info or {}))


@dataclass(frozen=True)
class SmallestEffect:
    """The smallest effect of interest of an ordering or trend rule (module docstring, step 6).

    ``value`` is a magnitude (>= 0, in the statistic's unit) on the claimed side of the boundary:
    one number for every comparison, or one per comparison label. ``reason`` says where it comes
    from (the paper's number it is a stated fraction of); it goes into the rule's text and the
    report. A value of 0 is the old rule ("on the other side of the boundary" is the only fail).

    Example:
        >>> e = SmallestEffect({"D=60: own - trained on 600": 9935.0}, "a tenth of Table 1's alpha")
        >>> e.of("D=60: own - trained on 600"), SmallestEffect(0.25, "").of("anything")
        (9935.0, 0.25)
    """

    value: float | Mapping[str, float]
    reason: str = ""

    def __post_init__(self) -> None:
        values = self.value.values() if isinstance(self.value, Mapping) else [self.value]
        for v in values:
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"a smallest effect of interest is a finite magnitude >= 0, got {v!r}: give "
                                 "its size on the claimed side of the boundary (the sign comes from the rule)")

    @property
    def positive(self) -> bool:
        """Whether some comparison has a smallest effect above 0 (the rule can fail on an absent effect)."""
        values = self.value.values() if isinstance(self.value, Mapping) else [self.value]
        return any(float(v) > 0 for v in values)

    def of(self, key: str) -> float:
        if isinstance(self.value, Mapping):
            if key not in self.value:
                raise KeyError(f"no smallest effect of interest for the comparison {key!r}; "
                               f"it has {sorted(self.value)}")
            return float(self.value[key])
        return float(self.value)

    def describe(self) -> str:
        if isinstance(self.value, Mapping):
            vals = sorted(set(float(v) for v in self.value.values()))
            size = f"{vals[0]:.4g}" if len(vals) == 1 else f"{vals[0]:.4g} to {vals[-1]:.4g} by comparison"
        else:
            size = f"{float(self.value):.4g}"
        return size + (f" ({self.reason})" if self.reason else "")


NO_EFFECT = SmallestEffect(0.0, "")


def side_verdict(interval: tuple[float, float], strict: tuple[float, float], *, boundary: float = 0.0,
                 below: bool = False, effect: float = 0.0) -> str:
    """One comparison's verdict on "lies above ``boundary``" (below, with ``below=True``) with a
    smallest effect of interest ``effect`` (module docstring, steps 4 and 6).

    Fail if the ``strict`` (Bonferroni) interval lies entirely short of ``boundary + effect`` on
    the claimed side (with ``effect = 0``: entirely on the other side); pass if ``interval`` lies
    entirely beyond ``boundary``; otherwise inconclusive. NaN bounds are inconclusive.

    Example (claimed: above 0, smallest effect 10):
        >>> [side_verdict(i, i, effect=10.0) for i in [(2.0, 30.0), (2.0, 8.0), (-1.0, 8.0), (-1.0, 30.0)]]
        ['pass', 'fail', 'fail', 'inconclusive']
    """
    lo, hi = interval
    slo, shi = strict
    if below:
        lo, hi, slo, shi, boundary = -hi, -lo, -shi, -slo, -boundary
    if math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if not math.isnan(shi) and shi < boundary + effect:
        return "fail"
    return "pass" if lo > boundary else "inconclusive"


def judge_sides(intervals: Mapping[str, tuple[tuple[float, float], tuple[float, float]]], *, boundary: float = 0.0,
                below: bool = False, effect: SmallestEffect = NO_EFFECT) -> tuple[str, str, dict[str, str]]:
    """"Every comparison lies beyond ``boundary`` on the claimed side", from each comparison's
    (interval at the level, interval at the Bonferroni level): pass if every one passes
    (intersection-union), fail if one fails (:func:`side_verdict`), else inconclusive. Returns
    (verdict, the key the statement reports, per-comparison verdicts): the first failing
    comparison, else the least favourable undecided one, else the least favourable one."""
    if not intervals:
        raise ValueError("no comparisons to decide from")
    verdicts = {k: side_verdict(i, si, boundary=boundary, below=below, effect=effect.of(k))
                for k, (i, si) in intervals.items()}

    def score(k):  # the claimed-side lower end: the smaller, the less favourable
        lo, hi = intervals[k][0]
        v = -hi if below else lo
        return v if not math.isnan(v) else -math.inf

    worst = min(intervals, key=score)
    failed = [k for k, v in verdicts.items() if v == "fail"]
    if failed:
        return "fail", failed[0], verdicts
    undecided = [k for k, v in verdicts.items() if v == "inconclusive"]
    if not undecided:
        return "pass", worst, verdicts
    return "inconclusive", min(undecided, key=score), verdicts


def _seeds_to_clear(agg: Aggregate, line: float, *, n_directions: int | None, level: float,
                    max_seeds: int) -> tuple[int | None, str]:
    """(seeds, text): the seeds (with the measured variance components) at which the interval
    would exclude ``line`` on the side of the point estimate; (None, why not) when no number would."""
    from scipy import stats

    used = agg.used
    point = agg.point
    rlo, rhi = agg.resolution
    margin = (point - rlo) if point > line else (rhi - point)
    gap = abs(point - line)
    if not math.isfinite(gap) or gap <= margin:
        return None, (f"the estimator's resolution ({margin:.3g} {agg.unit} between the point estimate and its "
                      f"bracket) is at least the distance {gap:.3g} of the estimate from {line:.4g}: no number of "
                      "seeds or directions decides it; a finer resolution (smaller rtol for the principled search) or "
                      "a larger effect (a wider range of sizes) would")
    var_w = float(np.mean([s.boot_sd ** 2 for s in used]))
    var_b = max(0.0, float(np.var([s.point for s in used], ddof=1)) - var_w)
    room = gap - margin
    options, best = [], None
    for factor in (1, 4):
        for s_new in range(len(used), max_seeds + 1):
            t = float(stats.t.ppf(0.5 + level / 2, s_new - 1))
            half = t * math.sqrt((var_b + var_w / factor) / s_new)
            if half < room:
                k_text = "" if n_directions is None else f" and {factor * n_directions} directions"
                options.append(f"about {s_new} seeds{k_text}")
                best = s_new if best is None else min(best, s_new)
                break
    if not options:
        text = f"more than {max_seeds} seeds would be needed at the measured variance (sd over seeds {agg.sd:.3g})"
        if margin > 0.5 * gap:  # the bracket, not the seeds, is what stands in the way
            text += (f": the estimator's resolution ({margin:.3g} {agg.unit} between the point estimate and its "
                     f"bracket) leaves only {room:.3g} of the distance {gap:.3g} from {line:.4g}, so a finer "
                     "resolution (smaller rtol for the principled search) or a larger effect would decide it")
        return None, text
    return best, " or ".join(dict.fromkeys(options))


def what_would_decide(agg: Aggregate, *, n_directions: int | None = None, boundary: float = 0.0,
                      level: float = DEFAULT_LEVEL, max_seeds: int = 200, effect_line: float | None = None) -> str:
    """From the measured variance components, the seeds (and directions) that would decide an
    undecided comparison, or why none would.

    Between-seed variance sigma_b^2 = max(0, var_s(d_s) - mean_s boot_sd_s^2); within-seed
    (direction) variance sigma_w^2 = mean_s boot_sd_s^2, which scales as K/K' with K' directions
    (the log-mean-exp's variance is about 1/K for light tails; heavy tails shrink slower, so this
    is optimistic there). The predicted half-width at S' seeds is
    t_{S'-1} sqrt((sigma_b^2 + sigma_w^2 K/K') / S'); the resolution bracket does not shrink with
    seeds or directions.

    With ``effect_line`` (the smallest effect of interest, as a signed position: boundary +- e)
    there are two ways to decide: the interval clears ``boundary`` (pass, if the point is beyond
    it) or falls short of ``effect_line`` (fail: the effect is absent at this scale, if the point
    is short of it). Both are stated, the nearer first.
    """
    used = agg.used
    if len(used) < 2:
        return _too_few_seeds(len(used))
    point = agg.point
    spread = _spread(agg)
    kw = dict(n_directions=n_directions, level=level, max_seeds=max_seeds)
    if effect_line is not None and effect_line == boundary:  # no smallest effect: the one-sided rule alone
        effect_line = None
    claimed_up = effect_line is None or effect_line >= boundary
    beyond_boundary = point > boundary if claimed_up else point < boundary
    routes = []  # (seeds or None, text)
    if beyond_boundary or effect_line is None:
        n, text = _seeds_to_clear(agg, boundary, **kw)
        routes.append((n, text if n is None else f"{text} would decide it"
                       + ("" if effect_line is None else " (a pass: the interval clears the boundary)")))
    if effect_line is not None and effect_line != boundary:
        short_of_effect = point < effect_line if claimed_up else point > effect_line
        if short_of_effect:
            n, text = _seeds_to_clear(agg, effect_line, **kw)
            routes.append((n, text if n is None else f"{text} would decide it (a fail: the interval falls short of "
                                                     f"the smallest effect of interest {effect_line:.4g})"))
    decided = sorted((r for r in routes if r[0] is not None), key=lambda r: r[0])
    if decided:
        return f"{spread}: " + "; or ".join(t for _, t in decided)
    return "; ".join(t for _, t in routes)


def _too_few_seeds(n: int) -> str:
    return (f"{n} informative seed(s): seed-to-seed variation cannot be estimated; at least 3 seeds are needed "
            "for an interval that includes it")


def _spread(agg: Aggregate) -> str:
    return (f"measured power (sd over seeds {agg.sd:.3g}, within-seed sd "
            f"{math.sqrt(float(np.mean([s.boot_sd ** 2 for s in agg.used]))):.3g})")


def what_would_decide_equivalence(agg: Aggregate, bound: float, *, n_directions: int | None = None,
                                  level: float = DEFAULT_LEVEL, max_seeds: int = 200) -> str:
    """:func:`what_would_decide` for an equivalence test (pass: the interval lies inside
    ``+-bound``; fail: entirely outside it). Either way the interval must exclude the margin nearer
    the point estimate, from the point's side: the seeds for that follow from the same variance
    components (:func:`_seeds_to_clear`); a point inside the margins would pass, one outside fail.

    Example:
        >>> agg = aggregate([seed_value(x) for x in (0.01, -0.02, 0.03, 0.0, 0.02)], unit="")
        >>> what_would_decide_equivalence(agg, 0.05).endswith("(a pass: the interval inside +-0.05)")
        True
    """
    if len(agg.used) < 2:
        return _too_few_seeds(len(agg.used))
    line = math.copysign(bound, agg.point)
    n, text = _seeds_to_clear(agg, line, n_directions=n_directions, level=level, max_seeds=max_seeds)
    if n is None:
        return text
    outcome = (f"a pass: the interval inside +-{bound:.4g}" if abs(agg.point) < bound
               else f"a fail: the interval outside +-{bound:.4g}")
    return f"{_spread(agg)}: {text} would decide it ({outcome})"


def all_above(aggregates: Mapping[str, Aggregate], *, boundary: float = 0.0, level: float = DEFAULT_LEVEL,
              below: bool = False, n_directions: int | None = None,
              effect: SmallestEffect = NO_EFFECT) -> tuple[str, str, str]:
    """Decide "every comparison lies above ``boundary``" (or below, with ``below=True``).

    Returns (verdict, the label of the comparison the statement reports, reason). Pass: every
    interval at ``level`` lies on the claimed side (intersection-union test). Fail: some interval
    at the Bonferroni level 1 - (1 - level)/m lies short of the smallest effect of interest
    (:func:`side_verdict`; with no effect, on the other side). Otherwise inconclusive, with what
    would decide the least favourable one. Comparisons with no informative seed are inconclusive
    ("left the basin" is never evidence)."""
    if not aggregates:
        raise ValueError("no comparisons to decide from")
    m = len(aggregates)
    strict_level = 1 - (1 - level) / m
    verdict, key, verdicts = judge_sides({k: (a.interval(level), a.interval(strict_level))
                                          for k, a in aggregates.items()},
                                         boundary=boundary, below=below, effect=effect)
    if verdict == "fail":
        bad = [k for k, v in verdicts.items() if v == "fail"]
        return "fail", key, (f"{len(bad)} of {m} comparison(s) lie short of the smallest effect of interest "
                             f"{effect.describe()} at the Bonferroni level: the effect is absent at this scale"
                             if effect.of(key) > 0 else
                             f"{len(bad)} of {m} comparison(s) lie on the other side at the Bonferroni level")
    if verdict == "pass":
        return "pass", key, ""
    undecided = [k for k, v in verdicts.items() if v != "pass"]
    agg = aggregates[key]
    if agg.n_seeds == 0:
        notes = "; ".join(dict.fromkeys(s.note for s in agg.seeds if s.note)) or "no informative seed"
        return "inconclusive", key, f"{key}: {notes}"
    e = effect.of(key)
    line = None if e == 0 else (boundary - e if below else boundary + e)
    return "inconclusive", key, (f"{len(undecided)} of {m} comparison(s) undecided; for {key}: "
                                 + what_would_decide(agg, n_directions=n_directions, boundary=boundary, level=level,
                                                     effect_line=line))


def margins_of(*, boundary: float = 0.0, below: bool = False, effect: float = 0.0) -> dict[str, Any]:
    """The lines a one-sided rule compares an interval with, as :attr:`Statement.margins` holds
    them: the boundary, the smallest effect of interest as a signed position, the claimed side."""
    out: dict[str, Any] = {"claimed": "below" if below else "above", "boundary": float(boundary)}
    if effect > 0:
        out["smallest_effect"] = float(boundary - effect if below else boundary + effect)
    return out


def side_rule(*, m: int, level: float, below: bool, boundary: float, effect: SmallestEffect,
              interval: str = "interval") -> str:
    """The words of a one-sided rule with its smallest effect of interest (one text for every rule
    that :func:`judge_sides` decides)."""
    side = "below" if below else "above"
    strict = 1 - (1 - level) / m
    every = f"for every one of the {m} comparison(s), " if m > 1 else ""
    at = f" at the Bonferroni level {strict:.4g}" if m > 1 else ""
    if effect.positive:
        short = "less than" if not below else "more than"
        sign = "+" if not below else "-"
        fail = (f"fail if one{at} lies entirely {short} {boundary:g} {sign} the smallest effect of interest "
                f"{effect.describe()}: the effect is absent at this scale")
    else:
        fail = f"fail if one{at} lies on the other side"
    return f"pass if, {every}the {level:.0%} {interval} lies {side} {boundary:g}; {fail}; otherwise inconclusive"


def every_comparison(id: str, text: str, aggregates: Mapping[str, Aggregate], *, what: str, boundary: float = 0.0,
                     below: bool = False, level: float = DEFAULT_LEVEL, paper: str = "",
                     n_directions: int | None = None, extra: Mapping[str, Any] | None = None,
                     effect: SmallestEffect = NO_EFFECT):
    """A :class:`~volbench.results.Statement` for "every comparison lies above (below) the
    boundary", decided by :func:`all_above` with the smallest effect of interest ``effect``; its
    statistic is the comparison that decided it (the first failing one, else the least
    favourable) with its interval, and its numbers hold every comparison."""
    from volbench.results import Statement, Statistic

    verdict, key, reason = all_above(aggregates, boundary=boundary, level=level, below=below,
                                     n_directions=n_directions, effect=effect)
    agg = aggregates[key]
    lo, hi = agg.interval(level)
    finite = math.isfinite(lo) and math.isfinite(hi) and lo <= hi
    stat = Statistic(f"{what} [{key}]", agg.point if math.isfinite(agg.point) else math.nan,
                     low=lo if finite else None, high=hi if finite else None, level=level if finite else None,
                     unit=agg.unit)
    rule = side_rule(m=len(aggregates), level=level, below=below, boundary=boundary, effect=effect,
                     interval="interval over seeds (t on the per-seed paired estimates, widened by the estimator's "
                              "resolution bracket)")
    numbers = {"comparisons": {k: a.as_dict(level) for k, a in aggregates.items()}, **dict(extra or {})}
    if effect.of(key) > 0:
        numbers["smallest_effect"] = {k: effect.of(k) for k in aggregates}
    return Statement(id=id, text=text, verdict=verdict, statistic=stat, rule=rule, reason=reason, paper=paper,
                     numbers=numbers, margins=margins_of(boundary=boundary, below=below, effect=effect.of(key)))
