"""Direct sampling (volbench.crosscheck.sampling), prior-directed rays (directions="prior"), the measure's
centre (prior_mean), and the LLC tools (volbench.crosscheck.llc), each against closed forms."""
import math

import numpy as np
import pytest
import torch

from volbench import estimate_log_volume
from volbench.costs.rounding import gamma, output_rounding_bound
from volbench.crosscheck.calibration import SCALE_RULE, THRESHOLD_RULE, calibrate_local_scales, calibrate_thresholds
from volbench.crosscheck.devinterp import devinterp_available, devinterp_health
from volbench.crosscheck.llc import (
    DeepLinearCost,
    VolumeScalingError,
    dln_lambda,
    epsilon_ladder,
    fit_volume_scaling,
    rrr_lambda,
)
from volbench.crosscheck.oracles import QuadraticCost, gaussian_log_mass_of_ball
from volbench.crosscheck.sampling import (
    InsufficientSamplesError,
    clopper_pearson,
    sample_local_scales,
    sample_star_domain_measure,
)
from volbench.estimator.measures import gaussian_log_ray_mass, log_unit_sphere_area
from volbench.estimator.prior_rays import (
    CALIBRATION_STREAM,
    SAMPLING_STREAM,
    log_ray_fractions,
    prior_points,
    prior_ray_directions,
)

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
    # the offset anchor - mean is formed first either way: the same arithmetic, bit for bit
    assert torch.equal(a, b)


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
    assert torch.equal(prior.log_radii, iso.log_radii), "the same searches on the same rays"
    # The terms: log m(u, r) - log m(u, inf) against log |S^(n-1)| + log m(u, r), two float64 evaluations
    # of the Gaussian ray mass (sums over n coordinates and a 256-node log-sum-exp: gamma_{n+300}) of
    # pieces no larger than the terms, n/2 log(2 pi), n |log sigma|, n/2 log a and log |S^(n-1)|.
    a = 1 / 0.8 ** 2  # sum (v_i / sigma)^2 for a unit v
    pieces = (prior.log_terms.abs() + iso.log_terms.abs()
              + 2 * (n * (0.5 * math.log(2 * math.pi) + abs(math.log(0.8)) + 0.5 * math.log(a))
                     + abs(log_unit_sphere_area(n))) + 1.0)
    assert bool(((prior.log_terms - iso.log_terms).abs() <= gamma(n + 300) * pieces).all())


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
    got = cost(p)
    for b in range(2):
        module = cost.module(p[b])
        with torch.no_grad():
            pred = module(X)
            want = torch.nn.functional.mse_loss(pred, Y)
        # The cost multiplies the matrices first, the module applies them in turn: each within the
        # module's worst-case forward error e of the exact outputs (output_rounding_bound), so the
        # mean of squares moves by at most mean(2 |r| 2e + (2e)^2), plus both means' own gamma_{N+2}.
        e = 2 * output_rounding_bound(module, X, dtype=F64)
        r = (pred - Y).abs()
        tol = float((2 * r * e + e * e).mean()) + 2 * gamma(Y.numel() + 2) * float(want)
        assert abs(float(got[b]) - float(want)) <= tol


@pytest.mark.skipif(not devinterp_available()[0], reason=devinterp_available()[1])
def test_devinterp_runs_and_records_its_settings():
    from volbench.crosscheck.devinterp import DevinterpSettings, devinterp_llc

    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 2, generator=g)
    cost = DeepLinearCost((2, 1, 2), X, torch.zeros(200, 2))
    model = cost.module(torch.zeros(4))
    res = devinterp_llc(model, X, torch.zeros(200, 2), lambda out, y: ((out - y) ** 2).mean(dim=1),
                        settings=DevinterpSettings(num_chains=2, num_draws=20, lr=1e-3))
    assert math.isfinite(res.llc) and len(res.per_chain) == 2
    assert res.settings["lr"] == 1e-3 and res.settings["localization"] == 100.0 and res.version


# ----------------------------------------------------------------------------- exit check, scales, calibration

def walled_ball(wall_lo: float, wall_hi: float):
    """|theta|^2 with a wall of cost 10 on the shell wall_lo <= |theta| < wall_hi: a ray's cost leaves
    a threshold of 1 at the wall and comes back below it, so a bracketing search that starts small
    and doubles can step over the wall (the rule's exit is then at |theta| = 1)."""
    def cost(p):
        r = p.norm(dim=1)
        return torch.where((r >= wall_lo) & (r < wall_hi), torch.full_like(r, 10.0), r * r)
    return cost


def test_segment_check_counts_the_exits_the_rule_steps_over():
    """Doubling from 0.01 evaluates 0.32 then 0.64: the wall [0.45, 0.55) is never seen, so the rule
    accepts every draw within radius 1. A 64-point grid on a segment of length <= 1 has spacing
    <= 1/64 < 0.1, the wall's width, so it finds the wall on every accepted segment that reaches
    it: the checked count is exactly the number of draws inside radius 0.45 (the true star domain)."""
    n = 2
    c = torch.zeros(n, dtype=F64)
    est = sample_star_domain_measure(walled_ball(0.45, 0.55), c, threshold=1.0, n_samples=3000, prior_std=0.5,
                                     rtol=1e-6, dtype=F64, seed=4, pilot=0, segment_check=64)
    theta = prior_points(0, 3000, n=n, seed=4, std=torch.full((n,), 0.5, dtype=F64), mean=None, stream=SAMPLING_STREAM)
    r = theta.norm(dim=1)
    assert est.n_accepted == int((r < 1.0).sum())  # the rule's star domain: the ball of radius 1
    assert est.n_accepted_checked == int((r < 0.45).sum())
    assert est.n_missed_exits == int(((r >= 0.45) & (r < 1.0)).sum()) > 0
    assert est.config["segment_check"] == 64
    plain = sample_star_domain_measure(walled_ball(0.45, 0.55), c, threshold=1.0, n_samples=3000, prior_std=0.5,
                                       rtol=1e-6, dtype=F64, seed=4, pilot=0)
    assert plain.n_accepted_checked is None and plain.n_missed_exits is None and plain.n_accepted == est.n_accepted


def test_local_scales_equal_sampling_each_scale_on_its_own():
    """One set of draws serves every scale: each scale's counts equal a separate run of
    sample_star_domain_measure with prior_std = c * shape and prior_mean = the anchor, same seed."""
    c = torch.tensor([0.3, -0.2, 0.1, 0.0], dtype=F64)
    cost = QuadraticCost(torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=F64), center=c)
    shape = torch.tensor([1.0, 0.5, 2.0, 1.0], dtype=F64)
    scales = (0.2, 0.5, 1.0)
    kw = dict(threshold=0.5, n_samples=900, rtol=1e-9, dtype=F64, seed=7)
    shared = sample_local_scales(cost, c, shape_std=shape, scales=scales, **kw)
    for est, s in zip(shared, scales):
        alone = sample_star_domain_measure(cost, c, prior_std=s * shape, prior_mean=c, pilot=0, **kw)
        assert (est.n_accepted, est.n_accepted_upper) == (alone.n_accepted, alone.n_accepted_upper)
        assert est.config["scale"] == s
    assert shared[0].n_accepted >= shared[1].n_accepted >= shared[2].n_accepted  # star domain: mass falls with c
    with pytest.raises(ValueError, match="scales"):
        sample_local_scales(cost, c, shape_std=shape, scales=(), **kw)


def test_local_scale_sampling_matches_chi_square_on_a_ball():
    """N(c, s^2 I) puts chi2_n.cdf(R^2 / s^2) of its mass in the ball of radius R around c."""
    from scipy.stats import chi2

    n, R = 5, 1.0
    c = torch.linspace(-1.0, 1.0, n, dtype=F64)
    scales = (0.3, 0.45, 0.6)
    for est, s in zip(sample_local_scales(ball(c), c, threshold=R * R, n_samples=4000, shape_std=1.0, scales=scales,
                                          rtol=1e-8, dtype=F64, seed=1), scales):
        low, high = est.log_interval(0.999)
        assert low < math.log(chi2.cdf(R * R / s ** 2, n)) < high


def test_calibrated_thresholds_hit_their_target_rates():
    """Ball cost |theta - c|^2: the star domain at tau is the ball of radius sqrt(tau), whose mass
    under N(0, I) is the noncentral chi-square CDF at tau. The pilot quantile lands within 4
    binomial standard errors of the target (the pilot's own sampling error)."""
    from scipy.stats import ncx2

    n = 3
    c = torch.tensor([0.5, -0.5, 0.2], dtype=F64)
    targets, n_pilot = (0.3, 0.03), 3000
    cal = calibrate_thresholds(ball(c), c, prior_std=1.0, targets=targets, n_pilot=n_pilot, grid=8, dtype=F64,
                               rates_at=(1.0,))
    for a, tau in zip(targets, cal.levels):
        assert abs(ncx2.cdf(tau, n, float(c @ c)) - a) < 4 * math.sqrt(a * (1 - a) / n_pilot)
    assert cal.rule == THRESHOLD_RULE and cal.stream == CALIBRATION_STREAM
    assert abs(cal.config["pilot_rates_at"]["1"] - ncx2.cdf(1.0, n, float(c @ c))) < 4 * math.sqrt(0.25 / n_pilot)
    with pytest.raises(ValueError, match="cannot place"):
        calibrate_thresholds(ball(c), c, prior_std=1.0, targets=(0.001,), n_pilot=1000, dtype=F64)


def test_calibrated_local_scales_hit_their_target_rates():
    from scipy.stats import chi2

    n, R = 4, 1.0
    c = torch.tensor([1.0, 0.0, -1.0, 0.5], dtype=F64)
    targets, n_pilot = (0.5, 0.05), 3000
    cal = calibrate_local_scales(ball(c), c, threshold=R * R, shape_std=1.0, targets=targets, n_pilot=n_pilot,
                                 rtol=1e-8, dtype=F64)
    for a, s in zip(targets, cal.levels):
        assert abs(chi2.cdf(R * R / s ** 2, n) - a) < 4 * math.sqrt(a * (1 - a) / n_pilot)
    assert cal.levels[0] < cal.levels[1] and cal.rule == SCALE_RULE


def test_devinterp_health_rule():
    """Healthy: rises to a plateau above the initial loss and below the null loss. Unhealthy: sinks
    below the initial loss (training), passes the null loss (diverged), or still climbing."""
    steps = np.arange(400)
    rng = np.random.default_rng(0)
    plateau = 1.0 + 0.1 * (1 - np.exp(-steps / 20.0)) + 0.002 * rng.standard_normal(400)
    assert devinterp_health(plateau[None], 1.0, null_loss=2.0)["healthy"]
    sinking = 1.0 - 0.1 * (1 - np.exp(-steps / 20.0))
    assert not devinterp_health(sinking[None], 1.0, null_loss=2.0)["above_initial_loss"]
    assert not devinterp_health(plateau[None], 1.0, null_loss=1.05)["below_null_loss"]
    climbing = 1.0 + 0.001 * steps
    h = devinterp_health(climbing[None], 1.0, null_loss=10.0)
    assert not h["flat"] and not h["healthy"]
    assert not devinterp_health(np.full((1, 100), np.nan), 1.0)["healthy"]
