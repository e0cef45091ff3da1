"""Every rule of Zhang et al.'s claims Z1-Z6, fed constructed measurements in three versions: the
claim false (fail), true (pass) and ambiguous (inconclusive)."""
from __future__ import annotations

import math

import numpy as np

from volbench.claims import zhang as z

SEEDS = (0, 1, 2, 3)
ERR = [0.10, 0.18, 0.27, 0.41]  # test error at four attack-set sizes


def verdicts(statements):
    return {st.id: st.verdict for st in statements}


def lines(slope, noise=0.0, seeds=SEEDS, err=ERR):
    """per_seed[s] = (log V, error) with log V = -1000 + slope * error (+ seed-dependent wobble)."""
    rng = np.random.default_rng(5)
    return {s: ([-1000.0 + slope * e + noise * rng.normal() for e in err], list(err)) for s in seeds}


# ----------------------------------------------------------------------------- the correlation machinery

def test_correlation_over_seeds_includes_seed_to_seed_spread():
    tight = z.correlation_over_seeds(lines(-500.0, noise=1.0))
    loose = z.correlation_over_seeds(lines(-500.0, noise=60.0))
    assert tight["n_seeds"] == 4 and "t over 4 seeds" in tight["inference"]
    assert tight["high"] - tight["low"] < loose["high"] - loose["low"]
    one = z.correlation_over_seeds({0: lines(-500.0, noise=1.0)[0]})
    assert "one seed" in one["inference"]


def test_a_seed_with_too_few_nets_is_left_out_and_noted():
    per = lines(-500.0, noise=1.0)
    per[9] = ([1.0, 2.0], [0.1, 0.2])
    c = z.correlation_over_seeds(per)
    assert c["n_seeds"] == 4 and any("seed 9" in note for note in c["notes"])


# ----------------------------------------------------------------------------- Z1

def test_z1_true_false_ambiguous():
    assert verdicts(z.z1_volume_error(lines(-500.0, noise=2.0))) == {"a": "pass"}
    assert verdicts(z.z1_volume_error(lines(+500.0, noise=2.0))) == {"a": "fail"}
    wobbly = {0: ([3.0, 1.0, 2.0, 0.0], ERR), 1: ([0.0, 1.0, 3.0, 2.0], ERR), 2: ([2.0, 3.0, 0.0, 1.0], ERR)}
    amb = z.z1_volume_error(wobbly)
    assert verdicts(amb) == {"a": "inconclusive"} and "seeds" in amb[0].reason


# ----------------------------------------------------------------------------- Z2

def z2_group(sharp_slope, vol_slope, noise=0.0, seed_offset=0):
    rng = np.random.default_rng(11 + seed_offset)
    return {s: {"log_sharpness": [sharp_slope * e + noise * rng.normal() for e in ERR],
                "log_volume": [-1000.0 + vol_slope * e + 0.5 * rng.normal() for e in ERR], "test_error": list(ERR)}
            for s in SEEDS}


def test_z2_true_false_ambiguous():
    sgd = z2_group(10.0, -500.0, noise=0.3)
    assert verdicts(z.z2_adam_breaks_sharpness(sgd, z2_group(10.0, -500.0, noise=8.0, seed_offset=1))) == {
        "a": "pass", "b": "pass"}
    # False: Adam's sharpness tracks the error better than SGD's; Adam's volume correlation is gone.
    assert verdicts(z.z2_adam_breaks_sharpness(z2_group(10.0, -500.0, noise=8.0),
                                               z2_group(10.0, +500.0, noise=0.3, seed_offset=1))) == {
        "a": "fail", "b": "fail"}
    # Ambiguous: the two optimizers' correlations equally scattered; Adam's volume seeds disagree.
    amb_adam = z2_group(10.0, -500.0, noise=3.0, seed_offset=2)
    for k, s in enumerate(SEEDS):
        amb_adam[s]["log_volume"] = [v * (1 if k % 2 else -1) for v in amb_adam[s]["log_volume"]]
    v = verdicts(z.z2_adam_breaks_sharpness(z2_group(10.0, -500.0, noise=3.0, seed_offset=3), amb_adam))
    assert v == {"a": "inconclusive", "b": "inconclusive"}


# ----------------------------------------------------------------------------- Z3

def z3_row(layer=0, diff=1e-7, flips=0, near=0, dlogv=0.0, before=(1.0, 1.02, 0.99), after=(5.0, 5.1, 4.9)):
    return {"layer": layer, "max_output_diff": diff, "tolerance": 1e-5, "label_flips": flips, "flips_near_zero": near,
            "log_volume": -700.0 + dlogv, "log_volume_unscaled": -700.0, "ep_converged": True,
            "sharpness_before": list(before), "sharpness_after": list(after)}


def test_z3_true_false_ambiguous():
    ok = [z3_row(0), z3_row(1)]
    assert verdicts(z.z3_alpha_scaling(ok, alpha=5.9)) == {"a": "pass", "b": "pass", "c": "pass"}
    broken = [z3_row(0, diff=0.3, flips=4, dlogv=-2.5, after=(0.7, 0.71, 0.69)), z3_row(1)]
    assert verdicts(z.z3_alpha_scaling(broken, alpha=5.9)) == {"a": "fail", "b": "fail", "c": "fail"}
    unsure = [z3_row(0, flips=1, near=1, after=(0.9, 1.3, 2.0)), dict(z3_row(1), ep_converged=False)]
    assert verdicts(z.z3_alpha_scaling(unsure, alpha=5.9)) == {"a": "inconclusive", "b": "inconclusive",
                                                              "c": "inconclusive"}


def test_z3_unchanged_sharpness_is_a_fail_not_a_pass():
    flat = [z3_row(0, after=(1.0, 1.01, 1.03))]
    assert verdicts(z.z3_alpha_scaling(flat, alpha=5.9))["c"] == "fail"


# ----------------------------------------------------------------------------- Z4

def test_z4_true_false_ambiguous():
    rng = np.random.default_rng(2)
    lv = np.linspace(-40.0, -5.0, 12)
    sharp = np.exp(-0.1 * lv + 0.1 * rng.normal(size=12))  # larger volume, flatter
    assert verdicts(z.z4_boolean_sharpness_volume(lv, sharp, sharp * 3)) == {"a": "pass", "b": "pass"}
    assert verdicts(z.z4_boolean_sharpness_volume(lv, 1 / sharp, 1 / sharp)) == {"a": "fail", "b": "fail"}
    noise = rng.permutation(12).astype(float)
    amb = z.z4_boolean_sharpness_volume(lv, noise, noise[::-1].copy())
    assert verdicts(amb) == {"a": "inconclusive", "b": "inconclusive"} and "functions would decide" in amb[0].reason


def test_spearman_interval_covers_at_its_level():
    """Bonett-Wright interval for bivariate normal data with rho_s known: coverage near 95%."""
    rng = np.random.default_rng(0)
    r = 0.6
    rho_s = 6 / math.pi * math.asin(r / 2)
    hits, trials = 0, 400
    for _ in range(trials):
        xy = rng.multivariate_normal([0, 0], [[1, r], [r, 1]], size=30)
        _, lo, hi = z.spearman_interval(xy[:, 0], xy[:, 1])
        hits += lo <= rho_s <= hi
    assert 0.90 <= hits / trials <= 0.99, f"coverage {hits / trials:.3f}"


# ----------------------------------------------------------------------------- Z5

def z5_net(ratios, converged=True):
    return {"seed": 0, "n_attack": 0, "eps": [1e-3, 1e-4, 1e-5, 1e-6], "ratio": list(ratios),
            "power_converged": converged}


def test_z5_true_false_ambiguous():
    assert verdicts(z.z5_spectral_norm([z5_net([3.0, 1.2, 1.05, 1.01])])) == {"a": "pass"}
    assert verdicts(z.z5_spectral_norm([z5_net([3.0, 40.0, 400.0, 4000.0])])) == {"a": "fail"}
    # Below the band: the ascent may not have found the box maximum; not decisive.
    assert verdicts(z.z5_spectral_norm([z5_net([1.0, 0.4, 0.3, 0.3])])) == {"a": "inconclusive"}
    # An unconverged power iteration cannot fail it either.
    assert verdicts(z.z5_spectral_norm([z5_net([3.0, 40.0, 400.0, 4000.0], converged=False)])) == {"a": "inconclusive"}


# ----------------------------------------------------------------------------- Z6

def z6_seed(drift, sharp_slope, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    ep = [0.0, 50.0, 100.0, 200.0, 400.0]
    return {"epochs": ep, "log_volume": [-600.0 + drift * (i > 0) for i in range(5)],
            "sharpness": [math.exp(-1.0 + sharp_slope * e + noise * rng.normal()) for e in ep],
            "log_volume_init": -400.0}


def test_z6_true_false_ambiguous():
    assert verdicts(z.z6_overtraining({0: z6_seed(2.0, -0.004)})) == {"a": "pass", "b": "pass"}
    rising = {0: z6_seed(150.0, +0.004), 1: z6_seed(0.0, +0.005, seed=1), 2: z6_seed(0.0, +0.0045, seed=2)}
    assert verdicts(z.z6_overtraining(rising)) == {"a": "fail", "b": "fail"}
    amb = {0: z6_seed(50.0, -0.001, noise=1.0), 1: z6_seed(10.0, 0.001, noise=1.0, seed=1)}
    assert verdicts(z.z6_overtraining(amb)) == {"a": "inconclusive", "b": "inconclusive"}
