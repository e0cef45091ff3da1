"""Comparisons for the claims judged on one network or on analytic costs (Scherlis & Belrose),
and the decision of "every comparison lies above a boundary" for either kind.

Two kinds of comparisons share one interface (``point``, ``interval(level)``, ``undecided(...)``,
``as_dict(level)``), so one decision rule (:func:`judge_all`) serves both:

* :class:`SeedComparison`: a statistic replicated over seeds (each seed a fresh trained network),
  the random-effects t-interval of ``volbench.claims.stats`` widened by the resolution bracket.
  This is the inference for claims about the networks training finds (S6, S7).
* :class:`DirectionContrast`: a linear contrast sum_i w_i log V_i of measurements of **one**
  network (or one analytic cost) that share their directions: the same seed draws the same
  isotropic u for every measurement, whatever the preconditioner or cutoff (the sampler maps u
  to P u / ||P u||). Its interval is the percentile bootstrap over direction indices resampled
  jointly for every measurement (paired; Efron & Tibshirani 1993, ch. 13), widened by the
  resolution bracket (each log V_i between the log-mean-exp of its terms' lower and upper
  bounds, taken at the end that moves the contrast most). It describes the direction noise of
  this network only: seed-to-seed variation is not in it, and the report says so.

A caveat on the direction bootstrap: for large n the log-mean-exp is dominated by its largest
term (claim S2), so resampling directions under-represents the tail above the largest sample and
the percentile interval can be too narrow; its coverage is what ``volbench.claims.coverage``
measures for the seed-level interval, not this one. Differences of thousands of nats (S5) are far
beyond that concern; small ones are reported as inconclusive with the directions that would
decide them.

Example (two measurements sharing four directions, the second 3 nats lower in every one):
    >>> import numpy as np
    >>> from volbench.claims.stats import Terms
    >>> t = np.array([1.0, 2.0, 0.5, 1.5])
    >>> a = Terms(t, t, t, pairing=("principled", "u", 0, 4))
    >>> b = Terms(t - 3, t - 3, t - 3, pairing=("principled", "u", 0, 4))
    >>> c = direction_contrast([a, b], [1.0, -1.0], label="a - b")
    >>> round(c.point, 9), [round(x, 9) for x in c.interval(0.95)]
    (3.0, [3.0, 3.0])
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from volbench.claims.stats import (
    DEFAULT_LEVEL,
    NO_EFFECT,
    Aggregate,
    PairingError,
    SeedEstimate,
    SmallestEffect,
    Terms,
    aggregate,
    judge_sides,
    lme_rows,
    margins_of,
    side_rule,
    slope_weights,
    what_would_decide,
)
from volbench.estimator.measures import logmeanexp
from volbench.results import Statement, Statistic

__all__ = ["Comparable", "DirectionContrast", "SeedComparison", "direction_contrast", "contrast_over_seeds",
           "slope_weights", "judge_all", "equivalence_statement", "terms_from_estimate", "N_BOOT"]

#: Direction resamples of a one-network contrast: the 2.5% and 97.5% quantiles of 2,000 resamples
#: are known to about +-0.5 percentile points (binomial), enough for a verdict's interval.
N_BOOT = 2000


class Comparable(Protocol):
    """What :func:`judge_all` needs of a comparison."""

    label: str
    unit: str

    @property
    def point(self) -> float: ...

    def interval(self, level: float = DEFAULT_LEVEL) -> tuple[float, float]: ...

    def undecided(self, boundary: float, level: float = DEFAULT_LEVEL) -> str: ...

    def as_dict(self, level: float = DEFAULT_LEVEL) -> dict[str, Any]: ...


def terms_from_estimate(est: Any, *, pairing: tuple, label: str = "") -> Terms:
    """:class:`Terms` of a ``VolumeEstimate`` (principled search): each term from the radius
    evaluated inside (``log_terms``) up to the one evaluated outside (``log_terms_upper``).
    ``pairing`` names what two estimates must share to be compared as paired, e.g.
    ``("principled", "u", direction_seed, K)``."""
    low = np.asarray(est.log_terms.double().cpu().numpy() if hasattr(est.log_terms, "double") else est.log_terms,
                     dtype=np.float64)
    upper = est.log_terms_upper if est.log_terms_upper is not None else est.log_terms
    high = np.asarray(upper.double().cpu().numpy() if hasattr(upper, "double") else upper, dtype=np.float64)
    return Terms(low, low, np.maximum(high, low), pairing=tuple(pairing), label=label)


@dataclass(frozen=True)
class DirectionContrast:
    """sum_i w_i log V_i over measurements of one network that share their directions (see the
    module docstring): its point estimate, its resolution bounds and the direction-bootstrap
    replicates its interval is read from."""

    label: str
    point_estimate: float
    res_low: float
    res_high: float
    boots: tuple[float, ...]
    n_directions: int
    unit: str = "nats"
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def point(self) -> float:
        return self.point_estimate

    @property
    def boot_sd(self) -> float:
        b = np.asarray(self.boots, dtype=np.float64)
        b = b[np.isfinite(b)]
        return float(np.std(b, ddof=1)) if b.size > 1 else math.nan

    def interval(self, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
        """Percentile interval of the paired direction bootstrap, widened by the resolution
        bracket: [q_lo - (point - res_low), q_hi + (res_high - point)]; NaN when the point or
        the replicates are not finite (a censored ray makes the bracket infinite: that is kept)."""
        b = np.asarray(self.boots, dtype=np.float64)
        if not math.isfinite(self.point) or b.size < 2 or not np.all(np.isfinite(b)):
            return math.nan, math.nan
        q_lo, q_hi = np.quantile(b, [(1 - level) / 2, (1 + level) / 2])
        lo = min(float(q_lo), self.point) - (self.point - self.res_low)
        hi = max(float(q_hi), self.point) + (self.res_high - self.point)
        return lo, hi

    def undecided(self, boundary: float, level: float = DEFAULT_LEVEL) -> str:
        """What would decide it: the number of directions at which the measured bootstrap spread,
        shrinking as 1/sqrt(K), would clear the boundary beyond the resolution bracket."""
        if not math.isfinite(self.point):
            return f"{self.label}: the contrast is not finite"
        margin = (self.point - self.res_low) if self.point > boundary else (self.res_high - self.point)
        gap = abs(self.point - boundary)
        if not math.isfinite(margin) or gap <= margin:
            return (f"{self.label}: the estimator's resolution ({margin:.3g} {self.unit} between the estimate and its "
                    f"bracket) is at least the distance {gap:.3g} from {boundary:g}: no number of directions decides "
                    "it; a finer search (smaller rtol) would")
        # The bootstrap's reach towards the boundary (its quantile on that side: the distribution of a
        # log-mean-exp is skewed), shrinking as 1/sqrt(K), must fit in the room the resolution leaves.
        b = np.asarray(self.boots, dtype=np.float64)
        b = b[np.isfinite(b)]
        if b.size < 2:
            return f"{self.label}: no bootstrap replicates"
        q = float(np.quantile(b, (1 - level) / 2 if self.point > boundary else (1 + level) / 2))
        reach = abs(self.point - q)
        k_new = int(math.ceil(self.n_directions * (reach / (gap - margin)) ** 2)) if reach > 0 else self.n_directions
        return (f"{self.label}: one network, paired direction bootstrap sd {self.boot_sd:.3g} {self.unit} at K = "
                f"{self.n_directions}; about {max(k_new, self.n_directions + 1)} directions would decide it if the "
                "bootstrap's spread shrinks as 1/sqrt(K) (optimistic for heavy-tailed terms); seeds would add the "
                "seed-to-seed variation this interval leaves out")

    def seed_estimate(self) -> SeedEstimate:
        """This contrast as one seed's estimate (for an interval over seeds)."""
        return SeedEstimate(self.point, min(self.res_low, self.point), max(self.res_high, self.point),
                            boot_sd=self.boot_sd if math.isfinite(self.boot_sd) else 0.0,
                            informative=math.isfinite(self.point))

    def as_dict(self, level: float = DEFAULT_LEVEL) -> dict[str, Any]:
        lo, hi = self.interval(level)
        return {"label": self.label, "estimate": self.point, "low": lo, "high": hi, "level": level,
                "resolution_low": self.res_low, "resolution_high": self.res_high, "bootstrap_sd": self.boot_sd,
                "n_directions": self.n_directions, "n_boot": len(self.boots),
                "inference": "one network: percentile bootstrap over shared directions (resampled jointly), widened "
                             "by the resolution bracket; seed-to-seed variation not included",
                **dict(self.info)}


def _check_paired(terms: Sequence[Terms]) -> None:
    first = terms[0]
    for t in terms[1:]:
        if not first.pairing or first.pairing != t.pairing:
            raise PairingError(
                f"{first.label or 'a'} and {t.label or 'b'} are contrasted as paired but do not share their "
                f"directions ({first.pairing} vs {t.pairing}); measure both with the same direction seed and K")
        if len(first.log_terms) != len(t.log_terms):
            raise PairingError(f"{first.label} has {len(first.log_terms)} directions and {t.label} {len(t.log_terms)}")
    for t in terms:
        if t.outside or np.any(np.isnan(t.log_terms)):
            raise ValueError(f"{t.label or 'terms'}: a one-network contrast needs every direction's term "
                             "(no dropped directions, not outside the basin)")


def direction_contrast(terms: Sequence[Terms], weights: Sequence[float], *, label: str, unit: str = "nats",
                       n_boot: int = N_BOOT, seed: int = 0, info: Mapping[str, Any] | None = None
                       ) -> DirectionContrast:
    """sum_i w_i log V_i of paired measurements of one network (raises
    :class:`~volbench.claims.stats.PairingError` when they do not share their directions)."""
    terms = list(terms)
    w = np.asarray(weights, dtype=np.float64)
    if len(terms) != len(w) or not terms:
        raise ValueError(f"direction_contrast needs one weight per measurement, got {len(terms)} and {len(w)}")
    _check_paired(terms)
    point = float(sum(wi * float(logmeanexp(t.log_terms)) for wi, t in zip(w, terms)))
    lows = np.array([float(logmeanexp(t.low)) for t in terms])
    highs = np.array([float(logmeanexp(t.high)) for t in terms])
    with np.errstate(invalid="ignore"):
        res_low = float(np.sum(np.where(w > 0, w * lows, w * highs)))
        res_high = float(np.sum(np.where(w > 0, w * highs, w * lows)))
    k = len(terms[0].log_terms)
    idx = np.random.default_rng(seed).integers(0, k, size=(n_boot, k))
    ys = np.stack([lme_rows(t.log_terms, idx) for t in terms], axis=1)
    boots = ys @ w
    return DirectionContrast(label, point, min(res_low, point) if math.isfinite(res_low) else res_low,
                             max(res_high, point) if math.isfinite(res_high) else res_high,
                             tuple(float(b) for b in boots), k, unit=unit, info=dict(info or {}))


@dataclass(frozen=True)
class SeedComparison:
    """A statistic over seeds (an :class:`~volbench.claims.stats.Aggregate`) behind the
    :class:`Comparable` interface."""

    agg: Aggregate
    label: str
    unit: str = "nats"
    n_directions: int | None = None

    @property
    def point(self) -> float:
        return self.agg.point

    def interval(self, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
        return self.agg.interval(level)

    def undecided(self, boundary: float, level: float = DEFAULT_LEVEL) -> str:
        return f"{self.label}: " + what_would_decide(self.agg, n_directions=self.n_directions, boundary=boundary,
                                                     level=level)

    def as_dict(self, level: float = DEFAULT_LEVEL) -> dict[str, Any]:
        return {**self.agg.as_dict(level), "label": self.label,
                "inference": "t over seeds of the per-seed paired estimates (each fresh trained network a replicate), "
                             "widened by the resolution bracket"}


def contrast_over_seeds(terms_by_seed: Mapping[int, Sequence[Terms]], weights: Sequence[float], *, label: str,
                        unit: str = "nats", seeds: Sequence[int]) -> Comparable:
    """The contrast sum_i w_i log V_i for every seed: with two or more seeds the t-interval over
    seeds (:class:`SeedComparison`); with one seed its direction bootstrap
    (:class:`DirectionContrast`), which leaves seed-to-seed variation out (said in its record)."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("no seeds")
    per = {s: direction_contrast(terms_by_seed[s], weights, label=label, unit=unit, seed=s,
                                 n_boot=N_BOOT if len(seeds) == 1 else 400) for s in seeds}
    if len(seeds) == 1:
        return per[seeds[0]]
    k = per[seeds[0]].n_directions
    return SeedComparison(aggregate([per[s].seed_estimate() for s in seeds], label=label, unit=unit), label, unit, k)


def judge_all(id: str, text: str, comparisons: Mapping[str, Comparable], *, what: str, boundary: float = 0.0,
              below: bool = False, level: float = DEFAULT_LEVEL, paper: str = "",
              extra: Mapping[str, Any] | None = None, unit: str | None = None,
              effect: SmallestEffect = NO_EFFECT) -> Statement:
    """"Every comparison lies above ``boundary``" (below, with ``below=True``) as a Statement,
    decided by :func:`~volbench.claims.stats.judge_sides` (the one decision every one-sided rule
    uses): pass if every interval at ``level`` lies on the claimed side (intersection-union, valid
    at ``level`` without correction); fail if some interval at the Bonferroni level
    1 - (1 - level)/m lies short of the smallest effect of interest ``effect`` (with none: on the
    other side); otherwise inconclusive, with what would decide the least favourable comparison.
    The statistic is the comparison that decided it, with its interval."""
    if not comparisons:
        raise ValueError("no comparisons to decide from")
    m = len(comparisons)
    strict = 1 - (1 - level) / m
    verdict, key, verdicts = judge_sides({k: (c.interval(level), c.interval(strict)) for k, c in comparisons.items()},
                                         boundary=boundary, below=below, effect=effect)
    reason = ""
    if verdict == "inconclusive":
        undecided = [k for k, v in verdicts.items() if v == "inconclusive"]
        e = effect.of(key)
        reason = f"{len(undecided)} of {m} comparison(s) undecided; " + comparisons[key].undecided(boundary, level)
        if e > 0:
            reason += ("; towards a fail (the smallest effect of interest "
                       f"{boundary - e if below else boundary + e:.4g}): "
                       + comparisons[key].undecided(boundary - e if below else boundary + e, level))
    elif verdict == "fail" and effect.of(key) > 0:
        reason = f"short of the smallest effect of interest {effect.describe()}: the effect is absent at this scale"
    c = comparisons[key]
    lo, hi = c.interval(level)
    finite = math.isfinite(lo) and math.isfinite(hi) and lo <= hi
    stat = Statistic(f"{what} [{key}]" if m > 1 else what, c.point if math.isfinite(c.point) else math.nan,
                     low=lo if finite else None, high=hi if finite else None, level=level if finite else None,
                     unit=unit if unit is not None else c.unit)
    rule = side_rule(m=m, level=level, below=below, boundary=boundary, effect=effect)
    numbers = {"comparisons": {k: v.as_dict(level) for k, v in comparisons.items()}, "verdicts": verdicts,
               **dict(extra or {})}
    return Statement(id=id, text=text, verdict=verdict, statistic=stat, rule=rule, reason=reason, paper=paper,
                     numbers=numbers, margins=margins_of(boundary=boundary, below=below, effect=effect.of(key)))


def equivalence_statement(id: str, text: str, comparison: Comparable, *, low: float, high: float, what: str,
                          level: float = DEFAULT_LEVEL, paper: str = "", extra: Mapping[str, Any] | None = None,
                          scale_text: str = "") -> Statement:
    """"The quantity lies within (low, high)" as an equivalence test: pass if its interval lies
    inside, fail if it lies entirely outside, otherwise inconclusive (Schuirmann's two one-sided
    tests read as one interval)."""
    lo, hi = comparison.interval(level)
    finite = math.isfinite(lo) and math.isfinite(hi)
    if not finite:
        verdict = "inconclusive"
    elif low < lo and hi < high:
        verdict = "pass"
    elif hi < low or lo > high:
        verdict = "fail"
    else:
        verdict = "inconclusive"
    reason = ""
    if verdict == "inconclusive":
        edge = low if abs(comparison.point - low) < abs(comparison.point - high) else high
        reason = (f"the {level:.0%} interval [{lo:.4g}, {hi:.4g}] is neither inside nor outside "
                  f"({low:.4g}, {high:.4g}); "
                  + comparison.undecided(edge, level))
    stat = Statistic(what, comparison.point if math.isfinite(comparison.point) else math.nan,
                     low=lo if finite else None, high=hi if finite else None, level=level if finite else None,
                     unit=comparison.unit)
    rule = (f"equivalence: pass if the {level:.0%} interval lies inside ({low:.4g}, {high:.4g}){scale_text}; "
            "fail if it lies entirely outside; otherwise inconclusive")
    return Statement(id=id, text=text, verdict=verdict, statistic=stat, rule=rule, reason=reason, paper=paper,
                     numbers={"comparison": comparison.as_dict(level), "bounds": [low, high], **dict(extra or {})},
                     margins={"claimed": "inside", "low": float(low), "high": float(high)})
