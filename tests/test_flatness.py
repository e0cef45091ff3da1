"""Tests of volbench.function_space.sharpness: Hessian spectral norm and top eigenvalues against exact Hessians
(torch.func.hessian + eigvalsh), Keskar sharpness against analytic box maxima of quadratics, the
small-eps Hessian relation (Z5), and alpha scaling (Z3)."""
from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from volbench.costs.rounding import gamma
from volbench.curvature import FlatLoss, hessian_spectral_norm, hessian_top_eigenvalues, hessian_vector_product
from volbench.function_space.sharpness import SharpnessConfig, sharpness, sharpness_from_spectral_norm
from volbench.lab.models import alpha_scale

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _trained_mlp(seed: int, loss: str, steps: int = 300, n: int = 32, d: int = 4, h: int = 8):
    """A small float64 ReLU MLP trained briefly with Adam (loss ~1e-3): a realistic, non-quadratic
    point with a well-defined Hessian."""
    g = _gen(seed)
    torch.manual_seed(seed)  # nn.Linear's initialisation draws from the global generator
    out = 2 if loss == "ce" else 1
    net = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, out)).to(F64)
    x = torch.randn(n, d, generator=g, dtype=F64)
    t = torch.randint(0, 2, (n,), generator=g)
    f = FlatLoss(net, x, t, loss)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        f(torch.nn.utils.parameters_to_vector(net.parameters())).backward()
        opt.step()
    return net, x, t


def _quadratic(A: torch.Tensor, w_star: torch.Tensor, c: float = 0.0):
    return lambda w: c + 0.5 * (w - w_star) @ A @ (w - w_star)


def _random_psd(n: int, g: torch.Generator, eigs: torch.Tensor | None = None) -> torch.Tensor:
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    if eigs is None:
        eigs = torch.rand(n, generator=g, dtype=F64) * 3
    return Q @ torch.diag(eigs) @ Q.T


# ----------------------------------------------------------------------------------------------
# Hessian spectral norm and top-k eigenvalues
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["ce", "bce"])
@pytest.mark.parametrize("seed", [0, 1])
def test_power_iteration_matches_exact_hessian_of_mlp(loss, seed):
    net, x, t = _trained_mlp(seed, loss)
    f = FlatLoss(net, x, t, loss)
    exact = float(torch.linalg.eigvalsh(torch.func.hessian(f)(f.anchor)).abs().max())
    res = hessian_spectral_norm(f, f.anchor, tol=1e-10, max_iter=3000, seed=seed)
    rel = abs(res.value - exact) / exact
    # Measured: relative error <= 5e-10 with tol 1e-10 on 8 such networks.
    assert res.converged and rel < 1e-6, f"power iteration {res.value} vs exact {exact}: rel err {rel:.1e} (tol 1e-6)"
    assert res.seed == seed and abs(abs(res.rayleigh) - exact) / exact < 1e-6, "Rayleigh quotient is +-||H||"
    again = hessian_spectral_norm(f, f.anchor, tol=1e-10, max_iter=3000, seed=seed)
    assert again == res, "same seed, same result"


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_top_k_eigenvalues_match_eigvalsh_of_mlp(loss):
    net, x, t = _trained_mlp(3, loss)
    f = FlatLoss(net, x, t, loss)
    ev = torch.linalg.eigvalsh(torch.func.hessian(f)(f.anchor)).flip(0)
    top = hessian_top_eigenvalues(f, f.anchor, 6, seed=0)
    err = float((top.eigenvalues - ev[:6]).abs().max())
    # Measured: <= 5e-15 (ARPACK at machine precision).
    assert err < 1e-8 * float(ev.abs().max()), f"top-6 eigenvalues off by {err:.1e} (tol 1e-8 x ||H||)"
    pos = top.eigenvalues[top.eigenvalues > 0]
    # the same k logs summed in another order: gamma_k of the sum of their magnitudes (and the logs' own ulp)
    slack = gamma(pos.numel() + 2) * float(pos.log().abs().sum())
    assert top.n_positive == pos.numel() and math.isclose(top.log_product, float(pos.log().sum()), abs_tol=slack)


@settings(deadline=None, max_examples=20)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(3, 12), scale=st.floats(1e-3, 1e3), negative_top=st.booleans())
def test_power_iteration_and_lanczos_on_known_spectrum(seed, n, scale, negative_top):
    g = _gen(seed)
    # Spectrum with a guaranteed gap |lambda_2| <= 0.8 |lambda_1|, so 200 iterations suffice.
    eigs = torch.rand(n, generator=g, dtype=F64) * 1.6 - 0.8
    eigs[0] = -1.0 if negative_top else 1.0
    eigs = eigs * scale
    A = _random_psd(n, g, eigs)
    w_star = torch.randn(n, generator=g, dtype=F64)
    theta = torch.randn(n, generator=g, dtype=F64)
    f = _quadratic(A, w_star)
    res = hessian_spectral_norm(f, theta, tol=1e-12, max_iter=500, seed=seed % 1000)
    assert abs(res.value - scale) <= 1e-8 * scale, f"||H|| = {scale}, power iteration {res.value} (rel tol 1e-8)"
    assert math.copysign(1.0, res.rayleigh) == (-1.0 if negative_top else 1.0), "Rayleigh quotient keeps the sign"
    k = n // 2
    top = hessian_top_eigenvalues(f, theta, k, seed=seed % 1000)
    want = eigs.sort(descending=True).values[:k]
    assert torch.allclose(top.eigenvalues, want, rtol=0, atol=1e-9 * scale), "top-k = largest algebraic eigenvalues"


def test_hessian_of_linear_loss_is_zero():
    g = torch.tensor([1.0, -2.0, 3.0], dtype=F64)
    f = lambda w: g @ w  # noqa: E731
    assert hessian_vector_product(f, torch.zeros(3, dtype=F64))(torch.ones(3, dtype=F64)).abs().max() == 0
    res = hessian_spectral_norm(f, torch.zeros(3, dtype=F64))
    assert res.value == 0.0 and res.converged, "H = 0 gives spectral norm 0"


# ----------------------------------------------------------------------------------------------
# Sharpness
# ----------------------------------------------------------------------------------------------

_FULL_BATCH_SGD = SharpnessConfig(eps=1e-3, lr=1.0, batch_size=None, epochs=200)
_LBFGSB = SharpnessConfig(eps=1e-3, method="lbfgsb", max_iter=200)


@pytest.mark.parametrize("config", [_FULL_BATCH_SGD, _LBFGSB], ids=["sgd", "lbfgsb"])
def test_sharpness_of_one_dimensional_quadratic_is_exact_and_matches_z5(config):
    a, w_star, c = 3.0, -2.0, 0.7
    f = _quadratic(torch.tensor([[a]], dtype=F64), torch.tensor([w_star], dtype=F64), c)
    res = sharpness(f, torch.tensor([w_star], dtype=F64), config)
    b = config.eps * (abs(w_star) + 1.0)  # box half-width eps (|w| + 1)
    exact = 100 * 0.5 * a * b**2 / (1 + c)
    assert math.isclose(res.sharpness, exact, rel_tol=1e-6), f"1-D: {res.sharpness} vs exact {exact} (rel tol 1e-6)"
    assert math.isclose(res.base_loss, c, rel_tol=1e-12) and res.max_loss >= res.base_loss
    # Z5 (Dinh et al.; Zhang et al. Sec. 2.2) is exact in 1-D with eps -> the box half-width.
    z5 = sharpness_from_spectral_norm(a, c, eps=b)
    assert math.isclose(res.sharpness, z5, rel_tol=1e-6), f"Z5 form {z5} vs sharpness {res.sharpness} (rel tol 1e-6)"


def _box_max(A: torch.Tensor, b: torch.Tensor) -> float:
    """Exact max of 1/2 d^T A d over |d_i| <= b_i for PSD A: a convex function peaks at a vertex."""
    best = -math.inf
    for signs in itertools.product((-1.0, 1.0), repeat=len(b)):
        d = torch.tensor(signs, dtype=F64) * b
        best = max(best, float(0.5 * d @ A @ d))
    return best


@pytest.mark.parametrize("config", [_FULL_BATCH_SGD, _LBFGSB], ids=["sgd", "lbfgsb"])
@pytest.mark.parametrize("kind", ["diagonal", "rank-one", "general"])
def test_sharpness_of_quadratic_matches_analytic_box_maximum(config, kind):
    g = _gen({"diagonal": 0, "rank-one": 1, "general": 2}[kind])
    n, c = 7, 0.25
    w_star = torch.randn(n, generator=g, dtype=F64)
    if kind == "diagonal":
        A = torch.diag(torch.rand(n, generator=g, dtype=F64) * 2 + 0.5)
    elif kind == "rank-one":
        u = torch.randn(n, generator=g, dtype=F64)
        A = 2.0 * torch.outer(u, u)
    else:
        A = _random_psd(n, g)
    b = config.eps * (w_star.abs() + 1.0)
    exact = 100 * _box_max(A, b) / (1 + c)
    res = sharpness(_quadratic(A, w_star, c), w_star, config)
    # Derived float64 slack: the ascent's vertex w* +- b is formed in floating point, so its offset d
    # from w* is b to within delta = 2u (|w*| + b) per coordinate (u (|w*| + b) relative: 1e-13 at
    # eps 1e-3); the loss c + 0.5 d^T A d rounds within gamma_{2n+4} of c + 0.5 |d|^T |A| |d|; then the
    # difference from the base loss and / (1 + c): three more roundings of the result.
    u = gamma(1)
    delta = 2 * u * (w_star.abs() + b)
    moved = float(b @ A.abs() @ delta + 0.5 * delta @ A.abs() @ delta)
    slack = 100 * (gamma(2 * n + 4) * (c + float(0.5 * b @ A.abs() @ b)) + moved) / (1 + c) + gamma(3) * exact
    assert res.sharpness <= exact + slack, \
        f"sharpness {res.sharpness} exceeds the box maximum {exact}: box violated"
    if kind in ("diagonal", "rank-one"):
        # Every local maximum over the box is global here, so ascent must find it.
        assert math.isclose(res.sharpness, exact, rel_tol=1e-6), f"{kind}: {res.sharpness} vs exact {exact} (rel 1e-6)"
    else:
        # A general PSD quadratic has local maxima at other vertices, and both ascent methods stop
        # at one: measured on 30 random PSD 7x7 quadratics, found/global = 0.46-1.0 (mean 0.81),
        # always >= 7x the Z5 ball lower bound. Sharpness is a lower bound on the box maximum.
        assert res.sharpness >= 0.4 * exact, f"general: {res.sharpness} below 0.4 x box maximum {exact}"
        norm = float(torch.linalg.eigvalsh(A).max())
        lower = sharpness_from_spectral_norm(norm, c, eps=float(b.min()))
        assert res.sharpness >= lower, f"general: {res.sharpness} below the Z5 inscribed-ball bound {lower}"
    assert list(res.history) == sorted(res.history), "history is a running maximum"


def test_z5_bounds_for_the_box_at_a_quadratic_minimum():
    """100 ||H|| r_min^2 / (2(1+L)) <= sharpness <= 100 ||H|| r_max^2 / (2(1+L)) with r_min, r_max the
    radii of the balls inside and around the box; the upper bound is attained when the top
    eigenvector points at a vertex of a cubic box."""
    g = _gen(4)
    n, c, eps = 6, 0.1, 1e-3
    for w_star, A in (
        (torch.randn(n, generator=g, dtype=F64), _random_psd(n, g)),
        (torch.zeros(n, dtype=F64), 3.0 * torch.full((n, n), 1.0 / n, dtype=F64) + 0.01 * torch.eye(n, dtype=F64)),
    ):
        f = _quadratic(A, w_star, c)
        res = sharpness(f, w_star, SharpnessConfig(eps=eps, method="lbfgsb", max_iter=200))
        norm = hessian_spectral_norm(f, w_star, tol=1e-12, max_iter=1000).value
        half = eps * (w_star.abs() + 1.0)
        lo = sharpness_from_spectral_norm(norm, c, eps=float(half.min()))
        hi = sharpness_from_spectral_norm(norm, c, eps=float(half.norm()))
        assert lo * (1 - 1e-9) <= res.sharpness <= hi * (1 + 1e-9), \
            f"Z5 bounds {lo:.3e} <= {res.sharpness:.3e} <= {hi:.3e}"
    # Second case: A = 3 J / n + 0.01 I has top eigenvector (1,...,1)/sqrt(n), pointing at a vertex
    # of the cube |d_i| <= eps, where 1/2 d^T A d = 1/2 (3.01) n eps^2 = 1/2 ||H|| r_max^2: the upper
    # bound is attained.
    assert math.isclose(res.sharpness, hi, rel_tol=1e-6), f"aligned cube: {res.sharpness:.6e} vs {hi:.6e} (rel 1e-6)"
    # the formula's four roundings against the literal's three (1e-4 is not 1e-2 squared in binary)
    assert sharpness_from_spectral_norm(2.0, 0.0, eps=1e-2) == pytest.approx(100 * 2.0 * 1e-4 / 2, rel=gamma(7))


def test_sharpness_of_linear_loss_is_first_order_box_maximum():
    g = torch.tensor([1.0, -2.0, 3.0], dtype=F64)
    w = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
    exact = 100 * float((g.abs() * 1e-3 * (w.abs() + 1)).sum()) / (1 + float(g @ w))
    for cfg in (_FULL_BATCH_SGD, _LBFGSB):
        res = sharpness(lambda v: g @ v, w, cfg)
        assert math.isclose(res.sharpness, exact, rel_tol=1e-9), f"{cfg.method}: linear loss {res.sharpness} vs {exact}"


def test_minibatch_sgd_sharpness_is_seeded_and_reproducible():
    net, x, t = _trained_mlp(5, "ce", steps=100, n=40)
    f = FlatLoss(net, x, t, "ce")
    cfg = SharpnessConfig.smoke(batch_size=16, seed=3)
    a, b = sharpness(f, f.anchor, cfg), sharpness(f, f.anchor, cfg)
    assert a == b, "same config and seed: identical result"
    assert a.config.seed == 3 and a.n_steps == 5 * 3, "5 epochs x ceil(40 / 16) = 15 minibatch steps"
    assert a.sharpness > 0 and a.max_loss > a.base_loss
    c = sharpness(f, f.anchor, dataclasses.replace(cfg, seed=4))
    assert c.sharpness != a.sharpness, "a different seed draws a different start and batch order"


def test_sharpness_config_paper_presets_and_validation():
    assert SharpnessConfig() == SharpnessConfig.paper("mnist"), "defaults are the MNIST row of Table 1"
    assert (SharpnessConfig.paper("boolean").batch_size, SharpnessConfig.paper("boolean").epochs) == (16, 10)
    r = SharpnessConfig.paper("cifar10-resnet50")
    assert (r.eps, r.batch_size, r.lr, r.epochs) == (1e-5, 128, 1.0, 100)
    assert SharpnessConfig.smoke().epochs == 5 and SharpnessConfig.smoke(epochs=2).epochs == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        SharpnessConfig().eps = 1.0  # type: ignore[misc]
    for bad in ({"eps": 0.0}, {"method": "adam"}, {"batch_size": 0}, {"epochs": 0}, {"init": "zero"}, {"seed": -1}):
        with pytest.raises(ValueError):
            SharpnessConfig(**bad)
    with pytest.raises(ValueError, match="setting"):
        SharpnessConfig.paper("svhn")
    with pytest.raises(ValueError, match="batch_size=None"):
        sharpness(lambda w: (w**2).sum(), torch.zeros(3), SharpnessConfig())  # plain callable + minibatches


# ----------------------------------------------------------------------------------------------
# Alpha scaling (Z3)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer_index", [0, 1])
def test_alpha_scale_preserves_function_and_transforms_hessian_exactly(layer_index):
    net, x, t = _trained_mlp(6, "ce")
    before = [p.detach().clone() for p in net.parameters()]
    # A power of two: scaling by it commutes with every rounding (barring over/underflow), so the
    # rescaled network computes the original's outputs and scaled Hessian bit for bit with the same
    # kernels; any other alpha would round (tests/test_models checks those within a derived bound).
    alpha = 8.0
    scaled = alpha_scale(net, layer_index, alpha)
    assert all(torch.equal(p, q) for p, q in zip(before, net.parameters())), "the input model must not change"
    out, out_s = net(x), scaled(x)
    assert torch.equal(out_s, out), "alpha scaling must not change the outputs"
    f, fs = FlatLoss(net, x, t, "ce"), FlatLoss(scaled, x, t, "ce")
    # theta' = D theta with D = alpha on (W_i, b_i), 1/alpha on W_{i+1}, 1 elsewhere, so
    # H' = D^-1 H D^-1 exactly.
    lin = [m for m in net if isinstance(m, nn.Linear)]
    scale = []
    for m in net.modules():
        if isinstance(m, nn.Linear):
            k = lin.index(m)
            w = alpha if k == layer_index else (1 / alpha if k == layer_index + 1 else 1.0)
            b = alpha if k == layer_index else 1.0
            scale += [torch.full((m.weight.numel(),), w, dtype=F64), torch.full((m.bias.numel(),), b, dtype=F64)]
    D = torch.cat(scale)
    assert torch.equal(fs.anchor, D * f.anchor)
    H, Hs = torch.func.hessian(f)(f.anchor), torch.func.hessian(fs)(fs.anchor)
    want = H / torch.outer(D, D)
    err = float((Hs - want).abs().max() / want.abs().max())
    assert torch.equal(Hs, want), f"H' = D^-1 H D^-1 violated by {err:.1e} (relative)"


def test_alpha_scaling_raises_hessian_norm_and_sharpness():
    # Z3 (Fig. 5, S5): same function, sharper minimum. Measured on 12 small nets (loss ~1e-3) at
    # alpha = 10, layer 0: ||H|| ratio 11-77, L-BFGS-B sharpness ratio 1.57-2.58, SGD ratio >= 1.77.
    net, x, t = _trained_mlp(0, "ce")
    scaled = alpha_scale(net, 0, 10.0)
    f, fs = FlatLoss(net, x, t, "ce"), FlatLoss(scaled, x, t, "ce")
    h0 = hessian_spectral_norm(f, f.anchor, tol=1e-8, max_iter=3000).value
    h1 = hessian_spectral_norm(fs, fs.anchor, tol=1e-8, max_iter=3000).value
    assert h1 > 5 * h0, f"||H|| after alpha = 10 scaling: {h1:.3g} vs {h0:.3g} (expected > 5x)"
    cfg = SharpnessConfig(method="lbfgsb", max_iter=50)
    s0, s1 = sharpness(f, f.anchor, cfg).sharpness, sharpness(fs, fs.anchor, cfg).sharpness
    assert s1 > 1.2 * s0, f"sharpness after alpha = 10 scaling: {s1:.3g} vs {s0:.3g} (expected > 1.2x)"
    sgd = SharpnessConfig(batch_size=16, epochs=20)  # the paper's SGD ascent (lr 1e-3), 20 epochs
    g0, g1 = sharpness(f, f.anchor, sgd).sharpness, sharpness(fs, fs.anchor, sgd).sharpness
    assert g1 > 1.2 * g0, f"SGD-ascent sharpness after alpha scaling: {g1:.3g} vs {g0:.3g} (expected > 1.2x)"


def test_alpha_scale_rejects_bad_input():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    with pytest.raises(ValueError, match="alpha"):
        alpha_scale(net, 0, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        alpha_scale(net, 0, -2.0)
    with pytest.raises(ValueError, match="layer_index"):
        alpha_scale(net, 2, 2.0)  # the last Linear has no successor
    with pytest.raises(ValueError, match="Tanh"):
        alpha_scale(net, 1, 2.0)
    with pytest.raises(TypeError, match="Sequential"):
        alpha_scale(nn.Linear(3, 3), 0, 2.0)  # type: ignore[arg-type]
    nested = nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), nn.Sequential(nn.Linear(4, 2)))
    x = torch.randn(5, 3)
    # alpha = 4: exact (a power of two), so the outputs are the original's bit for bit
    assert torch.equal(alpha_scale(nested, 0, 4.0)(x), nested(x)), "nested Sequentials are flattened"


# ----------------------------------------------------------------------------------------------
# FlatLoss and input validation
# ----------------------------------------------------------------------------------------------


def test_model_loss_matches_module_losses():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1))
    x, t = torch.randn(10, 3), torch.randint(0, 2, (10, 1))
    f = FlatLoss(net, x, t.float(), "bce")
    want = nn.functional.binary_cross_entropy_with_logits(net(x), t.float())
    # the module's own forward and loss at its own parameters: the same computation, bit for bit
    assert torch.equal(f(f.anchor), want), "bce on [N, 1] outputs"
    idx = torch.tensor([1, 4, 7])
    assert torch.equal(f(f.anchor, idx), nn.functional.binary_cross_entropy_with_logits(net(x[idx]), t[idx].float()))
    assert f.n_params == sum(p.numel() for p in net.parameters()) and f.n_examples == 10
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        FlatLoss(net, x, t * 3, "bce")
    with pytest.raises(ValueError, match="needs >= 2 logits"):
        FlatLoss(net, x, t[:, 0], "ce")
    with pytest.raises(ValueError, match="loss must be"):
        FlatLoss(net, x, t, "hinge")
    with pytest.raises(ValueError, match="flat"):
        f(torch.zeros(3))
    with pytest.raises(ValueError, match="0-dim"):
        hessian_spectral_norm(lambda w: w * 2, torch.zeros(3))
    with pytest.raises(ValueError, match="0 < k < n"):
        hessian_top_eigenvalues(lambda w: (w**2).sum(), torch.zeros(3), 3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_flatness_on_cuda_matches_cpu():
    net, x, t = _trained_mlp(1, "ce")
    f = FlatLoss(net, x, t, "ce")
    netc = copy.deepcopy(net).cuda()
    fc = FlatLoss(netc, x.cuda(), t.cuda(), "ce")
    a = hessian_spectral_norm(f, f.anchor, tol=1e-10, max_iter=3000, seed=0).value
    b = hessian_spectral_norm(fc, fc.anchor, tol=1e-10, max_iter=3000, seed=0).value
    assert abs(a - b) < 1e-8 * a, "same seed: same start vector on every device (drawn on the CPU)"
    cfg = SharpnessConfig(method="lbfgsb", max_iter=50)
    assert math.isclose(sharpness(f, f.anchor, cfg).sharpness, sharpness(fc, fc.anchor, cfg).sharpness, rel_tol=1e-6)
