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

from volbench.claims.core import decide, not_judged
from volbench.claims.stats import DEFAULT_LEVEL, Aggregate
from volbench.results import Statement, Statistic

__all__ = ["welch_interval", "e1_grows_with_k", "e2_ordering_stable", "e3_agreement_summary", "e3_same_radii"]


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


def e3_agreement_summary(records: Sequence[Mapping]) -> dict:
    """What the end-of-gap records of one comparison (``volbench.estimator.agreement.gap_end_costs``)
    say: rays with disjoint brackets, those explained by rounding (every kernel's cost at both ends
    within the derived rounding bound of tau: ``ratio <= 1``) and those not.

    >>> e3_agreement_summary([{"ray": 3, "t": 1.0, "ratio": 0.4}, {"ray": 3, "t": 1.1, "ratio": 0.9}])
    {'rays_disjoint': 1, 'rays_unexplained': 0, 'worst_ratio': 0.9}
    """
    rays = {r["ray"] for r in records}
    bad = {r["ray"] for r in records if not r["ratio"] <= 1.0}  # NaN and inf are not explained
    worst = max((r["ratio"] for r in records), default=0.0)
    return {"rays_disjoint": len(rays), "rays_unexplained": len(bad), "worst_ratio": worst}


def _agreement_statement(sid: str, text: str, per_dtype: Mapping[str, Sequence[Mapping]],
                         spread: Mapping[str, float], what: str) -> Statement:
    summaries = {k: e3_agreement_summary(v) for k, v in per_dtype.items()}
    unexplained = sum(s["rays_unexplained"] for s in summaries.values())
    return Statement(
        sid, text, "fail" if unexplained else "pass",
        statistic=Statistic(f"rays whose brackets disagree beyond the cost's rounding ({what})", unexplained),
        rule="pass if, for every ray, setting and dtype, the two runs' [inside, outside] brackets overlap, or the "
             "cost at both ends of the gap between them lies within the derived rounding bound of tau for every "
             "kernel involved (volbench.costs.rounding: a point that close to tau may fall on either side); fail "
             "if some point is clearly inside for one run and clearly outside for the other",
        numbers={"per_dtype": summaries, "max_abs_log_radius_difference": dict(spread),
                 "gap_ends": {k: list(v) for k, v in per_dtype.items()}})


def e3_same_radii(*, settings: Mapping[str, Sequence[Mapping]], settings_spread: Mapping[str, float],
                  gpu: Mapping[str, Sequence[Mapping]] | None = None, gpu_spread: Mapping[str, float] | None = None,
                  reference_vs_loop: Mapping[str, Sequence[Mapping]] | None = None,
                  principled_vs_oracle: Mapping[str, Sequence[Mapping]] | None = None,
                  oracle_spread: Mapping[str, float] | None = None) -> list[Statement]:
    """E3: batched, chunked, CPU and GPU evaluation give the same radii, against independent oracles.

    Every comparison is of brackets, decided in the cost domain: its input is, per dtype, the
    records of ``volbench.estimator.agreement.gap_end_costs`` for the rays whose brackets are
    disjoint (none: every pair overlaps), each end's cost under every kernel involved and the
    derived rounding bound there. Kernels differ in the order of their arithmetic (the ray
    interface's cached first layer, the plain forward pass, data chunks, thread counts, devices),
    so a point whose cost lies within rounding of tau may be judged on either side by two of them:
    such a gap is no disagreement. A point clearly inside for one and clearly outside for another
    is. ``*_spread``: the largest |log r difference| of the same comparison, reported.

    (a) reference only: the batched paper mode against the sequential paper loop
    (``paper_loop_radii``), in float32 and float64 (the same grid point, or a rounding tie).
    (b) principled only: the search against an independent scalar per-ray search.
    (c) direction batch sizes and data chunk sizes against each other on one device.
    (d) CPU against GPU; "not judged" when no GPU is present (never a pass).
    """
    out = []
    if reference_vs_loop is not None:
        out.append(_agreement_statement(
            "a", "the batched paper mode gives the sequential paper loop's radii (float32 and float64)",
            reference_vs_loop, oracle_spread or {}, "batched against the loop"))
    if principled_vs_oracle is not None:
        out.append(_agreement_statement(
            "b", "the principled search's brackets agree with an independent scalar per-ray search",
            principled_vs_oracle, oracle_spread or {}, "search against the scalar oracle"))
    out.append(_agreement_statement("c", "batched and chunked settings give the same radii on one device",
                                    settings, settings_spread, "across batch and chunk sizes"))
    if gpu is None:
        out.append(not_judged("d", "CPU and GPU evaluation give the same radii",
                              "no CUDA device is visible to torch on this machine: not run (never a pass)"))
    else:
        out.append(_agreement_statement("d", "CPU and GPU evaluation give the same radii", gpu, gpu_spread or {},
                                        "CPU against GPU"))
    return out
