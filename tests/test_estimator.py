"""Oracle tests of ``estimate_log_volume``: exact volumes of balls and ellipsoids, Gaussian
masses from the (noncentral) chi-square law, the main paper's 2-D closed form, and invariances.

Tolerances: radii are found to relative precision rtol, so a log-volume built from n-th powers
of radii is exact to n * rtol nats, plus float64 rounding, which is derived (``radius_rounding``,
``sum_rounding``: Higham's gamma_n), never a fixed epsilon; Monte Carlo checks use a stated number
of standard errors. Comparisons across batch sizes and devices: the test cost below is evaluated
by elementwise IEEE operations in a fixed order (the same bits for a point whatever the batch), and
CPU against GPU brackets are compared in the cost domain within a derived bound.
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
from volbench.costs.rounding import gamma, unit_roundoff
from volbench.crosscheck.oracles import HyperbolicBand, QuadraticCost, gaussian_log_mass_of_ball, random_rotation
from volbench.estimator.agreement import bracket_gaps, gap_end_costs, plain_kernel
from volbench.estimator.core import default_rtol
from volbench.estimator.directions import DirectionSampler
from volbench.estimator.measures import log_J
from volbench.estimator.result import CensoredRaysWarning

F64 = torch.float64


def radius_rounding(n: int, dtype=F64, terms: int | None = None) -> float:
    """Worst-case relative error of a radius at which a float quadratic 0.5 sum_i a_i p_i^2 over n
    coordinates is judged inside or outside (``terms``: the rounding count of the cost when it is
    not that diagonal form): p = t v is formed with one rounding and v = g / ||g|| carries ||g||'s
    gamma_n and the division's; p * p * a adds two per term and the sum n - 1, so the cost is
    within gamma_{n+5} relative of its exact value at t ||v|| = t, and since cost ~ t^2 the radius
    within half of that; gamma_{n+6} rounds it up."""
    return gamma(n + 6 if terms is None else terms, dtype)


def sum_rounding(*magnitudes: float, count: int = 8) -> float:
    """float64 rounding of a log-volume assembled from a few terms (a log-mean-exp over K rays, the
    unit ball's log-volume, n log r): at most ``count`` roundings of the largest magnitudes
    involved, gamma_count * sum |m| (``count`` counts the operations: a K-term log-sum-exp is K + 3)."""
    return gamma(count) * (sum(abs(m) for m in magnitudes) + 1.0)


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
    rr = radius_rounding(n)
    assert torch.all(est.log_radii <= math.log(R) + rr), "a returned radius lies outside the ball"
    assert torch.all(est.log_radii >= math.log(R) - math.log1p(rtol) - rr), f"radius off by more than rtol={rtol}"
    slack = n * rr + sum_rounding(exact, n * math.log(R), count=16 + 3)
    assert abs(est.log_volume - exact) <= n * rtol + slack, (
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
    # p = t P u: one more rounding per coordinate (the preconditioner's product) than radius_rounding.
    rr = radius_rounding(n, terms=n + 8)
    slack = sum_rounding(exact, float(est.log_terms.abs().max()), count=12 + 3)
    assert spread <= 2 * n * (rtol + rr) + 2 * slack, f"exact preconditioner must give zero variance; spread {spread}"
    assert abs(est.log_volume - exact) <= n * (rtol + rr) + slack, f"{est.log_volume} vs exact {exact}"


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
    # Here the cost is 0.5 (p A) . p: gamma_{2n+8} of |p|^T |A| |p| <= ||p||^2 ||A||_F
    # <= sqrt(n) cond(A) p^T A p, halved in the radius; P = A^(-1/2) from eigh (backward stable)
    # is within gamma_n sqrt(cond(A)) relative, which moves every log-term by n times that.
    ev = torch.linalg.eigvalsh(A)
    cond = float(ev.max() / ev.min())
    rr = radius_rounding(n, terms=2 * n + 8) * math.sqrt(n) * cond / 2 + n * gamma(n) * math.sqrt(cond)
    slack = sum_rounding(exact, float(est.log_terms.abs().max()), count=10 + 3)
    assert float(est.log_terms.max() - est.log_terms.min()) <= 2 * n * (rtol + rr) + 2 * slack
    assert abs(est.log_volume - exact) <= n * (rtol + rr) + slack, f"{est.log_volume} vs exact {exact}"
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
    # A recorded point t v has norm t ||v|| = t (1 +- gamma_{n+2}) (v = g / ||g||, the norm's own
    # gamma_n), far below the search's steps (>= rtol apart), so this identifies the point.
    ident = radius_rounding(n)
    for lr, lu in zip(est.log_radii.tolist(), est.log_radii_upper.tolist()):
        r, u = math.exp(lr), math.exp(lu)
        hit = (norms - r).abs() <= ident * r
        assert hit.any() and bool((vals[hit] < tau).all()), f"radius {r} was not evaluated inside"
        hit_u = (norms - u).abs() <= ident * u
        assert hit_u.any() and bool((vals[hit_u] >= tau).all()), f"upper radius {u} not evaluated outside"
        assert u / r - 1 <= rtol + gamma(4) * (1 + abs(lr) + abs(lu)), "exp of two logs: a few roundings"
    exact = QuadraticCost(torch.ones(n, dtype=F64)).exact_log_volume(tau)
    slack = n * radius_rounding(n) + sum_rounding(exact, float(est.log_terms.abs().max()), count=20 + 3)
    assert exact - n * rtol - slack <= est.log_volume <= exact + slack, f"{est.log_volume} vs {exact}"


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

def _fold(v: torch.Tensor) -> torch.Tensor:
    """sum over dim 1 as n - 1 elementwise additions in column order: each row's bits depend on that
    row alone, on every machine, batch size and thread count (a reduction kernel, or a matrix
    product ``p @ w``, may block and so round differently for another batch shape)."""
    out = v[:, 0].clone()
    for j in range(1, v.shape[1]):
        out = out + v[:, j]
    return out


class _BumpyCost:
    """Non-quadratic but increasing along every ray from 0: sum a_i x_i^2 + (w.x)^4 + |x|_1^3, from
    elementwise IEEE operations only (products for the powers, ``_fold`` for the sums), so a point's
    value is the same whatever else is in the batch: radii must then be batch-independent bit for bit
    (the same arithmetic per point). ``rounding_bound`` is its derived worst-case bound."""

    def __init__(self, n, seed):
        gen = torch.Generator().manual_seed(seed)
        self.a = torch.exp(torch.randn(n, generator=gen, dtype=F64))
        self.w = torch.randn(n, generator=gen, dtype=F64)
        self.n = n

    def __call__(self, p):
        a_, w_ = self.a.to(p), self.w.to(p)
        s2 = _fold(p * w_)
        s3 = _fold(p.abs())
        q = s2 * s2
        return _fold(a_ * p * p) + q * q + s3 * s3 * s3

    def rounding_bound(self, points: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Bound on |cost_A(p) - cost_B(p)| for two evaluations in ``dtype`` at ``points`` formed as
        t v (one rounding) along unit directions normalised on different devices (two more: the
        norm and the division), float64 [m]. Coordinates carry gamma_3; a_i p_i^2 two more
        roundings and the fold n - 1: gamma_{n+7} of the sum; sum p_i w_i: gamma_{n+3} of
        sum |p_i w_i|, raised to the 4th power by two products; sum |p_i|: gamma_{n+2}, cubed by two
        products; the two final additions gamma_2. Twice one evaluation's worst case."""
        g = lambda k: gamma(k, dtype)  # noqa: E731
        p = points.to(F64)
        n = self.n
        s1 = (self.a * p * p).sum(1)
        s2, a2 = (p * self.w).sum(1).abs(), (p * self.w).abs().sum(1)
        s3 = p.abs().sum(1)
        d2, d3 = g(n + 3) * a2, g(n + 2) * s3
        e = (g(n + 7) * s1 + ((s2 + d2) ** 4 - s2 ** 4) + g(2) * (s2 + d2) ** 4
             + ((s3 + d3) ** 3 - s3 ** 3) + g(2) * (s3 + d3) ** 3)
        e = e + g(2) * (s1 + (s2 + d2) ** 4 + (s3 + d3) ** 3 + e)
        return 2 * e


def _bumpy_cost(n, seed):
    return _BumpyCost(n, seed)


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
    # The NaN edge is where the computed ||t v|| passes 0.5: t = 0.5 to within radius_rounding(6).
    rr = radius_rounding(6)
    assert torch.all(est.radii <= 0.5 * (1 + rr)) and torch.all(est.radii >= 0.5 / (1 + 1e-6) * (1 - rr))


def test_censored_rays_are_kept_counted_warned_and_reported():
    cost = lambda p: torch.tanh((p * p).sum(1))  # never reaches 2
    with pytest.warns(CensoredRaysWarning, match="5 of 5 rays"):
        est = estimate_log_volume(cost, torch.zeros(3, dtype=F64), threshold=2.0, n_directions=5,
                                  max_radius=100.0, dtype=F64)
    assert est.n_censored == 5 and est.summary()["censored_fraction"] == 1.0
    # Censored at max_radius = 100 (exact in float32): radius exp(log 100), a few roundings of log 100.
    assert torch.allclose(est.radii, torch.full((5,), 100.0, dtype=F64), rtol=gamma(4) * (1 + math.log(100.0)), atol=0)
    expected = log_unit_ball_volume(3) + 3 * math.log(100.0)
    assert est.log_volume == pytest.approx(expected, abs=sum_rounding(expected, 3 * math.log(100.0), count=5 + 3))


def test_summary_fields_consistent():
    cost = _bumpy_cost(10, 2)
    est = estimate_log_volume(cost, torch.zeros(10), threshold=0.5, n_directions=30)
    slack = sum_rounding(est.max_log_term, count=30 + 3)  # a 30-term log-mean-exp in float64
    assert est.max_log_term - math.log(30) - slack <= est.log_volume <= est.max_log_term + slack
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
    """E3: CPU and (where present) CUDA agree on every ray's first exit: on the CPU the same
    arithmetic twice, bit for bit; CUDA against the CPU by brackets that overlap, or whose gap has
    costs within the cost's derived rounding bound of tau under both devices (as E3 decides)."""
    cost = _bumpy_cost(30, 3)
    tau, K = 0.4, 64
    ref = estimate_log_volume(cost, torch.zeros(30), threshold=tau, n_directions=K, rtol=1e-4, seed=2)
    got = estimate_log_volume(cost, torch.zeros(30), threshold=tau, n_directions=K, rtol=1e-4, seed=2, device=device)
    if device == "cpu":
        assert torch.equal(got.log_radii, ref.log_radii), "the same computation twice"
        return
    d, _ = DirectionSampler(30, seed=2).batch(torch.arange(K))
    zero = torch.zeros(30)
    gaps = bracket_gaps(got.log_radii.exp(), got.log_radii_upper.exp(), ref.log_radii.exp(), ref.log_radii_upper.exp())
    kernels = {"cpu": plain_kernel(cost, zero, d), device: plain_kernel(cost, zero.to(device), d.to(device))}
    records = gap_end_costs(gaps, kernels, origin=zero, directions=d, tau=tau,
                            bound=lambda pts, o: cost.rounding_bound(pts, torch.float32))
    bad = [r for r in records if not r["ratio"] <= 1]
    assert not bad, f"{device} and cpu brackets disagree beyond rounding: {bad[:2]}"


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
    # Each ray's log(hi / lo) <= log1p(rtol) = 1 / n as the search computes it; the two log-mean-exps
    # and the n log r terms round within a few ulp of their magnitudes.
    slack = sum_rounding(low, high, count=6 + 3)
    assert high - low <= 1.0 + slack, f"bracket {high - low} nats wider than the 1-nat default resolution"
    exact = cost.exact_log_volume(tau)
    assert low <= exact <= high, f"exact {exact} outside the bracket [{low}, {high}]"
    assert est.summary()["log_volume_bracket"] == [low, high]
    coarse = estimate_log_volume(cost, torch.zeros(n, dtype=F64), threshold=tau, n_directions=6, dtype=F64,
                                 resolution_nats=10.0)
    assert coarse.config["rtol"] == pytest.approx(math.expm1(10.0 / n))
    low, high = coarse.log_volume_bracket
    assert high - low <= 10.0 + sum_rounding(low, high, count=6 + 3)


def test_threshold_is_compared_in_float64_on_the_returned_value():
    """A float32 cost of float32(0.7) = 0.69999998... is below tau = 0.7 in float64 (the paper's
    `loss.item()` rule), though equal to tau rounded to float32: the ray is inside up to radius 1."""
    f32 = torch.tensor(0.7, dtype=torch.float32)
    assert float(f32) < 0.7  # the premise: float32 rounds 0.7 down

    def cost(p):
        return torch.where(p.norm(dim=1) <= 1.0, f32, torch.ones((), dtype=torch.float32))

    est = estimate_log_volume(cost, torch.zeros(3), threshold=0.7, n_directions=4, rtol=1e-4)
    # The edge is where the float32 ||t v|| passes 1: t = 1 within radius_rounding in float32.
    rr = radius_rounding(3, dtype=torch.float32)
    assert bool((est.radii > 1 - 1e-3).all()) and bool((est.radii <= 1.0 + rr).all()), est.radii


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
    # Censored at max_radius rounded down to float32 (the point the search can evaluate): n log r is
    # off by at most n u32, plus the float64 assembly.
    expected = log_unit_ball_volume(n) + n * math.log(max_radius)
    tol = n * 2 * unit_roundoff(torch.float32) + sum_rounding(expected, n * math.log(max_radius), count=5 + 3)
    assert est.log_volume == pytest.approx(expected, abs=tol)
