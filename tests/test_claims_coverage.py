"""The closed-form coverage simulation at the scale of the verdicts (``volbench.claims.coverage``,
``ScaleDesign``) and the reference's resolution margin it sets.

The simulation replaces the estimators by closed forms on diagonal quadratics, so these tests pin
the closed forms to the real estimators on small quadratics (a wrong radius or crossing index would
make the coverage table describe some other procedure), check that its hybrid draws (top
eigen-directions drawn, the bulk through its sums) agree with drawing every coordinate, that the
principled interval covers its own expectation on a cheap design, and that the reference's
intervals use the margin fraction the simulation chose.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from volbench.claims import stats
from volbench.claims.coverage import (
    ScaleDesign,
    choose_margin,
    exit_log_radii,
    grid_crossing,
    principled_terms,
    quadratic_forms,
    reference_terms,
    simulate_scale,
)
from volbench.claims.stats import REFERENCE_MARGIN_FRACTION, Terms, aggregate, paired_difference
from volbench.crosscheck.oracles import QuadraticCost
from volbench.estimator import estimate_log_volume
from volbench.estimator.measures import log_unit_ball_volume
from volbench.estimator.reference import reference_log_volume


def _quadratic(n=12, K=10, seed=0):
    rng = np.random.default_rng(seed)
    lam = 3.0 * np.exp(rng.normal(0.0, 1.0, n))
    # float32-representable directions: the paper's procedure draws float32 (``reference._prepare``)
    g = rng.standard_normal((K, n)).astype(np.float32).astype(np.float64)
    return lam, g, (g * g).sum(1), (g * g) @ lam


def test_closed_form_radius_equals_the_principled_search():
    """r = sqrt(2 tau ||g||^2 / g^T Lambda g) is the exit radius the real search finds along g/||g||
    (to its rtol), and the term is log(unit ball) + n log r as the estimator writes it."""
    n, tau, rtol = 12, 0.1, 1e-7
    lam, g, norm2, q = _quadratic(n)
    est = estimate_log_volume(QuadraticCost(torch.tensor(lam)), torch.zeros(n, dtype=torch.float64), threshold=tau,
                              directions=torch.tensor(g), rtol=rtol, dtype=torch.float64)
    closed = log_unit_ball_volume(n) + n * exit_log_radii(norm2, q, tau)
    assert np.all(est.log_terms.numpy() <= closed + 1e-9)
    assert np.all(est.log_terms_upper.numpy() >= closed - 1e-9)
    assert np.allclose(est.log_terms.numpy(), closed, rtol=0, atol=n * math.log1p(rtol))
    sim = principled_terms(exit_log_radii(norm2, q, tau), n, rtol, np.random.default_rng(0))
    assert np.all(sim.low <= closed + 1e-9) and np.all(sim.high >= closed - 1e-9)
    assert np.allclose(sim.high - sim.low, n * math.log1p(rtol))


def test_closed_form_crossing_equals_reference_log_volume():
    """The closed-form crossing index, radius and bracket equal the paper's procedure
    (``reference_log_volume``) on a diagonal quadratic with explicit directions."""
    n, tau = 12, 0.1
    lam, g, norm2, q = _quadratic(n, K=16, seed=1)
    est = reference_log_volume(QuadraticCost(torch.tensor(lam)), torch.zeros(n, dtype=torch.float64), threshold=tau,
                               directions=torch.tensor(g, dtype=torch.float32), dtype=torch.float64)
    assert np.array_equal(grid_crossing(q, tau), est.crossing_index.numpy())
    t = reference_terms(norm2, q, tau, n)
    assert np.allclose(t.log_terms, n * est.log_radii.numpy(), rtol=1e-12)
    assert np.allclose(t.low, n * est.log_radii_lower.numpy(), rtol=1e-12)
    assert np.array_equal(t.high, t.log_terms)
    # A direction that never crosses (a flat quadratic) is dropped, as the paper drops it.
    assert np.array_equal(grid_crossing(np.array([1e-9, q[0]]), tau) < 0, [True, False])


def test_hybrid_draws_agree_with_drawing_every_coordinate():
    """Drawing only the top eigen-directions and the bulk through its joint-normal sums gives the
    same distribution of log r as drawing all n coordinates (pooled over spectra and directions,
    within Monte Carlo error)."""
    n, K, sigma = 20_000, 64, 3.0
    exact, hybrid = [], []
    for s in range(12):
        rng = np.random.default_rng([5, s])
        lam = np.exp(sigma * rng.standard_normal(n))
        lam_b = lam.copy()
        lam_b[: n // 50] *= 4.0
        spectra = np.stack([lam, lam_b])
        for out, top in ((exact, None), (hybrid, 200)):
            norm2, q = quadratic_forms(spectra, K, np.random.default_rng([6, s, top or 0]), exact_top=top)
            lr = exit_log_radii(norm2[None], q, 0.1)
            out.append(np.stack([lr[0], lr[0] - lr[1]]))
    exact, hybrid = np.concatenate(exact, 1), np.concatenate(hybrid, 1)
    for row, what in ((0, "log r"), (1, "log r_A - log r_B")):
        se = math.sqrt(exact[row].var() / exact.shape[1] + hybrid[row].var() / hybrid.shape[1])
        assert abs(exact[row].mean() - hybrid[row].mean()) < 4 * se, what
        assert hybrid[row].std() == pytest.approx(exact[row].std(), rel=0.15), what


@pytest.fixture(scope="module")
def small_scale():
    """A cheap design whose answer is known: at n = 400 with a mild spectrum the per-seed
    differences are near normal, so the principled t-interval covers its own expectation at about
    its nominal 95% (Monte Carlo sd 2% at 120 replications)."""
    design = ScaleDesign(n=400, directions=(16,), seeds=(5,), margins=(0.0, 1.0), replications=120,
                         expectation_seeds=600, sigma=1.0, exact_top=None, seed=3)
    return simulate_scale(design)


def test_principled_interval_covers_its_own_expectation_at_small_n(small_scale):
    (row,) = [r for r in small_scale["rows"] if r["estimator"] == "principled"]
    assert row["coverage_own"] >= 0.9, row
    assert row["null_false_decisions"] <= 0.1, row
    assert 17 <= small_scale["median_crossing_index"] <= 19  # mu put the median crossing at j = 18


def test_reference_coverage_grows_with_the_margin(small_scale):
    """Intervals are nested in f, so coverage cannot fall as the margin grows; the rule picks the
    smallest qualifying f on the grid (or None)."""
    ref = {r["margin_fraction"]: r for r in small_scale["rows"] if r["estimator"] == "reference"}
    assert ref[1.0]["coverage_own"] >= ref[0.0]["coverage_own"]
    assert ref[1.0]["mean_width"] > ref[0.0]["mean_width"]
    chosen = choose_margin(small_scale["rows"], designs=[(5, 16)])
    assert chosen in (0.0, 1.0, None)
    if chosen == 1.0:
        assert not (ref[0.0]["own_not_below"] and ref[0.0]["null_not_below"])


def _reference_measurement(seed=0):
    from volbench.lab import Measurement

    return Measurement(minimum="m", minimum_key="k", landscape_size=60, estimator="reference", log_volume=2.0,
                       log_terms=[1.0, 2.0], log_radii=[0.1, 0.2], anchor_cost=0.0, outside=False, n_params=10,
                       n_directions=2, n_cost_evals=1, seconds=0.0, config={}, summary={},
                       log_terms_low=[0.5, 1.5], log_terms_high=[1.0, 2.0], direction_seed=seed, directions="filter")


def test_reference_intervals_use_the_chosen_margin_fraction():
    """A reference measurement becomes Terms with margin fraction REFERENCE_MARGIN_FRACTION, and
    the per-seed bracket (hence the interval over seeds) is that fraction of the grid bracket;
    the principled search keeps its whole bracket."""
    from dataclasses import replace

    f = REFERENCE_MARGIN_FRACTION
    assert 0.0 <= f <= 1.0 and stats.margin_fraction_for("reference") == f
    assert stats.margin_fraction_for("principled") == 1.0
    a = Terms.from_measurement(_reference_measurement())
    assert a.margin_fraction == f
    assert np.allclose(a.margin_bounds[0], [1.0 - 0.5 * f, 2.0 - 0.5 * f]) and np.array_equal(a.margin_bounds[1],
                                                                                               a.log_terms)
    assert a.bracket == (stats._lme(a.low), stats._lme(a.high)), "bracket keeps the whole resolution bracket"
    # One direction each: the per-seed bracket is exactly f grid steps on either side of the point.
    one = Terms(np.array([10.0]), np.array([6.0]), np.array([10.0]), pairing=("reference", "filter", 0, 1),
                margin_fraction=f)
    other = Terms(np.array([7.0]), np.array([5.0]), np.array([7.0]), pairing=("reference", "filter", 0, 1),
                  margin_fraction=f)
    d = paired_difference(one, other)
    assert d.point == pytest.approx(3.0)
    assert d.low == pytest.approx(3.0 - 4.0 * f) and d.high == pytest.approx(3.0 + 2.0 * f)
    full = paired_difference(replace(one, margin_fraction=1.0), replace(other, margin_fraction=1.0))
    assert (full.low, full.high) == pytest.approx((-1.0, 5.0))
    # Through aggregate: the interval is the margin's resolution widened by the t half-width.
    seeds = [paired_difference(replace(one, log_terms=one.log_terms + s, high=one.high + s, low=one.low + s,
                                       pairing=("reference", "filter", s, 1)),
                               replace(other, pairing=("reference", "filter", s, 1))) for s in range(3)]
    lo, hi = aggregate(seeds).interval()
    from scipy import stats as sstats
    half = sstats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert lo == pytest.approx(4.0 - 4.0 * f - half) and hi == pytest.approx(4.0 + 2.0 * f + half)
    with pytest.raises(ValueError, match="margin_fraction"):
        Terms(np.zeros(1), np.zeros(1), np.zeros(1), margin_fraction=1.5)


def test_zero_margin_keeps_an_infinite_bound_finite_only_at_the_term():
    """Grid point 0 is the anchor (radius 0): its bound is -inf, and f = 0 must give the term,
    not NaN (0 x inf)."""
    t = Terms(np.array([1.0, 2.0]), np.array([-np.inf, 1.0]), np.array([1.0, 2.0]), margin_fraction=0.0)
    low, high = t.margin_bounds
    assert np.array_equal(low, t.log_terms) and np.array_equal(high, t.log_terms)
    t = Terms(t.log_terms, t.low, t.high, margin_fraction=0.5)
    assert np.array_equal(t.margin_bounds[0], [-np.inf, 1.5])


def test_docs_state_the_margin_fraction_the_code_uses():
    """docs/STATISTICS.md gives the simulation's table and the f it chose; the constant must be
    that f (a changed constant without a new table, or the reverse, fails here)."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "STATISTICS.md").read_text()
    section = doc[doc.index("### Coverage where the verdicts live"):]
    assert f"**f = {REFERENCE_MARGIN_FRACTION:g}**" in section
