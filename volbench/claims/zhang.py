"""Rules of Zhang, Reid, Valle-Perez & Louis's claims Z1-Z6 ("Why flatness correlates with
generalization for deep neural networks", papers/zhang-why-flatness-correlates-with-generalization.txt):
measurements in, one :class:`~volbench.results.Statement` per statement of CLAIMS.md out.

Inference. The correlations of Z1 and Z2 are across the functions one training recipe finds
when the attack set grows; a seed is one independent replicate of that whole sweep (its own
initialisation and attack set, the same S and E). So, per seed, Pearson's r over the attack sets
(nets at zero training error only, the paper's protocol), Fisher's z = atanh r, and the t-interval
of the mean z over seeds, transformed back (the random-effects analogue of the seed-level
interval used for volumes; it includes seed-to-seed variation because the seeds' spread is its
only input). With one seed there is no seed-to-seed spread; the textbook interval
z +- z_{1-a/2} / sqrt(m - 3) over that seed's m nets is used and the record says so. Sharpness
enters as log sharpness (the paper's figures plot it on a log axis). Z4 correlates across
functions, the unit of replication there (Bonett & Wright's interval for Spearman's rho). The EP
estimate of log V(f) converges to ~1e-4 nats (module doc of cases/test_zhang.py), far below the
differences judged, so no resolution margin is added.

Example (Z1 on three seeds whose volumes fall linearly with the error):
    >>> per_seed = {s: ([-100.0, -120.0, -140.0, -160.0], [0.1 + 0.01 * s, 0.2, 0.3, 0.41]) for s in range(3)}
    >>> z1_volume_error(per_seed)[0].verdict
    'pass'

Size: one module per paper, as a table of its claims: the rules of Z1-Z6
(tests/test_claims_zhang.py).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from volbench.results import Statement, Statistic

__all__ = ["PAPER", "STRONG", "correlation_over_seeds", "z1_volume_error", "z2_adam_breaks_sharpness",
           "z3_alpha_scaling", "z4_boolean_sharpness_volume", "z5_spectral_norm", "z6_overtraining",
           "spearman_interval"]

DEFAULT_LEVEL = 0.95
#: "strong" negative correlation: Cohen's convention |r| >= 0.5, fixed before any data was seen.
STRONG = -0.5
#: |r| is clipped to this before atanh (a seed with r = +-1 over a few nets would be infinite).
R_CLIP = 1 - 1e-9

PAPER: Mapping[str, str] = {
    "Z1": "Fig. 3(a) (|S| = 500, |E| = 1,000, |A| = 0..|S|, SGD): the correlation between volume and generalization "
          "error 'is excellent over this range'; no coefficient given",
    "Z2": "Fig. 4(b, e) vs Fig. 3(a, d): with Adam 'the correlation with the volume is virtually identical to vanilla "
          "SGD, but ... the correlation with flatness changes significantly'; no coefficients given",
    "Z3": "Sec. 5.4, Fig. 5 (alpha = 5.9) and Fig. S5 (alpha = 5.0): 'alpha scaling indeed leads to a spike in the "
          "sharpness'; 'the volume is initially invariant upon alpha-scaling because f(w) is unchanged'",
    "Z4": "Fig. 2 (1e8 samples, the 1,000 most frequent functions): sharpness and volume 'correlate relatively well'; "
          "Fig. S2: 'a very similar correlation for the spectral norm of the Hessian'; 'the largest volume/lowest "
          "sharpness function is the trivial one'",
    "Z5": "Sec. 2.2 (after Dinh et al.): sharpness ~ ||H||_2 eps^2 / (2 (1 + L)) x 100 'in the limit of small eps'",
    "Z6": "Fig. 5: zero training error at epoch 140, over-trained 1,000 epochs: 'volume stays constant, but the "
          "cross-entropy loss continues to decrease ... This leads to a reduction in sharpness'",
}


def _t(level: float, dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, dof))


def _z(level: float) -> float:
    from scipy import stats

    return float(stats.norm.ppf(0.5 + level / 2))


def _stat(name: str, value: float, lo: float, hi: float, level: float, unit: str = "") -> Statistic:
    finite = math.isfinite(lo) and math.isfinite(hi) and lo <= hi
    return Statistic(name, value if math.isfinite(value) else math.nan, low=lo if finite else None,
                     high=hi if finite else None, level=level if finite else None, unit=unit)


def _pearson(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def _fisher(r: float) -> float:
    return float(np.arctanh(np.clip(r, -R_CLIP, R_CLIP)))


def correlation_over_seeds(per_seed: Mapping[int, tuple[Sequence[float], Sequence[float]]], *,
                           level: float = DEFAULT_LEVEL) -> dict[str, Any]:
    """Pearson r of (x, y) per seed, pooled by Fisher's z: the mean r (tanh of the mean z) with
    its interval (t over seeds; one seed: z +- z_{1-a/2}/sqrt(m - 3)). Seeds with fewer than 3
    points or a constant coordinate are left out (noted)."""
    rs, ms, notes = {}, {}, []
    for s, (x, y) in per_seed.items():
        r = _pearson(x, y)
        if math.isnan(r):
            notes.append(f"seed {s}: {len(x)} point(s) or a constant coordinate: left out")
            continue
        rs[s], ms[s] = r, len(x)
    out: dict[str, Any] = {"per_seed_r": {str(s): r for s, r in rs.items()}, "points_per_seed": {str(s): m for s, m in
                                                                                                   ms.items()},
                           "notes": notes, "n_seeds": len(rs)}
    if not rs:
        out.update(r=math.nan, low=math.nan, high=math.nan, z=math.nan, z_low=math.nan, z_high=math.nan,
                   inference="no usable seed")
        return out
    zs = np.array([_fisher(r) for r in rs.values()])
    zm = float(zs.mean())
    if len(zs) >= 2:
        half = _t(level, len(zs) - 1) * float(zs.std(ddof=1)) / math.sqrt(len(zs))
        inference = f"t over {len(zs)} seeds of Fisher's z (seed-to-seed variation included)"
    else:
        m = next(iter(ms.values()))
        half = _z(level) / math.sqrt(m - 3) if m > 3 else math.inf
        inference = (f"one seed: Fisher's z +- z/sqrt(m - 3) over its {m} nets (no seed-to-seed variation; "
                     "bivariate-normal approximation)")
    out.update(r=float(np.tanh(zm)), low=float(np.tanh(zm - half)), high=float(np.tanh(zm + half)), z=zm,
               z_low=zm - half, z_high=zm + half, z_sd_over_seeds=float(zs.std(ddof=1)) if len(zs) > 1 else math.nan,
               inference=inference)
    return out


def _seeds_needed(zs: Sequence[float], boundary_z: float, level: float, max_seeds: int = 200) -> str:
    """From the measured spread of per-seed z, the seeds that would put the interval clear of the boundary."""
    zs = np.asarray(list(zs), dtype=np.float64)
    if len(zs) < 2:
        return "a second seed would give an interval that includes seed-to-seed variation"
    m, sd = float(zs.mean()), float(zs.std(ddof=1))
    gap = abs(m - boundary_z)
    if gap == 0:
        return "the mean sits on the boundary: no number of seeds decides it"
    for s in range(len(zs), max_seeds + 1):
        if _t(level, s - 1) * sd / math.sqrt(s) < gap:
            return f"measured power (sd of Fisher's z over seeds {sd:.3g}): about {s} seeds would decide it"
    return f"more than {max_seeds} seeds at the measured spread (sd of Fisher's z {sd:.3g})"


def _correlation_statement(id: str, text: str, corr: Mapping[str, Any], *, below: float | None,
                           above: float | None, what: str, level: float, paper: str,
                           extra: Mapping[str, Any] | None = None) -> Statement:
    lo, hi = corr["low"], corr["high"]
    if math.isnan(lo) or math.isnan(hi):
        verdict = "inconclusive"
    elif below is not None:
        verdict = "pass" if hi < below else "fail" if lo > below else "inconclusive"
    else:
        verdict = "pass" if lo > above else "fail" if hi < above else "inconclusive"
    bound = below if below is not None else above
    reason = ""
    if verdict == "inconclusive":
        zs = [_fisher(r) for r in corr["per_seed_r"].values()]
        reason = (f"{what} = {corr['r']:.3f} [{lo:.3f}, {hi:.3f}] straddles {bound:g} ({corr['inference']}); "
                  + _seeds_needed(zs, _fisher(bound), level))
    side = f"below {below:g}" if below is not None else f"above {above:g}"
    rule = (f"per seed Pearson r over the attack sets (nets at zero training error), Fisher's z, the {level:.0%} "
            f"t-interval over seeds transformed back: pass if it lies {side}; fail if it lies on the other side; else "
            "inconclusive")
    return Statement(id, text, verdict, statistic=_stat(what, corr["r"], lo, hi, level), rule=rule, reason=reason,
                     paper=paper, numbers={"correlation": dict(corr), **dict(extra or {})})


# ----------------------------------------------------------------------------- Z1, Z2

def z1_volume_error(per_seed: Mapping[int, tuple[Sequence[float], Sequence[float]]], *, strong: float = STRONG,
                    level: float = DEFAULT_LEVEL, extra: Mapping[str, Any] | None = None) -> list[Statement]:
    """Z1 (Sec. 5.2, Fig. 3a): ``per_seed[seed] = (log V(f) of each net, its test error)``; the
    mean Pearson r over seeds lies below ``strong`` (a strong negative correlation)."""
    corr = correlation_over_seeds(per_seed, level=level)
    return [_correlation_statement("a", "log V(f) correlates strongly and negatively with the test error across "
                                        "attack-set sizes", corr, below=strong, above=None,
                                   what="Pearson r(log V(f), test error)", level=level, paper=PAPER["Z1"], extra=extra)]


def z2_adam_breaks_sharpness(sgd: Mapping[int, Mapping[str, Sequence[float]]],
                             adam: Mapping[int, Mapping[str, Sequence[float]]], *, strong: float = STRONG,
                             level: float = DEFAULT_LEVEL, extra: Mapping[str, Any] | None = None) -> list[Statement]:
    """Z2 (Sec. 5.3, Fig. 4). ``sgd[seed]`` and ``adam[seed]`` map "log_sharpness", "log_volume"
    and "test_error" to one value per net (the two optimizers share each seed's S, attack sets and
    initialisation, so seeds are paired).

    (a) the sharpness-error correlation is weaker under Adam: per seed
    z(r_SGD(log sharpness, error)) - z(r_Adam(log sharpness, error)), t over seeds, above 0 (one
    seed: the two independent-sample Fisher intervals combined).
    (b) the volume correlation stays: under Adam, Z1's rule (mean r(log V, error) below ``strong``)."""
    seeds = [s for s in sgd if s in adam]
    diffs, rows = {}, {}
    for s in seeds:
        r1 = _pearson(sgd[s]["log_sharpness"], sgd[s]["test_error"])
        r2 = _pearson(adam[s]["log_sharpness"], adam[s]["test_error"])
        rows[str(s)] = {"r_sgd": r1, "r_adam": r2, "nets_sgd": len(sgd[s]["test_error"]),
                        "nets_adam": len(adam[s]["test_error"])}
        if not (math.isnan(r1) or math.isnan(r2)):
            diffs[s] = _fisher(r1) - _fisher(r2)
    d = np.array(list(diffs.values()))
    if len(d) >= 2:
        mean = float(d.mean())
        half = _t(level, len(d) - 1) * float(d.std(ddof=1)) / math.sqrt(len(d))
        inference = f"t over {len(d)} seeds of the paired Fisher-z difference"
    elif len(d) == 1:
        s = next(iter(diffs))
        m1, m2 = rows[str(s)]["nets_sgd"], rows[str(s)]["nets_adam"]
        mean = float(d[0])
        half = _z(level) * math.sqrt(1 / (m1 - 3) + 1 / (m2 - 3)) if min(m1, m2) > 3 else math.inf
        inference = "one seed: Fisher-z difference +- z sqrt(1/(m1 - 3) + 1/(m2 - 3)) (no seed-to-seed variation)"
    else:
        mean, half, inference = math.nan, math.nan, "no usable seed"
    lo, hi = mean - half, mean + half
    if math.isnan(lo) or math.isnan(hi):
        va = "inconclusive"
    else:
        va = "pass" if lo > 0 else "fail" if hi < 0 else "inconclusive"
    reason = "" if va != "inconclusive" else (
        f"z_SGD - z_Adam = {mean:.3g} [{lo:.3g}, {hi:.3g}] straddles 0 ({inference}); "
        + (_seeds_needed(list(d), 0.0, level) if len(d) >= 2 else "seeds would decide it"))
    a = Statement("a", "the sharpness-error correlation is weaker under Adam than under SGD", va,
                  statistic=_stat("Fisher z(r_SGD(log sharpness, error)) - z(r_Adam(log sharpness, "
                                  "error))", mean, lo, hi,
                                  level),
                  rule="per seed the difference of Fisher's z of Pearson r(log sharpness, test error) between SGD and "
                       f"Adam (paired: same S, attack sets and initialisation); pass if its {level:.0%} t-interval "
                       "over seeds lies above 0; fail if below 0; else inconclusive",
                  reason=reason, paper=PAPER["Z2"],
                  numbers={"per_seed": rows, "inference": inference, **dict(extra or {})})
    adam_vol = {s: (adam[s]["log_volume"], adam[s]["test_error"]) for s in adam}
    sgd_vol = {s: (sgd[s]["log_volume"], sgd[s]["test_error"]) for s in sgd}
    b = _correlation_statement("b", "under Adam the volume-error correlation stays strong and negative",
                               correlation_over_seeds(adam_vol, level=level), below=strong, above=None,
                               what="Pearson r(log V(f), test error) under Adam", level=level, paper=PAPER["Z2"],
                               extra={"sgd_volume_correlation": correlation_over_seeds(sgd_vol, level=level)})
    return [a, b]


# ----------------------------------------------------------------------------- Z3

def z3_alpha_scaling(layers: Sequence[Mapping[str, Any]], *, alpha: float, material: float = 1.1,
                     ep_tolerance: float = 0.0) -> list[Statement]:
    """Z3 (Sec. 5.4, App. C): (W_i, b_i, W_{i+1}) -> (a W_i, a b_i, W_{i+1} / a) for each hidden
    layer i. Each row of ``layers``: "layer", "max_output_diff", "tolerance" (float rounding of the
    two extra products), "label_flips", "flips_near_zero" (flips whose unscaled output lies within
    the tolerance of 0, where the sign is rounding), "log_volume", "log_volume_unscaled",
    "ep_converged", "sharpness_before" and "sharpness_after" (one value per seeded restart).

    (a) outputs identical: every |output change| within the tolerance and no label flips; fail if
    an output moves beyond it or a label flips where the sign is not rounding; inconclusive if
    the only flips are at outputs within the tolerance of 0.
    (b) log V(f) identical, computed afresh (no cache) for the rescaled network: |difference| <=
    ``ep_tolerance`` (0: the same labels and kernel run the same EP operations in the same order);
    inconclusive if an EP run did not converge. What it shows: V(f) is a function of the labels
    alone, so with (a) it is implied; the fresh run checks that nothing but the labels enters our
    computation of V(f). It does not test EP's accuracy, nor what training does from the rescaled
    point (the paper's Fig. 5 inset: SGD leaves the function, then returns).
    (c) sharpness rises for every layer: 'rises' if the smallest restart after scaling exceeds the
    largest before and the best after is above ``material`` x the best before; 'falls' the mirror;
    'unchanged' if the best after is within a factor ``material`` of the best before (the rise is
    absent, decided); otherwise the restarts disagree (undecided). Pass if every layer rises; fail
    if one falls or is unchanged; else inconclusive."""
    if not layers:
        raise ValueError("no layers")
    rows_a, state_a = [], []
    for r in layers:
        moved = r["max_output_diff"] > r["tolerance"]
        hard_flips = r["label_flips"] - r.get("flips_near_zero", 0)
        state = "fail" if moved or hard_flips > 0 else "inconclusive" if r["label_flips"] > 0 else "pass"
        state_a.append(state)
        rows_a.append({"layer": r["layer"], "max_output_diff": r["max_output_diff"], "tolerance": r["tolerance"],
                       "label_flips": r["label_flips"], "flips_near_zero": r.get("flips_near_zero", 0), "state": state})
    va = "fail" if "fail" in state_a else "inconclusive" if "inconclusive" in state_a else "pass"
    worst = max(layers, key=lambda r: r["max_output_diff"] / r["tolerance"] if r["tolerance"] > 0 else math.inf)
    a = Statement("a", f"alpha-scaling (alpha = {alpha:g}) leaves the network's outputs identical", va,
                  statistic=Statistic("max |output change| / float tolerance", worst["max_output_diff"] /
                                      worst["tolerance"] if worst["tolerance"] > 0 else math.inf),
                  rule="pass if, for every scaled layer, every output on S u E changes by at most the float tolerance "
                       "and no label flips; fail if an output moves beyond it or a label flips where the unscaled "
                       "output is further than the tolerance from 0; inconclusive if the only flips are within the "
                       "tolerance of 0",
                  reason="" if va != "inconclusive" else "labels flipped only where the output is within float "
                                                        "rounding of 0",
                  paper=PAPER["Z3"], numbers={"layers": rows_a})
    diffs, unconverged = [], []
    for r in layers:
        diffs.append(abs(r["log_volume"] - r["log_volume_unscaled"]))
        if not r.get("ep_converged", True):
            unconverged.append(r["layer"])
    dmax = max(diffs)
    vb = "fail" if dmax > ep_tolerance else "inconclusive" if unconverged else "pass"
    b = Statement("b", "log V(f) of the rescaled network, computed afresh, is identical", vb,
                  statistic=Statistic("max |log V(scaled) - log V(unscaled)|", dmax, unit="nats"),
                  rule="EP run afresh on the rescaled network's labels (no cache): pass if |difference| <= "
                       f"{ep_tolerance:g} nats and both runs converged; fail if larger; inconclusive if a run did not "
                       "converge. V(f) depends on the labels only: with (a) this is implied; it checks that nothing "
                       "else enters our V(f), not EP's accuracy",
                  reason="" if vb != "inconclusive" else f"EP did not converge for layer(s) {unconverged}",
                  paper=PAPER["Z3"],
                  numbers={"per_layer": [{"layer": r["layer"], "log_volume": r["log_volume"],
                                          "log_volume_unscaled": r["log_volume_unscaled"]} for r in layers],
                           "what_it_shows": "equal labels imply equal V(f); the fresh computation shows our V(f) reads "
                                            "nothing but the labels"})
    rows_c, states = [], []
    for r in layers:
        before, after = list(r["sharpness_before"]), list(r["sharpness_after"])
        ratio = max(after) / max(before)
        if min(after) > max(before) and ratio > material:
            state = "rises"
        elif max(after) < min(before) and ratio < 1 / material:
            state = "falls"
        elif 1 / material <= ratio <= material:
            state = "unchanged"
        else:
            state = "undecided"
        states.append(state)
        rows_c.append({"layer": r["layer"], "ratio_of_best": ratio, "before": before, "after": after, "state": state})
    vc = ("fail" if any(s in ("falls", "unchanged") for s in states) else
          "pass" if all(s == "rises" for s in states) else "inconclusive")
    least = min(rows_c, key=lambda r: r["ratio_of_best"])
    c = Statement("c", f"alpha-scaling (alpha = {alpha:g}) makes the network sharper", vc,
                  statistic=Statistic("min over layers of best sharpness after / best before", least["ratio_of_best"]),
                  rule="per layer over seeded restarts of the box maximisation: 'rises' if every restart after exceeds "
                       f"every one before and the best after is > {material:g} x the best before; pass if every layer "
                       f"rises; fail if one falls or stays within a factor {material:g}; else inconclusive",
                  reason="" if vc != "inconclusive" else "the restarts before and after overlap beyond the material "
                                                        f"factor {material:g} for some layer: more restarts would "
                                                        "decide",
                  paper=PAPER["Z3"], numbers={"layers": rows_c})
    return [a, b, c]


# ----------------------------------------------------------------------------- Z4

def spearman_interval(x: Sequence[float], y: Sequence[float], *, level: float = DEFAULT_LEVEL
                      ) -> tuple[float, float, float]:
    """Spearman's rho with the Fisher-z interval of Bonett & Wright (2000, Psychometrika 65:23),
    standard error sqrt((1 + rho^2 / 2) / (m - 3))."""
    from scipy import stats

    m = len(x)
    if m < 4:
        return math.nan, math.nan, math.nan
    rho = float(stats.spearmanr(x, y)[0])
    if math.isnan(rho):
        return math.nan, math.nan, math.nan
    z = _fisher(rho)
    half = _z(level) * math.sqrt((1 + rho * rho / 2) / (m - 3))
    return rho, float(np.tanh(z - half)), float(np.tanh(z + half))


def z4_boolean_sharpness_volume(log_volume: Sequence[float], sharpness: Sequence[float],
                                spectral_norm: Sequence[float], *, level: float = DEFAULT_LEVEL,
                                extra: Mapping[str, Any] | None = None) -> list[Statement]:
    """Z4 (Sec. 5.1, Fig. 2, Fig. S2): across target functions of the n = 7 system (each trained
    to zero error; sampled log V(f)), (a) Spearman rho(log V, sharpness) and (b) Spearman
    rho(log V, Hessian spectral norm) lie below 0 (Bonett-Wright interval; the functions are the
    units of replication)."""
    out = []
    for id_, text, y, what, fig in (
            ("a", "sharpness tracks the sampled volume (larger V(f), flatter)", sharpness,
             "Spearman rho(log V(f), sharpness)", "Fig. 2"),
            ("b", "the Hessian's spectral norm tracks the sampled volume as well", spectral_norm,
             "Spearman rho(log V(f), spectral norm)", "Fig. S2")):
        rho, lo, hi = spearman_interval(log_volume, y, level=level)
        v = "inconclusive" if math.isnan(lo) else "pass" if hi < 0 else "fail" if lo > 0 else "inconclusive"
        m = len(log_volume)
        need = ""
        if v == "inconclusive" and not math.isnan(rho) and rho != 0:
            z = abs(_fisher(rho))
            need = f"; about {int(math.ceil(3 + (_z(level) / z) ** 2 * (1 + rho * rho / 2)))} functions would decide it"
        out.append(Statement(id_, text, v, statistic=_stat(what, rho, lo, hi, level),
                             rule=f"pass if the {level:.0%} Bonett-Wright interval of Spearman's rho over the {m} "
                                  "functions lies below 0; fail if it lies above 0; else inconclusive",
                             reason="" if v != "inconclusive" else f"{what} = {rho:.3f} [{lo:.3f}, {hi:.3f}] over {m} "
                                                                   f"functions straddles 0{need}",
                             paper=PAPER["Z4"] + f" ({fig})", numbers=dict(extra or {}) if id_ == "a" else {}))
    return out


# ----------------------------------------------------------------------------- Z5

def z5_spectral_norm(nets: Sequence[Mapping[str, Any]], *, low: float = 0.5, high: float = 2.0,
                     converged_rtol: float = 1e-6) -> list[Statement]:
    """Z5 (Sec. 2.2): per net, measured sharpness / (100 ||H||_2 eps^2 / (2 (1 + L))) at the two
    smallest eps (``nets[i]["ratio"]`` ordered like ``nets[i]["eps"]``, largest eps first).

    The box maximisation is an ascent, so measured sharpness is a lower bound of the box maximum;
    with a converged power iteration (relative change < ``converged_rtol``) the measured ratio is
    a lower bound of the true one up to that tolerance. So a ratio above ``high`` is decisive
    (fail) and one below ``low`` is not (inconclusive: the ascent may be incomplete). Pass if
    every ratio at the two smallest eps lies in [low, high]."""
    if not nets:
        raise ValueError("no nets")
    small = [(r, list(r["ratio"][-2:])) for r in nets]
    converged = all(r.get("power_converged", True) for r in nets)
    if any(x > high * (1 + converged_rtol) for _, pair in small for x in pair[-1:]) and converged:
        verdict = "fail"
    elif all(low <= x <= high for _, pair in small for x in pair):
        verdict = "pass"
    else:
        verdict = "inconclusive"
    worst = max(nets, key=lambda r: abs(math.log(r["ratio"][-1])) if r["ratio"][-1] > 0 else math.inf)
    reason = ""
    if verdict == "inconclusive":
        reason = ("a ratio below the band at small eps (the ascent may be incomplete)" if converged else
                  "a power iteration did not converge: the formula's ||H|| is not known to its tolerance")
    return [Statement(
        "a", "for small eps sharpness ~ 100 ||H||_2 eps^2 / (2 (1 + L))", verdict,
        statistic=Statistic(f"measured / formula at eps = {worst['eps'][-1]:g} [seed {worst.get('seed')}, |A| = "
                            f"{worst.get('n_attack')}]", worst["ratio"][-1]),
        rule=f"pass if, for every net, measured / formula lies in [{low:g}, {high:g}] at the two smallest eps; fail if "
             f"at the smallest eps it exceeds {high:g} for some net (measured sharpness is a lower bound of the box "
             "maximum and the power iteration converged, so the true ratio is larger still); else inconclusive",
        reason=reason, paper=PAPER["Z5"],
        numbers={"nets": [{k: v for k, v in r.items()} for r in nets]})]


# ----------------------------------------------------------------------------- Z6

def z6_overtraining(per_seed: Mapping[int, Mapping[str, Any]], *, stays: float = 0.1, moves: float = 0.5,
                    level: float = DEFAULT_LEVEL) -> list[Statement]:
    """Z6 (Sec. 5.4, Fig. 5): ``per_seed[seed]`` has "epochs" (after zero training error),
    "log_volume" and "sharpness" at those checkpoints, and "log_volume_init" (at initialisation).

    (a) the volume stays: per seed the largest change of log V(f) after zero training error,
    relative to its fall from initialisation to zero error; pass if below ``stays`` for every
    seed, fail if some seed reaches ``moves``, else inconclusive.
    (b) sharpness keeps falling: per seed the least-squares slope of log sharpness on the epoch;
    t over seeds below 0 (one seed: the regression's own t-interval over its checkpoints)."""
    from scipy import stats

    rel, slopes, rows = {}, {}, {}
    for s, d in per_seed.items():
        lv = np.asarray(d["log_volume"], dtype=np.float64)
        fall = abs(lv[0] - d["log_volume_init"])
        drift = float(np.max(np.abs(lv - lv[0])))
        rel[s] = drift / fall if fall > 0 else math.inf
        x = np.asarray(d["epochs"], dtype=np.float64)
        y = np.log(np.maximum(np.asarray(d["sharpness"], dtype=np.float64), 1e-300))
        fit = stats.linregress(x, y)
        slopes[s] = (float(fit.slope), float(fit.stderr), len(x))
        rows[str(s)] = {"relative_drift": rel[s], "drift": drift, "fall_before_zero_error": fall,
                        "slope_log_sharpness_per_epoch": float(fit.slope), "slope_stderr": float(fit.stderr)}
    worst = max(rel, key=rel.get)
    va = "fail" if rel[worst] >= moves else "pass" if rel[worst] < stays else "inconclusive"
    a = Statement("a", "after zero training error the volume stays", va,
                  statistic=Statistic("max over seeds of max |Delta log V| after zero error / fall before it",
                                      rel[worst]),
                  rule=f"pass if, for every seed, the largest change of log V(f) across the over-training checkpoints "
                       f"is below {stays:.0%} of its fall from initialisation to zero error; fail if it reaches "
                       f"{moves:.0%} for some seed; else inconclusive",
                  reason="" if va != "inconclusive" else f"seed {worst}: relative drift {rel[worst]:.3g} between "
                                                        f"{stays:g} and {moves:g}",
                  paper=PAPER["Z6"], numbers={"per_seed": rows})
    vals = np.array([v[0] for v in slopes.values()])
    if len(vals) >= 2:
        mean = float(vals.mean())
        half = _t(level, len(vals) - 1) * float(vals.std(ddof=1)) / math.sqrt(len(vals))
        inference = f"t over {len(vals)} seeds of the per-seed slope"
    else:
        slope, se, m = next(iter(slopes.values()))
        mean = slope
        half = _t(level, m - 2) * se if m > 2 else math.inf
        inference = "one seed: the regression's t-interval over its checkpoints (no seed-to-seed variation)"
    lo, hi = mean - half, mean + half
    vb = "inconclusive" if math.isnan(lo) else "pass" if hi < 0 else "fail" if lo > 0 else "inconclusive"
    b = Statement("b", "after zero training error sharpness keeps falling", vb,
                  statistic=_stat("slope of log sharpness on the epoch", mean, lo, hi, level, "per epoch"),
                  rule=f"pass if the {level:.0%} interval of the slope of log sharpness on the epoch ({inference}) "
                       "lies below 0; fail if it lies above 0; else inconclusive",
                  reason="" if vb != "inconclusive" else f"the slope's interval [{lo:.3g}, {hi:.3g}] straddles 0",
                  paper=PAPER["Z6"], numbers={"per_seed": rows, "inference": inference})
    return [a, b]
