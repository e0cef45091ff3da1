"""The verdict machinery: pairing, resolution margins, intervals over seeds, many comparisons,
coverage by simulation, and the paper's strict crossing rule. Each test here is one of the ways the
machinery can be broken on purpose (see docs/STATISTICS.md)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from claims_helpers import terms
from scipy import stats

from volbench.claims.coverage import CoverageDesign, simulate_coverage
from volbench.claims.stats import (
    PairingError,
    Terms,
    aggregate,
    all_above,
    every_comparison,
    paired_difference,
    seed_slope,
    seed_value,
    what_would_decide,
)
from volbench.costs.rounding import gamma


def test_paired_difference_refuses_measurements_with_different_directions():
    a = terms(10.0, seed=0)
    b = Terms(a.log_terms, a.low, a.high, pairing=("principled", "filter", 1, 30))  # direction seed 1
    with pytest.raises(PairingError, match="do not share their directions"):
        paired_difference(a, b)
    c = Terms(a.log_terms, a.low, a.high, pairing=("principled", "isotropic", 0, 30))
    with pytest.raises(PairingError):
        paired_difference(a, c)
    with pytest.raises(PairingError):
        paired_difference(Terms(a.log_terms, a.low, a.high), Terms(a.log_terms, a.low, a.high))


def test_pairing_comes_from_the_measurement_record():
    from volbench.lab import Measurement

    def meas(seed):
        return Measurement(minimum="m", minimum_key="k", landscape_size=60, estimator="reference", log_volume=1.0,
                           log_terms=[1.0, 2.0], log_radii=[0.1, 0.2], anchor_cost=0.01, outside=False, n_params=2,
                           n_directions=2, n_cost_evals=3, seconds=0.1, config={}, summary={},
                           log_terms_low=[0.5, 1.5], log_terms_high=[1.0, 2.0], direction_seed=seed,
                           directions="filter")

    assert Terms.from_measurement(meas(3)).pairing == ("reference", "filter", 3, 2)
    with pytest.raises(PairingError):
        paired_difference(Terms.from_measurement(meas(3)), Terms.from_measurement(meas(4)))


def test_pairing_removes_the_shared_direction_noise():
    """Two basins seen through the same directions: the paired bootstrap sd of their difference is
    far below what independent resampling of each would give."""
    a, b = terms(10.0, seed=0, spread=2.0), terms(4.0, seed=0, spread=2.0)  # same noise: correlated
    d = paired_difference(a, b)
    assert d.point == pytest.approx(6.0, abs=1e-9)
    rng = np.random.default_rng(1)
    idx_a, idx_b = rng.integers(0, 30, (400, 30)), rng.integers(0, 30, (400, 30))
    from volbench.estimator.measures import logmeanexp

    indep = np.std(logmeanexp(a.log_terms[idx_a], axis=1) - logmeanexp(b.log_terms[idx_b], axis=1))
    assert d.boot_sd < 0.05 * indep


def test_resolution_bracket_enters_the_margin():
    """A difference smaller than the estimator's resolution is never a pass, however many seeds."""
    diffs = [paired_difference(terms(10.0 + 0.01 * s, s, resolution=20.0), terms(0.0, s, resolution=20.0))
             for s in range(8)]
    agg = aggregate(diffs)
    lo, hi = agg.interval()
    assert lo < 0 < hi  # 10 nats apart, +-40 nats of resolution for the difference
    verdict, _, reason = all_above({"x": agg})
    assert verdict == "inconclusive" and "resolution" in reason
    # The same numbers with a fine resolution are decided.
    fine = aggregate([paired_difference(terms(10.0 + 0.01 * s, s, resolution=0.1), terms(0.0, s, resolution=0.1))
                      for s in range(8)])
    assert all_above({"x": fine})[0] == "pass"


def test_interval_is_the_t_interval_over_seeds_at_its_stated_level():
    """Exact check: mean +- t_{S-1, 0.975} sd / sqrt(S) with no resolution and no noise spread.
    (Reporting a 50% interval as 95% breaks this.)"""
    values = [3.0, 5.0, 4.0, 8.0]
    agg = aggregate([seed_value(v) for v in values])
    lo, hi = agg.interval(0.95)
    half = stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2.0
    assert lo == pytest.approx(np.mean(values) - half, rel=1e-12)
    assert hi == pytest.approx(np.mean(values) + half, rel=1e-12)
    assert agg.as_dict()["level"] == 0.95


def test_one_seed_gives_no_interval():
    agg = aggregate([seed_value(5.0)])
    assert all(math.isnan(x) for x in agg.interval())
    assert all_above({"x": agg})[0] == "inconclusive"
    assert "seed-to-seed variation" in what_would_decide(agg)


def test_all_comparisons_must_pass_and_one_clear_failure_fails():
    """A rule that passes when any one comparison passes is caught: one comparison clearly above 0
    and one clearly below must fail, never pass."""
    up = aggregate([seed_value(v) for v in (10.0, 11.0, 12.0, 10.5)])
    down = aggregate([seed_value(v) for v in (-10.0, -11.0, -12.0, -10.5)])
    unsure = aggregate([seed_value(v) for v in (5.0, -4.0, 6.0, -3.0)])
    assert all_above({"a": up, "b": up})[0] == "pass"
    assert all_above({"a": up, "b": down})[0] == "fail"
    assert all_above({"a": up, "b": unsure})[0] == "inconclusive"
    assert all_above({"a": down}, below=True)[0] == "pass"


def test_fail_uses_the_bonferroni_level():
    """With m comparisons, a fail needs the interval at level 1 - 0.05/m on the wrong side: a
    comparison only just below 0 at 95% does not fail a 20-comparison statement."""
    vals = (-1.0, -1.6, -0.4, -1.2)
    just_below = aggregate([seed_value(v) for v in vals])
    assert just_below.interval(0.95)[1] < 0 < just_below.interval(1 - 0.05 / 20)[1]
    up = aggregate([seed_value(v) for v in (10.0, 11.0, 12.0, 10.5)])
    many = {f"c{i}": up for i in range(19)} | {"bad": just_below}
    assert all_above(many)[0] == "inconclusive"
    assert all_above({"bad": just_below})[0] == "fail"


def test_left_the_basin_is_reported_never_evidence():
    inside, gone = terms(5.0, 0), terms(0.0, 0, outside=True)
    d = paired_difference(inside, gone)
    assert d.point == math.inf and not d.informative and "left the basin" in d.note
    agg = aggregate([paired_difference(terms(5.0, s), terms(0.0, s, outside=True)) for s in range(5)])
    verdict, _, reason = all_above({"x": agg})
    assert verdict == "inconclusive" and "left the basin" in reason


def test_seed_slope_bounds_are_the_extreme_slopes_over_the_brackets():
    ts = [terms(v, 0, resolution=1.0) for v in (10.0, 8.0, 6.0)]
    est = seed_slope([0.0, 1.0, 2.0], ts)
    assert est.point == pytest.approx(-2.0, abs=1e-9)
    # Lowest slope: first point at its high end, last at its low end: (6 - 1 - (10 + 1)) / 2.
    assert est.low == pytest.approx(-3.0, abs=1e-9) and est.high == pytest.approx(-1.0, abs=1e-9)


def test_every_comparison_statement_names_the_least_favourable_comparison():
    up = aggregate([seed_value(v) for v in (10.0, 11.0, 12.0, 10.5)])
    small = aggregate([seed_value(v) for v in (1.0, 1.1, 1.2, 1.05)])
    st = every_comparison("a", "x", {"big": up, "small": small}, what="diff")
    assert st.verdict == "pass" and "[small]" in st.statistic.name and st.statistic.low > 0
    assert set(st.numbers["comparisons"]) == {"big", "small"}


def test_power_estimate_predicts_the_seeds_that_decide():
    agg = aggregate([seed_value(v) for v in (3.0, -1.0, 4.0, 0.5)])
    text = what_would_decide(agg)
    n = int(text.split("about ")[1].split(" seeds")[0])
    # At n seeds with the same sd the half-width falls below the mean.
    sd, mean = agg.sd, agg.point
    assert stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) < mean
    assert stats.t.ppf(0.975, n - 2) * sd / math.sqrt(n - 1) >= mean


def test_a_comparison_almost_all_resolution_says_the_resolution_stands_in_the_way():
    """Bracket half-width 9.99 against a distance of 10 from 0: the seeds would have to pin the
    mean to 0.01, and the reason says the resolution is what stands in the way."""
    agg = aggregate([seed_value(v, low=v - 9.99, high=v + 9.99) for v in (9.8, 10.2, 9.9, 10.1)])
    text = what_would_decide(agg)
    assert "more than 200 seeds" in text and "resolution" in text and "leaves only" in text
    loose = aggregate([seed_value(v) for v in (3.0, -20.0, 30.0, 0.5)])
    assert "resolution" not in what_would_decide(loose, max_seeds=3)


@pytest.mark.slow
@pytest.mark.parametrize("estimator,kind,minimum", [("principled", "difference", 0.90), ("principled", "slope", 0.90),
                                                    ("reference", "difference", 0.90)])
def test_intervals_cover_the_known_difference(estimator, kind, minimum):
    """Coverage at 95% nominal, measured where the answer is known (quadratic basins with a known
    population difference, seeds drawn afresh; ``volbench.claims.coverage``). 160 replications
    give a Monte Carlo sd of 1.7% on the coverage; the bound 0.90 sits three of them below 0.95."""
    res = simulate_coverage(CoverageDesign(estimator=estimator, kind=kind, replications=160))
    assert res.coverage >= minimum, res.as_dict()
    assert res.wrong_sign_decisions == 0


def test_reference_crossing_is_strictly_above_tau():
    """The paper's code crosses at the first grid point whose loss is > tau: a cost exactly equal
    to tau is not a crossing (a crossing taken at >= would stop a grid point early)."""
    from volbench import reference_log_volume
    from volbench.estimator.reference import paper_coefficients, paper_loop_radii

    tau = 0.25
    coef = paper_coefficients()
    r_tie, r_up = float(coef[10]), float(coef[20])

    def cost(p):
        r = p.norm(dim=1)
        # tau exactly on [c_10, c_20) of a unit direction, 2 tau beyond: the crossing is at c_20.
        return torch.where(r >= r_up, 2 * tau, torch.where(r >= r_tie, tau, 0.0)).to(p.dtype)

    g = torch.zeros(3, 4)
    g[:, 0] = 1.0  # unit raw directions: radius = coefficient
    est = reference_log_volume(cost, torch.zeros(4), threshold=tau, directions=g)
    assert est.crossing_index.tolist() == [20, 20, 20]
    loop = paper_loop_radii(cost, torch.zeros(4), threshold=tau, directions=g)
    assert torch.allclose(loop, torch.full((3,), r_up, dtype=loop.dtype))


def test_reference_crossing_is_strictly_above_tau_through_the_ray_interface():
    """The same tie through a ``ModelCost`` (the lab's path: the ray interface's grid walk, which
    re-decides points within its rounding margin of tau on the plain path): a zero-one cost that
    equals tau on a stretch of the grid is not a crossing there."""
    from torch import nn

    from volbench import reference_log_volume
    from volbench.costs import ModelCost
    from volbench.estimator.reference import paper_loop_radii

    model = nn.Linear(1, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0], [1.0]]))
        model.bias.copy_(torch.tensor([0.0, -0.5]))  # class 1 iff x > 0.5: all four examples right
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    y = torch.ones(4, dtype=torch.long)
    cost = ModelCost(model, x, y, loss="zero_one", dtype=torch.float64)
    assert getattr(cost, "accepts_rays", False), "the test is about the ray interface's path"
    # Lower bias 1 by t = 2 c_j: example x = 1 is wrong from t = 0.5 (cost 0.25 = tau, grid point
    # 50), x = 2 from t = 1.5 (cost 0.5 > tau, grid point 86).
    g = torch.tensor([[0.0, 0.0, 0.0, -2.0]], dtype=torch.float64)
    est = reference_log_volume(cost, cost.anchor, threshold=0.25, directions=g, dtype=torch.float64)
    assert est.crossing_index.tolist() == [86]
    loop = paper_loop_radii(cost, cost.anchor, threshold=0.25, directions=g, dtype=torch.float64)
    # the same grid point: c_86 ||g|| (the loop) against exp(log c_86 + log ||g||), a few roundings
    r = float(loop[0])
    assert est.radii.tolist() == pytest.approx(loop.tolist(), rel=gamma(4) * (1 + abs(math.log(r))))
