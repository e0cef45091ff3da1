"""Rules of Scherlis & Belrose's claims S1-S10 ("Estimating the probability of sampling a trained
network", papers/scherlis-belrose-estimating-probability-of-sampling.txt): measurements in, one
:class:`~volbench.results.Statement` per statement of CLAIMS.md out.

Inference, by the design of each claim:

* analytic costs with a known volume (S1, S3, S4, S8a, S9): repeated estimates, each with its own
  direction seed, are the replicates; intervals are t (means), Clopper-Pearson (frequencies) or
  the resolution bracket alone where an estimate has no sampling noise (S4, S8a);
* one trained network (S2b, S5, S8b-c, S10 at the smoke tier): paired contrasts over the
  directions its measurements share (``volbench.claims.contrast.DirectionContrast``); the record
  says that seed-to-seed variation is not in these intervals;
* the networks training finds (S6, S7): per seed the paired contrast, then the t-interval over
  seeds (``volbench.claims.contrast.SeedComparison``), the estimator's resolution in the margin.

Example (S3 with 200 repeats that never overestimate by log 2):
    >>> import numpy as np
    >>> over = np.full(200, -1.0)
    >>> s3_markov(over, over, ks=(2, 10))[0].verdict
    'pass'

Size: one module per paper, as a table of its claims: the rules of S1-S10, each a short pure
function found by its claim id and tested on constructed inputs (tests/test_claims_scherlis.py).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from volbench.claims.contrast import (
    Comparable,
    contrast_over_seeds,
    direction_contrast,
    equivalence_statement,
    judge_all,
    slope_weights,
)
from volbench.claims.core import not_judged
from volbench.claims.stats import DEFAULT_LEVEL, Terms
from volbench.results import Statement, Statistic

__all__ = [
    "Repeats", "PAPER", "s1_jensen", "s2_smooth_max", "largest_sample_share", "s3_markov", "s4_perfect_preconditioner",
    "s5_preconditioner_ranking", "s6_poisoned_smaller", "s7_checkpoints", "s8_cutoff_scaling",
    "s9_ellipsoid_variance", "s10_zero_pixel", "GOOD_PRECONDITIONERS",
]

#: The paper's statements, printed beside ours in every case's report.
PAPER: Mapping[str, str] = {
    "S1": "Sec. 3.1, eq. 11: log vol(S) >= E[log vol-hat] (Jensen), equality iff the estimator is constant; the gap is "
          "sigma^2/2 for a normal log-estimator ('especially large when the variance ... is large')",
    "S2": "Sec. 3.1, eq. 13 and Fig. 1: for large n the log-estimate is the largest sample; 'already very nearly true "
          "for tiny networks of a few thousand parameters'",
    "S3": "Sec. 3.1, eq. 14: P(log vol-hat - log vol >= log k) <= 1/k (Markov)",
    "S4": "Sec. 3.2, eq. 16: P proportional to H^(-1/2) makes a quadratic basin round: 'an estimator with zero "
          "variance, returning the exact volume every time'",
    "S5": "Sec. 4.1, Fig. 1 (k = 3,000, digits MLP): full Hessian 'very similar to the unpreconditioned'; diag(H), "
          "HesScale, Adam nu 'perform much better, and very similarly to each other'; Adam mu 'somewhere in between'; "
          "eps 0.1 best for H, 0.01 for diag(H) and HesScale, 0.001 for both Adam preconditioners",
    "S6": "Sec. 4.1, Fig. 3 (ConvNeXt Atto, CIFAR-10): 'the poisoned network has a smaller local volume (with or "
          "without preconditioning)'",
    "S7": "Sec. 4.2, Fig. 4-5 (Pythia 31M, ConvNeXt): 'local volume tends to decrease during training'",
    "S8": "Sec. 4.3, Fig. 6-7: 'the log-log slope is consistent with n/2' (Pythia); 'at very high cutoffs (>= 10 nats) "
          "the Adam preconditioner begins to fail'; for ConvNeXt it fails 'sooner'",
    "S9": "App. A, eq. 21: Var(u^T A u) = 2/(n+2) Var(lambda) for u uniform on the sphere",
    "S10": "Sec. 3.3: 'several pixel locations are never used in the digits validation set, so the corresponding input "
           "weight parameters ... will have no effect' (infinite Lebesgue radius); the Gaussian measure 'guarantees "
           "that the measure of any neighborhood must be finite'",
}

GOOD_PRECONDITIONERS = ("diag(H)", "HesScale", "Adam 2nd moment")


def _t(level: float, dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, dof))


def _stat(name: str, value: float, lo: float, hi: float, level: float, unit: str = "") -> Statistic:
    finite = math.isfinite(lo) and math.isfinite(hi) and lo <= hi
    return Statistic(name, value if math.isfinite(value) else math.nan, low=lo if finite else None,
                     high=hi if finite else None, level=level if finite else None, unit=unit)


# ----------------------------------------------------------------------------- S1

@dataclass(frozen=True)
class Repeats:
    """R repeated estimates of one known volume.

    Attributes:
        gap: [R] log V-hat - log V (nats), one per repeat (each repeat its own direction seed).
        low, high: [R] the same from the terms' resolution bounds (inside / outside radius).
        seeds: [R] the direction seed of each repeat: two basins whose repeats have the same seeds
            are compared paired (repeat by repeat).
    """

    gap: np.ndarray
    low: np.ndarray
    high: np.ndarray
    seeds: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("gap", "low", "high"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if not (self.gap.shape == self.low.shape == self.high.shape == (len(self.seeds),)) or len(self.seeds) < 2:
            raise ValueError("Repeats needs gap, low, high and seeds of one length >= 2")
        # A guard against swapped bounds, never a verdict: S1 passes low = gap exactly and high from the
        # same monotone log-mean-exp of upper terms, which exceed the lower ones by the search's
        # resolution (>= n rtol, ~1e-6 nats), far beyond float64 rounding (~1e-13 nats).
        if np.any(self.low > self.gap + 1e-12) or np.any(self.high < self.gap - 1e-12):
            raise ValueError("Repeats: resolution bounds must satisfy low <= gap <= high")

    @property
    def n(self) -> int:
        return len(self.seeds)


def _mean_interval(x: np.ndarray, lo_x: np.ndarray, hi_x: np.ndarray, level: float) -> tuple[float, float, float]:
    """(mean, low, high): t-interval of the mean over repeats, widened by the mean resolution bracket."""
    half = _t(level, len(x) - 1) * float(np.std(x, ddof=1)) / math.sqrt(len(x))
    return float(np.mean(x)), float(np.mean(lo_x)) - half, float(np.mean(hi_x)) + half


def _paired_mean_difference(a: Repeats, b: Repeats, level: float) -> tuple[float, float, float]:
    """mean(a.gap - b.gap) over repeats with the same direction seeds (paired t), widened by the
    resolution bracket of the difference."""
    if a.seeds != b.seeds:
        from volbench.claims.stats import PairingError

        raise PairingError("the two basins' repeats do not share their direction seeds: they cannot be paired")
    d = a.gap - b.gap
    half = _t(level, len(d) - 1) * float(np.std(d, ddof=1)) / math.sqrt(len(d))
    return float(np.mean(d)), float(np.mean(a.low - b.high)) - half, float(np.mean(a.high - b.low)) + half


def _log_variance_ratio(a: Repeats, b: Repeats, level: float, n_boot: int = 2000, seed: int = 0
                        ) -> tuple[float, float, float]:
    """log(Var a.gap / Var b.gap) with a percentile bootstrap resampling repeats jointly (the two
    basins share their direction seeds, so their gaps are correlated)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.n, size=(n_boot, a.n))
    va, vb = np.var(a.gap[idx], axis=1, ddof=1), np.var(b.gap[idx], axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        boots = np.log(va) - np.log(vb)
    boots = boots[np.isfinite(boots)]
    point = float(np.log(np.var(a.gap, ddof=1)) - np.log(np.var(b.gap, ddof=1)))
    if boots.size < 2:
        return point, math.nan, math.nan
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return point, float(lo), float(hi)


def s1_jensen(basins: Mapping[str, Repeats], *, equivalence: float = 0.1, dominance: float = 0.02,
              level: float = DEFAULT_LEVEL) -> list[Statement]:
    """S1 (Sec. 3.1, eq. 11) on costs with a known volume; ``basins[name]`` holds the repeats.

    (a) premise, unbiasedness on the linear scale: the mean of V-hat / V over repeats is 1. Judged
    only on basins where the linear mean is measurable: no repeat carries more than ``dominance``
    of the linear sum (a heuristic for the t-interval's central limit: with a heavier tail a few
    draws decide the mean, which then sits below 1 most of the time; the basin is listed with its
    measured share). Per basin: fail if the Bonferroni t-interval (resolution in the margin) excludes 1;
    pass if the interval lies within 1 +- ``equivalence`` and holds 1; else inconclusive.
    (b) the mean of log-estimates lies below the true log-volume in every basin (t-interval over
    repeats widened by the resolution bracket below 0; intersection-union, Bonferroni for a fail).
    (c) the gap grows with the estimator's variance: basins ordered by the measured variance of
    log V-hat; for each consecutive pair whose variance ratio is decided (bootstrap interval of
    the log ratio above 0), the paired mean difference of gaps (higher-variance minus lower) lies
    below 0. The normal approximation's gap, -Var/2, is reported beside the measured one.
    """
    if not basins:
        raise ValueError("no basins")
    names = list(basins)
    m = len(names)
    strict = 1 - (1 - level) / m
    # (a)
    rows_a, verdicts_a, skipped = {}, {}, {}
    for name in names:
        r = basins[name]
        ratio = np.exp(r.gap)
        share = float(np.max(ratio) / np.sum(ratio))
        if not share < dominance:
            skipped[name] = share
            continue
        mean, lo, hi = _mean_interval(ratio, np.exp(r.low), np.exp(r.high), level)
        _, slo, shi = _mean_interval(ratio, np.exp(r.low), np.exp(r.high), strict)
        if slo > 1.0 or shi < 1.0:
            v = "fail"
        elif 1 - equivalence < lo and hi < 1 + equivalence and lo <= 1.0 <= hi:
            v = "pass"
        else:
            v = "inconclusive"
        verdicts_a[name] = v
        rows_a[name] = {"mean_ratio": mean, "low": lo, "high": hi, "largest_repeat_share": share, "verdict": v}
    text_a = ("premise: V-hat is unbiased on the linear scale (mean of V-hat / V is 1) where n is small enough to "
              "measure it")
    if not verdicts_a:
        a = not_judged("a", text_a, "no basin has a measurable linear mean: the largest of the repeats carries "
                       + ", ".join(f"{s:.0%} of the linear sum in {k}" for k, s in skipped.items())
                       + f" (>= {dominance:.0%}); a smaller n or more directions per estimate would make it measurable",
                       paper=PAPER["S1"])
    else:
        va = list(verdicts_a.values())
        verdict = "fail" if "fail" in va else "pass" if all(v == "pass" for v in va) else "inconclusive"
        key = next((k for k, v in verdicts_a.items() if v == verdict), names[0])
        row = rows_a[key]
        a = Statement("a", text_a, verdict, statistic=_stat(f"mean V-hat / V [{key}]", row["mean_ratio"], row["low"],
                                                            row["high"], level),
                      rule=f"on every basin where no repeat carries >= {dominance:.0%} of the linear sum: fail if the "
                           f"Bonferroni ({strict:.4g}) t-interval of mean V-hat / V (resolution in the margin) "
                           f"excludes 1; pass if the {level:.0%} interval lies within 1 +- {equivalence:g} and holds "
                           "1; else inconclusive",
                      reason="" if verdict != "inconclusive" else
                      f"an interval is wider than 1 +- {equivalence:g}: more repeats would decide it",
                      paper=PAPER["S1"],
                      numbers={"basins": rows_a, "not_measurable": skipped})
    # (b)
    rows_b, verdicts_b = {}, {}
    for name in names:
        r = basins[name]
        mean, lo, hi = _mean_interval(r.gap, r.low, r.high, level)
        _, slo, _ = _mean_interval(r.gap, r.low, r.high, strict)
        verdicts_b[name] = "pass" if hi < 0 else "fail" if slo > 0 else "inconclusive"
        rows_b[name] = {"mean_gap": mean, "low": lo, "high": hi, "variance_log_estimate": float(np.var(r.gap, ddof=1)),
                        "repeats": r.n}
    vb = list(verdicts_b.values())
    verdict_b = "fail" if "fail" in vb else "pass" if all(v == "pass" for v in vb) else "inconclusive"
    worst = max(rows_b, key=lambda k: rows_b[k]["high"])
    reason_b = ""
    if verdict_b == "inconclusive":
        row = rows_b[worst]
        sd = math.sqrt(row["variance_log_estimate"])
        need = int(math.ceil((1.96 * sd / max(abs(row["mean_gap"]), 1e-300)) ** 2))
        reason_b = (f"{worst}: mean gap {row['mean_gap']:.3g} [{row['low']:.3g}, {row['high']:.3g}] straddles 0; about "
                    f"{need} repeats would resolve a gap of this size at the measured sd {sd:.3g}")
    b = Statement("b", "the mean of log-estimates lies below the true log-volume", verdict_b,
                  statistic=_stat(f"mean(log V-hat - log V) [{worst}]", rows_b[worst]["mean_gap"], rows_b[worst]["low"],
                                  rows_b[worst]["high"], level, "nats"),
                  rule=f"pass if, in every basin, the {level:.0%} t-interval over repeats of log V-hat - log V "
                       "(widened by the resolution bracket) lies below 0; fail if one lies above 0 at the Bonferroni "
                       f"level {strict:.4g}; otherwise inconclusive",
                  reason=reason_b, paper=PAPER["S1"], numbers={"basins": rows_b})
    # (c)
    text_c = "the Jensen gap grows with the estimator's variance"
    if m < 2:
        c = not_judged("c", text_c, "one basin: no variance to compare", paper=PAPER["S1"])
        return [a, b, c]
    order = sorted(names, key=lambda k: rows_b[k]["variance_log_estimate"])
    pairs = list(zip(order, order[1:]))
    strict_c = 1 - (1 - level) / len(pairs)
    rows_c, verdicts_c = {}, {}
    for lo_name, hi_name in pairs:
        lr, lr_lo, lr_hi = _log_variance_ratio(basins[hi_name], basins[lo_name], level)
        d, d_lo, d_hi = _paired_mean_difference(basins[hi_name], basins[lo_name], level)
        _, _, _ = d, d_lo, d_hi
        _, sd_lo, _ = _paired_mean_difference(basins[hi_name], basins[lo_name], strict_c)
        ordered = lr_lo > 0
        if not ordered:
            v = "inconclusive"
        elif d_hi < 0:
            v = "pass"
        elif sd_lo > 0:
            v = "fail"
        else:
            v = "inconclusive"
        key = f"{hi_name} - {lo_name}"
        verdicts_c[key] = v
        rows_c[key] = {"gap_difference": d, "low": d_lo, "high": d_hi, "log_variance_ratio": lr,
                       "log_variance_ratio_low": lr_lo, "log_variance_ratio_high": lr_hi, "variance_decided": ordered,
                       "normal_approx_gap_difference": -0.5 * (rows_b[hi_name]["variance_log_estimate"]
                                                               - rows_b[lo_name]["variance_log_estimate"])}
    vc = list(verdicts_c.values())
    verdict_c = "fail" if "fail" in vc else "pass" if all(v == "pass" for v in vc) else "inconclusive"
    key = max(rows_c, key=lambda k: rows_c[k]["high"])
    row = rows_c[key]
    reason_c = "" if verdict_c != "inconclusive" else "; ".join(
        f"{k}: " + ("the variances are not distinguishable (log ratio interval "
                    f"[{r['log_variance_ratio_low']:.3g}, "
                    f"{r['log_variance_ratio_high']:.3g}])" if not r["variance_decided"]
                    else f"gap difference [{r['low']:.3g}, {r['high']:.3g}] straddles 0")
        for k, r in rows_c.items() if verdicts_c[k] == "inconclusive")
    c = Statement("c", text_c, verdict_c,
                  statistic=_stat(f"mean gap(higher variance) - gap(lower variance) [{key}]", row["gap_difference"],
                                  row["low"], row["high"], level, "nats"),
                  rule="basins ordered by the variance of log V-hat; for each consecutive pair, once the variance "
                       f"ratio is decided (bootstrap {level:.0%} interval of the log ratio above 0), pass if the "
                       f"paired {level:.0%} t-interval of the gap difference (same direction seeds, resolution in the "
                       f"margin) lies below 0, fail if it lies above 0 at the Bonferroni level {strict_c:.4g}; "
                       "undecided variances leave the pair inconclusive",
                  reason=reason_c, paper=PAPER["S1"], numbers={"pairs": rows_c})
    return [a, b, c]


# ----------------------------------------------------------------------------- S2

def largest_sample_share(log_terms: Sequence[float]) -> float:
    """w_max / sum_k w_k with w_k = exp(log_term_k): the share of the estimate carried by its
    largest sample (1 = the estimate is the largest sample; 1/K = all samples equal).

    Note what holds by construction: log V-hat = log mean exp(t_k) lies in [max t - log K, max t],
    so on the paper's histograms (spread ~ 10^4 nats) any estimate looks "at the maximum". The
    share is what is not by construction."""
    t = np.asarray(log_terms, dtype=np.float64)
    t = t[~np.isnan(t)]
    return float(1.0 / np.sum(np.exp(t - t.max())))


def s2_smooth_max(quadratic: Mapping[int, Sequence[float]], network: Sequence[float] | None, *,
                  dominant: float = 0.9, none_dominant: float = 0.5, level: float = DEFAULT_LEVEL,
                  network_reason: str = "") -> list[Statement]:
    """S2 (Sec. 3.1, eq. 13, Fig. 1). ``quadratic[n]``: the largest sample's share
    (:func:`largest_sample_share`) for independent replicates (replicate r uses direction seed r at
    every n); ``network``: the same share on the digits MLP for independent direction replicates.

    (a) the log-estimate approaches the largest sample as n grows: per replicate the least-squares
    slope of the share on log10 n, t-interval over replicates above 0.
    (b) on the digits MLP the estimate sits at the largest sample: the t-interval over replicates
    of the share lies above ``dominant``; fail if it lies below ``none_dominant``."""
    ns = sorted(quadratic)
    reps = {len(quadratic[n]) for n in ns}
    if len(reps) != 1 or len(ns) < 2:
        raise ValueError("s2_smooth_max needs >= 2 values of n, each with the same number of replicates")
    R = reps.pop()
    x = np.log10(np.asarray(ns, dtype=np.float64))
    w = slope_weights(x)
    Y = np.array([[quadratic[n][r] for n in ns] for r in range(R)])
    slopes = Y @ w
    text_a = "the log-estimate approaches the largest sample as n grows (the largest sample's share rises with n)"
    if R < 2:
        a = not_judged("a", text_a, "one replicate: no interval over replicates", paper=PAPER["S2"])
    else:
        mean = float(slopes.mean())
        sd = float(slopes.std(ddof=1))
        half = _t(level, R - 1) * sd / math.sqrt(R)
        lo, hi = mean - half, mean + half
        va = "pass" if lo > 0 else "fail" if hi < 0 else "inconclusive"
        a = Statement("a", text_a, va, statistic=_stat("slope of the largest sample's share on log10 n", mean, lo, hi,
                                                       level, "per decade"),
                      rule=f"pass if the {level:.0%} t-interval over {R} replicates (independent direction seeds) of "
                           "the per-replicate least-squares slope lies above 0; fail if it lies below 0",
                      reason="" if va != "inconclusive" else f"the slope's interval [{lo:.3g}, {hi:.3g}] straddles 0; "
                                                            "more replicates would decide it",
                      paper=PAPER["S2"],
                      numbers={"n": ns, "share_mean": [float(np.mean(quadratic[n])) for n in ns],
                               "per_replicate_slopes": slopes.tolist(),
                               "by_construction": "|log V-hat - max log-term| <= log K always (reported, not "
                                                  "evidence)"})
    text_b = "on the digits MLP the estimate sits at the largest sample (Fig. 1)"
    if network is None or len(network) < 2:
        b = not_judged("b", text_b, network_reason or "fewer than two direction replicates on the network",
                       paper=PAPER["S2"])
        return [a, b]
    s = np.asarray(network, dtype=np.float64)
    mean = float(s.mean())
    half = _t(level, len(s) - 1) * float(s.std(ddof=1)) / math.sqrt(len(s))
    lo, hi = mean - half, mean + half
    vb = "pass" if lo > dominant else "fail" if hi < none_dominant else "inconclusive"
    b = Statement("b", text_b, vb, statistic=_stat("share of the estimate carried by the largest sample", mean, lo, hi,
                                                   level),
                  rule=f"pass if the {level:.0%} t-interval over {len(s)} independent direction sets of the largest "
                       f"sample's share lies above {dominant:g}; fail if it lies below {none_dominant:g} (no sample "
                       "dominates); otherwise inconclusive. One network: seed-to-seed variation not included",
                  reason="" if vb != "inconclusive" else f"the interval [{lo:.3g}, {hi:.3g}] is neither above "
                                                        f"{dominant:g} nor below {none_dominant:g}",
                  paper=PAPER["S2"], numbers={"shares": s.tolist()})
    return [a, b]


# ----------------------------------------------------------------------------- S3

def _clopper_pearson(hits: int, total: int, level: float) -> tuple[float, float]:
    from scipy import stats

    a = 1 - level
    lo = float(stats.beta.ppf(a / 2, hits, total - hits + 1)) if hits > 0 else 0.0
    hi = float(stats.beta.ppf(1 - a / 2, hits + 1, total - hits)) if hits < total else 1.0
    return lo, hi


def s3_markov(over_low: Sequence[float], over_high: Sequence[float], *, ks: Sequence[float],
              level: float = DEFAULT_LEVEL) -> list[Statement]:
    """S3 (Sec. 3.1, eq. 14): repeated estimates of a known volume, ``over = log V-hat - log V`` per
    repeat from the terms' lower and upper resolution bounds. For every k the frequency of
    over >= log k must be <= 1/k.

    Pass: for every k the Clopper-Pearson upper bound (counting with the upper bound of each
    estimate, so the search's resolution cannot make a pass) is <= 1/k. Fail: for some k the
    Bonferroni lower bound (counting with the lower bound) exceeds 1/k. Otherwise inconclusive."""
    lo_o, hi_o = np.asarray(over_low, dtype=np.float64), np.asarray(over_high, dtype=np.float64)
    R = len(lo_o)
    if R != len(hi_o) or R < 2 or not ks:
        raise ValueError("s3_markov needs two arrays of one length >= 2 and at least one k")
    strict = 1 - (1 - level) / len(ks)
    rows, verdicts = [], []
    for k in ks:
        hits_hi, hits_lo = int(np.sum(hi_o >= math.log(k))), int(np.sum(lo_o >= math.log(k)))
        _, upper = _clopper_pearson(hits_hi, R, 2 * level - 1)  # one-sided upper bound at `level`
        lower, _ = _clopper_pearson(hits_lo, R, 2 * strict - 1)  # one-sided lower bound, Bonferroni
        v = "pass" if upper <= 1 / k else "fail" if lower > 1 / k else "inconclusive"
        verdicts.append(v)
        rows.append({"k": k, "bound": 1 / k, "hits": hits_hi, "frequency": hits_hi / R, "upper": upper,
                     "hits_from_lower_bounds": hits_lo, "lower_bonferroni": lower, "verdict": v})
    verdict = "fail" if "fail" in verdicts else "pass" if all(v == "pass" for v in verdicts) else "inconclusive"
    worst = max(rows, key=lambda r: r["upper"] * r["k"])
    reason = "" if verdict != "inconclusive" else "; ".join(
        f"k = {r['k']:g}: frequency {r['frequency']:.3g}, upper bound {r['upper']:.3g} > 1/k = {r['bound']:.3g} with "
        f"{R} repeats" for r in rows if r["verdict"] == "inconclusive") + "; more repeats would decide it"
    return [Statement(
        "a", "overestimating the volume by a factor k has probability <= 1/k, for every k", verdict,
        statistic=Statistic(f"k * P(V-hat >= k V) at k = {worst['k']:g}", worst["frequency"] * worst["k"],
                            low=worst["k"] * _clopper_pearson(worst["hits"], R, level)[0],
                            high=worst["k"] * _clopper_pearson(worst["hits"], R, level)[1], level=level),
        rule=f"pass if, for every k, the one-sided {level:.0%} Clopper-Pearson upper bound of the frequency of "
             "log V-hat - log V >= log k (each estimate at the upper end of its resolution bracket) is <= 1/k; fail if "
             f"for some k the one-sided Bonferroni ({strict:.4g}) lower bound (estimates at their lower end) exceeds "
             "1/k; otherwise inconclusive",
        reason=reason, paper=PAPER["S3"], numbers={"repeats": R, "bounds": rows, "mean_over": float(lo_o.mean())})]


# ----------------------------------------------------------------------------- S4

def s4_perfect_preconditioner(preconditioned: Terms, plain: Terms, *, exact: float, float_slack: float
                              ) -> list[Statement]:
    """S4 (Sec. 3.2, eq. 16): quadratic cost, P proportional to H^(-1/2) with unit determinant.

    (a) every direction returns the exact volume: each direction's resolution bracket [low,
    high] of its log-term holds ``exact`` (+- ``float_slack``, float64 rounding); fail if one
    misses it; inconclusive if the brackets are too coarse to tell zero variance from the
    unpreconditioned spread (widest bracket >= that spread / 10).
    (b) control: without the preconditioner the terms are not constant (spread > 1 nat and > 10
    times the widest bracket), so (a) could fail."""
    lo, hi = preconditioned.low, preconditioned.high
    miss = float(np.max(np.maximum(lo - exact, exact - hi)))  # > 0: some bracket misses the exact value
    width = float(np.max(hi - lo))
    spread = float(np.max(plain.log_terms) - np.min(plain.log_terms))
    if miss > float_slack:
        va = "fail"
    elif width >= spread / 10:
        va = "inconclusive"
    else:
        va = "pass"
    a = Statement("a", "with P proportional to H^(-1/2) (unit determinant) every direction returns the exact "
                       "volume", va,
                  statistic=Statistic("max distance of the exact log V outside a direction's bracket", max(miss, 0.0),
                                      unit="nats"),
                  rule="pass if every direction's [inside, outside]-radius bracket of its log-term holds the exact log "
                       f"V (+-{float_slack:.2g} nats of float64 rounding) and the widest bracket is below a tenth of "
                       "the unpreconditioned spread; fail if one bracket misses it",
                  reason="" if va != "inconclusive" else f"the widest bracket {width:.3g} nats is not below a tenth of "
                                                        f"the unpreconditioned spread {spread:.3g}: a smaller rtol "
                                                        "would decide it",
                  paper=PAPER["S4"], numbers={"exact": exact, "max_miss": miss, "widest_bracket": width,
                                              "float_slack": float_slack, "directions": len(lo)})
    vb = "pass" if spread > 1.0 and spread > 10 * width else "fail"
    b = Statement("b", "control: without the preconditioner the per-direction terms spread (the check can fail)", vb,
                  statistic=Statistic("spread of the unpreconditioned log-terms", spread, unit="nats"),
                  rule="pass if the unpreconditioned terms spread by more than 1 nat and more than 10 x the widest "
                       "preconditioned bracket; fail otherwise (then (a) could not tell zero variance apart)",
                  paper="Sec. 3.2: without preconditioning the variance is large (App. A, eq. 22)",
                  numbers={"spread": spread, "widest_preconditioned_bracket": width})
    return [a, b]


# ----------------------------------------------------------------------------- S5

def _bulk_scale(none_terms: Mapping[int, Terms]) -> float:
    """The spread of the unpreconditioned samples: mean over seeds of the sd of their log-terms."""
    return float(np.mean([np.std(t.log_terms, ddof=1) for t in none_terms.values()]))


def s5_preconditioner_ranking(terms: Mapping[str, Mapping[int, Terms]], *, seeds: Sequence[int],
                              sweep: Mapping[str, Mapping[float, Mapping[int, Terms]]] | None = None,
                              paper_eps: Mapping[str, float] | None = None,
                              paper_code: Mapping[int, Terms] | None = None,
                              paper_code_sweep: Mapping[float, Mapping[int, Terms]] | None = None,
                              level: float = DEFAULT_LEVEL, sweep_reason: str = "") -> list[Statement]:
    """S5 (Sec. 4.1, Fig. 1) on the digits MLP. ``terms[name][seed]`` for "none", "full Hessian",
    "diag(H)", "HesScale", "Adam 2nd moment", "Adam 1st moment" at the paper's eps, all sharing
    their directions (same seed, same isotropic u). The scale of "far" and "close" is the spread
    of the unpreconditioned samples, s = sd of their log-terms (Fig. 1's histograms: "far" is
    beyond the bulk of the unpreconditioned samples, "close" is within it).

    (a) diag(H), HesScale and Adam 2nd moment far above none: log V(P) - log V(none) > s for each.
    (b) full Hessian close to none: |log V(full H) - log V(none)| < s (equivalence). The faithful
    full-matrix preconditioner V diag(p) V^T is judged; the paper's code applied diag(p) V^T x,
    which for Gaussian u is the diagonal preconditioner of the eigenvalue-based p on arbitrary
    coordinates (``paper_code``): it is reported beside, with rule (b) applied to it, never in
    the verdict.
    (c) Adam 1st moment in between: above none and below each of the three.
    (d) the paper's eps is the best of the sweep for each preconditioner: log V(paper eps) -
    log V(eps) > 0 for every other eps swept (``sweep[name][eps][seed]``, paired over directions).
    """
    seeds = list(seeds)
    paper_eps = dict(paper_eps or {})

    def comp(a_name: str, b_name: str, a=None, b=None) -> Comparable:
        a_terms = a if a is not None else terms[a_name]
        b_terms = b if b is not None else terms[b_name]
        return contrast_over_seeds({s: [a_terms[s], b_terms[s]] for s in seeds}, [1.0, -1.0],
                                   label=f"{a_name} - {b_name}", seeds=seeds)

    scale = _bulk_scale({s: terms["none"][s] for s in seeds})
    log_v = {name: {str(s): float(t[s].log_volume) for s in seeds} for name, t in terms.items()}
    a = judge_all("a", "diag(H), HesScale and Adam's second moment give far larger estimates than no preconditioner",
                  {g: comp(g, "none") for g in GOOD_PRECONDITIONERS}, what="log V(P) - log V(none)", boundary=scale,
                  level=level, paper=PAPER["S5"],
                  extra={"scale_s": scale, "log_volume": log_v,
                         "scale": "s = sd of the unpreconditioned log-terms (the bulk of Fig. 1's 'none' histogram)"})
    b = equivalence_statement("b", "the full Hessian (V diag(p) V^T, as the paper's eq. 17 writes it) is close to no "
                                   "preconditioner", comp("full Hessian", "none"), low=-scale, high=scale,
                              what="log V(full Hessian) - log V(none)", level=level,
                              scale_text=f" = +-s, the unpreconditioned samples' sd {scale:.4g} nats",
                              paper=PAPER["S5"] + ". The paper's code applies the matrix as diag(p) V^T x; that "
                                                  "variant is reported beside ('paper_code_variant'), not judged")
    if paper_code is not None:
        pc = comp("full Hessian as the paper's code applies it", "none", a=paper_code)
        emulated = equivalence_statement("b.paper-code", "paper-code variant", pc, low=-scale, high=scale,
                                         what="log V(paper-code full Hessian) - log V(none)", level=level)
        faithful_vs_code = comp("full Hessian", "full Hessian as the paper's code applies it", b=paper_code)
        numbers = dict(b.numbers)
        numbers["paper_code_variant"] = {
            "label": "full Hessian as the paper's code applies it: diag(p) V^T x (eigenvalue scales on arbitrary "
                     "coordinates; for Gaussian u the same law as a diagonal preconditioner)",
            "difference_vs_none": pc.as_dict(level), "rule_b_verdict": emulated.verdict,
            "reproduces_paper": emulated.verdict == "pass",
            "faithful_minus_paper_code": faithful_vs_code.as_dict(level),
            "log_volume": {str(s): float(paper_code[s].log_volume) for s in seeds}}
        b = Statement(b.id, b.text, b.verdict, statistic=b.statistic, rule=b.rule, reason=b.reason, paper=b.paper,
                      numbers=numbers)
    comps_c = {"Adam 1st moment - none": comp("Adam 1st moment", "none")}
    comps_c.update({f"{g} - Adam 1st moment": comp(g, "Adam 1st moment") for g in GOOD_PRECONDITIONERS})
    c = judge_all("c", "Adam's first moment lies in between: above none, below diag(H), HesScale and Adam's second "
                       "moment",
                  comps_c, what="paired log V difference", level=level, paper=PAPER["S5"])
    text_d = "the paper's eps (0.1 for H, 0.01 for diag(H) and HesScale, 0.001 for Adam) gives the largest estimate"
    if not sweep:
        d = not_judged("d", text_d, sweep_reason or "no eps sweep at this tier", paper=PAPER["S5"])
    else:
        comps_d, best = {}, {}
        for name, by_eps in sweep.items():
            pe = paper_eps[name]
            if pe not in by_eps:
                raise ValueError(f"the sweep of {name} must include the paper's eps {pe}")
            means = {e: float(np.mean([by_eps[e][s].log_volume for s in seeds])) for e in by_eps}
            best[name] = {"best_eps_measured": max(means, key=means.get), "paper_eps": pe,
                          "log_volume_by_eps": {f"{e:g}": v for e, v in means.items()}}
            for e in by_eps:
                if e != pe:
                    comps_d[f"{name}: eps {pe:g} - eps {e:g}"] = comp(f"{name} eps {pe:g}", f"{name} eps {e:g}",
                                                                      a=by_eps[pe], b=by_eps[e])
        extra = {"by_preconditioner": best}
        if paper_code_sweep:
            extra["paper_code_variant_by_eps"] = {
                f"{e:g}": float(np.mean([t[s].log_volume for s in seeds])) for e, t in paper_code_sweep.items()}
        d = judge_all("d", text_d, comps_d, what="log V(paper eps) - log V(other eps)", level=level,
                      paper=PAPER["S5"], extra=extra)
    return [a, b, c, d]


# ----------------------------------------------------------------------------- S6, S7

def s6_poisoned_smaller(clean: Mapping[int, Terms], poisoned: Mapping[int, Terms], *, seeds: Sequence[int],
                        level: float = DEFAULT_LEVEL) -> list[Statement]:
    """S6 (Sec. 4.1, Fig. 3): per seed the paired log V(clean) - log V(poisoned) (both networks
    measured through the same directions), t over seeds with the resolution in the margin,
    above 0."""
    c = contrast_over_seeds({s: [clean[s], poisoned[s]] for s in seeds}, [1.0, -1.0], label="clean - poisoned",
                            seeds=seeds)
    return [judge_all("a", "a network trained with poisoned labels has a smaller KL volume than the clean one",
                      {"clean - poisoned": c}, what="log V(clean) - log V(poisoned)", level=level, paper=PAPER["S6"],
                      extra={"log_volume": {str(s): {"clean": clean[s].log_volume, "poisoned": poisoned[s].log_volume}
                                            for s in seeds}})]


def s7_checkpoints(volumes: Mapping[tuple[int, int], Terms], *, checkpoints: Sequence[int], seeds: Sequence[int],
                   level: float = DEFAULT_LEVEL) -> list[Statement]:
    """S7 (Sec. 4.2): ``volumes[(seed, epoch)]`` is the KL volume around checkpoint ``epoch`` of
    seed ``seed`` (one direction seed per network, shared by its checkpoints). Per seed the
    least-squares slope of log V on ln(epoch) (paired over directions), t over seeds, below 0."""
    x = [math.log(float(e)) for e in checkpoints]
    w = slope_weights(x)
    c = contrast_over_seeds({s: [volumes[(s, e)] for e in checkpoints] for s in seeds}, list(w),
                            label="slope of log V on ln(epoch)", unit="nats per e-fold of epochs", seeds=seeds)
    return [judge_all("a", "local volume falls during training", {"slope": c}, what="slope of log V on ln(epoch)",
                      below=True, level=level, paper=PAPER["S7"],
                      extra={"checkpoints": list(checkpoints),
                             "log_volume": {str(s): [volumes[(s, e)].log_volume for e in checkpoints] for s in seeds}})]


# ----------------------------------------------------------------------------- S8

def quadratic_rounding(terms: Sequence[Terms], weights: Sequence[float], term_rounding: float) -> float:
    """Derived bound on the rounding of the bracket sum_i w_i [low_i, high_i] of log-mean-exps: each
    log-term's bracket may miss its exact value by ``term_rounding`` (the caller's derived bound for
    its cost); each float64 log-mean-exp over K terms rounds within gamma_{K+3} of its largest
    magnitude (the shift by the maximum, K exponentials and sums, the log); the weighted sum of m
    of them within gamma_m of sum |w_i| |lme_i| (Higham, Lemma 3.1).

    >>> t = Terms(np.zeros(4), np.zeros(4), np.ones(4))
    >>> 0 < quadratic_rounding([t, t], [1.0, -1.0], 0.0) < 1e-14
    True
    """
    from ..costs.rounding import gamma

    w = np.abs(np.asarray(weights, dtype=np.float64))
    per = [term_rounding + gamma(len(t.log_terms) + 3) * (float(np.max(np.abs(np.r_[t.low, t.high]))) + 1.0)
           for t in terms]
    lme = [float(np.max(np.abs(np.r_[t.low, t.high]))) + 1.0 for t in terms]
    return float(np.sum(w * np.asarray(per))) + gamma(len(terms)) * float(np.sum(w * np.asarray(lme)))


def s8_cutoff_scaling(quadratic: Sequence[Terms], *, quadratic_n: int, network: Mapping[int, Sequence[Terms]],
                      network_n: int, preconditioned: Mapping[int, Sequence[Terms]] | None, cutoffs: Sequence[float],
                      seeds: Sequence[int], reference_cutoff: float = 1e-2, high_cutoff: float = 10.0,
                      slope_range: tuple[float, float] = (1e-5, 1e-2), equivalence: float = 0.1,
                      term_rounding: float = 0.0, coarse: float = 0.01,
                      level: float = DEFAULT_LEVEL) -> list[Statement]:
    """S8 (Sec. 4.3, Fig. 6-7). Measurements at every cutoff share their directions.

    (a) quadratic cost: the slope of log V on log cutoff is n/2: 1 lies in the resolution bracket
    of slope / (n/2) (every radius scales as sqrt(cutoff), so the slope has no direction noise),
    widened by the derived rounding of that bracket (``quadratic_rounding``: ``term_rounding``, the
    caller's bound on how far rounding moves one log-term's bracket off the exact value, e.g.
    n gamma_{n+6} for a float64 diagonal quadratic, plus this computation's own float64 rounding);
    fail if it misses; inconclusive if the bracket is wider than ``coarse``.
    (b) the digits MLP's slope is consistent with n/2: slope / (n/2), fitted over the cutoffs in
    ``slope_range`` (the paper's range for ConvNeXt, "similar for cutoffs between 1e-5 and 1e-2";
    the slope over every cutoff and each decade's local slope are reported beside), lies within
    1 +- ``equivalence`` (equivalence test; direction bootstrap on one network, t over seeds on more).
    (c) preconditioning degrades at high cutoffs: the advantage A(c) = log V(Adam) - log V(none)
    at the highest cutoff (>= ``high_cutoff``) is below A at ``reference_cutoff`` (paired over the
    shared directions); not judged when the tier's cutoffs stop below ``high_cutoff``.
    """
    x = np.log(np.asarray(cutoffs, dtype=np.float64))
    w = slope_weights(x)
    q = direction_contrast(quadratic, list(w / (quadratic_n / 2)), label="quadratic slope / (n/2)", unit="")
    qlo, qhi = q.res_low, q.res_high
    quadratic_slack = quadratic_rounding(quadratic, w / (quadratic_n / 2), term_rounding)
    if not (qlo - quadratic_slack <= 1.0 <= qhi + quadratic_slack):
        va = "fail"
    elif qhi - qlo > coarse:
        va = "inconclusive"
    else:
        va = "pass"
    a = Statement("a", "for a quadratic cost the slope of log V on log cutoff is n/2", va,
                  statistic=Statistic("slope / (n/2), quadratic", q.point, low=min(qlo, q.point),
                                      high=max(qhi, q.point), unit=""),
                  rule=f"pass if 1 lies in the resolution bracket of slope / (n/2) (+-{quadratic_slack:.2g}, its "
                       "derived float rounding; every radius scales as sqrt(cutoff), so the slope has no direction "
                       "noise) and the bracket is "
                       f"narrower than {coarse:g}; fail if 1 lies outside it",
                  reason="" if va != "inconclusive" else f"the bracket [{qlo:.4g}, {qhi:.4g}] is wider than "
                                                        f"{coarse:g}: a smaller rtol would decide it",
                  paper=PAPER["S8"], numbers={"n": quadratic_n, "cutoffs": list(cutoffs),
                                              "rounding_slack": quadratic_slack, "term_rounding": term_rounding})
    inside = [i for i, c in enumerate(cutoffs) if slope_range[0] <= c <= slope_range[1]]
    text_b = "on the digits MLP the slope of log V on log cutoff is consistent with n/2"
    mean_lv = [float(np.mean([network[s][i].log_volume for s in seeds])) for i in range(len(cutoffs))]
    local = {f"{cutoffs[i]:g}-{cutoffs[i + 1]:g}": (mean_lv[i + 1] - mean_lv[i]) / (x[i + 1] - x[i]) / (network_n / 2)
             for i in range(len(cutoffs) - 1)}
    full = float(w @ np.asarray(mean_lv)) / (network_n / 2)
    if len(inside) < 2:
        b = not_judged("b", text_b, f"fewer than two of the tier's cutoffs lie in {slope_range}", paper=PAPER["S8"])
    else:
        wb = slope_weights(x[inside])
        net = contrast_over_seeds({s: [network[s][i] for i in inside] for s in seeds}, list(wb / (network_n / 2)),
                                  label="digits slope / (n/2)", unit="", seeds=seeds)
        b = equivalence_statement(
            "b", text_b, net, low=1 - equivalence, high=1 + equivalence,
            what=f"slope / (n/2), digits MLP, cutoffs {cutoffs[inside[0]]:g}-{cutoffs[inside[-1]]:g} nats", level=level,
            scale_text=f" (1 +- {equivalence:g}: 'consistent with n/2')", paper=PAPER["S8"],
            extra={"n": network_n, "log_volume": {str(s): [t.log_volume for t in network[s]] for s in seeds},
                   "slope_over_every_cutoff": full, "local_slope_per_interval": local,
                   "slope_range": list(slope_range)})
    text_c = "the Adam preconditioner's advantage degrades at high cutoffs"
    highs = [c for c in cutoffs if c >= high_cutoff]
    if preconditioned is None:
        c = not_judged("c", text_c, "no preconditioned measurements at this tier", paper=PAPER["S8"])
    elif not highs or reference_cutoff not in cutoffs:
        c = not_judged("c", text_c, f"the tier's cutoffs ({', '.join(f'{v:g}' for v in cutoffs)} nats) do not reach "
                       f"{high_cutoff:g} nats and {reference_cutoff:g}, where the paper sees the failure",
                       paper=PAPER["S8"])
    else:
        hi_i, ref_i = list(cutoffs).index(max(highs)), list(cutoffs).index(reference_cutoff)
        deg = contrast_over_seeds(
            {s: [preconditioned[s][hi_i], network[s][hi_i], preconditioned[s][ref_i], network[s][ref_i]]
             for s in seeds},
            [1.0, -1.0, -1.0, 1.0], label=f"A({max(highs):g}) - A({reference_cutoff:g})", seeds=seeds)
        adv = {f"{cv:g}": float(np.mean([preconditioned[s][i].log_volume - network[s][i].log_volume for s in seeds]))
               for i, cv in enumerate(cutoffs)}
        c = judge_all("c", text_c, {"advantage change": deg}, below=True,
                      what=f"advantage at {max(highs):g} nats - advantage at {reference_cutoff:g} nats", level=level,
                      paper=PAPER["S8"], extra={"advantage_by_cutoff": adv})
    return [a, b, c]


# ----------------------------------------------------------------------------- S9

def s9_ellipsoid_variance(rows: Sequence[Mapping[str, float]], *, precision: float = 0.05,
                          level: float = DEFAULT_LEVEL) -> list[Statement]:
    """S9 (App. A, eq. 21): ``rows`` of {"monte_carlo", "formula", "se"} (the Monte Carlo variance,
    2/(n+2) Var(lambda), and the standard error of the Monte Carlo variance). The law is exact, so
    a significant departure fails: fail if some |z| exceeds the two-sided Bonferroni normal
    quantile. Pass if none does and every Monte Carlo interval is within +-``precision`` of the
    formula (precise enough to be evidence); else inconclusive (too few samples)."""
    from scipy import stats

    if not rows:
        raise ValueError("no spectra")
    m = len(rows)
    z_strict = float(stats.norm.ppf(1 - (1 - level) / (2 * m)))
    z = float(stats.norm.ppf(0.5 + level / 2))
    out, fail, imprecise = [], False, []
    for r in rows:
        zr = (r["monte_carlo"] - r["formula"]) / r["se"]
        half = z * r["se"] / r["formula"]
        out.append({**dict(r), "z": zr, "relative_half_width": half})
        fail |= abs(zr) > z_strict
        if half >= precision:
            imprecise.append(r)
    worst = max(out, key=lambda r: abs(r["z"]))
    verdict = "fail" if fail else "inconclusive" if imprecise else "pass"
    return [Statement(
        "a", "Var(u^T A u) = 2/(n+2) Var(lambda) for u uniform on the sphere, across spectra", verdict,
        statistic=Statistic("max |z| of the Monte Carlo variance against the formula", abs(worst["z"])),
        rule=f"fail if some |z| > {z_strict:.3g} (two-sided Bonferroni over {m} spectra); pass if none does and every "
             f"{level:.0%} Monte Carlo interval lies within +-{precision:.0%} of the formula; otherwise inconclusive",
        reason="" if verdict != "inconclusive" else
        f"{len(imprecise)} Monte Carlo interval(s) wider than +-{precision:.0%}: more samples would decide it",
        paper=PAPER["S9"], numbers={"checks": out})]


# ----------------------------------------------------------------------------- S10

def s10_zero_pixel(*, n_dead_pixels: int, censored: bool, lebesgue_growth: float, expected_growth: float,
                   growth_tolerance: float, gaussian_log_mass: Sequence[float], quadrature_log_mass: float,
                   quadrature_error: float, tolerance: float, several: int = 2,
                   numbers: Mapping[str, Any] | None = None) -> list[Statement]:
    """S10 (Sec. 3.3) along a first-layer weight on a pixel that is zero in every held-out input.

    (a) premise (data): several pixels are never used in the held-out digits: pass if at least
    ``several``, fail if none, inconclusive for one.
    (b) the Lebesgue radius along that weight is infinite: true by construction once (a) holds
    (the cost does not depend on the weight), so it is reported and never counted: "not judged"
    when the ray is censored at both maximum radii and the Lebesgue estimate grows as
    max_radius^n (to within ``growth_tolerance``: the caller's derived rounding of the two radii
    and log-volumes, e.g. 2 n u for maximum radii rounded to the cost's dtype); "fail" if the ray
    leaves (then the cost depends on a dead input: a bug).
    (c) the Gaussian measure is finite and the estimate converged: the Gaussian-measure term
    along that ray is finite, the same at both maximum radii, and equal to an independent
    adaptive quadrature of the full-line integral (R = infinity) within ``tolerance`` nats (the
    caller's derived bound on the float rounding of both computations; the paper: 'the error from
    the approximation is less than floating-point rounding error') plus the quadrature's own error
    estimate; inconclusive when that estimate exceeds the tolerance."""
    numbers = dict(numbers or {})
    if n_dead_pixels >= several:
        va = "pass"
    elif n_dead_pixels == 0:
        va = "fail"
    else:
        va = "inconclusive"
    a = Statement("a", "several pixels are zero in every held-out digit (the premise)", va,
                  statistic=Statistic("always-zero pixels in the held-out inputs", float(n_dead_pixels)),
                  rule=f"pass if at least {several} pixels are zero in every held-out input; fail if none; else "
                       "inconclusive",
                  reason="" if va != "inconclusive" else "exactly one always-zero pixel: 'several' is not decided",
                  paper=PAPER["S10"], numbers={"n_dead_pixels": n_dead_pixels})
    text_b = "the Lebesgue radius along a dead weight is infinite"
    grows = abs(lebesgue_growth - expected_growth) <= growth_tolerance
    if censored and grows:
        b = not_judged("b", text_b, "true by construction: the cost does not depend on a weight whose input is always "
                       "zero, so the ray never leaves and the Lebesgue estimate is max_radius^n (it grew by "
                       f"{lebesgue_growth:.6g} nats = n log 100 when max_radius grew 100x); reported, not evidence",
                       paper=PAPER["S10"], numbers={"lebesgue_growth": lebesgue_growth,
                                                    "expected_growth": expected_growth,
                                                    "growth_tolerance": growth_tolerance})
    else:
        b = Statement("b", text_b, "fail", statistic=Statistic("Lebesgue log-estimate growth for 100x max_radius",
                                                               lebesgue_growth, unit="nats"),
                      rule="the ray along a dead weight must be censored at every max_radius (the cost cannot depend "
                           "on it); fail if it leaves",
                      paper=PAPER["S10"], numbers={"censored": censored, "expected_growth": expected_growth,
                                               "growth_tolerance": growth_tolerance})
    g = [float(v) for v in gaussian_log_mass]
    finite = all(math.isfinite(v) for v in g)
    diff = max(abs(v - quadrature_log_mass) for v in g) if finite else math.inf
    if not finite or diff > tolerance + quadrature_error:
        vc = "fail"
    elif quadrature_error > tolerance:
        vc = "inconclusive"
    else:
        vc = "pass"
    c = Statement("c", "the Gaussian measure along the dead weight is finite, and the estimate has converged to it", vc,
                  statistic=Statistic("max |estimator term - full-line quadrature|", diff, unit="nats"),
                  rule=f"pass if the Gaussian-measure term along the dead weight is finite at both maximum radii and "
                       f"within {tolerance:.2g} nats (the derived float rounding of both) plus the quadrature's error "
                       "estimate of an independent adaptive quadrature of the integral to infinity; fail otherwise; "
                       "inconclusive when the quadrature's error estimate exceeds the tolerance",
                  reason="" if vc != "inconclusive" else f"quadrature error estimate {quadrature_error:.3g} > "
                                                         f"{tolerance:g}",
                  paper=PAPER["S10"],
                  numbers={"gaussian_log_mass": g, "quadrature_log_mass": quadrature_log_mass,
                           "quadrature_error": quadrature_error, **numbers})
    return [a, b, c]
