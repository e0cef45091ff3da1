"""Tests of the verdict statistics against exact answers and coverage."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from volbench.claims.analysis import bootstrap_difference, bootstrap_log_volume, correlation, fit_power_law
from volbench.claims.core import decide
from volbench.estimator.measures import logmeanexp


@given(st.lists(st.floats(-1e4, 1e4), min_size=1, max_size=50))
def test_logmeanexp_matches_torch(values):
    ref = float(torch.logsumexp(torch.tensor(values, dtype=torch.float64), 0) - math.log(len(values)))
    assert logmeanexp(values) == pytest.approx(ref, rel=1e-12, abs=1e-9)


def test_logmeanexp_handles_minus_infinity_and_nan():
    assert logmeanexp([-math.inf, 0.0]) == pytest.approx(math.log(0.5))
    assert logmeanexp([math.nan, 1.0]) == pytest.approx(1.0), "NaN (dropped directions) are ignored"


def test_power_law_fit_recovers_slope_and_covers_it_95_percent():
    rng = np.random.default_rng(0)
    sizes = np.repeat([60, 600, 6000], 4)
    true_slope, n = -40.0, 1000
    covered = 0
    trials = 400
    for _ in range(trials):
        y = 5.0 + true_slope * np.log(sizes) + rng.normal(0, 3.0, len(sizes))
        fit = fit_power_law(sizes, y, n_params=n)
        covered += fit.slope_low <= true_slope <= fit.slope_high
    rate = covered / trials
    assert 0.92 <= rate <= 0.98, f"95% interval covered the true slope in {rate:.1%} of trials"
    exact = fit_power_law([1, 10, 100], [0.0, -math.log(10), -2 * math.log(10)], n_params=2)
    assert exact.slope == pytest.approx(-1.0) and exact.alpha == pytest.approx(-0.5)
    assert exact.r_squared == pytest.approx(1.0)


def test_power_law_fit_rejects_too_few_points():
    with pytest.raises(ValueError, match=">= 3 finite points"):
        fit_power_law([1, 2], [0.0, 1.0], n_params=1)


def test_bootstrap_interval_covers_a_known_log_mean():
    """Log-terms whose exp are Uniform(0, 2): log mean -> 0. With K = 400 the 95% bootstrap
    interval covers 0 in about 95% of repetitions (accept 88%-99% over 150 repetitions)."""
    rng = np.random.default_rng(1)
    cover = 0
    for rep in range(150):
        terms = np.log(rng.uniform(0, 2, 400))
        lo, hi = bootstrap_log_volume(terms, n_boot=400, seed=rep)
        cover += lo <= 0.0 <= hi
    assert 0.88 <= cover / 150 <= 0.99, f"coverage {cover / 150:.2f}"


def test_bootstrap_difference_sign():
    a = np.log(np.linspace(1, 2, 100)) + 5.0
    b = np.log(np.linspace(1, 2, 100))
    point, lo, hi = bootstrap_difference(a, b, n_boot=300)
    assert point == pytest.approx(5.0) and lo > 4.5 and hi < 5.5


@pytest.mark.parametrize("low, high, kw, expected", [
    (1.0, 2.0, dict(above=0.0), "pass"),
    (-2.0, -1.0, dict(above=0.0), "fail"),
    (-1.0, 1.0, dict(above=0.0), "inconclusive"),
    (-2.0, -1.0, dict(below=0.0), "pass"),
    (math.nan, 1.0, dict(below=0.0), "inconclusive"),
    (-math.inf, -1.0, dict(above=0.0), "fail"),  # an infinite bound is a bound (a minimum left its basin)
])
def test_decide(low, high, kw, expected):
    assert decide(low, high, **kw) == expected


def test_correlation_interval_contains_strong_correlation():
    x = np.arange(30.0)
    y = -x + np.random.default_rng(0).normal(0, 1, 30)
    r, lo, hi = correlation(x, y, method="pearson", n_boot=300)
    assert r < -0.95 and lo <= r <= hi and hi < -0.9
