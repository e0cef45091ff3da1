"""Every rule of the main paper's claims (F1-F14) and of E1-E3, fed constructed measurements in
three versions: the claim false (fail), true (pass) and ambiguous (inconclusive); and every
ordering and trend rule in a fourth: the claim absent (true effect 0, many seeds) fails, because
its interval falls short of the rule's smallest effect of interest."""
from __future__ import annotations

import math

import pytest
from claims_helpers import terms

from volbench.claims import estimator as erules
from volbench.claims import fan
from volbench.claims.stats import aggregate, seed_value

SEEDS = (0, 1, 2, 3)
N_SMALL = 10  # a model's n in the constructed inputs: smallest effects of interest of a fraction of a nat
#: The fourth version: many seeds, a true effect of 0, seed-to-seed noise of 0.1 nats.
MANY = tuple(range(40))
QUIET = {s: 0.1 * ((s % 5) - 2) for s in MANY}
JITTER = {0: 0.0, 1: 1.0, 2: -1.0, 3: 0.5}  # seed-to-seed variation in nats, shared by a seed's minima
NOISY = {0: 0.0, 1: 40.0, 2: -40.0, 3: 25.0}


def verdicts(statements):
    return {st.id: st.verdict for st in statements}


# ----------------------------------------------------------------------------- F1

def f1_inputs(gap_per_level, jitter=JITTER):
    poison = (0, 8, 24)
    clean = {s: terms(100.0 + jitter[s], s) for s in SEEDS}
    poisoned = {(s, p): terms(100.0 + jitter[s] - gap_per_level(p, s), s) for s in SEEDS for p in poison[1:]}
    return dict(clean=clean, poisoned=poisoned, poison=poison, base_size=240, seeds=SEEDS, n_params=N_SMALL)


def test_f1_true_false_ambiguous():
    assert verdicts(fan.f1_poison_smaller(**f1_inputs(lambda p, s: 2.0 * p))) == {"a": "pass", "b": "pass"}
    assert verdicts(fan.f1_poison_smaller(**f1_inputs(lambda p, s: -2.0 * p))) == {"a": "fail", "b": "fail"}
    amb = fan.f1_poison_smaller(**f1_inputs(lambda p, s: 0.1 * p + NOISY[s] * (p > 10), jitter=JITTER))
    assert set(verdicts(amb).values()) == {"inconclusive"}


def test_f1_one_smaller_and_one_larger_poisoned_minimum_fails():
    st = fan.f1_poison_smaller(**f1_inputs(lambda p, s: 20.0 if p == 8 else -20.0))
    assert verdicts(st)["a"] == "fail"


# ----------------------------------------------------------------------------- F2, F3

def ordering(sizes, gap, jitter=JITTER, resolution=0.0):
    """measured[(seed, D, D')]: own minimum at 100, larger-data minima gap(D, D', s) below it."""
    return {(s, D, Dp): terms(100.0 + jitter[s] - (0.0 if Dp == D else gap(D, Dp, s)), s, resolution=resolution)
            for s in SEEDS for D in sizes[:-1] for Dp in sizes if Dp >= D}


SIZES = (60, 240, 960)


def test_f2_true_false_ambiguous():
    true = fan.f2_own_largest_small(ordering(SIZES, lambda D, Dp, s: Dp / 10.0), sizes=SIZES, seeds=SEEDS, n_params=10)
    assert set(verdicts(true).values()) == {"pass"} and set(verdicts(true)) == {"a", "b.max", "b.mean", "b.min"}
    false = fan.f2_own_largest_small(ordering(SIZES, lambda D, Dp, s: -Dp / 10.0), sizes=SIZES, seeds=SEEDS,
                                     n_params=10)
    assert verdicts(false)["a"] == "fail"
    amb = fan.f2_own_largest_small(ordering(SIZES, lambda D, Dp, s: NOISY[s]), sizes=SIZES, seeds=SEEDS, n_params=10)
    assert verdicts(amb)["a"] == "inconclusive"


def test_f3_true_false_ambiguous():
    assert verdicts(fan.f3_own_largest_every_size(ordering(SIZES, lambda D, Dp, s: 10.0), sizes=SIZES,
                                                  seeds=SEEDS, n_params=N_SMALL)) == {"a": "pass"}
    # True in the 60 landscape, false in the 240 one: the claim is for every D.
    mixed = ordering(SIZES, lambda D, Dp, s: 10.0 if D == 60 else -10.0)
    assert verdicts(fan.f3_own_largest_every_size(mixed, sizes=SIZES, seeds=SEEDS, n_params=N_SMALL)) == {"a": "fail"}
    assert verdicts(fan.f3_own_largest_every_size(ordering(SIZES, lambda D, Dp, s: NOISY[s]), sizes=SIZES,
                                                  seeds=SEEDS, n_params=N_SMALL)) == {"a": "inconclusive"}


def test_f3_difference_within_the_grid_resolution_is_not_a_pass():
    fine = ordering(SIZES, lambda D, Dp, s: 10.0, resolution=0.0)
    coarse = ordering(SIZES, lambda D, Dp, s: 10.0, resolution=30.0)
    assert verdicts(fan.f3_own_largest_every_size(fine, sizes=SIZES, seeds=SEEDS, n_params=N_SMALL)) == {"a": "pass"}
    assert verdicts(fan.f3_own_largest_every_size(coarse, sizes=SIZES, seeds=SEEDS, n_params=N_SMALL)) == {
        "a": "inconclusive"}


# ----------------------------------------------------------------------------- F4

SEEDS5 = (0, 1, 2, 3, 4)
SPREAD5 = {0: 0.0, 1: 10.0, 2: -10.0, 3: 5.0, 4: -5.0}


def f4_measured(gap):
    """Own minima spread by +-10 nats over seeds; other minima `gap` below with small extra noise."""
    return {(s, D, Dp): terms(100.0 + SPREAD5[s] - (0.0 if Dp == D else gap + 0.2 * s), s)
            for s in SEEDS5 for D in SIZES[:-1] for Dp in SIZES if Dp >= D}


def test_f4_true_false_ambiguous_and_the_control():
    ordered = f4_measured(200.0)  # gap 200 >> spread 8: the image-task behaviour
    comparable = f4_measured(0.5)  # gap 0.5 << spread
    ambiguous = f4_measured(14.0)  # gap ~ 2 spreads
    kw = dict(sizes=SIZES, seeds=SEEDS5, control_sizes=SIZES, control_seeds=SEEDS5)
    assert verdicts(fan.f4_not_universal(comparable, control=ordered, **kw)) == {"a": "pass", "b": "pass"}
    assert verdicts(fan.f4_not_universal(ordered, control=ordered, **kw))["a"] == "fail"
    assert verdicts(fan.f4_not_universal(ambiguous, control=ordered, **kw))["a"] == "inconclusive"
    # A rule that cannot tell the two apart fails its positive control.
    assert verdicts(fan.f4_not_universal(comparable, control=comparable, **kw))["b"] == "fail"
    assert verdicts(fan.f4_not_universal(comparable, control=ambiguous, **kw))["b"] == "inconclusive"


# ----------------------------------------------------------------------------- F5

N = 1000


def own_curve(alpha, jitter=JITTER, sizes=SIZES, noise=None):
    noise = noise or {}
    return {(s, D): terms(5000.0 + jitter[s] + alpha * N * math.log(D) + noise.get((s, D), 0.0), s)
            for s in SEEDS for D in sizes}


def test_f5_alpha_true_false_ambiguous():
    assert verdicts(fan.f5_power_law(own_curve(-0.1), sizes=SIZES, seeds=SEEDS, n_params=N,
                                     setting="mnist-mlp"))["a"] == "pass"
    assert verdicts(fan.f5_power_law(own_curve(+0.1), sizes=SIZES, seeds=SEEDS, n_params=N,
                                     setting="mnist-mlp"))["a"] == "fail"
    noisy = {(s, D): (300.0 if s % 2 else -300.0) * (1 if D == 960 else 0) for s in SEEDS for D in SIZES}
    assert verdicts(fan.f5_power_law(own_curve(-0.01, noise=noisy), sizes=SIZES, seeds=SEEDS, n_params=N,
                                     setting="mnist-mlp"))["a"] == "inconclusive"


def test_f5_a_curve_that_is_not_linear_is_not_a_pass():
    bent = {(s, D): (-400.0 if D == 240 else 0.0) for s in SEEDS for D in SIZES}
    st = fan.f5_power_law(own_curve(-0.1, noise=bent), sizes=SIZES, seeds=SEEDS, n_params=N, setting="mnist-mlp")
    assert verdicts(st)["a"] == "inconclusive" and "R^2" in st[0].reason


def test_f5_orderings_each_judged_and_absent_ones_not_judged():
    base = own_curve(-0.1)
    kw = dict(sizes=SIZES, seeds=SEEDS, n_params=N, setting="mnist-mlp")
    good = fan.f5_power_law(base, variants={"tau-0.01": own_curve(-0.2), "K-small": own_curve(-0.101),
                                            "no-filter-norm": own_curve(-0.05)},
                            not_run={"cnn": "too costly"}, **kw)
    v = verdicts(good)
    assert v["b.tau-steeper"] == v["b.K-equal"] == v["b.no-filter-shallower"] == "pass"
    assert v["b.cnn-shallower"] == v["b.accuracy-shallower"] == "not-judged"
    # one case per setting: a variant named in neither (it is another setting's case) gives no statement
    own_setting = verdicts(fan.f5_power_law(base, variants={"tau-0.01": own_curve(-0.2)}, **kw))
    assert set(own_setting) == {"a", "b.tau-steeper"}
    bad = verdicts(fan.f5_power_law(base, variants={"tau-0.01": own_curve(-0.05), "K-small": own_curve(-0.2),
                                                    "no-filter-norm": own_curve(-0.2)}, **kw))
    assert bad["b.tau-steeper"] == bad["b.K-equal"] == bad["b.no-filter-shallower"] == "fail"
    wobbly = {(s, D): (60.0 if s % 2 else -60.0) * (D == 960) for s in SEEDS for D in SIZES}
    amb = verdicts(fan.f5_power_law(base, variants={"tau-0.01": own_curve(-0.1, noise=wobbly)}, **kw))
    assert amb["b.tau-steeper"] == "inconclusive"


def test_f5_accuracy_goes_with_shallower_alpha():
    base = own_curve(-0.1)
    kw = dict(sizes=SIZES, seeds=SEEDS, n_params=N, setting="mnist-mlp", n_test=100000)
    acc_good = {"cnn": {s: 0.9 + 0.001 * s for s in SEEDS}, "base": {s: 0.8 for s in SEEDS}}
    assert verdicts(fan.f5_power_law(base, variants={"cnn": own_curve(-0.05)}, accuracy=acc_good, **kw))[
        "b.accuracy-shallower"] == "pass"
    assert verdicts(fan.f5_power_law(base, variants={"cnn": own_curve(-0.2)}, accuracy=acc_good, **kw))[
        "b.accuracy-shallower"] == "fail"
    acc_flat = {"cnn": {s: 0.8 + (0.05 if s % 2 else -0.05) for s in SEEDS}, "base": {s: 0.8 for s in SEEDS}}
    assert verdicts(fan.f5_power_law(base, variants={"cnn": own_curve(-0.05)}, accuracy=acc_flat, **kw))[
        "b.accuracy-shallower"] == "inconclusive"


# ----------------------------------------------------------------------------- F6

def f6_measured(step, order_gap, leave=True, jitter=JITTER):
    """log V(trained on Dm, landscape L) = 100 + order_gap * rank(Dm) - step * rank(L); a minimum
    measured beyond its training set leaves the basin when ``leave``."""
    rank = {D: i for i, D in enumerate(SIZES)}
    out = {}
    for s in SEEDS:
        for Dm in SIZES:
            for L in SIZES:
                out[(s, Dm, L)] = terms(100.0 + jitter[s] + order_gap(Dm, L, s) - step(Dm, L, s) * rank[L], s,
                                        outside=leave and L > Dm)
    return out


def test_f6_true_false_ambiguous():
    true = fan.f6_minima_shrink(f6_measured(lambda Dm, L, s: 20.0, lambda Dm, L, s: -10.0 * SIZES.index(Dm)),
                                sizes=SIZES, seeds=SEEDS, n_params=N_SMALL)
    assert verdicts(true) == {"a": "pass", "b": "pass"}
    false = fan.f6_minima_shrink(f6_measured(lambda Dm, L, s: -20.0,
                                             lambda Dm, L, s: (10.0 if L == 60 else -10.0) * SIZES.index(Dm)),
                                 sizes=SIZES, seeds=SEEDS, n_params=N_SMALL)
    assert verdicts(false) == {"a": "fail", "b": "fail"}
    amb = fan.f6_minima_shrink(f6_measured(lambda Dm, L, s: NOISY[s] / 4, lambda Dm, L, s: NOISY[s] * (Dm == 960)),
                               sizes=SIZES, seeds=SEEDS, n_params=N_SMALL)
    assert verdicts(amb)["a"] == "inconclusive"


def test_f6_leaving_the_basin_is_not_evidence_of_shrinking():
    """Only the larger landscapes than a minimum's own training set would show 'shrinking' by
    leaving the basin; with flat finite volumes the statement is not a pass."""
    flat = fan.f6_minima_shrink(f6_measured(lambda Dm, L, s: NOISY[s] / 8, lambda Dm, L, s: 0.0), sizes=SIZES,
                                seeds=SEEDS, n_params=N_SMALL)
    assert verdicts(flat)["a"] != "pass"
    assert "left the basin" in str(flat[0].numbers["beyond_own_training_set"])


# ----------------------------------------------------------------------------- F7, F8, F9, F10

STEPS = (0, 40, 80, 120)


def test_f7_true_false_ambiguous():
    def measured(slope, noise=None):
        noise = noise or {}
        return {(s, k): terms(100.0 + JITTER[s] + slope * k + noise.get((s, k), 0.0), s) for s in SEEDS for k in STEPS}

    kw = dict(steps=STEPS, seeds=SEEDS, base_size=240, n_params=N_SMALL)
    assert verdicts(fan.f7_imbalance_grows(measured(0.5), **kw)) == {"a": "pass"}
    assert verdicts(fan.f7_imbalance_grows(measured(-0.5), **kw)) == {"a": "fail"}
    wob = {(s, 120): NOISY[s] for s in SEEDS}
    assert verdicts(fan.f7_imbalance_grows(measured(0.01, wob), **kw)) == {"a": "inconclusive"}


def test_f8_true_false_ambiguous():
    def run(vol_gap, acc_gap):
        sam = {s: terms(100.0 + JITTER[s] + vol_gap(s), s) for s in SEEDS}
        adamw = {s: terms(100.0 + JITTER[s], s) for s in SEEDS}
        return verdicts(fan.f8_sam_larger(sam, adamw, sam_accuracy={s: 0.9 + acc_gap(s) for s in SEEDS},
                                          adamw_accuracy={s: 0.9 for s in SEEDS}, seeds=SEEDS, n_test=2000,
                                          n_params=N_SMALL))

    assert run(lambda s: 10.0, lambda s: 0.02) == {"a": "pass", "b": "pass"}
    assert run(lambda s: -10.0, lambda s: -0.02) == {"a": "fail", "b": "fail"}
    assert run(lambda s: NOISY[s], lambda s: 0.02 if s % 2 else -0.02) == {"a": "inconclusive", "b": "inconclusive"}


def test_f9_true_false_ambiguous():
    batches = (40, 160, 480)

    def run(vslope, aslope, noise=0.0):
        vols = {(s, b): terms(100.0 + JITTER[s] + vslope * math.log(b) + (NOISY[s] * noise if b == 480 else 0), s)
                for s in SEEDS for b in batches}
        accs = {(s, b): 0.9 + aslope * math.log(b) + (0.03 * noise * (1 if s % 2 else -1) if b == 480 else 0)
                for s in SEEDS for b in batches}
        return verdicts(fan.f9_batch_size(vols, accs, batches=batches, seeds=SEEDS, n_test=2000,
                                          n_params=N_SMALL))

    assert run(-5.0, -0.01) == {"a": "pass", "b": "pass"}
    assert run(5.0, 0.01) == {"a": "fail", "b": "fail"}
    assert run(-0.1, -0.0001, noise=1.0) == {"a": "inconclusive", "b": "inconclusive"}


def test_f10_true_false_ambiguous():
    ck = (200, 500, 1000, 2000, 5000)

    def run(vslope, acc_curve, loss_curve, fit_at=200):
        vols = {(s, c): terms(100.0 + JITTER[s] + vslope * c, s) for s in SEEDS for c in ck}
        return verdicts(fan.f10_grokking(
            vols, checkpoints=ck, seeds=SEEDS, threshold=0.01,
            train_loss={(s, c): loss_curve(c) for s in SEEDS for c in ck},
            train_accuracy={(s, c): 1.0 if c >= fit_at else 0.9 for s in SEEDS for c in ck},
            test_accuracy={(s, c): acc_curve(c, s) for s in SEEDS for c in ck}, chance=0.01, n_test=900,
            n_params=N_SMALL))

    late = lambda c, s: 0.02 if c < 2000 else 0.95  # noqa: E731
    at_memorisation = lambda c, s: 0.9  # noqa: E731
    flat = lambda c: 1e-4  # noqa: E731
    assert run(-0.01, late, flat) == {"a": "pass", "b": "pass", "c": "pass"}
    closing_in = lambda c: 9e-3 if c < 1000 else 1e-4  # noqa: E731  the threshold closing in on the loss
    assert run(0.01, at_memorisation, closing_in) == {"a": "fail", "b": "fail", "c": "fail"}
    coin = lambda c, s: 0.02 if c < 2000 else (0.2 if s % 2 else 0.0)  # noqa: E731
    assert run(0.0, coin, flat)["c"] == "inconclusive"
    early = lambda c, s: 0.02 if c < 500 else 0.9  # noqa: E731  rises right after memorisation at 200..500
    assert run(-0.01, early, flat, fit_at=500)["c"] == "fail"


# ----------------------------------------------------------------------------- F11, F12, F13

def test_f11_each_variant_judged_and_absent_ones_not_judged():
    good = ordering(SIZES, lambda D, Dp, s: 10.0)
    bad = ordering(SIZES, lambda D, Dp, s: -10.0)
    unsure = ordering(SIZES, lambda D, Dp, s: NOISY[s])
    st = fan.f11_robust({"tau-0.05": good, "no-filter-norm": bad, "K-small": unsure}, landscapes=SIZES[:-1],
                        sizes=SIZES, seeds=SEEDS, not_run={"sgd": "costs 40 min"}, n_params=N_SMALL)
    assert verdicts(st) == {"tau-0.05": "pass", "no-filter-norm": "fail", "K-small": "inconclusive",
                            "sgd": "not-judged"}
    assert next(s for s in st if s.id == "sgd").reason == "costs 40 min"


def test_f14_reuses_f2_f3_and_judges_each_rung_the_minima_reach():
    """F14: F2's and F3's rules at the top rung, the F2/F3 ordering at every other rung; a rung no
    minimum reaches is not judged, and one that only some minima leave counts the others only."""
    good, bad = ordering(SIZES, lambda D, Dp, s: 10.0), ordering(SIZES, lambda D, Dp, s: -10.0)
    gone = {k: terms(0.0, k[0], outside=True) for k in good}
    partly = {k: (terms(0.0, k[0], outside=True) if k[0] == 3 and k[2] == 960 else t) for k, t in good.items()}
    st = fan.f14_char_transformer({2.0: good, 1.0: bad, 0.5: partly, 0.1: gone}, tau=2.0, ladder=(2.0, 1.0, 0.5, 0.1),
                                  sizes=SIZES, seeds=SEEDS, n_params=10)
    assert verdicts(st) == {"a": "pass", "a.r-max": "pass", "a.r-mean": "pass", "a.r-min": "pass", "b": "pass",
                            "c.tau-1": "fail", "c.tau-0.5": "pass", "c.tau-0.1": "not-judged"}
    assert "no minimum reaches the threshold 0.1" in next(s for s in st if s.id == "c.tau-0.1").reason
    assert next(s for s in st if s.id == "b").text.startswith("(F3)")
    unreached = fan.f14_char_transformer({2.0: gone}, tau=2.0, ladder=(2.0,), sizes=SIZES, seeds=SEEDS, n_params=10)
    assert set(verdicts(unreached).values()) == {"not-judged"}


def test_f12_true_false():
    row = {"s": 0.1, "b": 1.0, "area": 0.243, "area_last_inside": 0.241, "area_first_outside": 0.246,
           "closed_form": 0.2427}
    assert verdicts(fan.f12_toy_closed_form([row])) == {"a": "pass"}
    jumped = dict(row, area=0.26, area_last_inside=0.258, area_first_outside=0.262)
    assert verdicts(fan.f12_toy_closed_form([row, jumped])) == {"a": "fail"}


def gap_end(ray: int, ratio: float) -> dict:
    """One end of a gap between two brackets as ``gap_end_costs`` records it (ratio: the largest
    |cost - tau| over the kernels, in units of the derived rounding bound)."""
    return {"ray": ray, "t": 1.0, "costs": {"a": 0.1, "b": 0.1}, "tolerance": 1e-6, "ratio": ratio}


def test_f13_true_false():
    ok = fan.f13_filter_invariance(volbench_change=1e-6, volbench_gaps=[], paper_change=0.0,
                                   isotropic_change=0.5, control_min=1e-2)
    assert verdicts(ok) == {"a": "pass", "b": "pass", "c": "pass"}
    within = fan.f13_filter_invariance(volbench_change=1e-6, volbench_gaps=[gap_end(2, 0.3), gap_end(2, 0.8)],
                                       paper_change=0.0, isotropic_change=0.5, control_min=1e-2)
    assert verdicts(within)["a"] == "pass"
    broken = fan.f13_filter_invariance(volbench_change=5e-3, volbench_gaps=[gap_end(2, 0.3), gap_end(2, 40.0)],
                                       paper_change=0.07, isotropic_change=1e-5, control_min=1e-2)
    assert verdicts(broken) == {"a": "fail", "b": "fail", "c": "fail"}


# ----------------------------------------------------------------------------- E1, E2, E3

def test_e1_true_false_ambiguous():
    def run(gap, spread):
        reps = {(s, K): [(gap if K == 40 else 0.0) + spread * (r - 2) for r in range(5)] for s in (0, 1)
                for K in (5, 40)}
        return verdicts(erules.e1_grows_with_k(reps, {k: (v, v) for k, v in reps.items()}, Ks=(5, 40), seeds=(0, 1)))

    assert run(10.0, 1.0) == {"a": "pass"}
    assert run(-10.0, 1.0) == {"a": "fail"}
    assert run(1.0, 5.0) == {"a": "inconclusive"}


def test_e2_true_false_ambiguous():
    up = aggregate([seed_value(v) for v in (10.0, 11.0, 12.0, 10.5)])
    down = aggregate([seed_value(v) for v in (-10.0, -11.0, -12.0, -10.5)])
    unsure = aggregate([seed_value(v) for v in (5.0, -4.0, 6.0, -3.0)])
    slightly_down = aggregate([seed_value(v) for v in (-1.0, 3.0, -4.0, 1.0)])
    assert verdicts(erules.e2_ordering_stable({"x": up}, {"x": up}, K_large=40, K_small=10)) == {"a": "pass"}
    assert verdicts(erules.e2_ordering_stable({"x": up}, {"x": down}, K_large=40, K_small=10)) == {"a": "fail"}
    assert verdicts(erules.e2_ordering_stable({"x": unsure}, {"x": up}, K_large=40, K_small=10)) == {
        "a": "inconclusive"}
    assert verdicts(erules.e2_ordering_stable({"x": up}, {"x": slightly_down}, K_large=40, K_small=10)) == {
        "a": "inconclusive"}


def test_e3_true_false_and_absent_gpu_is_not_judged():
    ok = erules.e3_same_radii(settings={"float32": [], "float64": []}, settings_spread={"float32": 0.0},
                              reference_vs_loop={"float32": [], "float64": []})
    assert verdicts(ok) == {"a": "pass", "c": "pass", "d": "not-judged"}
    bad = erules.e3_same_radii(settings={"float32": [gap_end(0, 5.0), gap_end(0, 0.2)]}, settings_spread={},
                               gpu={"float32": [gap_end(3, 2.0), gap_end(3, 2.0)]},
                               principled_vs_oracle={"float32": [gap_end(1, 1e3), gap_end(1, 1e3)], "float64": []})
    assert verdicts(bad) == {"b": "fail", "c": "fail", "d": "fail"}
    assert verdicts(erules.e3_same_radii(settings={"f": []}, settings_spread={}, gpu={"f": []},
                                         principled_vs_oracle={"f": []})) == {"b": "pass", "c": "pass", "d": "pass"}


def test_e3_gaps_within_the_rounding_bound_pass_and_real_disagreements_fail():
    """E3 (b): disjoint brackets whose gap ends all have costs within the derived rounding bound of
    tau (ratio <= 1, every kernel) are no disagreement; one end clearly away from tau (ratio > 1)
    under some kernel is, and so is a cost that is not finite."""
    def b_verdict(*ratios):
        records = [gap_end(7, r) for r in ratios]
        statements = erules.e3_same_radii(settings={"float32": []}, settings_spread={},
                                          principled_vs_oracle={"float32": records})
        return next(st for st in statements if st.id == "b")

    assert b_verdict().verdict == "pass"
    assert b_verdict(0.0, 1.0).verdict == "pass"
    st = b_verdict(0.5, 1.5)
    assert st.verdict == "fail" and st.statistic.value == 1
    assert b_verdict(0.5, math.nan).verdict == "fail"
    assert b_verdict(math.inf, 0.1).verdict == "fail"


@pytest.mark.parametrize("fn", [fan.f3_own_largest_every_size])
def test_rules_are_pure_functions_of_their_inputs(fn):
    measured = ordering(SIZES, lambda D, Dp, s: 10.0)
    assert [s.to_dict() for s in fn(measured, sizes=SIZES, seeds=SEEDS, n_params=N_SMALL)] == \
           [s.to_dict() for s in fn(measured, sizes=SIZES, seeds=SEEDS, n_params=N_SMALL)]


# ----------------------------------------------------------------------------- the claim absent

N_ABSENT = 1000  # n of the absent-effect inputs: smallest effects of interest of tens of nats
ZERO_MEAN = {s: 0.1 if s % 2 else -0.1 for s in MANY}  # per-seed noise of an effect that is exactly 0 on average


def _absent_f1():
    poison = (0, 8, 24)
    clean = {s: terms(100.0 + QUIET[s], s) for s in MANY}
    poisoned = {(s, p): terms(100.0 + QUIET[s] + ZERO_MEAN[s] * (p / 24), s) for s in MANY for p in poison[1:]}
    return fan.f1_poison_smaller(clean, poisoned, poison=poison, base_size=240, seeds=MANY, n_params=N_ABSENT)


def _absent_ordering(rule, **kw):
    measured = {(s, D, Dp): terms(100.0 + QUIET[s] + (0.0 if Dp == D else ZERO_MEAN[s]), s)
                for s in MANY for D in SIZES[:-1] for Dp in SIZES if Dp >= D}
    return rule(measured, sizes=SIZES, seeds=MANY, n_params=N_ABSENT, **kw)


def _absent_f5():
    own = {(s, D): terms(5000.0 + QUIET[s] + ZERO_MEAN[s] * (D == 960), s) for s in MANY for D in SIZES}
    variants = {"tau-0.01": own, "no-filter-norm": own}
    return fan.f5_power_law(own, sizes=SIZES, seeds=MANY, n_params=N_ABSENT, setting="mnist-mlp", variants=variants)


def _absent_f6():
    out = {(s, Dm, L): terms(100.0 + QUIET[s] + ZERO_MEAN[s] * SIZES.index(L), s, outside=L > Dm)
           for s in MANY for Dm in SIZES for L in SIZES}
    return fan.f6_minima_shrink(out, sizes=SIZES, seeds=MANY, n_params=N_ABSENT)


def _absent_f7():
    by = {(s, k): terms(100.0 + QUIET[s] + ZERO_MEAN[s] * (k == 120), s) for s in MANY for k in STEPS}
    return fan.f7_imbalance_grows(by, steps=STEPS, seeds=MANY, base_size=240, n_params=N_ABSENT)


def _absent_f8():
    sam = {s: terms(100.0 + QUIET[s] + ZERO_MEAN[s], s) for s in MANY}
    adamw = {s: terms(100.0 + QUIET[s], s) for s in MANY}
    return fan.f8_sam_larger(sam, adamw, sam_accuracy={s: 0.9 + 1e-5 * ZERO_MEAN[s] for s in MANY},
                             adamw_accuracy={s: 0.9 for s in MANY}, seeds=MANY, n_params=N_ABSENT)


def _absent_f9():
    batches = (40, 160, 480)
    vols = {(s, b): terms(100.0 + QUIET[s] + ZERO_MEAN[s] * (b == 480), s) for s in MANY for b in batches}
    accs = {(s, b): 0.9 + 1e-6 * ZERO_MEAN[s] * (b == 480) for s in MANY for b in batches}
    return fan.f9_batch_size(vols, accs, batches=batches, seeds=MANY, n_params=N_ABSENT)


def _absent_f10():
    ck = (200, 500, 1000, 2000, 5000)
    vols = {(s, c): terms(100.0 + QUIET[s] + ZERO_MEAN[s] * (c == 5000), s) for s in MANY for c in ck}
    return fan.f10_grokking(vols, checkpoints=ck, seeds=MANY, threshold=0.01,
                            train_loss={(s, c): 1e-4 for s in MANY for c in ck},
                            train_accuracy={(s, c): 1.0 for s in MANY for c in ck},
                            test_accuracy={(s, c): 0.02 + 1e-6 * ZERO_MEAN[s] * (c == 5000) for s in MANY for c in ck},
                            chance=0.01, n_params=N_ABSENT)


def _absent_f11():
    measured = {(s, D, Dp): terms(100.0 + QUIET[s] + (0.0 if Dp == D else ZERO_MEAN[s]), s)
                for s in MANY for D in SIZES[:-1] for Dp in SIZES if Dp >= D}
    return fan.f11_robust({"sgd": measured}, landscapes=SIZES[:-1], sizes=SIZES, seeds=MANY, not_run={},
                          n_params={"sgd": N_ABSENT})


def _absent_f14():
    measured = {(s, D, Dp): terms(100.0 + QUIET[s] + (0.0 if Dp == D else ZERO_MEAN[s]), s)
                for s in MANY for D in SIZES[:-1] for Dp in SIZES if Dp >= D}
    return fan.f14_char_transformer({2.0: measured, 1.0: measured}, tau=2.0, ladder=(2.0, 1.0), sizes=SIZES,
                                    seeds=MANY, n_params=N_ABSENT)


ABSENT = {
    "F1": (_absent_f1, ("a", "b")),
    "F2": (lambda: _absent_ordering(fan.f2_own_largest_small), ("a", "b.max", "b.mean", "b.min")),
    "F3": (lambda: _absent_ordering(fan.f3_own_largest_every_size), ("a",)),
    "F5": (_absent_f5, ("a", "b.tau-steeper", "b.no-filter-shallower")),
    "F6": (_absent_f6, ("a",)),
    "F7": (_absent_f7, ("a",)),
    "F8": (_absent_f8, ("a", "b")),
    "F9": (_absent_f9, ("a", "b")),
    "F10": (_absent_f10, ("a", "c")),
    "F11": (_absent_f11, ("sgd",)),
    "F14": (_absent_f14, ("a", "a.r-max", "b", "c.tau-1")),
}


@pytest.mark.parametrize("claim", sorted(ABSENT))
def test_the_claim_absent_fails(claim):
    """The fourth version: a true effect of 0 measured on 40 seeds. "On the claimed side of 0"
    alone would leave it inconclusive for ever (its interval keeps 0 inside); the smallest effect
    of interest lets it fail, and the interval holding 0 shows it was that clause that failed it."""
    build, ids = ABSENT[claim]
    statements = {st.id: st for st in build()}
    for sid in ids:
        st = statements[sid]
        assert st.verdict == "fail", f"{claim} ({sid}) with the effect absent: {st.verdict} ({st.reason})"
        assert st.statistic.low <= 0.0 <= st.statistic.high, (
            f"{claim} ({sid}): the interval [{st.statistic.low}, {st.statistic.high}] must hold 0 (effect absent)")
        if sid != "c":  # F10 (c) folds its rise into a three-part rule
            assert "smallest effect" in st.rule, st.rule
            assert "smallest_effect" in st.margins, st.margins


def test_an_effect_smaller_than_the_smallest_of_interest_fails_and_a_larger_one_passes():
    """Between 0 and the smallest effect of interest: present but not the paper's effect (fail);
    beyond it: pass. F3 at n = 1000 has a smallest effect of 0.1 x 1000 x 0.1835 x ln(D'/D)
    (25.4 nats for 60 -> 240)."""
    def f3(gap):
        measured = {(s, D, Dp): terms(100.0 + QUIET[s] + (0.0 if Dp == D else -gap - ZERO_MEAN[s]), s)
                    for s in MANY for D in SIZES[:-1] for Dp in SIZES if Dp >= D}
        return fan.f3_own_largest_every_size(measured, sizes=SIZES, seeds=MANY, n_params=N_ABSENT)[0]

    small, large = f3(5.0), f3(60.0)
    assert small.verdict == "fail" and small.statistic.low > 0, "a real but tiny effect is not the paper's effect"
    assert large.verdict == "pass"
    assert small.margins["smallest_effect"] == pytest.approx(0.1 * N_ABSENT * 0.1835 * math.log(240 / 60))


def test_principled_no_filter_statement_is_the_equivalence_theory_predicts():
    """With importance-weighted filter directions the principled search estimates one Lebesgue
    volume with or without filter normalisation: its statement is an equivalence (pass when the
    alphas agree), not the paper's ordering."""
    own = own_curve(-0.1)
    kw = dict(sizes=SIZES, seeds=SEEDS, n_params=N, setting="mnist-mlp", one_volume_without_filter=True)
    same = verdicts(fan.f5_power_law(own, variants={"no-filter-norm": own_curve(-0.1)}, **kw))
    assert same["b.no-filter-equal"] == "pass" and "b.no-filter-shallower" not in same
    apart = verdicts(fan.f5_power_law(own, variants={"no-filter-norm": own_curve(-0.05)}, **kw))
    assert apart["b.no-filter-equal"] == "fail"


def test_an_undecided_equivalence_states_the_seeds_that_would_decide_it():
    """b.K-equal straddling its margin (+-0.25 |alpha|) is inconclusive and says how many seeds
    would decide it, from the measured variance, and which way (inside the margin: a pass)."""
    base = own_curve(-0.1)
    wobbly = {(s, D): (75.0 if s % 2 else -75.0) * (D == 960) for s in SEEDS for D in SIZES}
    st = {s.id: s for s in fan.f5_power_law(base, variants={"K-small": own_curve(-0.1, noise=wobbly)},
                                            sizes=SIZES, seeds=SEEDS, n_params=N, setting="mnist-mlp")}
    k_equal = st["b.K-equal"]
    assert k_equal.verdict == "inconclusive"
    assert "seeds would decide it (a pass: the interval inside" in k_equal.reason, k_equal.reason
