"""Rules of the estimator claims E1-E3 (Fan et al. App. B.2; Scherlis & Belrose Sec. 3; the
batched implementation's own contract). E4 and E5 live in ``volbench.claims.crosscheck``.

Example (E1 with a clear growth on two minima, five replicates each):
    >>> reps = {(s, K): [float(K) / 10 + 0.01 * r for r in range(5)] for s in (0, 1) for K in (5, 40)}
    >>> st = e1_grows_with_k(reps, {k: (v, v) for k, v in reps.items()}, Ks=(5, 40), seeds=(0, 1))
    >>> st[0].verdict
    'pass'
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..report.schema import Statement, Statistic
from .core import decide, not_judged
from .stats import DEFAULT_LEVEL, Aggregate

__all__ = ["welch_interval", "e1_grows_with_k", "e2_ordering_stable", "e3_same_radii"]


def welch_interval(a: Sequence[float], b: Sequence[float], *, level: float = DEFAULT_LEVEL,
                   a_bracket: tuple[Sequence[float], Sequence[float]] | None = None,
                   b_bracket: tuple[Sequence[float], Sequence[float]] | None = None) -> tuple[float, float, float]:
    """(mean(a) - mean(b), low, high): Welch's t-interval for two independent samples (replicates
    with independent direction sets), widened by the mean resolution brackets when given."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        return float(a.mean() - b.mean()), math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else 1.0
    half = float(stats.t.ppf(0.5 + level / 2, dof)) * se
    point = float(a.mean() - b.mean())
    lo = float(np.mean(a_bracket[0]) - np.mean(b_bracket[1])) if a_bracket and b_bracket else point
    hi = float(np.mean(a_bracket[1]) - np.mean(b_bracket[0])) if a_bracket and b_bracket else point
    return point, min(lo, point) - half, max(hi, point) + half


def e1_grows_with_k(replicates: Mapping[tuple[int, int], Sequence[float]],
                    brackets: Mapping[tuple[int, int], tuple[Sequence[float], Sequence[float]]], *,
                    Ks: Sequence[int], seeds: Sequence[int], level: float = DEFAULT_LEVEL) -> list[Statement]:
    """E1: log V-hat at the largest K exceeds log V-hat at the smallest K, in expectation over
    independent direction sets (``replicates[(seed, K)]``: one log V-hat per replicate, each from
    its own direction seed; ``brackets[(seed, K)]``: their (low, high) resolution bounds), for every
    minimum (seed): Welch intervals, intersection-union over minima, Bonferroni for a fail."""
    k_lo, k_hi = min(Ks), max(Ks)
    m = len(seeds)
    strict = 1 - (1 - level) / m
    rows, verdicts = {}, []
    for s in seeds:
        a, b = replicates[(s, k_hi)], replicates[(s, k_lo)]
        p, lo, hi = welch_interval(a, b, level=level, a_bracket=brackets[(s, k_hi)], b_bracket=brackets[(s, k_lo)])
        _, slo, shi = welch_interval(a, b, level=strict, a_bracket=brackets[(s, k_hi)], b_bracket=brackets[(s, k_lo)])
        v = "pass" if lo > 0 else "fail" if shi < 0 else "inconclusive"
        verdicts.append(v)
        rows[f"seed {s}"] = {"difference": p, "low": lo, "high": hi, "replicates_K_large": list(a),
                             "replicates_K_small": list(b), "curve": {str(K): float(np.mean(replicates[(s, K)]))
                                                                      for K in Ks}}
    worst = min(rows.items(), key=lambda kv: kv[1]["low"] if math.isfinite(kv[1]["low"]) else -math.inf)
    verdict = "fail" if "fail" in verdicts else "pass" if all(v == "pass" for v in verdicts) else "inconclusive"
    lo, hi = worst[1]["low"], worst[1]["high"]
    fin = math.isfinite(lo) and math.isfinite(hi)
    return [Statement(
        "a", f"log V at K = {k_hi} exceeds log V at K = {k_lo} (independent direction sets, replicates)", verdict,
        statistic=Statistic(f"E[log V(K={k_hi})] - E[log V(K={k_lo})] [{worst[0]}]", worst[1]["difference"],
                            low=lo if fin else None, high=hi if fin else None, level=level if fin else None,
                            unit="nats"),
        rule=f"pass if, for every minimum, the {level:.0%} Welch interval over replicates (independent direction "
             "seeds; resolution in the margin) is above 0; fail if one is below 0 at the Bonferroni level",
        reason="" if verdict != "inconclusive" else "an interval straddles 0: more replicates would decide it",
        numbers={"per_minimum": rows},
        paper="Fan App. B.2 (50 vs 500 directions), Scherlis & Belrose Sec. 3: the log of the estimate is biased low, "
              "less so with more directions")]


def e2_ordering_stable(large: Mapping[str, Aggregate], small: Mapping[str, Aggregate], *, K_large: int, K_small: int,
                       level: float = DEFAULT_LEVEL) -> list[Statement]:
    """E2: every F2/F3 ordering decided with K_large directions keeps its sign with K_small
    independent directions. Pass: at least one ordering is decided at K_large and every decided one
    has the same sign of its K_small point estimate, none decided the other way. Fail: a decided
    ordering is decided with the opposite sign at K_small (its Bonferroni interval). Else
    inconclusive (nothing decided at K_large, or a sign flips without being decided)."""
    m = max(len(large), 1)
    strict = 1 - (1 - level) / m
    rows, decided, flips, reversed_ = {}, 0, 0, 0
    for key, agg in large.items():
        lo, hi = agg.interval(level)
        v = decide(lo, hi, above=0.0)
        s_agg = small[key]
        slo, shi = s_agg.interval(strict)
        rows[key] = {"K_large": agg.as_dict(level), "K_small": s_agg.as_dict(level), "decided_at_K_large": v}
        if v == "inconclusive":
            continue
        decided += 1
        sign = 1.0 if v == "pass" else -1.0
        if np.sign(s_agg.point) != sign:
            flips += 1
        if (sign > 0 and shi < 0) or (sign < 0 and slo > 0):
            reversed_ += 1
    if reversed_:
        verdict, reason = "fail", ""
    elif decided and not flips:
        verdict, reason = "pass", ""
    else:
        verdict = "inconclusive"
        reason = (f"no ordering is decided at K={K_large}" if not decided else
                  f"{flips} decided ordering(s) change sign at K={K_small} without being decided the other way")
    frac = (decided - flips) / decided if decided else math.nan
    return [Statement("a", f"the F2/F3 orderings decided at K = {K_large} are the same at K = {K_small}", verdict,
                      statistic=Statistic(f"fraction of orderings decided at K={K_large} kept at K={K_small}", frac),
                      rule=f"pass if at least one ordering is decided at K={K_large} ({level:.0%} interval over seeds) "
                           f"and every decided one keeps its sign at K={K_small} (independent directions); fail if one "
                           "is decided the other way at the Bonferroni level",
                      reason=reason, numbers={"n_decided": decided, "n_flipped": flips, "orderings": rows},
                      paper="Fan App. B.2: 50 directions give the same orderings as 500")]


def e3_same_radii(*, settings_spread: Mapping[str, float], spread_tol: Mapping[str, float],
                  gpu: Mapping[str, float] | None, gpu_tol: float,
                  reference_vs_loop: Mapping[str, float] | None = None,
                  principled_overlap: Mapping[str, float] | None = None,
                  overlap_tol: Mapping[str, float] | None = None) -> list[Statement]:
    """E3: batched, chunked, CPU and GPU evaluation give the same radii, against independent oracles.

    (a) reference only: the batched paper mode's radii equal the sequential paper loop's
    (``paper_loop_radii``): ``reference_vs_loop[dtype]`` is the largest |log r - log r_loop| over
    the settings (batch sizes, lookahead); it must be 0 (the same grid point), in float32 and float64.
    (b) principled only: the search's [inside, outside] brackets overlap those of an independent
    scalar per-ray search for every ray and setting: ``principled_overlap[dtype]`` is the largest
    gap between non-overlapping brackets (<= 0 means every pair overlaps), allowed up to
    ``overlap_tol[dtype]`` (default 0): the two searches evaluate the cost through different kernels
    (the ray interface's cached first layer, the plain forward pass), whose values differ by a few
    ulps, so a point within that of tau may fall on either side.
    (c) batched and chunked settings agree with each other on one device: ``settings_spread[dtype]``
    is the largest |log r| difference across direction batch sizes and data chunk sizes; within
    ``spread_tol[dtype]``.
    (d) CPU and GPU agree within ``gpu_tol`` (log-radius); "not judged" when no GPU is present."""
    out = []
    if reference_vs_loop is not None:
        worst_ref = max(reference_vs_loop.values())
        # The same grid point gives the same radius c_j ||g|| up to the rounding of ||g|| (~1e-16
        # relative); the nearest other grid point is >= 2 log(99/98) = 0.02 away in log-radius.
        tol = 1e-9
        out.append(Statement(
            "a", "the batched paper mode gives the sequential paper loop's radii (float32 and float64)",
            "pass" if worst_ref <= tol else "fail",
            statistic=Statistic("max |log r(batched) - log r(loop)|", worst_ref),
            rule=f"pass if every radius is the loop's (the same first grid point above tau: |log r difference| <= "
                 f"{tol:g}, far below one grid step) in every dtype and setting; fail otherwise",
            numbers={"per_dtype": dict(reference_vs_loop)}))
    if principled_overlap is not None:
        worst_gap = max(principled_overlap.values())
        tols = dict(overlap_tol or {})
        bad_gap = {k: v for k, v in principled_overlap.items() if v > tols.get(k, 0.0)}
        out.append(Statement(
            "b", "the principled search's brackets agree with an independent scalar per-ray search",
            "fail" if bad_gap else "pass",
            statistic=Statistic("max gap between the two [inside, outside] log-radius brackets", worst_gap),
            rule="pass if, for every ray, setting and dtype, the search's bracket and the scalar search's bracket "
                 f"overlap (both contain the first exit) to within {tols or 0} in log-radius (the cost's rounding "
                 "across kernels); fail if some pair is further apart",
            numbers={"per_dtype": dict(principled_overlap), "tolerance": tols}))
    bad = {k: v for k, v in settings_spread.items() if v > spread_tol.get(k, 0.0)}
    out.append(Statement(
        "c", "batched and chunked settings give the same radii on one device", "fail" if bad else "pass",
        statistic=Statistic("max |log r difference| across batch and chunk sizes", max(settings_spread.values())),
        rule="pass if the spread across direction batch sizes, data chunk sizes and lookahead is within "
             f"{dict(spread_tol)} per dtype; fail otherwise", numbers={"per_dtype": dict(settings_spread)}))
    if gpu is None:
        out.append(not_judged("d", "CPU and GPU evaluation give the same radii",
                              "no CUDA device is visible to torch on this machine: not run (never a pass)"))
    else:
        worst_gpu = max(gpu.values())
        out.append(Statement(
            "d", "CPU and GPU evaluation give the same radii", "pass" if worst_gpu <= gpu_tol else "fail",
            statistic=Statistic("max |log r(GPU) - log r(CPU)|", worst_gpu),
            rule=f"pass if within {gpu_tol:g} in log-radius (kernels differ in summation order)",
            numbers={"per_dtype": dict(gpu)}))
    return out
