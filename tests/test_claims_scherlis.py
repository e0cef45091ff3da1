"""Every rule of Scherlis & Belrose's claims S1-S10, fed constructed measurements in three versions:
the claim false (fail), true (pass) and ambiguous (inconclusive); plus the one-network contrast
machinery they share (pairing, resolution, bootstrap)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from claims_helpers import terms

from volbench.claims import scherlis as s
from volbench.claims.contrast import contrast_over_seeds, direction_contrast, judge_all, slope_weights
from volbench.claims.stats import PairingError, Terms


def verdicts(statements):
    return {st.id: st.verdict for st in statements}


def u_terms(values, *, seed=0, resolution=0.0):
    """Terms over K = len(values) shared directions (the S cases' pairing: same u seed)."""
    v = np.asarray(values, dtype=np.float64)
    return Terms(v, v - resolution, v + resolution, pairing=("principled", "u", seed, len(v)))


# ----------------------------------------------------------------------------- the shared machinery

def test_direction_contrast_refuses_measurements_with_different_directions():
    a = u_terms([1.0, 2.0, 3.0], seed=0)
    with pytest.raises(PairingError, match="do not share their directions"):
        direction_contrast([a, u_terms([1.0, 2.0, 3.0], seed=1)], [1.0, -1.0], label="a - b")


def test_direction_contrast_pairs_and_widens_by_the_resolution():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 5.0, 60)
    a, b = u_terms(base + 10.0), u_terms(base)  # the same directions: the difference is exactly 10
    c = direction_contrast([a, b], [1.0, -1.0], label="a - b")
    assert c.point == pytest.approx(10.0, abs=1e-9) and c.boot_sd < 1e-9
    coarse = direction_contrast([u_terms(base + 10.0, resolution=3.0), u_terms(base, resolution=3.0)], [1.0, -1.0],
                                label="a - b")
    lo, hi = coarse.interval(0.95)
    assert lo == pytest.approx(4.0, abs=1e-9) and hi == pytest.approx(16.0, abs=1e-9)


def test_contrast_over_seeds_uses_the_t_interval_across_seeds():
    seeds = (0, 1, 2, 3)
    by_seed = {k: [terms(100.0 + k, k), terms(95.0 + k + 0.5 * (k % 2), k)] for k in seeds}
    c = contrast_over_seeds(by_seed, [1.0, -1.0], label="d", seeds=seeds)
    assert "t over seeds" in c.as_dict()["inference"]
    lo, hi = c.interval()
    assert lo < 4.75 < hi and lo > 0


def test_judge_all_needs_every_comparison_and_fails_on_one_clear_reversal():
    up, down = u_terms([5.0] * 10), u_terms([0.0] * 10)
    good = direction_contrast([up, down], [1.0, -1.0], label="up")
    bad = direction_contrast([down, up], [1.0, -1.0], label="down")
    assert judge_all("a", "t", {"x": good}, what="d").verdict == "pass"
    assert judge_all("a", "t", {"x": good, "y": bad}, what="d").verdict == "fail"
    noisy = direction_contrast([u_terms(np.r_[np.full(9, -50.0), 50.0]), u_terms(np.zeros(10))], [1.0, -1.0],
                               label="noisy")
    st = judge_all("a", "t", {"x": good, "z": noisy}, what="d")
    assert st.verdict == "inconclusive" and "directions would decide" in st.reason


def test_slope_weights_recover_a_line():
    x = [1.0, 2.0, 4.0]
    assert float(slope_weights(x) @ (3.0 * np.asarray(x) + 1.0)) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        slope_weights([1.0, 1.0])


# ----------------------------------------------------------------------------- S1

def repeats(gap, sd, R=400, seed=0, resolution=0.0):
    rng = np.random.default_rng(seed)
    g = gap + rng.normal(0.0, sd, R)
    return s.Repeats(g, g - resolution, g + resolution, seeds=tuple(range(R)))


def jensen_basin(sd, R=2000, seed=0):
    """log V-hat - log V for a lognormal V-hat / V with mean 1: gap = -sd^2/2 + sd z (unbiased
    on the linear scale, biased low in log: exactly the claim)."""
    rng = np.random.default_rng(seed)
    g = -0.5 * sd * sd + sd * rng.normal(0.0, 1.0, R)
    return s.Repeats(g, g, g, seeds=tuple(range(R)))


def test_s1_true_false_ambiguous():
    true = s.s1_jensen({"round": jensen_basin(0.2), "skewed": jensen_basin(0.6)})
    assert verdicts(true) == {"a": "pass", "b": "pass", "c": "pass"}
    # False: an estimator biased high (log mean above the truth), and the gap shrinking with variance.
    false = s.s1_jensen({"round": repeats(-0.5, 0.2), "skewed": repeats(0.5, 0.6)})
    v = verdicts(false)
    assert v["a"] == "fail" and v["b"] == "fail" and v["c"] == "fail"
    amb = s.s1_jensen({"round": jensen_basin(0.45, R=30), "skewed": jensen_basin(0.46, R=30, seed=1)}, dominance=0.1)
    assert set(verdicts(amb).values()) == {"inconclusive"}


def test_s1_premise_is_not_judged_where_one_repeat_dominates_the_linear_mean():
    heavy = jensen_basin(3.0, R=200)
    st = s.s1_jensen({"heavy": heavy})
    assert st[0].verdict == "not-judged" and "of the linear sum" in st[0].reason
    assert st[2].verdict == "not-judged"  # one basin: no variance to compare


def test_s1_resolution_wider_than_the_gap_is_not_a_pass():
    coarse = s.s1_jensen({"round": repeats(-0.05, 0.01, resolution=0.1)})
    assert coarse[1].verdict == "inconclusive"


# ----------------------------------------------------------------------------- S2

def test_s2_true_false_ambiguous():
    rising = {10: [0.1, 0.12, 0.09], 100: [0.5, 0.55, 0.45], 1000: [0.97, 0.99, 0.98]}
    falling = {10: [0.9, 0.95, 0.92], 100: [0.5, 0.52, 0.48], 1000: [0.1, 0.12, 0.09]}
    flat = {10: [0.5, 0.9, 0.1], 100: [0.5, 0.1, 0.9], 1000: [0.55, 0.5, 0.45]}
    assert verdicts(s.s2_smooth_max(rising, [0.99, 0.995, 0.98])) == {"a": "pass", "b": "pass"}
    assert verdicts(s.s2_smooth_max(falling, [0.2, 0.25, 0.1])) == {"a": "fail", "b": "fail"}
    assert verdicts(s.s2_smooth_max(flat, [0.9, 0.5, 0.99])) == {"a": "inconclusive", "b": "inconclusive"}


def test_s2_largest_sample_share():
    assert s.largest_sample_share([0.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)
    assert s.largest_sample_share([1000.0, 0.0, 1.0]) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- S3

def test_s3_true_false_ambiguous():
    rng = np.random.default_rng(0)
    ok = -0.5 + rng.normal(0.0, 0.3, 1000)  # overestimates by log 2 almost never
    assert verdicts(s.s3_markov(ok, ok, ks=(2, 5, 10))) == {"a": "pass"}
    high = np.full(1000, math.log(3.0))  # always overestimates by a factor 3 > 2: violates P <= 1/2
    assert verdicts(s.s3_markov(high, high, ks=(2, 5, 10))) == {"a": "fail"}
    few = np.r_[np.full(3, math.log(20.0)), np.full(17, -1.0)]  # 3 of 20 at >= log 10: bound 0.1 undecided
    assert verdicts(s.s3_markov(few, few, ks=(10,))) == {"a": "inconclusive"}


def test_s3_resolution_cannot_make_a_pass():
    """Estimates whose upper resolution bound overestimates by a factor 3 are not a pass."""
    low = np.full(500, -1.0)
    assert verdicts(s.s3_markov(low, low + 2.5, ks=(2,)))["a"] != "pass"


# ----------------------------------------------------------------------------- S4

def test_s4_true_false_ambiguous():
    exact = 10.0
    tight = u_terms(np.full(20, exact - 1e-9), resolution=1e-8)
    plain = u_terms(np.linspace(0.0, 20.0, 20))
    assert verdicts(s.s4_perfect_preconditioner(tight, plain, exact=exact, float_slack=1e-9)) == {"a": "pass",
                                                                                                 "b": "pass"}
    off = u_terms(np.r_[np.full(19, exact), exact - 0.5], resolution=1e-8)
    flat_plain = u_terms(np.full(20, 3.0))
    assert verdicts(s.s4_perfect_preconditioner(off, flat_plain, exact=exact, float_slack=1e-9)) == {"a": "fail",
                                                                                                    "b": "fail"}
    coarse = u_terms(np.full(20, exact), resolution=5.0)
    assert verdicts(s.s4_perfect_preconditioner(coarse, plain, exact=exact, float_slack=1e-9))["a"] == "inconclusive"


# ----------------------------------------------------------------------------- S5

NAMES = ("none", "full Hessian", "diag(H)", "HesScale", "Adam 2nd moment", "Adam 1st moment")


def s5_inputs(levels, noise=1.0, K=60, seed=0):
    """terms[name][0]: shared-direction samples (spread `noise` x 100 nats) shifted to `levels`."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0.0, 100.0 * noise, K)
    return {name: {0: u_terms(base + levels[name] + (rng.normal(0, 30.0 * noise, K) if name != "none" else 0.0))}
            for name in NAMES}


PAPER_LIKE = {"none": 0.0, "full Hessian": 20.0, "diag(H)": 1500.0, "HesScale": 1480.0, "Adam 2nd moment": 1510.0,
              "Adam 1st moment": 700.0}
OURS_LIKE = {"none": 0.0, "full Hessian": 3000.0, "diag(H)": 1500.0, "HesScale": 1480.0, "Adam 2nd moment": 1510.0,
             "Adam 1st moment": -1200.0}


def test_s5_true_false_ambiguous():
    true = s.s5_preconditioner_ranking(s5_inputs(PAPER_LIKE), seeds=(0,))
    assert verdicts(true) == {"a": "pass", "b": "pass", "c": "pass", "d": "not-judged"}
    false = s.s5_preconditioner_ranking(s5_inputs({**OURS_LIKE, "diag(H)": -900.0}), seeds=(0,))
    assert verdicts(false) == {"a": "fail", "b": "fail", "c": "fail", "d": "not-judged"}
    near = {"none": 0.0, "full Hessian": 110.0, "diag(H)": 110.0, "HesScale": 100.0, "Adam 2nd moment": 120.0,
            "Adam 1st moment": 50.0}
    amb = s.s5_preconditioner_ranking(s5_inputs(near, noise=1.5), seeds=(0,))
    v = verdicts(amb)
    assert v["a"] == v["b"] == v["c"] == "inconclusive"


def test_s5_eps_sweep_and_the_paper_code_variant():
    t = s5_inputs(PAPER_LIKE)
    best_at_paper = {"diag(H)": {0.01: t["diag(H)"], 0.1: {0: u_terms(t["diag(H)"][0].log_terms - 800.0)}}}
    other_better = {"diag(H)": {0.01: t["diag(H)"], 0.1: {0: u_terms(t["diag(H)"][0].log_terms + 800.0)}}}
    # The same samples on other directions: equal estimates, paired differences that swing either way.
    tied = {"diag(H)": {0.01: t["diag(H)"], 0.1: {0: u_terms(np.roll(t["diag(H)"][0].log_terms, 7) + 1.0)}}}
    kw = dict(seeds=(0,), paper_eps={"diag(H)": 0.01})
    assert verdicts(s.s5_preconditioner_ranking(t, sweep=best_at_paper, **kw))["d"] == "pass"
    assert verdicts(s.s5_preconditioner_ranking(t, sweep=other_better, **kw))["d"] == "fail"
    assert verdicts(s.s5_preconditioner_ranking(t, sweep=tied, **kw))["d"] == "inconclusive"
    # The paper-code variant is reported beside (b), never in its verdict.
    ours = s5_inputs(OURS_LIKE)
    code = {0: u_terms(ours["none"][0].log_terms + 10.0)}
    st = s.s5_preconditioner_ranking(ours, seeds=(0,), paper_code=code)[1]
    assert st.verdict == "fail"
    assert st.numbers["paper_code_variant"]["rule_b_verdict"] == "pass"
    assert st.numbers["paper_code_variant"]["reproduces_paper"] is True


def test_s5_needs_shared_directions():
    t = s5_inputs(PAPER_LIKE)
    t["diag(H)"] = {0: Terms(t["diag(H)"][0].log_terms, t["diag(H)"][0].low, t["diag(H)"][0].high,
                             pairing=("principled", "u", 7, 60))}
    with pytest.raises(PairingError):
        s.s5_preconditioner_ranking(t, seeds=(0,))


# ----------------------------------------------------------------------------- S6, S7

SEEDS = (0, 1, 2, 3)


def test_s6_true_false_ambiguous():
    clean = {k: terms(-6000.0 + 50 * k, k) for k in SEEDS}
    assert verdicts(s.s6_poisoned_smaller(clean, {k: terms(-7000.0 + 40 * k, k) for k in SEEDS}, seeds=SEEDS)) == {
        "a": "pass"}
    assert verdicts(s.s6_poisoned_smaller(clean, {k: terms(-5000.0 + 40 * k, k) for k in SEEDS}, seeds=SEEDS)) == {
        "a": "fail"}
    swing = {0: 900.0, 1: -900.0, 2: 700.0, 3: -600.0}
    amb = s.s6_poisoned_smaller(clean, {k: terms(-6000.0 + 50 * k - swing[k], k) for k in SEEDS}, seeds=SEEDS)
    assert verdicts(amb) == {"a": "inconclusive"} and "seeds" in amb[0].reason


def test_s7_true_false_ambiguous():
    cks = (1, 3, 10, 25)

    def vols(slope, wobble=0.0):
        return {(k, e): terms(-4000.0 + slope * math.log(e) + wobble * ((-1) ** (k + e)), k) for k in SEEDS
                for e in cks}

    assert verdicts(s.s7_checkpoints(vols(-500.0), checkpoints=cks, seeds=SEEDS)) == {"a": "pass"}
    assert verdicts(s.s7_checkpoints(vols(+500.0), checkpoints=cks, seeds=SEEDS)) == {"a": "fail"}
    noisy = {(k, e): terms(-4000.0 + (300.0 if (k % 2) else -300.0) * math.log(e), k) for k in SEEDS for e in cks}
    assert verdicts(s.s7_checkpoints(noisy, checkpoints=cks, seeds=SEEDS)) == {"a": "inconclusive"}


# ----------------------------------------------------------------------------- S8

CUTOFFS = (1e-4, 1e-2, 1.0, 10.0)


def s8_inputs(net_ratio, adv_change, n=1000, net_n=4810, rtol_nats=1e-6, noise=0.0):
    rng = np.random.default_rng(1)
    base = rng.normal(0.0, 5.0, 40)
    quad = [u_terms(base + (n / 2) * math.log(c), resolution=rtol_nats) for c in CUTOFFS]
    per_c = [rng.normal(0.0, noise, 40) if noise else 0.0 for _ in CUTOFFS]
    net = [u_terms(base * 50 + net_ratio * (net_n / 2) * math.log(c) + per_c[i]) for i, c in enumerate(CUTOFFS)]
    adv = {1e-4: 1600.0, 1e-2: 1900.0, 1.0: 2000.0, 10.0: 1900.0 + adv_change}
    pre = [u_terms(net[i].log_terms + adv[c] + (per_c[i] * 0.5 if noise else 0.0)) for i, c in enumerate(CUTOFFS)]
    return dict(quadratic=quad, quadratic_n=n, network={0: net}, network_n=net_n, preconditioned={0: pre},
                cutoffs=CUTOFFS, seeds=(0,))


def test_s8_true_false_ambiguous():
    assert verdicts(s.s8_cutoff_scaling(**s8_inputs(1.0, -900.0))) == {"a": "pass", "b": "pass", "c": "pass"}
    bad = s8_inputs(0.6, +900.0)
    bad["quadratic"] = [u_terms(t.log_terms * 1.01, resolution=1e-6) for t in bad["quadratic"]]
    assert verdicts(s.s8_cutoff_scaling(**bad)) == {"a": "fail", "b": "fail", "c": "fail"}
    amb = s8_inputs(1.09, -10.0, rtol_nats=50.0, noise=400.0)
    assert verdicts(s.s8_cutoff_scaling(**amb)) == {"a": "inconclusive", "b": "inconclusive", "c": "inconclusive"}


def test_s8_quadratic_bracket_is_widened_by_the_derived_term_rounding_only():
    """(a): a bracket of slope / (n/2) that misses 1 by less than the rounding the caller derives
    for one log-term (``term_rounding``) is rounding, not a failure; by more, it fails."""
    kw = s8_inputs(1.0, -900.0, rtol_nats=1e-9)
    w = slope_weights(np.log(np.asarray(CUTOFFS)))
    shift = 1e-6  # every cutoff's terms moved in proportion to log c: the slope moves by shift / (n/2) sum w x
    kw["quadratic"] = [u_terms(t.log_terms + shift * math.log(c), resolution=1e-9)
                       for t, c in zip(kw["quadratic"], CUTOFFS)]
    miss = shift / (kw["quadratic_n"] / 2)  # the slope's offset from 1 (sum w_i log c_i = 1)
    per_term = miss / float(np.sum(np.abs(w) / (kw["quadratic_n"] / 2)))  # the term_rounding that covers it
    assert verdicts(s.s8_cutoff_scaling(**kw, term_rounding=2 * per_term))["a"] == "pass"
    assert verdicts(s.s8_cutoff_scaling(**kw, term_rounding=0.1 * per_term))["a"] == "fail"


def test_s8_high_cutoff_statement_needs_the_papers_cutoffs():
    kw = s8_inputs(1.0, -900.0)
    kw["cutoffs"] = (1e-4, 1e-3, 1e-2, 1e-1)
    assert verdicts(s.s8_cutoff_scaling(**kw))["c"] == "not-judged"


# ----------------------------------------------------------------------------- S9

def test_s9_true_false_ambiguous():
    good = [{"monte_carlo": 1.001, "formula": 1.0, "se": 0.002}, {"monte_carlo": 0.5, "formula": 0.5005, "se": 0.001}]
    assert verdicts(s.s9_ellipsoid_variance(good)) == {"a": "pass"}
    off = [{"monte_carlo": 1.05, "formula": 1.0, "se": 0.002}]  # the (n+2) replaced by n would look like this
    assert verdicts(s.s9_ellipsoid_variance(off)) == {"a": "fail"}
    imprecise = [{"monte_carlo": 1.01, "formula": 1.0, "se": 0.05}]
    assert verdicts(s.s9_ellipsoid_variance(imprecise)) == {"a": "inconclusive"}


# ----------------------------------------------------------------------------- S10

def s10_kw(**over):
    kw = dict(n_dead_pixels=8, censored=True, lebesgue_growth=4810 * math.log(100.0),
              expected_growth=4810 * math.log(100.0), growth_tolerance=2 * 4810 * 2.0 ** -24,  # 2 n u32
              gaussian_log_mass=[-5000.0, -5000.0],
              quadrature_log_mass=-5000.0 + 1e-6, quadrature_error=1e-9, tolerance=1e-3)
    kw.update(over)
    return kw


def test_s10_true_false_ambiguous():
    assert verdicts(s.s10_zero_pixel(**s10_kw())) == {"a": "pass", "b": "not-judged", "c": "pass"}
    false = s10_kw(n_dead_pixels=0, censored=False, lebesgue_growth=3.0, gaussian_log_mass=[-5000.0, -4000.0])
    assert verdicts(s.s10_zero_pixel(**false)) == {"a": "fail", "b": "fail", "c": "fail"}
    amb = s10_kw(n_dead_pixels=1, quadrature_error=0.1)
    assert verdicts(s.s10_zero_pixel(**amb)) == {"a": "inconclusive", "b": "not-judged", "c": "inconclusive"}


def test_s10_growth_is_judged_within_its_derived_tolerance():
    """(b) needs growth = n log 100 to within the caller's derived rounding (2 n u32 here): a growth
    off by a fifth of it is the censored ray (not judged), one off by ten times it is a bug."""
    tol = 2 * 4810 * 2.0 ** -24
    exact = 4810 * math.log(100.0)
    assert verdicts(s.s10_zero_pixel(**s10_kw(lebesgue_growth=exact + 0.2 * tol)))["b"] == "not-judged"
    assert verdicts(s.s10_zero_pixel(**s10_kw(lebesgue_growth=exact + 10 * tol)))["b"] == "fail"


def test_s10_lebesgue_part_never_counts_as_support():
    st = s.s10_zero_pixel(**s10_kw())[1]
    assert st.verdict == "not-judged" and "by construction" in st.reason


def test_direction_contrast_interval_covers_at_its_level():
    """Paired terms with a known difference of log-mean-exps (normal terms, equal spread, correlated
    across the two measurements): the 95% interval covers the truth in about 95% of draws, and a
    50% interval reported as 95% would not."""
    rng = np.random.default_rng(7)
    hits95 = hits50 = 0
    trials, K = 120, 80
    for _ in range(trials):
        e = rng.normal(0.0, 0.5, K)
        f = 0.8 * e + 0.6 * rng.normal(0.0, 0.5, K)  # same sd 0.5, correlation 0.8
        c = direction_contrast([u_terms(3.0 + e), u_terms(f)], [1.0, -1.0], label="d", n_boot=500,
                               seed=int(rng.integers(1 << 30)))
        lo, hi = c.interval(0.95)
        hits95 += lo <= 3.0 <= hi
        lo, hi = c.interval(0.50)
        hits50 += lo <= 3.0 <= hi
    assert 0.88 <= hits95 / trials <= 0.99, f"95% coverage {hits95 / trials:.3f}"
    assert hits50 / trials < 0.75, f"a 50% interval covers {hits50 / trials:.3f}"
