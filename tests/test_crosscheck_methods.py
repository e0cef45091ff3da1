"""Direct sampling (volbench.sampling), prior-directed rays (directions="prior"), the measure's
centre (prior_mean), and the LLC tools (volbench.llc), each against closed forms."""
import math

import numpy as np
import pytest
import torch

from volbench import estimate_log_volume
from volbench.estimator.measures import gaussian_log_ray_mass, log_unit_sphere_area
from volbench.estimator.prior_rays import (SAMPLING_STREAM, log_ray_fractions, prior_points,
                                           prior_ray_directions)
from volbench.llc import (DeepLinearCost, VolumeScalingError, devinterp_available, dln_lambda, epsilon_ladder,
                          fit_volume_scaling, rrr_lambda)
from volbench.sampling import InsufficientSamplesError, clopper_pearson, sample_star_domain_measure
from volbench.toy import QuadraticCost, gaussian_log_mass_of_ball

F64 = torch.float64


def ball(center: torch.Tensor):
    """cost = |theta - c|^2: the basin below R^2 is the ball of radius R around the anchor c."""
    return lambda p: ((p - center.to(p)) ** 2).sum(dim=1)


def rel_se(log_terms: torch.Tensor) -> float:
    """Relative standard error of the mean of exp(log_terms)."""
    w = torch.exp(log_terms.double() - log_terms.max())
    return float(w.std() / (w.mean() * math.sqrt(len(w))))


# ----------------------------------------------------------------------------- the measure's centre

def test_prior_mean_enters_only_through_the_offset():
    g = torch.Generator().manual_seed(0)
    n = 7
    v = torch.randn(5, n, generator=g, dtype=F64)
    v = v / v.norm(dim=1, keepdim=True)
    anchor, mean = torch.randn(n, generator=g, dtype=F64), torch.randn(n, generator=g, dtype=F64)
    std = torch.rand(n, generator=g, dtype=F64) + 0.5
    r = torch.rand(5, generator=g, dtype=F64) * 3
    a = gaussian_log_ray_mass(r, v, anchor, std, mean)
    b = gaussian_log_ray_mass(r, v, anchor - mean, std)
    assert torch.allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("directions", ["isotropic", "prior"])
def test_offset_ball_against_noncentral_chi2(directions):
    """Gaussian mass of a radius-R ball around an anchor c under N(mu, I): ncx2 CDF with
    noncentrality |c - mu|^2. Radii are exact (rtol 1e-9), so the only error is Monte Carlo over
    rays: allowed 4 standard errors (measured from the terms)."""
    n, R = 6, 1.5
    c = torch.linspace(-0.5, 1.0, n, dtype=F64)
    mu = torch.full((n,), 0.25, dtype=F64)
    exact = gaussian_log_mass_of_ball(R, c - mu, 1.0)
    est = estimate_log_volume(ball(c), c, threshold=R * R, n_directions=600, directions=directions, measure="gaussian",
                              prior_std=1.0, prior_mean=mu, rtol=1e-9, dtype=F64, seed=3)
    assert abs(est.log_volume - exact) < 4 * rel_se(est.log_terms)
    assert est.config["directions"] == directions and est.config["prior_mean"] == 0.25


def test_prior_rays_centred_at_the_anchor_equal_isotropic_terms():
    """mu = theta0 with an isotropic sigma makes the ray density uniform, 1/|S^(n-1)|: each
    prior-directed term equals the isotropic estimator's term on the same direction."""
    n = 5
    c = torch.tensor([0.3, -1.0, 0.2, 0.0, 0.5], dtype=F64)
    cost = QuadraticCost(torch.tensor([1.0, 2.0, 3.0, 0.5, 1.5], dtype=F64), center=c)
    prior = estimate_log_volume(cost, c, threshold=0.7, n_directions=50, directions="prior", measure="gaussian",
                                prior_std=0.8, prior_mean=c, rtol=1e-10, dtype=F64, seed=1)
    u, _ = prior_ray_directions(prior_points(0, 50, n=n, seed=1, std=torch.full((n,), 0.8, dtype=F64), mean=c,
                                             stream=1), c)
    iso = estimate_log_volume(cost, c, threshold=0.7, directions=u, measure="gaussian", prior_std=0.8, prior_mean=c,
                              rtol=1e-10, dtype=F64)
    assert torch.allclose(prior.log_terms, iso.log_terms, rtol=0, atol=1e-9)


def test_fraction_is_the_conditional_acceptance_probability():
    """Rao-Blackwell identity behind the estimator: on the same draws, the mean of (accepted -
    fraction) is zero up to its standard error."""
    n, R = 4, 1.2
    c = torch.tensor([0.8, 0.0, -0.3, 0.1], dtype=F64)
    std = torch.ones(n, dtype=F64)
    theta = prior_points(0, 4000, n=n, seed=0, std=std, mean=None, stream=SAMPLING_STREAM)
    u, dist = prior_ray_directions(theta, c)
    radius = torch.full((4000,), R, dtype=F64)  # the ball's radius along every ray
    frac = log_ray_fractions(radius, u, c, std, None).exp()
    diff = (dist <= R).double() - frac
    assert abs(float(diff.mean())) < 4 * float(diff.std()) / math.sqrt(4000)
    assert bool(((frac >= 0) & (frac <= 1)).all())


def test_prior_directions_bad_input():
    c = torch.zeros(3, dtype=F64)
    with pytest.raises(ValueError, match="measure='gaussian'"):
        estimate_log_volume(ball(c), c, threshold=1.0, directions="prior", prior_std=None)
    with pytest.raises(ValueError, match="preconditioner=None"):
        estimate_log_volume(ball(c), c, threshold=1.0, directions="prior", measure="gaussian", prior_std=1.0,
                            preconditioner=torch.ones(3))
    with pytest.raises(ValueError, match="prior_mean"):
        estimate_log_volume(ball(c), c, threshold=1.0, measure="gaussian", prior_std=1.0, prior_mean=torch.ones(2))
    with pytest.raises(ValueError, match="only used with measure='gaussian'"):
        estimate_log_volume(ball(c), c, threshold=1.0, prior_mean=0.0)


# ----------------------------------------------------------------------------- direct sampling

def test_sampling_offset_ball_against_noncentral_chi2():
    n, R = 5, 1.5
    c = torch.tensor([1.0, 0.5, 0.0, -0.5, 0.2], dtype=F64)
    mu = torch.full((n,), -0.2, dtype=F64)
    est = sample_star_domain_measure(ball(c), c, threshold=R * R, n_samples=3000, prior_std=1.0, prior_mean=mu,
                                     rtol=1e-6, dtype=F64, seed=0, pilot=0)
    low, high = est.log_interval(0.999)
    assert low < gaussian_log_mass_of_ball(R, c - mu, 1.0) < high
    assert est.n_accepted <= est.n_accepted_upper and est.config["seed"] == 0


def test_sampling_uses_the_estimators_search_settings_and_is_batch_invariant():
    c = torch.tensor([0.5, 0.5], dtype=F64)
    kw = dict(threshold=1.0, prior_std=1.0, rtol=1e-3, dtype=F64, seed=5, pilot=0)
    a = sample_star_domain_measure(ball(c), c, n_samples=700, batch_size=64, **kw)
    b = sample_star_domain_measure(ball(c), c, n_samples=700, batch_size=300, **kw)
    assert (a.n_accepted, a.n_accepted_upper) == (b.n_accepted, b.n_accepted_upper)
    est = estimate_log_volume(ball(c), c, threshold=1.0, n_directions=4, rtol=1e-3, dtype=F64)
    for key in ("rtol", "initial_radius", "max_radius", "growth", "fine_scan"):
        assert a.config[key] == est.config[key]


def test_sampling_resolution_brackets_the_truth():
    """A coarse rtol leaves draws in (lo, hi); the interval from the two counts still covers."""
    n, R = 3, 1.0
    c = torch.zeros(n, dtype=F64)
    est = sample_star_domain_measure(ball(c), c, threshold=R * R, n_samples=4000, prior_std=1.0, rtol=0.2, dtype=F64,
                                     seed=2, pilot=0)
    assert est.n_ambiguous > 0
    low, high = est.log_interval(0.999)
    assert low < gaussian_log_mass_of_ball(R, c, 1.0) < high


def test_sampling_refuses_an_unresolvable_request_with_rate_and_budget():
    n = 20
    c = torch.full((n,), 3.0, dtype=F64)  # a small ball far from the prior's centre: mass ~ e^-100
    with pytest.raises(InsufficientSamplesError, match="needs about") as info:
        sample_star_domain_measure(ball(c), c, threshold=0.25, n_samples=1000, prior_std=1.0, dtype=F64, pilot=32)
    err = info.value
    assert 0 < err.rate < 1e-20 and err.n_needed > 1e20 and err.n_samples == 1000
    with pytest.raises(InsufficientSamplesError, match="no draw of 200 was accepted") as info:
        sample_star_domain_measure(ball(c), c, threshold=0.25, n_samples=200, prior_std=1.0, dtype=F64, pilot=0)
    assert info.value.result is not None and info.value.result.n_accepted == 0
    with pytest.raises(ValueError, match="n_samples"):
        sample_star_domain_measure(ball(c), c, threshold=0.25, n_samples=0, prior_std=1.0)


def test_clopper_pearson_known_values():
    lo, hi = clopper_pearson(5, 10, 0.95)
    assert lo == pytest.approx(0.187086, abs=1e-6) and hi == pytest.approx(0.812914, abs=1e-6)
    assert clopper_pearson(10, 10)[1] == 1.0


# ----------------------------------------------------------------------------- LLC

def test_dln_lambda_reduces_to_known_cases():
    for M in range(1, 6):
        for H in range(1, 6):
            for N in range(1, 6):
                for r in range(min(M, H, N) + 1):
                    assert dln_lambda((M, H, N), r) == rrr_lambda(M, H, N, r)
    for widths in ((3, 4), (1, 7), (5, 2)):
        for r in range(min(widths) + 1):
            assert dln_lambda(widths, r) == widths[0] * widths[1] / 2  # one layer: regular, n/2
    for L in range(2, 6):
        assert dln_lambda((1,) * (L + 1), 0) == 0.5  # scalar chain a_1...a_L: 1/2 at any depth
    with pytest.raises(ValueError, match="rank"):
        dln_lambda((2, 1, 2), 2)


def test_volume_scaling_recovers_half_n_on_a_quadratic():
    n = 8
    q = QuadraticCost(torch.exp(torch.linspace(-1, 1, n, dtype=F64)))
    eps = epsilon_ladder(1e-4, 1, 2)
    rows = [estimate_log_volume(q, torch.zeros(n, dtype=F64), threshold=e, n_directions=30, rtol=1e-9,
                                dtype=F64).log_terms.numpy() for e in eps]
    fit = fit_volume_scaling(eps, rows, n_boot=200)
    assert fit.slope == pytest.approx(n / 2, rel=1e-6) and fit.low <= fit.slope <= fit.high
    assert fit.fit_epsilons == tuple(eps)


def test_volume_scaling_errors_name_the_range():
    with pytest.raises(VolumeScalingError, match=r"holds 2 threshold"):
        fit_volume_scaling([1e-3, 1e-2, 1e-1], np.zeros((3, 4)))
    terms = np.zeros((3, 4))
    terms[1] = -np.inf
    with pytest.raises(VolumeScalingError, match=r"not finite at eps = \[0.005"):
        fit_volume_scaling([1e-3, 5e-3, 1e-2], terms)


def test_deep_linear_cost_matches_its_module():
    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(20, 3, generator=g, dtype=F64), torch.randn(20, 2, generator=g, dtype=F64)
    cost = DeepLinearCost((3, 2, 4, 2), X, Y)
    p = torch.randn(2, cost.n_params, generator=g, dtype=F64)
    for b in range(2):
        with torch.no_grad():
            want = torch.nn.functional.mse_loss(cost.module(p[b])(X), Y)
        assert float(cost(p)[b]) == pytest.approx(float(want), rel=1e-12)


@pytest.mark.skipif(not devinterp_available()[0], reason=devinterp_available()[1])
def test_devinterp_runs_and_records_its_settings():
    from volbench.llc import DevinterpSettings, devinterp_llc

    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 2, generator=g)
    cost = DeepLinearCost((2, 1, 2), X, torch.zeros(200, 2))
    model = cost.module(torch.zeros(4))
    res = devinterp_llc(model, X, torch.zeros(200, 2), lambda out, y: ((out - y) ** 2).mean(dim=1),
                        settings=DevinterpSettings(num_chains=2, num_draws=20, lr=1e-3))
    assert math.isfinite(res.llc) and len(res.per_chain) == 2
    assert res.settings["lr"] == 1e-3 and res.settings["localization"] == 100.0 and res.version
