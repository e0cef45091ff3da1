"""Tests of volbench.function_space.nngp: the arc-cosine NNGP kernel and EP for GP classification.

Oracles: a plain scalar loop over the kernel recursion; Monte Carlo over random finite-width
networks; exact Gaussian orthant probabilities (closed forms for m <= 3, scipy's Genz integration
for m = 4..6); a naive textbook EP (dense inverses, R&W eq. 3.65 verbatim); GPy's EP if installed.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import log_ndtr
from scipy.stats import multivariate_normal

from volbench.function_space.nngp import (
    ZHANG_FCN_KERNEL,
    EPResult,
    NNGPKernelConfig,
    ep_log_marginal,
    log_prior_probability_of_function,
    nngp_kernel,
)

F64 = torch.float64
U64 = 2.0**-53  # unit roundoff of float64
#: ep_log_marginal's default kernel_rtol for float64 kernels: the library's derived bound on the
#: relative rounding of a kernel entry (|dK_ij| <= r sqrt(K_ii K_jj); volbench.function_space.nngp, gamma_d of the
#: d-term inner product, the arc-cosine layers not amplifying it). Two computations of an entry in
#: other orders differ by at most twice that.
KERNEL_RTOL = 4096 * U64


def kernel_tolerance(K: torch.Tensor, diag1: torch.Tensor | None = None, diag2: torch.Tensor | None = None):
    """2 r sqrt(K_ii K_jj) per entry: two evaluations of an arc-cosine kernel entry, each within the
    library's declared relative rounding r = KERNEL_RTOL of the scale sqrt(K_ii K_jj)."""
    d1 = K.diagonal() if diag1 is None else diag1
    d2 = d1 if diag2 is None else diag2
    return 2 * KERNEL_RTOL * torch.sqrt(d1[:, None].abs() * d2[None, :].abs())


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------
# Kernel
# ----------------------------------------------------------------------------------------------


def _kernel_loop(x1: list[float], x2: list[float], depth: int, sw: float, sb: float) -> float:
    """Plain-Python arc-cosine recursion for one pair of inputs (the slow oracle)."""
    d = len(x1)
    k12 = sb**2 + sw**2 * sum(a * b for a, b in zip(x1, x2)) / d
    k11 = sb**2 + sw**2 * sum(a * a for a in x1) / d
    k22 = sb**2 + sw**2 * sum(b * b for b in x2) / d
    for _ in range(depth):
        c = max(-1.0, min(1.0, k12 / math.sqrt(k11 * k22)))
        t = math.acos(c)
        k12 = sb**2 + sw**2 / (2 * math.pi) * math.sqrt(k11 * k22) * (math.sin(t) + (math.pi - t) * c)
        k11 = sb**2 + sw**2 * k11 / 2
        k22 = sb**2 + sw**2 * k22 / 2
    return k12


@pytest.mark.parametrize("depth", [0, 1, 2, 3, 5])
def test_kernel_matches_plain_loop_oracle(depth):
    g = _gen(depth)
    X1 = torch.randn(5, 4, generator=g, dtype=F64)
    X2 = torch.randn(3, 4, generator=g, dtype=F64)
    X2[0] = X1[0]  # an identical pair: theta = 0 exercises the clamp
    X2[1] = -X1[1]  # an antiparallel pair: theta = pi
    sw, sb = 1.3, 0.4
    K = nngp_kernel(X1, X2, depth=depth, sigma_w=sw, sigma_b=sb)
    oracle = torch.tensor([[_kernel_loop(a.tolist(), b.tolist(), depth, sw, sb) for b in X2] for a in X1], dtype=F64)
    tol = kernel_tolerance(K, nngp_kernel(X1, depth=depth, sigma_w=sw, sigma_b=sb).diagonal(),
                           nngp_kernel(X2, depth=depth, sigma_w=sw, sigma_b=sb).diagonal())
    err = float(((K - oracle).abs() / tol).max())
    assert err <= 1, f"kernel differs from the scalar recursion by {err:.2g} x the derived rounding bound"


def _mc_kernels(X, depth, sw, sb, width, n_nets, gen):
    """Per-network empirical kernels sigma_w^2 / n * h(x).h(x') + sigma_b^2 (Zhang et al. eq. 6) of
    n_nets random ReLU networks of the given width; each is unbiased for the finite-width kernel."""
    m, d = X.shape
    h, fan = X.expand(n_nets, m, d), d
    for _ in range(depth):
        W = torch.randn(n_nets, fan, width, generator=gen, dtype=F64) * (sw / math.sqrt(fan))
        b = torch.randn(n_nets, 1, width, generator=gen, dtype=F64) * sb
        h, fan = torch.relu(torch.baddbmm(b, h, W)), width
    return sb**2 + sw**2 * h @ h.transpose(1, 2) / fan


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_kernel_matches_monte_carlo_over_wide_random_networks(depth):
    g = _gen(100 + depth)
    X = torch.randn(6, 5, generator=g, dtype=F64)
    X[1] = 0.9 * X[0] + 0.1 * X[1]  # a strongly correlated pair, where the recursion matters most
    sw, sb = math.sqrt(2.0), 1.0
    K = nngp_kernel(X, depth=depth, sigma_w=sw, sigma_b=sb)
    width, n_nets = 256, 256
    Ks = _mc_kernels(X, depth, sw, sb, width, n_nets, g)
    mean, se = Ks.mean(0), Ks.std(0) / math.sqrt(n_nets)
    z = float(((mean - K).abs() / se).max())
    rel = float(((mean - K).abs() / K.diagonal().max()).max())
    # Measured over 5 repeats per depth: max z <= 3.7 and max relative error <= 0.019 (the finite
    # width-256 bias, O(1/width), is below this noise).
    assert z < 5.0, f"Monte Carlo kernel off by {z:.1f} standard errors (tolerance 5 SE over 21 entries)"
    assert rel < 0.04, f"Monte Carlo kernel off by {rel:.3f} of the largest variance (tolerance 0.04)"


@settings(deadline=None, max_examples=25)
@given(
    seed=st.integers(0, 2**31 - 1),
    m=st.integers(1, 12),
    d=st.integers(1, 8),
    depth=st.integers(0, 4),
    sw=st.floats(0.1, 3.0),
    sb=st.floats(0.0, 2.0),
    duplicate=st.booleans(),
)
def test_kernel_is_symmetric_psd_and_block_consistent(seed, m, d, depth, sw, sb, duplicate):
    X = torch.randn(m, d, generator=_gen(seed), dtype=F64)
    if duplicate and m > 1:
        X[-1] = X[0]  # duplicated inputs make K singular but still PSD
    K = nngp_kernel(X, depth=depth, sigma_w=sw, sigma_b=sb)
    assert torch.equal(K, K.T), "kernel of X with itself must be exactly symmetric"
    eig = torch.linalg.eigvalsh(K)
    scale = float(K.diagonal().max())
    assert float(eig.min()) >= -1e-10 * scale, \
        f"kernel not PSD: min eigenvalue {float(eig.min()):.3e} (tol 1e-10 x max diag)"
    k = m // 2
    if 0 < k < m:
        cross = nngp_kernel(X[:k], X[k:], depth=depth, sigma_w=sw, sigma_b=sb)
        # another matrix product's shape (another order): within the derived bound of each entry
        tol = kernel_tolerance(K)[:k, k:]
        assert bool(((cross - K[:k, k:]).abs() <= tol).all()), "cross kernel differs from the joint kernel's block"
    # Diagonal in closed form: K^L(x, x) = sb^2 sum_{j<L} (sw^2/2)^j + (sw^2/2)^L (sb^2 + sw^2 |x|^2 / d).
    q = sw**2 / 2
    diag = sum(sb**2 * q**j for j in range(depth)) + q**depth * (sb**2 + sw**2 * (X * X).sum(1) / d)
    assert torch.allclose(K.diagonal(), diag, rtol=2 * KERNEL_RTOL, atol=0), \
        "diagonal must follow the closed form (within the kernel's derived rounding)"


def test_kernel_dtype_device_and_config():
    X = torch.randn(4, 3, generator=_gen(0))
    assert nngp_kernel(X, depth=1, sigma_w=1.0, sigma_b=0.0).dtype == F64, "default computation dtype is float64"
    K32 = nngp_kernel(X, depth=1, sigma_w=1.0, sigma_b=0.0, dtype=None)
    assert K32.dtype == torch.float32, "dtype=None keeps the input's floating dtype"
    K64 = ZHANG_FCN_KERNEL.kernel(X)
    ref = nngp_kernel(X, depth=2, sigma_w=math.sqrt(2.0), sigma_b=1.0)
    assert torch.equal(K64, ref), "ZHANG_FCN_KERNEL is depth 2, sigma_w = sqrt(2), sigma_b = 1"
    assert dataclasses.asdict(ZHANG_FCN_KERNEL) == {"depth": 2, "sigma_w": math.sqrt(2.0), "sigma_b": 1.0}
    with pytest.raises(dataclasses.FrozenInstanceError):
        ZHANG_FCN_KERNEL.depth = 3  # type: ignore[misc]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_kernel_and_ep_on_cuda_match_cpu():
    X = torch.randn(20, 7, generator=_gen(1), dtype=F64)
    y = torch.where(X[:, 0] > 0, 1.0, -1.0).to(F64)
    K_cpu = ZHANG_FCN_KERNEL.kernel(X)
    K_gpu = ZHANG_FCN_KERNEL.kernel(X, device="cuda")
    assert K_gpu.device.type == "cuda"
    assert bool(((K_gpu.cpu() - K_cpu).abs() <= kernel_tolerance(K_cpu)).all()), \
        "CUDA kernel equals CPU kernel within the derived rounding"
    a = ep_log_marginal(K_cpu, y).log_marginal
    b = ep_log_marginal(K_gpu, y.cuda()).log_marginal
    assert abs(a - b) < 1e-8, f"EP on CUDA differs from CPU by {abs(a - b):.2e} (tol 1e-8)"


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"X1": torch.zeros(3)}, ValueError, "2-D"),
        ({"X1": np.zeros((3, 2))}, TypeError, "torch.Tensor"),
        ({"X1": torch.zeros(3, 2), "X2": torch.zeros(2, 3)}, ValueError, "features"),
        ({"X1": torch.full((2, 2), float("nan"))}, ValueError, "NaN"),
        ({"X1": torch.zeros(3, 2), "depth": -1}, ValueError, "depth"),
        ({"X1": torch.zeros(3, 2), "sigma_w": -1.0}, ValueError, "sigma_w"),
    ],
)
def test_kernel_rejects_bad_input(kwargs, exc, match):
    args = {"depth": 1, "sigma_w": 1.0, "sigma_b": 1.0, **kwargs}
    with pytest.raises(exc, match=match):
        nngp_kernel(args.pop("X1"), args.pop("X2", None), **args)
    with pytest.raises(ValueError, match="depth"):
        NNGPKernelConfig(depth=1.5)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# Expectation propagation
# ----------------------------------------------------------------------------------------------


def _exact_log_orthant(K: np.ndarray, y: np.ndarray) -> float:
    """log P(y_i f_i > 0 for all i), f ~ N(0, K): closed forms for m <= 3, scipy (Genz) beyond."""
    C = K * np.outer(y, y)
    s = np.sqrt(np.diag(C))
    R = C / np.outer(s, s)
    m = len(y)
    if m == 1:
        return math.log(0.5)
    if m == 2:
        return math.log(0.25 + math.asin(R[0, 1]) / (2 * math.pi))
    if m == 3:
        return math.log(0.125 + (math.asin(R[0, 1]) + math.asin(R[0, 2]) + math.asin(R[1, 2])) / (4 * math.pi))
    # P(y f > 0) = P(-y f < 0) = cdf at 0 of N(0, C). abseps 1e-6 gives log errors below 1e-3 here.
    p = multivariate_normal.cdf(np.zeros(m), cov=C, abseps=1e-6, releps=0, maxpts=10**6 * m,
                                rng=np.random.default_rng(0))
    return math.log(p)


def _random_kernel(kind: str, m: int, g: torch.Generator) -> torch.Tensor:
    if kind == "wishart":
        A = torch.randn(m, m + 2, generator=g, dtype=F64)
        return A @ A.T / (m + 2) + 0.05 * torch.eye(m, dtype=F64)
    X = torch.randn(m, 10, generator=g, dtype=F64)
    return ZHANG_FCN_KERNEL.kernel(X)  # correlations ~0.6-0.95: the hard case for EP


def _labels(m: int, g: torch.Generator) -> torch.Tensor:
    return (torch.randint(0, 2, (m,), generator=g) * 2 - 1).to(F64)


@settings(deadline=None, max_examples=30)
@given(var=st.floats(1e-3, 1e3), label=st.sampled_from([-1.0, 1.0]), lik=st.sampled_from(["heaviside", "probit"]))
def test_ep_is_exact_for_one_point(var, label, lik):
    res = ep_log_marginal(torch.tensor([[var]], dtype=F64), torch.tensor([label], dtype=F64), likelihood=lik)
    assert res.converged and abs(res.log_marginal - math.log(0.5)) < 1e-12, (
        f"m = 1: P(y f > 0) = 1/2 for any variance; EP gave {res.log_marginal} (tol 1e-12)"
    )


def test_ep_is_exact_for_independent_points():
    K = torch.diag(torch.tensor([0.1, 1.0, 7.0, 30.0], dtype=F64))
    for lik in ("heaviside", "probit"):
        res = ep_log_marginal(K, torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=F64), likelihood=lik)
        assert abs(res.log_marginal - 4 * math.log(0.5)) < 1e-12, f"diagonal K ({lik}): exact 4 log 1/2 (tol 1e-12)"


SCHEDULES = ("parallel", "sequential")


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("kind", ["wishart", "nngp"])
def test_ep_close_to_exact_orthant_probability_closed_form(m, kind, schedule):
    g = _gen(10 * m + (kind == "nngp"))
    errors = []
    for _ in range(20):
        K, y = _random_kernel(kind, m, g), _labels(m, g)
        res = ep_log_marginal(K, y, tol=1e-10, max_iter=200, schedule=schedule)
        assert res.converged, f"EP did not converge in 200 sweeps: history {res.history[-3:]}"
        errors.append(res.log_marginal - _exact_log_orthant(K.numpy(), y.numpy()))
    worst = max(abs(e) for e in errors)
    # EP is approximate for m >= 2. Measured on these 20 kernels: worst 0.027 (wishart, m=2),
    # 0.052 (wishart, m=3), 0.034 (nngp, m=2), 0.041 (nngp, m=3) nats; on 200 other kernels per
    # case the worst was 0.037 and the median 0.002. Bound 0.1 nats (2x the worst seen).
    assert worst < 0.1, f"EP vs exact orthant log-probability: worst error {worst:.3f} nats (tolerance 0.1)"


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("m", [4, 5, 6])
def test_ep_close_to_exact_orthant_probability_scipy(m, schedule):
    g = _gen(1000 + m)
    for kind in ("wishart", "nngp"):
        K, y = _random_kernel(kind, m, g), _labels(m, g)
        res = ep_log_marginal(K, y, tol=1e-10, max_iter=200, schedule=schedule)
        exact = _exact_log_orthant(K.numpy(), y.numpy())
        err = res.log_marginal - exact
        # Measured: these six cases are within 0.022 nats; on 25 other kernels per (kind, m) the
        # worst was 0.056 nats (nngp, m = 6). scipy's own integration error is below 1e-3 nats.
        # Bound 0.1 nats, as for m <= 3.
        assert abs(err) < 0.1, f"{kind} m={m}: EP {res.log_marginal:.4f} vs exact {exact:.4f} (tolerance 0.1 nats)"


def _naive_ep(K: np.ndarray, y: np.ndarray, likelihood: str, sweeps: int = 60) -> float:
    """Textbook EP (R&W Sec. 3.6): dense inverse after every site update, eq. 3.65 verbatim."""
    m = len(y)
    tau, nu = np.zeros(m), np.zeros(m)
    Kinv = np.linalg.inv(K)
    Sigma, mu = K.copy(), np.zeros(m)

    def tilted(i, mc, vc):
        s = math.sqrt(1 + vc) if likelihood == "probit" else math.sqrt(vc)
        z = y[i] * mc / s
        lz = float(log_ndtr(z))
        r = math.exp(-0.5 * z * z - 0.5 * math.log(2 * math.pi) - lz)
        return lz, mc + y[i] * vc * r / s, vc - vc * vc * r * (z + r) / (s * s)

    for _ in range(sweeps):
        for i in range(m):
            vc = 1.0 / (1.0 / Sigma[i, i] - tau[i])
            mc = vc * (mu[i] / Sigma[i, i] - nu[i])
            _, mh, vh = tilted(i, mc, vc)
            tau[i] = 1.0 / vh - 1.0 / vc
            nu[i] = mh / vh - mc / vc
            Sigma = np.linalg.inv(Kinv + np.diag(tau))
            mu = Sigma @ nu
    vt, mt = 1.0 / tau, nu / tau  # site variances and means
    vc = 1.0 / (1.0 / np.diag(Sigma) - tau)
    mc = vc * (mu / np.diag(Sigma) - nu)
    logz = sum(tilted(i, mc[i], vc[i])[0] for i in range(m))
    A = K + np.diag(vt)
    return float(
        -0.5 * np.linalg.slogdet(A)[1]
        - 0.5 * mt @ np.linalg.solve(A, mt)
        + logz
        + 0.5 * np.log(vc + vt).sum()
        + ((mc - mt) ** 2 / (2 * (vc + vt))).sum()
    )


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("likelihood", ["heaviside", "probit"])
def test_ep_matches_naive_textbook_ep(likelihood, schedule):
    g = _gen(7)
    for m in (2, 5, 12):
        K, y = _random_kernel("nngp", m, g), _labels(m, g)
        ours = ep_log_marginal(K, y, likelihood=likelihood, tol=1e-12, max_iter=500, schedule=schedule)
        naive = _naive_ep(K.numpy(), y.numpy(), likelihood)
        assert abs(ours.log_marginal - naive) < 1e-8, (
            f"m={m}: stable EP {ours.log_marginal:.10f} vs textbook EP {naive:.10f} (tolerance 1e-8 nats)"
        )


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_probit_on_k_equals_heaviside_on_k_plus_identity(schedule):
    g = _gen(3)
    for m in (3, 10, 25):
        K, y = _random_kernel("nngp", m, g), _labels(m, g)
        probit = ep_log_marginal(K, y, likelihood="probit", tol=1e-12, max_iter=500, schedule=schedule)
        heavi = ep_log_marginal(K + torch.eye(m, dtype=F64), y, likelihood="heaviside", tol=1e-12, max_iter=500,
                                schedule=schedule)
        # Same model (Phi(y f) = P(y (f + e) > 0)) and, as measured, the same EP fixed point: ~1e-14.
        diff = abs(probit.log_marginal - heavi.log_marginal)
        assert diff < 1e-9, f"m={m}: probit on K and Heaviside on K + I differ by {diff:.2e} nats (tol 1e-9)"


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_ep_matches_gpy(schedule):
    GPy = pytest.importorskip("GPy")
    from GPy.likelihoods.link_functions import Heaviside, Probit

    g = _gen(11)
    for m in (2, 5, 30):
        K, y = _random_kernel("nngp", m, g), _labels(m, g)
        for lik, link in (("heaviside", Heaviside()), ("probit", Probit())):
            model = GPy.core.GP(
                np.arange(m, dtype=float)[:, None],  # Precomputed kernels index K by integer inputs
                ((y.numpy() + 1) / 2)[:, None],
                kernel=GPy.kern.Precomputed(1, K.numpy().copy()),
                likelihood=GPy.likelihoods.Bernoulli(gp_link=link),
                inference_method=GPy.inference.latent_function_inference.EP(
                    parallel_updates=schedule == "parallel"),
            )
            theirs = float(model.log_likelihood())
            ours = ep_log_marginal(K, y, likelihood=lik, tol=1e-9, schedule=schedule).log_marginal
            # GPy stops at site changes < 1e-6; measured agreement (GPy 1.15.0) <= 1e-8 nats.
            assert abs(ours - theirs) < 1e-6, f"m={m} {lik}: ours {ours:.9f} vs GPy {theirs:.9f} (tol 1e-6 nats)"


def test_log_prior_probability_of_function_combines_kernel_and_ep():
    g = _gen(5)
    X = torch.randn(15, 9, generator=g)
    y = torch.where(X[:, 0] + 0.3 * X[:, 1] > 0, 1.0, -1.0)
    res = log_prior_probability_of_function(X, y, **dataclasses.asdict(ZHANG_FCN_KERNEL))
    ref = ep_log_marginal(ZHANG_FCN_KERNEL.kernel(X), y.to(F64))
    assert isinstance(res, EPResult) and res.likelihood == "heaviside"
    assert res.log_marginal == ref.log_marginal, "convenience must equal nngp_kernel + ep_log_marginal exactly"
    assert res.converged and -15 * math.log(2) < res.log_marginal < 0, \
        "a labelling's log-probability lies in (log 2^-m, 0)"
    assert res.site_precision.min() >= 0 and res.posterior_var.max() <= ZHANG_FCN_KERNEL.kernel(X).diagonal().max()
    assert len(res.history) == res.iterations and res.config["m"] == 15


def test_ep_contradictory_duplicates_raise_clear_error_for_heaviside_only():
    X = torch.randn(6, 5, generator=_gen(0), dtype=F64)
    X[5] = X[0]  # identical inputs ...
    y = torch.tensor([1.0, 1.0, 1.0, -1.0, 1.0, -1.0], dtype=F64)  # ... with different labels: P(f) = 0
    with pytest.raises(ValueError, match="zero probability.*inputs 0 and 5 are identical"):
        log_prior_probability_of_function(X, y, **dataclasses.asdict(ZHANG_FCN_KERNEL), max_iter=200)
    for schedule in SCHEDULES:  # the kernel-level check, for callers that pass K (cases/test_zhang.py)
        with pytest.raises(ValueError, match=r"zero probability.*sites 0 and 5 \(correlation 1 - "):
            ep_log_marginal(ZHANG_FCN_KERNEL.kernel(X), y, schedule=schedule)
    res = log_prior_probability_of_function(X, y, **dataclasses.asdict(ZHANG_FCN_KERNEL), likelihood="probit")
    assert res.converged and math.isfinite(res.log_marginal), "probit (K + I) has positive probability"



def test_contradictory_pair_is_caught_for_every_rounding_of_the_kernel():
    """The zero-probability check must not depend on how a machine rounds K (the original test
    passed on AMD and failed on Intel/MKL). Exact duplicates at MNIST's input size, then every
    kernel entry moved by up to the declared relative rounding r = kernel_rtol, at random and at
    the worst corner (off-diagonal down, diagonal up): every version must raise."""
    g = _gen(30)
    X = torch.rand(8, 784, generator=g, dtype=F64)
    X[7] = X[2]
    y = _labels(8, g)
    y[7] = -y[2]
    K = ZHANG_FCN_KERNEL.kernel(X)
    s = K.diagonal().sqrt()
    one_minus_rho = float(1 - K[2, 7] / (s[2] * s[7]))
    # Higham's bound for a 784-term inner product, 784 u, plus a few u per layer, is far inside r.
    assert abs(one_minus_rho) <= 784 * U64 + 64 * U64 < KERNEL_RTOL, f"duplicates' 1 - rho = {one_minus_rho:.2e}"
    worst = K.clone()
    worst[2, 7] = worst[7, 2] = K[2, 7] - KERNEL_RTOL * s[2] * s[7]
    worst[2, 2], worst[7, 7] = K[2, 2] * (1 + KERNEL_RTOL), K[7, 7] * (1 + KERNEL_RTOL)
    perturbed = [worst]
    for _ in range(20):
        E = (2 * torch.rand(8, 8, generator=g, dtype=F64) - 1) * KERNEL_RTOL * torch.outer(s, s)
        perturbed.append(K + 0.5 * (E + E.T))
    for Kp in perturbed:
        with pytest.raises(ValueError, match="zero probability"):
            ep_log_marginal(Kp, y)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_near_duplicates_beyond_the_rounding_keep_their_small_probability(schedule):
    """Opposite labels on a pair with 1 - rho = 1e-6 (resolvable: 10^6 times the rounding) is a
    rare function, not an impossible one: no error, and EP is close to the exact
    log(arccos(rho) / (2 pi)) = -8.40 nats (measured error +0.0044 nats)."""
    rho = 1 - 1e-6
    K = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=F64)
    res = ep_log_marginal(K, torch.tensor([1.0, -1.0], dtype=F64), schedule=schedule, tol=1e-8, max_iter=1000)
    exact = math.log(math.acos(rho) / (2 * math.pi))
    assert res.converged and abs(res.log_marginal - exact) < 0.02, f"EP {res.log_marginal:.4f} vs exact {exact:.4f}"
    same = ep_log_marginal(K, torch.tensor([1.0, 1.0], dtype=F64), schedule=schedule)
    assert math.isfinite(same.log_marginal), "equal labels on (near-)duplicates are fine"
    # The check can be switched off, and it is relative to the declared rounding: with
    # kernel_rtol = 1e-6 this pair counts as a duplicate.
    with pytest.raises(ValueError, match="zero probability"):
        ep_log_marginal(K, torch.tensor([1.0, -1.0], dtype=F64), schedule=schedule, kernel_rtol=1e-6)


@pytest.mark.parametrize("likelihood", ["heaviside", "probit"])
def test_parallel_and_sequential_ep_reach_the_same_fixed_point(likelihood):
    """Both schedules solve the same moment-matching equations, so they stop at the same fixed point.
    Both stop when a sweep moves the sites by < tol = 1e-10 relative, and converge linearly at a
    rate of about 1/2 per sweep (site_change), so each is within ~2 tol of the fixed point; log Z_EP
    is stationary there (EP fixed points are stationary points of the EP free energy, Minka 2001),
    so the log marginals differ by far less than 1e-7 nats (measured: <= 7.4e-12 nats, sites <= 7e-11)."""
    g = _gen(21)
    for m, kind in ((40, "nngp"), (40, "wishart"), (150, "nngp")):
        K, y = _random_kernel(kind, m, g), _labels(m, g)
        seq = ep_log_marginal(K, y, likelihood=likelihood, schedule="sequential", tol=1e-10, max_iter=500)
        par = ep_log_marginal(K, y, likelihood=likelihood, schedule="parallel", tol=1e-10, max_iter=500)
        assert seq.converged and par.converged, f"m={m} {kind}: sweeps {seq.iterations} / {par.iterations}"
        assert abs(seq.log_marginal - par.log_marginal) < 1e-7, (
            f"m={m} {kind}: sequential {seq.log_marginal:.10f} vs parallel {par.log_marginal:.10f} (tol 1e-7 nats)")
        for name in ("site_precision", "site_natural_mean", "posterior_mean", "posterior_var"):
            a, b = getattr(seq, name), getattr(par, name)
            err = float(((a - b).abs() / (1 + a.abs())).max())
            assert err < 1e-6, f"m={m} {kind}: {name} differs by {err:.1e} relative (tol 1e-6 = 10^4 tol)"
        assert par.config["schedule"] == "parallel" and seq.config["schedule"] == "sequential"


def test_parallel_ep_fixed_point_does_not_depend_on_damping():
    g = _gen(22)
    K, y = _random_kernel("nngp", 60, g), _labels(60, g)
    ref = ep_log_marginal(K, y, tol=1e-10, max_iter=500)
    for damping in (0.8, 0.5, 0.2):
        res = ep_log_marginal(K, y, tol=1e-10, max_iter=1000, damping=damping)
        assert res.converged and abs(res.log_marginal - ref.log_marginal) < 1e-7, (
            f"damping {damping}: {res.log_marginal:.10f} vs undamped {ref.log_marginal:.10f}")
    assert ref.site_change[-1] < 1e-10 and len(ref.site_change) == ref.iterations == len(ref.history)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_unconverged_ep_returns_a_consistent_state(schedule):
    """Stopped early, the result still describes the sites it returns: the posterior marginals are
    those of (K^-1 + diag tau~)^-1 and the log marginal is the last one in history."""
    g = _gen(23)
    K, y = _random_kernel("wishart", 12, g), _labels(12, g)
    res = ep_log_marginal(K, y, schedule=schedule, max_iter=2, tol=1e-14)
    assert not res.converged and res.iterations == 2 and len(res.history) == 2 and len(res.site_change) == 2
    assert res.log_marginal == res.history[-1]
    Sigma = torch.linalg.inv(torch.linalg.inv(K) + torch.diag(res.site_precision))
    # K is a well-conditioned Wishart (+0.05 I): the dense inverse is accurate to ~1e-12 here.
    assert torch.allclose(res.posterior_var, Sigma.diagonal(), rtol=1e-9, atol=0)
    assert torch.allclose(res.posterior_mean, Sigma @ res.site_natural_mean, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "K, y, kwargs, match",
    [
        (torch.eye(2, dtype=F64), torch.tensor([0.0, 1.0]), {}, r"\{-1, \+1\}"),
        (torch.eye(2, dtype=F64), torch.tensor([True, False]), {}, r"\{-1, \+1\}"),
        (torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=F64), torch.ones(2), {}, "symmetric"),
        (torch.eye(3, dtype=F64), torch.ones(2), {}, "shape"),
        (torch.eye(2, dtype=F64), torch.ones(2), {"likelihood": "logit"}, "likelihood"),
        (torch.eye(2, dtype=F64), torch.ones(2), {"damping": 0.0}, "damping"),
        (torch.eye(2, dtype=F64), torch.ones(2), {"schedule": "gauss-seidel"}, "schedule"),
        (torch.eye(2, dtype=F64), torch.ones(2), {"kernel_rtol": -1.0}, "kernel_rtol"),
        (torch.zeros(2, 2, dtype=F64), torch.ones(2), {}, "diagonal"),
    ],
)
def test_ep_rejects_bad_input(K, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ep_log_marginal(K, y, **kwargs)
