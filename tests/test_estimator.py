"""Oracle tests of ``estimate_log_volume``: exact volumes of balls and ellipsoids, Gaussian
masses from the (noncentral) chi-square law, the main paper's 2-D closed form, and invariances.

Tolerances: radii are found to relative precision rtol, so a log-volume built from n-th powers
of radii is exact to n * rtol nats (plus float64 rounding); Monte Carlo checks use a stated number
of standard errors.
"""
from __future__ import annotations

import math

import pytest
import torch
from helpers import devices
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import chi2

from volbench import estimate_log_volume, log_unit_ball_volume
from volbench.crosscheck.oracles import HyperbolicBand, QuadraticCost, gaussian_log_mass_of_ball, random_rotation
from volbench.estimator.core import default_rtol
from volbench.estimator.measures import log_J
from volbench.estimator.result import CensoredRaysWarning

F64 = torch.float64


class Recording:
    """Wraps a cost and records every parameter vector it was asked about, with its cost."""

    def __init__(self, cost):
        self.cost = cost
        self.points: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def __call__(self, params):
        out = self.cost(params)
        self.points.append(params.detach().clone())
        self.values.append(out.detach().clone())
        return out


@pytest.mark.parametrize("n", [1, 2, 10, 100, 1000, 10_000])
def test_ball_exact_lebesgue(n):
    lam, tau, rtol = 3.0, 0.7, 1e-6
    cost = QuadraticCost(torch.full((n,), lam, dtype=F64))
    est = estimate_log_volume(cost, torch.zeros(n, dtype=F64), threshold=tau, n_directions=16,
                              rtol=rtol, dtype=F64, seed=1)
    exact = cost.exact_log_volume(tau)
    R = math.sqrt(2 * tau / lam)
    assert torch.all(est.log_radii <= math.log(R) + 1e-12), "a returned radius lies outside the ball"
    assert torch.all(est.log_radii >= math.log(R) - rtol), f"radius off by more than rtol={rtol}"
    assert abs(est.log_volume - exact) <= n * rtol + 1e-9, (
        f"n={n}: log-volume {est.log_volume} vs exact {exact}; tolerance n*rtol={n * rtol}")
    assert est.n_censored == 0


@pytest.mark.parametrize("n", [2, 50, 2000])
def test_axis_aligned_ellipsoid_exact_with_exact_preconditioner(n):
    gen = torch.Generator().manual_seed(n)
    diag = torch.exp(torch.randn(n, generator=gen, dtype=F64))  # curvatures over ~e^+-3
    cost = QuadraticCost(diag)
    tau, rtol = 0.05, 1e-7
    est = estimate_log_volume(cost, torch.zeros(n, dtype=F64), threshold=tau, n_directions=12,
                              preconditioner=cost.inverse_sqrt(), rtol=rtol, dtype=F64)
    exact = cost.exact_log_volume(tau)
    spread = float(est.log_terms.max() - est.log_terms.min())
    assert spread <= 2 * n * rtol, f"exact preconditioner must give zero variance; spread {spread} nats"
    assert abs(est.log_volume - exact) <= n * rtol + 1e-9, f"{est.log_volume} vs exact {exact}"


@pytest.mark.parametrize("n", [3, 40, 400])
def test_rotated_ellipsoid_exact_with_matrix_preconditioner(n):
    """Regression for the transposed full-matrix preconditioner (applied as diag(p) V^T x): the
    correct V diag(p) V^T = A^(-1/2) gives every direction the exact volume."""
    gen = torch.Generator().manual_seed(7)
    V = random_rotation(n, seed=n)
    evals = torch.exp(1.5 * torch.randn(n, generator=gen, dtype=F64))
    A = (V * evals) @ V.T
    A = 0.5 * (A + A.T)
    cost = QuadraticCost(A)
    tau, rtol = 0.1, 1e-7
    est = estimate_log_volume(cost, torch.zeros(n, dtype=F64), threshold=tau, n_directions=10,
                              preconditioner=cost.inverse_sqrt(), rtol=rtol, dtype=F64)
    exact = cost.exact_log_volume(tau)
    assert float(est.log_terms.max() - est.log_terms.min()) <= 2 * n * rtol
    assert abs(est.log_volume - exact) <= n * rtol + 1e-8, f"{est.log_volume} vs exact {exact}"
    # Without the preconditioner the estimator is unbiased for V but its log is biased low (S1).
    plain = estimate_log_volume(cost, torch.zeros(n, dtype=F64), threshold=tau, n_directions=10,
                                rtol=1e-4, dtype=F64)
    assert plain.log_volume <= exact + n * 1e-4


def test_isotropic_ellipsoid_converges_to_exact_volume():
    """Convergence: in 3-D the plain estimator's mean of r^3 has modest variance; with K = 20,000
    directions the relative error must be within 4 standard errors."""
    cost = QuadraticCost(torch.tensor([1.0, 4.0, 25.0], dtype=F64))
    tau = 0.5
    est = estimate_log_volume(cost, torch.zeros(3, dtype=F64), threshold=tau, n_directions=20_000,
                              rtol=1e-6, dtype=F64, batch_size=20_000)
    w = torch.exp(est.log_terms - est.log_volume)
    rel_se = float(w.std() / math.sqrt(len(w)))
    err = math.exp(est.log_volume - cost.exact_log_volume(tau)) - 1
    assert abs(err) < 4 * rel_se, f"relative error {err:.4g} exceeds 4 SE = {4 * rel_se:.4g}"


def test_2000_dim_bowl_radius_is_evaluated_and_inside():
    """Regression for returning a radius one update past the last evaluated one (-35 nats on a
    2,000-dimensional bowl): every returned radius was evaluated and found inside, and the
    smallest evaluated radius outside is within rtol of it."""
    n, tau, rtol = 2000, 1.0, 1e-3
    rec = Recording(QuadraticCost(torch.ones(n, dtype=F64)))
    est = estimate_log_volume(rec, torch.zeros(n, dtype=F64), threshold=tau, n_directions=20,
                              rtol=rtol, dtype=F64, seed=3)
    pts = torch.cat(rec.points)
    vals = torch.cat(rec.values)
    norms = pts.norm(dim=1)
    for lr, lu in zip(est.log_radii.tolist(), est.log_radii_upper.tolist()):
        r, u = math.exp(lr), math.exp(lu)
        hit = (norms - r).abs() <= 1e-9 * r
        assert hit.any() and bool((vals[hit] < tau).all()), f"radius {r} was not evaluated inside"
        hit_u = (norms - u).abs() <= 1e-9 * u
        assert hit_u.any() and bool((vals[hit_u] >= tau).all()), f"upper radius {u} not evaluated outside"
        assert u / r - 1 <= rtol * (1 + 1e-9)
    exact = QuadraticCost(torch.ones(n, dtype=F64)).exact_log_volume(tau)
    assert exact - n * rtol <= est.log_volume <= exact, f"{est.log_volume} vs {exact} (n*rtol = {n*rtol})"


@pytest.mark.parametrize("s", [0.1, 0.2, 0.5])
@pytest.mark.parametrize("b", [0.3, 1.0, 3.0])
def test_hyperbolic_band_matches_paper_closed_form(s, b):
    """F12 oracle: the 2-D band's star-domain area from (b, 1/b) equals the paper's closed form,
    whatever b. Rays leave the band and come back; the default search's first-exit guard finds
    the first exits (test below: the same as a 50-point fine scan); an even angular grid of 20,000
    directions makes the average a quadrature of (1/2) int r(phi)^2 dphi. Tolerance 1%: measured
    error <= 0.3% (the rest are rays grazing the boundary)."""
    K = 20_000
    ang = (torch.arange(K, dtype=F64) + 0.5) / K * 2 * math.pi
    dirs = torch.stack([torch.cos(ang), torch.sin(ang)], 1)
    band = HyperbolicBand(s)
    est = estimate_log_volume(band, band.anchor(b), threshold=s, directions=dirs, rtol=1e-8,
                              dtype=F64, batch_size=K)
    rel = math.exp(est.log_volume) / band.paper_area() - 1
    assert abs(rel) < 0.01, f"s={s} b={b}: area off by {rel:.3%} (tolerance 1%)"


def test_hyperbolic_band_first_exits_are_found_by_default_at_a_small_cost():
    """Rays of the band leave it and come back. Growth alone (robust=False, like the bit-only
    bisection) steps over some outside segments and reports a radius beyond the first exit; the
    default search notices the fall of the inside costs after their local maximum and finds the
    same first exits as a 50-point fine scan of (0, hi], at a fraction of the scan's cost."""
    K = 4000
    ang = (torch.arange(K, dtype=F64) + 0.5) / K * 2 * math.pi
    dirs = torch.stack([torch.cos(ang), torch.sin(ang)], 1)
    band = HyperbolicBand(0.5)
    kw = dict(threshold=0.5, directions=dirs, rtol=1e-8, dtype=F64, batch_size=K)
    growth_only = estimate_log_volume(band, band.anchor(1.0), robust=False, **kw)
    bisect = estimate_log_volume(band, band.anchor(1.0), search="bisect", **kw)
    scanned = estimate_log_volume(band, band.anchor(1.0), fine_scan=50, **kw)
    default = estimate_log_volume(band, band.anchor(1.0), **kw)
    for jumpy in (growth_only, bisect):
        assert int((jumpy.log_radii > scanned.log_radii + 0.1).sum()) > 0, "expected jumped exits without a guard"
    assert bool((scanned.log_radii <= bisect.log_radii + 2e-8).all()), "the scan lengthened a ray beyond rtol"
    diff = (default.log_radii - scanned.log_radii).abs()
    assert float(diff.max()) <= 2e-8, f"the default missed {int((diff > 2e-8).sum())} first exits the scan found"
    assert default.n_cost_evals < 0.5 * scanned.n_cost_evals, (default.n_cost_evals, scanned.n_cost_evals)
    assert default.n_cost_evals < bisect.n_cost_evals, "value-based search must beat bit-only bisection here"
    assert default.summary()["evals_per_ray_mean"] == pytest.approx(float(default.evals_per_ray.double().mean()))


# ---------------------------------------------------------------- Gaussian measure

@pytest.mark.parametrize("n", [1, 2, 7, 100, 1000, 10_000])
def test_gaussian_measure_of_centred_ball_is_chi_square_cdf(n):
    sigma, R, rtol = 0.5, 0.5 * math.sqrt(n) * 0.9, 1e-8
    cost = lambda p: (p * p).sum(1)
    est = estimate_log_volume(cost, torch.zeros(n, dtype=F64), threshold=R * R, n_directions=8,
                              measure="gaussian", prior_std=sigma, rtol=rtol, dtype=F64)
    exact = float(chi2.logcdf((R / sigma) ** 2, n))
    # d log(mu)/d log(R) <= n + (R/sigma)^2, so a radius within rtol moves log mu by at most that.
    tol = (n + (R / sigma) ** 2) * rtol + 1e-9
    assert abs(est.log_volume - exact) <= tol, f"n={n}: {est.log_volume} vs chi2 {exact} (tol {tol})"


def test_gaussian_measure_of_offset_ball_converges_to_noncentral_chi_square():
    sigma, R = 1.0, 1.2
    center = torch.tensor([0.8, -0.3, 0.5, 0.1], dtype=F64)
    cost = lambda p: ((p - center) ** 2).sum(1)
    est = estimate_log_volume(cost, center, threshold=R * R, n_directions=8000, measure="gaussian",
                              prior_std=sigma, rtol=1e-8, dtype=F64, batch_size=8000)
    exact = gaussian_log_mass_of_ball(R, center, sigma)
    w = torch.exp(est.log_terms - est.log_volume)
    rel_se = float(w.std() / math.sqrt(len(w)))
    err = math.exp(est.log_volume - exact) - 1
    assert abs(err) < 4 * rel_se + 1e-6, f"relative error {err:.3g} vs 4 SE {4 * rel_se:.3g}"


@pytest.mark.parametrize("n", [1, 3, 10, 1000, 10**5, 10**8])
def test_log_J_matches_incomplete_gamma(n):
    from scipy.special import gammainc, gammaln

    for frac in [0.3, 0.9, 1.0, 1.2, 3.0]:
        R = frac * math.sqrt(n)
        P = gammainc(n / 2, R * R / 2)
        if P < 1e-300:
            continue
        exact = (n / 2 - 1) * math.log(2) + gammaln(n / 2) + math.log(P)
        got = float(log_J(torch.tensor([R], dtype=F64), torch.zeros(1, dtype=F64), n)[0])
        assert abs(got - exact) <= 1e-12 * max(1.0, abs(exact)), f"n={n} R={R}: {got} vs {exact}"


@given(n=st.integers(1, 40), beta=st.floats(-8, 8), R=st.floats(0.01, 12))
def test_log_J_matches_adaptive_quadrature(n, beta, R):
    from scipy import integrate

    f = lambda y: math.exp(-0.5 * (y + beta) ** 2) * y ** (n - 1)
    # Split at the peak so quad sees the mass.
    peak = min(R, max(0.0, 0.5 * (-beta + math.sqrt(beta * beta + 4 * (n - 1)))))
    pieces = [p for p in (0.0, peak, R) if p <= R]
    val = sum(integrate.quad(f, a, b, epsabs=0, epsrel=1e-12, limit=200)[0]
              for a, b in zip(pieces, pieces[1:]) if b > a)
    got = float(log_J(torch.tensor([R], dtype=F64), torch.tensor([beta], dtype=F64), n)[0])
    assert abs(got - math.log(val)) <= 1e-8, f"n={n} beta={beta} R={R}: {got} vs {math.log(val)}"


def test_gaussian_measure_is_finite_where_lebesgue_is_infinite():
    """S10: a parameter the cost ignores (an input weight on an always-zero pixel) makes Lebesgue
    rays along it unbounded (censored), while the Gaussian prior mass stays finite and <= 0."""
    n = 5
    cost = lambda p: (p[:, :4] ** 2).sum(1)  # parameter 4 is ignored
    anchor = torch.zeros(n, dtype=F64)
    dirs = torch.eye(n, dtype=F64)
    with pytest.warns(CensoredRaysWarning, match="1 of 5 rays"):
        leb = estimate_log_volume(cost, anchor, threshold=1.0, directions=dirs, dtype=F64, max_radius=1e6)
    with pytest.warns(CensoredRaysWarning):
        gau = estimate_log_volume(cost, anchor, threshold=1.0, directions=dirs, dtype=F64, max_radius=1e6,
                                  measure="gaussian", prior_std=1.0)
    assert bool(leb.censored[4]) and leb.n_censored == 1
    assert math.isfinite(gau.log_volume) and gau.log_volume <= 0.0


# ---------------------------------------------------------------- invariances and properties

def _bumpy_cost(n, seed):
    """Non-quadratic but increasing along every ray from 0: sum a_i x_i^2 + (w.x)^4 + |x|_1^3.

    Row-wise sums, not ``p @ w``: a matrix product's kernel (and so its last bits) depends on the
    batch size, and the value-based search follows the values; a cost whose value at a point
    does not depend on what else is in the batch (as ModelCost's) gives batch-independent radii."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.exp(torch.randn(n, generator=gen, dtype=F64))
    w = torch.randn(n, generator=gen, dtype=F64)

    def cost(p):
        a_, w_ = a.to(p), w.to(p)
        return (a_ * p * p).sum(1) + (p * w_).sum(1) ** 4 + p.abs().sum(1) ** 3

    return cost


@given(seed=st.integers(0, 10_000), n=st.integers(1, 30), t1=st.floats(0.01, 1.0), factor=st.floats(1.01, 10.0))
def test_monotone_in_threshold(seed, n, t1, factor):
    cost = _bumpy_cost(n, seed)
    kw = dict(n_directions=16, rtol=1e-6, dtype=F64, seed=seed)
    small = estimate_log_volume(cost, torch.zeros(n, dtype=F64), threshold=t1, **kw)
    large = estimate_log_volume(cost, torch.zeros(n, dtype=F64), threshold=t1 * factor, **kw)
    assert torch.all(large.log_radii >= small.log_radii - 2e-6), "a radius shrank as the threshold grew"
    assert large.log_volume >= small.log_volume - n * 2e-6


@given(seed=st.integers(0, 10_000), n=st.integers(1, 50), bs=st.integers(1, 20))
def test_batch_size_does_not_change_radii(seed, n, bs):
    cost = _bumpy_cost(n, seed)
    kw = dict(threshold=0.5, n_directions=20, rtol=1e-4, seed=seed)
    a = estimate_log_volume(cost, torch.zeros(n), batch_size=20, **kw)
    b = estimate_log_volume(cost, torch.zeros(n), batch_size=bs, **kw)
    assert torch.equal(a.log_radii, b.log_radii), "radii depend on the batch size"
    assert a.log_volume == b.log_volume


def test_direction_k_does_not_depend_on_how_many_are_drawn():
    cost = _bumpy_cost(8, 0)
    a = estimate_log_volume(cost, torch.zeros(8), threshold=0.5, n_directions=10, seed=5)
    b = estimate_log_volume(cost, torch.zeros(8), threshold=0.5, n_directions=25, seed=5)
    assert torch.equal(a.log_radii, b.log_radii[:10])


def test_determinism_and_seed_dependence():
    cost = _bumpy_cost(20, 1)
    runs = [estimate_log_volume(cost, torch.zeros(20), threshold=0.3, n_directions=30, seed=s) for s in (4, 4, 5)]
    assert torch.equal(runs[0].log_radii, runs[1].log_radii)
    assert not torch.equal(runs[0].log_radii, runs[2].log_radii)
    assert runs[0].config["seed"] == 4


def test_non_finite_costs_count_as_outside():
    def cost(p):
        c = (p * p).sum(1)
        return torch.where(p.norm(dim=1) > 0.5, torch.full_like(c, math.nan), c)

    est = estimate_log_volume(cost, torch.zeros(6, dtype=F64), threshold=10.0, n_directions=8,
                              rtol=1e-6, dtype=F64)
    assert torch.all(est.radii <= 0.5) and torch.all(est.radii >= 0.5 * (1 - 1e-6))


def test_censored_rays_are_kept_counted_warned_and_reported():
    cost = lambda p: torch.tanh((p * p).sum(1))  # never reaches 2
    with pytest.warns(CensoredRaysWarning, match="5 of 5 rays"):
        est = estimate_log_volume(cost, torch.zeros(3, dtype=F64), threshold=2.0, n_directions=5,
                                  max_radius=100.0, dtype=F64)
    assert est.n_censored == 5 and est.summary()["censored_fraction"] == 1.0
    assert torch.allclose(est.radii, torch.full((5,), 100.0, dtype=F64))
    assert est.log_volume == pytest.approx(log_unit_ball_volume(3) + 3 * math.log(100.0), abs=1e-9)


def test_summary_fields_consistent():
    cost = _bumpy_cost(10, 2)
    est = estimate_log_volume(cost, torch.zeros(10), threshold=0.5, n_directions=30)
    assert est.max_log_term - math.log(30) <= est.log_volume <= est.max_log_term + 1e-9
    assert 1.0 <= est.ess <= 30.0
    assert est.log10_volume == pytest.approx(est.log_volume / math.log(10))
    assert est.n_cost_evals > 30 and est.seconds > 0
    assert set(est.summary()) >= {"log_volume", "ess", "n_censored"}


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(threshold=0.0), "threshold must be a finite positive"),
        (dict(threshold=-1.0), "threshold must be a finite positive"),
        (dict(threshold=math.nan), "threshold must be a finite positive"),
        (dict(threshold=0.01, anchor=torch.full((4,), 1.0)), "not below the threshold"),
        (dict(threshold=1.0, anchor=torch.tensor([0.0, math.nan, 0, 0])), "non-finite entries"),
        (dict(threshold=1.0, anchor=torch.zeros(2, 2)), "flat \\[n\\] tensor"),
        (dict(threshold=1.0, n_directions=0), "n_directions must be a positive integer"),
        (dict(threshold=1.0, measure="volume"), "measure must be"),
        (dict(threshold=1.0, measure="gaussian"), "needs prior_std"),
        (dict(threshold=1.0, directions="filter"), "needs a model cost"),
        (dict(threshold=1.0, preconditioner=torch.ones(3)), "does not match n_params=4"),
        (dict(threshold=1.0, preconditioner=-torch.ones(4)), "strictly positive"),
        (dict(threshold=1.0, rtol=2.0), "rtol must be in"),
    ],
)
def test_bad_input_is_rejected_with_the_fix(kwargs, match):
    anchor = kwargs.pop("anchor", torch.zeros(4))
    with pytest.raises((ValueError, TypeError), match=match):
        estimate_log_volume(lambda p: (p * p).sum(1), anchor, **kwargs)


def test_cost_with_wrong_output_shape_is_named():
    with pytest.raises(ValueError, match="one cost per parameter vector"):
        estimate_log_volume(lambda p: (p * p).sum(), torch.zeros(4), threshold=1.0)


@pytest.mark.parametrize("device", devices())
def test_devices_agree(device):
    """E3: CPU and (where present) CUDA give the same radii within float32 rounding times the
    bisection's resolution (rtol = 1e-4; tolerance 2e-4 in log-radius)."""
    cost = _bumpy_cost(30, 3)
    ref = estimate_log_volume(cost, torch.zeros(30), threshold=0.4, n_directions=64, rtol=1e-4, seed=2)
    got = estimate_log_volume(cost, torch.zeros(30), threshold=0.4, n_directions=64, rtol=1e-4, seed=2, device=device)
    assert torch.allclose(got.log_radii, ref.log_radii, atol=2e-4), float((got.log_radii - ref.log_radii).abs().max())


# ---------------------------------------------------------------- correctness gaps (issue Q3)

def test_default_rtol_comes_from_a_resolution_in_nats_and_the_bracket_holds_the_truth():
    """A fixed rtol allows n log(1 + rtol) nats of bias; the default is chosen so that the log V
    bracket [inside radii, outside radii] is at most resolution_nats wide, and on a ball the
    exact log-volume lies inside it."""
    n, tau = 20_000, 0.5
    cost = QuadraticCost(torch.ones(n, dtype=F64))
    est = estimate_log_volume(cost, torch.zeros(n, dtype=F64), threshold=tau, n_directions=6, dtype=F64)
    assert est.config["rtol"] == default_rtol(n, F64) == pytest.approx(math.expm1(1.0 / n))
    low, high = est.log_volume_bracket
    assert high - low <= 1.0 + 1e-9, f"bracket {high - low} nats wider than the 1-nat default resolution"
    exact = cost.exact_log_volume(tau)
    assert low <= exact <= high, f"exact {exact} outside the bracket [{low}, {high}]"
    assert est.summary()["log_volume_bracket"] == [low, high]
    coarse = estimate_log_volume(cost, torch.zeros(n, dtype=F64), threshold=tau, n_directions=6, dtype=F64,
                                 resolution_nats=10.0)
    assert coarse.config["rtol"] == pytest.approx(math.expm1(10.0 / n))
    assert coarse.log_volume_bracket[1] - coarse.log_volume_bracket[0] <= 10.0 + 1e-9


def test_threshold_is_compared_in_float64_on_the_returned_value():
    """A float32 cost of float32(0.7) = 0.69999998... is below tau = 0.7 in float64 (the paper's
    `loss.item()` rule), though equal to tau rounded to float32: the ray is inside up to radius 1."""
    f32 = torch.tensor(0.7, dtype=torch.float32)
    assert float(f32) < 0.7  # the premise: float32 rounds 0.7 down

    def cost(p):
        return torch.where(p.norm(dim=1) <= 1.0, f32, torch.ones((), dtype=torch.float32))

    est = estimate_log_volume(cost, torch.zeros(3), threshold=0.7, n_directions=4, rtol=1e-4)
    assert bool((est.radii > 1 - 1e-3).all()) and bool((est.radii <= 1.0 + 1e-6).all()), est.radii


def test_filter_scale_comes_from_the_anchor_argument_or_the_call_raises():
    from torch import nn

    from volbench import reference_log_volume
    from volbench.costs import ModelCost

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(F64)
    x, y = torch.randn(16, 3, dtype=F64), torch.randint(0, 2, (16,))
    cost = ModelCost(model, x, y, loss="ce")
    other = cost.anchor * 1.7  # different weight-row norms
    kw = dict(threshold=50.0, n_directions=6, rtol=1e-6, dtype=F64, seed=1)
    est = estimate_log_volume(cost, other, directions="filter", **kw)
    want = estimate_log_volume(cost, other, preconditioner=cost.filter_scale(bias="row", anchor=other), **kw)
    assert torch.equal(est.log_radii, want.log_radii), "filter scales must be those of the anchor argument"
    own = estimate_log_volume(cost, cost.anchor, directions="filter", **kw)
    assert not torch.equal(est.log_terms, own.log_terms)
    ref = reference_log_volume(cost, other, threshold=50.0, n_directions=4, dtype=F64)
    ref_want = reference_log_volume(cost, other, threshold=50.0, n_directions=4, dtype=F64,
                                    scale=cost.filter_scale(anchor=other))
    assert torch.equal(ref.crossing_index, ref_want.crossing_index)

    class OwnAnchorOnly:  # a cost whose filter_scale cannot be asked about another point
        anchor = cost.anchor

        def __call__(self, p):
            return cost(p)

        def filter_scale(self, bias="unscaled"):
            return cost.filter_scale(bias=bias)

    with pytest.raises(ValueError, match="differs from the anchor"):
        estimate_log_volume(OwnAnchorOnly(), other, directions="filter", **kw)
    with pytest.raises(ValueError, match="differs from the anchor"):
        reference_log_volume(OwnAnchorOnly(), other, threshold=50.0, n_directions=4, dtype=F64)
    assert torch.isfinite(torch.tensor(estimate_log_volume(OwnAnchorOnly(), cost.anchor, directions="filter",
                                                           **kw).log_volume))


def test_a_ray_flat_to_a_max_radius_float32_cannot_hold_is_censored():
    """Regression (S10 hung): a ray inside all the way to a max_radius that rounds down in float32
    (11,379.8) must stop there, censored, instead of proposing max_radius for ever."""
    n = 10

    def cost(p):
        return 0.5 * (p[:, 1:] ** 2).sum(1) + 1e-3  # flat along coordinate 0

    e = torch.zeros(1, n)
    e[0, 0] = 1.0
    max_radius = 11379.81777117698
    assert float(torch.tensor(max_radius, dtype=torch.float32)) < max_radius, "the case needs a value that rounds down"
    with pytest.warns(CensoredRaysWarning):
        est = estimate_log_volume(cost, torch.zeros(n), threshold=0.1, directions=e, max_radius=max_radius)
    assert est.summary()["censored_fraction"] == 1.0
    assert est.log_volume == pytest.approx(log_unit_ball_volume(n) + n * math.log(max_radius), rel=1e-6)
