"""Volume of a function by the NNGP prior and expectation propagation (Zhang et al., App. A).

Zhang, Reid, Valle-Perez, Louis, "Why flatness correlates with generalization for deep neural
networks" (ICML 2021) measure the volume V(f) of a binary function f on S u E as the prior
probability P(f) that a random network expresses it, computed in the infinite-width limit:

* The pre-activation output z of a fully connected ReLU network with weights
  W^l ~ N(0, sigma_w^2 / fan_in) and biases b^l ~ N(0, sigma_b^2) is a Gaussian process with the
  arc-cosine (NNGP) kernel (Cho & Saul 2009; Lee et al. 2018; Matthews et al. 2018).
* f = sign(z) on the m points of S u E, so with a Heaviside likelihood p(y | z) = 1[y z > 0]
      P(f) = P(y_i z_i > 0 for all i),   z ~ N(0, K),
  a Gaussian orthant probability. It is intractable for m ~ 1,500, and the paper approximates it by
  the expectation-propagation (EP) marginal likelihood (Rasmussen & Williams 2006, Sec. 3.6).

Their code builds the kernel with sigma_w = sqrt(2), sigma_b = 1 and two hidden layers
(``ZHANG_FCN_KERNEL``) and calls GPy's EP with GPy's default *probit* link,
p(y | z) = Phi(y z). Because Phi(y z) = P(y (z + e) > 0) with e ~ N(0, 1), the probit model on K
is the Heaviside model on K + I: it is the prior probability of the labelling under a kernel with
unit observation noise added. Both are available here, and every result says which one it holds.

EP runs in one of two schedules (``schedule=``): "parallel" (the default) updates every site at
once from one Cholesky factorisation per sweep, O(m^3) in BLAS-3 kernels; "sequential" is the
textbook per-site loop with rank-one posterior updates (R&W Alg. 3.5), kept as the baseline. Both
stop at a fixed point of the same EP equations, so at convergence they agree to within ``tol``.

A Heaviside labelling that gives opposite labels to two inputs whose outputs are perfectly
correlated (identical inputs, or positively parallel ones when sigma_b = 0) has probability exactly
zero; it is detected from the kernel before EP starts, with a tolerance set by the kernel's rounding
(``kernel_rtol``), and reported as a ValueError rather than left to EP to diverge or not.

Example (two points, where the orthant probability 1/4 + arcsin(rho) / (2 pi) is known exactly;
EP is an approximation and is off by 0.037 nats here, at kernel correlation rho = 0.92):
    >>> import math, torch
    >>> from volbench.function_space.nngp import ZHANG_FCN_KERNEL, ep_log_marginal
    >>> X = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    >>> K = ZHANG_FCN_KERNEL.kernel(X)
    >>> res = ep_log_marginal(K, torch.tensor([1.0, 1.0]), likelihood="heaviside")
    >>> rho = float(K[0, 1] / (K[0, 0] * K[1, 1]).sqrt())
    >>> exact = math.log(0.25 + math.asin(rho) / (2 * math.pi))
    >>> res.converged, round(exact, 3), round(res.log_marginal - exact, 3)
    (True, -0.828, -0.037)

Size: one algorithm, the NNGP kernel and expectation propagation with its marginal likelihood (the
site updates, the orthant probabilities and their checks belong together).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import scipy.special
import torch

__all__ = [
    "NNGPKernelConfig",
    "ZHANG_FCN_KERNEL",
    "nngp_kernel",
    "EPResult",
    "ep_log_marginal",
    "log_prior_probability_of_function",
]

Likelihood = Literal["heaviside", "probit"]
_LIKELIHOODS = ("heaviside", "probit")
Schedule = Literal["parallel", "sequential"]
_SCHEDULES = ("parallel", "sequential")
# Default relative rounding error of the kernel's entries, in unit roundoffs u = eps / 2 of K's
# dtype. An entry computed through a d-term inner product carries a relative error of at most
# gamma_d = d u / (1 - d u) (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed.,
# Sec. 3.1); each arc-cosine layer then adds only a few u, because the normalised kernel map
# k(c) = (sqrt(1 - c^2) + (pi - arccos c) c) / pi has slope dk/dc = (pi - arccos c) / pi in [0, 1]
# and so does not amplify the error of its argument. 4,096 u covers the worst case for inputs of
# up to ~4,000 features (MNIST 784, CIFAR-10 3,072) with margin for the depth; in float64 it is
# 4.5e-13, in float32 2.4e-4.
_KERNEL_RTOL_UNIT_ROUNDOFFS = 4096
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True)
class NNGPKernelConfig:
    """Hyperparameters of the arc-cosine NNGP kernel of a fully connected ReLU network.

    Attributes:
        depth: number of hidden ReLU layers (0 gives the linear kernel of a single affine layer).
        sigma_w: weight scale; each weight is N(0, sigma_w^2 / fan_in). sqrt(2) is the He scale
            that keeps the diagonal of the kernel from shrinking with depth.
        sigma_b: bias standard deviation; each bias is N(0, sigma_b^2).
    """

    depth: int = 2
    sigma_w: float = math.sqrt(2.0)
    sigma_b: float = 1.0

    def __post_init__(self) -> None:
        _check_kernel_args(self.depth, self.sigma_w, self.sigma_b)

    def kernel(self, X1: torch.Tensor, X2: torch.Tensor | None = None, *, dtype: torch.dtype | None = torch.float64,
               device: torch.device | str | None = None) -> torch.Tensor:
        """``nngp_kernel`` with this configuration."""
        return nngp_kernel(X1, X2, depth=self.depth, sigma_w=self.sigma_w, sigma_b=self.sigma_b,
                           dtype=dtype, device=device)


def _check_kernel_args(depth: Any, sigma_w: Any, sigma_b: Any) -> None:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be a non-negative int (number of hidden layers), got {depth!r}")
    for name, value in (("sigma_w", sigma_w), ("sigma_b", sigma_b)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite non-negative number (a standard deviation), got {value!r}")


# The kernel of the third paper's FCN experiments (two hidden layers, sigma_w = sqrt(2),
# sigma_b = 1; see /work/shared/NOTES.md, "The third paper's code"). Frozen, so safe as a constant.
ZHANG_FCN_KERNEL = NNGPKernelConfig(depth=2, sigma_w=math.sqrt(2.0), sigma_b=1.0)


def _as_inputs(X: Any, name: str, dtype: torch.dtype | None, device: torch.device | str | None) -> torch.Tensor:
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of inputs [m, d], got {type(X).__name__}")
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D [m, d] tensor (one flattened input per row), got shape {tuple(X.shape)}; "
            "flatten images with X.reshape(len(X), -1)"
        )
    if X.shape[1] == 0:
        raise ValueError(f"{name} has zero input features (shape {tuple(X.shape)})")
    target = dtype if dtype is not None else (X.dtype if X.dtype.is_floating_point else torch.get_default_dtype())
    if not target.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {target}")
    X = X.to(device=device if device is not None else X.device, dtype=target)
    if not torch.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or Inf entries")
    return X


def nngp_kernel(
    X1: torch.Tensor,
    X2: torch.Tensor | None = None,
    *,
    depth: int,
    sigma_w: float,
    sigma_b: float,
    dtype: torch.dtype | None = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """NNGP kernel of a fully connected ReLU network, by the arc-cosine recursion.

    The network is z^1 = W^1 x + b^1, z^{l+1} = W^{l+1} relu(z^l) + b^{l+1} for l = 1..depth,
    output z = z^{depth+1}, with W^l_ij ~ N(0, sigma_w^2 / fan_in) and b^l_i ~ N(0, sigma_b^2).
    In the infinite-width limit z is a GP with covariance K^depth, where (d = input dimension)

        K^0(x, x')     = sigma_b^2 + sigma_w^2 x.x' / d
        K^l(x, x')     = sigma_b^2 + sigma_w^2 / (2 pi) sqrt(K^{l-1}(x,x) K^{l-1}(x',x'))
                                     (sin t + (pi - t) cos t),
        t              = arccos(K^{l-1}(x, x') / sqrt(K^{l-1}(x,x) K^{l-1}(x',x'))),

    so the diagonal follows K^l(x, x) = sigma_b^2 + sigma_w^2 K^{l-1}(x, x) / 2 (Cho & Saul 2009,
    Lee et al. 2018; Zhang et al. 2021, App. A).

    Args:
        X1: [m1, d] inputs, one flattened example per row.
        X2: optional [m2, d] inputs; default X1 (then the result is exactly symmetric).
        depth: number of hidden ReLU layers (the paper's FCN: 2).
        sigma_w, sigma_b: weight scale and bias standard deviation (the paper: sqrt(2), 1).
        dtype: computation dtype, float64 by default because EP on kernels of nearly parallel
            inputs needs the extra digits; None keeps X1's floating dtype.
        device: computation device; default X1's device.

    Returns:
        [m1, m2] kernel matrix on ``device`` in ``dtype``.

    Example:
        >>> import torch
        >>> K = nngp_kernel(torch.eye(3), depth=1, sigma_w=2 ** 0.5, sigma_b=0.0)
        >>> round(float(K[0, 0]), 6), round(float(K[0, 1]), 6)   # 2/3 / 2 * 2, (2/3)/pi
        (0.666667, 0.212207)
    """
    _check_kernel_args(depth, sigma_w, sigma_b)
    A = _as_inputs(X1, "X1", dtype, device)
    symmetric = X2 is None
    B = A if symmetric else _as_inputs(X2, "X2", A.dtype, A.device)
    if B.shape[1] != A.shape[1]:
        raise ValueError(f"X1 has {A.shape[1]} features but X2 has {B.shape[1]}; they must match")
    d = A.shape[1]
    sw2, sb2 = float(sigma_w) ** 2, float(sigma_b) ** 2
    K = sb2 + sw2 * (A @ B.T) / d
    diag1 = sb2 + sw2 * (A * A).sum(1) / d
    diag2 = diag1 if symmetric else sb2 + sw2 * (B * B).sum(1) / d
    if symmetric:
        K = 0.5 * (K + K.T)  # exact symmetry despite matmul rounding
    for _ in range(depth):
        norms = torch.sqrt(torch.outer(diag1, diag2))
        # Zero-norm rows (possible only with sigma_b = 0 and x = 0) give a zero kernel row; guard 0/0.
        cos = torch.where(norms > 0, K / torch.where(norms > 0, norms, torch.ones_like(norms)), torch.zeros_like(K))
        cos = cos.clamp(-1.0, 1.0)  # rounding can push |cos| past 1, where arccos is NaN
        theta = torch.arccos(cos)
        K = sb2 + sw2 / (2.0 * math.pi) * norms * (torch.sin(theta) + (math.pi - theta) * cos)
        diag1 = sb2 + 0.5 * sw2 * diag1
        diag2 = diag1 if symmetric else sb2 + 0.5 * sw2 * diag2
        if symmetric:
            # Put the exact diagonal back: arccos(1) is not exactly 0 after rounding.
            K = 0.5 * (K + K.T)
            K.diagonal().copy_(diag1)
    return K


@dataclass(frozen=True)
class EPResult:
    """Expectation-propagation approximation to the marginal likelihood of a labelling.

    ``log_marginal`` approximates log P(y) = log int prod_i p(y_i | f_i) N(f; 0, K) df, which for the
    Heaviside likelihood is the log prior probability (log volume, in nats) of the function that
    outputs the labels y on the m inputs of the kernel.

    Attributes:
        log_marginal: EP estimate of log P(y) in nats (Rasmussen & Williams eq. 3.65), evaluated
            at the returned sites.
        converged: True when the largest relative site-parameter change of a sweep fell below
            ``tol`` (sequential: the change the sweep made; parallel: the undamped change it would
            make, i.e. the distance to the fixed point, independent of the damping).
        iterations: number of sweeps run (each updates every site once; parallel: one Cholesky
            factorisation each).
        site_precision: [m] site precisions tau~_i (>= 0 for these log-concave likelihoods).
        site_natural_mean: [m] site natural means nu~_i = tau~_i mu~_i.
        posterior_mean: [m] mean of the Gaussian approximation q(f).
        posterior_var: [m] marginal variances of q(f).
        history: log_marginal after each sweep (a diagnostic for slow or oscillating runs).
        likelihood: "heaviside" (p = 1[y f > 0]) or "probit" (p = Phi(y f)).
        config: schedule, max_iter, tol, damping, kernel_rtol, m, dtype.
        site_change: the relative site change of each sweep that ``converged`` compares with ``tol``.
    """

    log_marginal: float
    converged: bool
    iterations: int
    site_precision: torch.Tensor
    site_natural_mean: torch.Tensor
    posterior_mean: torch.Tensor
    posterior_var: torch.Tensor
    history: tuple[float, ...]
    likelihood: str
    config: dict[str, Any] = field(default_factory=dict)
    site_change: tuple[float, ...] = ()

    @property
    def log10_marginal(self) -> float:
        return self.log_marginal / math.log(10.0)


def _normal_logpdf(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * z * z - _LOG_SQRT_2PI


def _tilted_moments(y: torch.Tensor, mu_c: torch.Tensor, var_c: torch.Tensor, likelihood: str):
    """log Z, mean and variance of  p(y | f) N(f; mu_c, var_c)  for probit / Heaviside sites.

    With s = sqrt(1 + var_c) (probit) or s = sqrt(var_c) (Heaviside, the probit limit of a vanishing
    noise scale), z = y mu_c / s and r = N(z) / Phi(z):
        log Z = log Phi(z),  mean = mu_c + y var_c r / s,  var = var_c - var_c^2 r (z + r) / s^2.
    r is formed as exp(log N - log Phi) with scipy-equivalent log_ndtr, so it stays accurate far in
    the tail where Phi(z) underflows (r ~ -z there).
    """
    s = torch.sqrt(var_c + 1.0) if likelihood == "probit" else torch.sqrt(var_c)
    z = y * mu_c / s
    log_phi = torch.special.log_ndtr(z)
    r = torch.exp(_normal_logpdf(z) - log_phi)
    mean = mu_c + y * var_c * r / s
    shrink = (r * (z + r)).clamp(max=1.0 - 1e-12)  # exact value lies in (0, 1); guard rounding
    var = var_c - var_c * var_c * shrink / (s * s)
    return log_phi, mean, var


def _tilted_moments_scalar(y: float, mu_c: float, var_c: float, likelihood: str) -> tuple[float, float]:
    """Mean and variance of the tilted distribution for one site, in Python floats: the same
    formulas as ``_tilted_moments``, without per-site tensor kernel launches in the sweep loop."""
    s = math.sqrt(var_c + 1.0) if likelihood == "probit" else math.sqrt(var_c)
    z = y * mu_c / s
    r = math.exp(-0.5 * z * z - _LOG_SQRT_2PI - float(scipy.special.log_ndtr(z)))
    shrink = min(r * (z + r), 1.0 - 1e-12)
    return mu_c + y * var_c * r / s, var_c - var_c * var_c * shrink / (s * s)


_DIVERGED = (
    "EP diverged (site precisions blew up): the labelling has (numerically) zero probability under K. "
    "Exact contradictions (perfectly correlated sites with opposite labels) are caught before EP; this "
    "one is numerical, e.g. near-identical inputs carrying different labels, or a singular kernel whose "
    "range misses the labelled orthant. Remove such inputs, or use likelihood='probit' (Heaviside on "
    "K + I), which tolerates them"
)


def _factor(K: torch.Tensor, tau: torch.Tensor):
    """L = chol(B) with B = I + S^1/2 K S^1/2 (R&W Alg. 3.5), stable for tau_i = 0 and singular K,
    and V = L^-1 S^1/2 K, so that Sigma = (K^-1 + S)^-1 = K - V^T V. Returns V, L."""
    sq = torch.sqrt(tau)
    B = torch.eye(K.shape[0], dtype=K.dtype, device=K.device) + sq[:, None] * K * sq[None, :]
    L, info = torch.linalg.cholesky_ex(B)
    if int(info.max()) > 0 or not bool(torch.isfinite(tau).all()):
        raise ValueError(_DIVERGED)
    return torch.linalg.solve_triangular(L, sq[:, None] * K, upper=False), L


def _posterior(K: torch.Tensor, tau: torch.Tensor, nu: torch.Tensor):
    """Full Sigma = K - V^T V and mu = Sigma nu (the sequential schedule's rank-one updates need
    all of Sigma). Returns Sigma, mu, L = chol(B)."""
    V, L = _factor(K, tau)
    Sigma = K - V.T @ V
    Sigma = 0.5 * (Sigma + Sigma.T)
    return Sigma, Sigma @ nu, L


def _marginals(K: torch.Tensor, tau: torch.Tensor, nu: torch.Tensor):
    """Only the posterior marginals, from the same factorisation: diag Sigma = diag K - colsum(V^2)
    and mu = K nu - V^T (V nu), without forming Sigma (one O(m^3) triangular solve; the products
    are O(m^2)). Returns var, mu, L."""
    V, L = _factor(K, tau)
    var = K.diagonal() - (V * V).sum(0)
    mu = K @ nu - V.T @ (V @ nu)
    return var, mu, L


def _log_marginal_at(y, tau, nu, var, mu, L, likelihood) -> float:
    """EP log marginal likelihood (R&W eq. 3.65, in the tau-form of their eq. 3.74 / Alg. 3.6):

        log Z_EP = sum_i log Zhat_i + 1/2 sum_i log(1 + tau~_i / tau_-i) - sum_i log L_ii
                   + 1/2 nu~^T Sigma nu~
                   + sum_i (nu_-i^2 tau~_i - 2 nu_-i nu~_i tau_-i - nu~_i^2 tau_-i) / (2 tau_-i (tau~_i + tau_-i)),

    with the cavities (tau_-i, nu_-i) and tilted normalisers Zhat_i taken at the current sites
    (posterior marginals var, mu and L = chol(B) from the same sites). Every term is finite for
    tau~_i = 0, unlike the textbook form with site variances 1/tau~_i.
    """
    tau_c = 1.0 / var - tau
    nu_c = mu / var - nu
    log_z, _, _ = _tilted_moments(y, nu_c / tau_c, 1.0 / tau_c, likelihood)
    total = (
        log_z.sum()
        + 0.5 * torch.log1p(tau / tau_c).sum()
        - torch.log(L.diagonal()).sum()
        + 0.5 * (nu @ mu)
        + ((nu_c * nu_c * tau - 2.0 * nu_c * nu * tau_c - nu * nu * tau_c) / (2.0 * tau_c * (tau + tau_c))).sum()
    )
    return float(total)


def _relative_change(new: torch.Tensor, old: torch.Tensor) -> float:
    return float(((new - old).abs() / (1.0 + new.abs())).max())


def _contradictions(K: torch.Tensor, y: torch.Tensor, kernel_rtol: float, limit: int = 3):
    """Pairs (i, j, 1 - rho_ij) with opposite labels whose prior correlation
    rho_ij = K_ij / sqrt(K_ii K_jj) is 1 to within the kernel's rounding.

    Why the bound: f_j = c f_i with c > 0 when rho_ij = 1 exactly, so y_i f_i > 0 and y_j f_j > 0
    cannot both hold when y_i = -y_j and the labelling has probability zero. If each computed entry
    has a relative error of at most r = kernel_rtol (|dK_ij| <= r sqrt(K_ii K_jj)), the computed
    correlation of such a pair is 1 - 2r/(1 - r) at the lowest to first order (r from K_ij, r/2 from
    each diagonal entry), and the quotient and square root add 3 u <= r more. A pair is flagged when
    1 - rho_ij <= 4 r, which holds for every rounding within the bound. A true correlation that
    close to 1 is not resolvable from K anyway: its log-probability, about log(arccos(rho) / (2 pi)),
    would move by O(1) nats within the rounding. Zero-probability labellings of other singular
    kernels (e.g. the linear kernel, depth 0, on more than d + 1 points) are not pairs; EP meets
    them as diverging site precisions (``_DIVERGED``).
    """
    scale = torch.rsqrt(K.diagonal())
    pairs, count, rows = [], 0, 2048  # rows per chunk: keeps temporaries at 2048 x m
    for start in range(0, K.shape[0], rows):
        block = K[start:start + rows] * scale[start:start + rows, None] * scale[None, :]
        bad = (1.0 - block <= 4.0 * kernel_rtol) & (y[start:start + rows, None] != y[None, :])
        bad &= (torch.arange(start, start + block.shape[0], device=K.device)[:, None]
                < torch.arange(K.shape[0], device=K.device)[None, :])
        count += int(bad.sum())
        for i, j in bad.nonzero().tolist()[: max(0, limit - len(pairs))]:
            pairs.append((start + i, j, float(1.0 - block[i, j])))
    return pairs, count


def _ep_sequential(K, y, likelihood, max_iter, tol, damping):
    """R&W Alg. 3.5: sites in index order, each from the current posterior; rank-one updates of
    Sigma in the sweep and a fresh factorisation after it."""
    m = K.shape[0]
    tau = torch.zeros(m, dtype=K.dtype, device=K.device)
    nu = torch.zeros_like(tau)
    Sigma, mu = K.clone(), torch.zeros_like(tau)
    history: list[float] = []
    changes: list[float] = []
    converged = False
    sweeps = 0
    for sweeps in range(1, max_iter + 1):  # noqa: B007  `sweeps` is read after the loop (the count returned)
        tau_old, nu_old = tau.clone(), nu.clone()
        tau_f, nu_f, y_f = tau.tolist(), nu.tolist(), y.tolist()  # per-site scalar work in floats
        for i in range(m):
            s_ii, mu_i = float(Sigma[i, i]), float(mu[i])
            tau_c = 1.0 / s_ii - tau_f[i]
            if not tau_c > 0:
                # Rounding after many rank-one updates; the refactorisation below repairs Sigma.
                continue
            nu_c = mu_i / s_ii - nu_f[i]
            mean_hat, var_hat = _tilted_moments_scalar(y_f[i], nu_c / tau_c, 1.0 / tau_c, likelihood)
            tau_new = (1.0 - damping) * tau_f[i] + damping * max(1.0 / var_hat - tau_c, 0.0)
            nu_new = (1.0 - damping) * nu_f[i] + damping * (mean_hat / var_hat - nu_c)
            d_tau, d_nu = tau_new - tau_f[i], nu_new - nu_f[i]
            tau_f[i], nu_f[i] = tau_new, nu_new
            # Rank-one update Sigma <- Sigma - c s s^T (s = old column i) in one in-place pass, and
            # mu = Sigma nu updated in O(m): mu - c s (s^T nu_old) + (s - c s_ii s) d_nu, with
            # s^T nu_old = mu_i. The refactorisation after the sweep removes accumulated rounding.
            c = d_tau / (1.0 + d_tau * s_ii)
            col = Sigma[:, i].clone()
            Sigma.addr_(col, col, alpha=-c)
            mu = mu + col * (d_nu * (1.0 - c * s_ii) - c * mu_i)
        tau = torch.tensor(tau_f, dtype=K.dtype, device=K.device)
        nu = torch.tensor(nu_f, dtype=K.dtype, device=K.device)
        Sigma, mu, L = _posterior(K, tau, nu)
        history.append(_log_marginal_at(y, tau, nu, Sigma.diagonal(), mu, L, likelihood))
        changes.append(max(_relative_change(tau, tau_old), _relative_change(nu, nu_old)))
        if changes[-1] < tol:
            converged = True
            break
    return tau, nu, mu, Sigma.diagonal(), history, changes, converged, sweeps


def _ep_parallel(K, y, likelihood, max_iter, tol, damping):
    """Parallel EP (van Gerven, Cseke, de Lange & Heskes 2010, "Efficient Bayesian multivariate fMRI
    analysis using a sparsifying spatio-temporal prior", NeuroImage 50; Cseke & Heskes 2011,
    "Approximate marginals in latent Gaussian models", JMLR 12):
    every site is refitted at once from the cavities of one posterior, then all sites move by the
    step ``damping`` in natural parameters,
        tau~ <- tau~ + damping (tau~* - tau~),   nu~ <- nu~ + damping (nu~* - nu~),
    and the posterior marginals are recomputed from one factorisation of B = I + S^1/2 K S^1/2.
    A fixed point (tau~* = tau~) is a fixed point of sequential EP too, as both solve the same
    moment-matching equations. The log marginal and the fixed-point residual of a sweep come from
    that sweep's factorisation, so the result describes the returned sites exactly. The damped step
    is a convex combination, so tau~ stays >= 0. The fixed-point residual (``site_change``) rises
    over the first sweeps, while the sites grow from zero, then falls geometrically, by about a
    factor 0.55 per sweep on the Z cases' MNIST kernels (m = 750 and 1,500). Undamped steps
    converged on every kernel tried (300 random Wishart, NNGP, equicorrelated and low-rank kernels
    with m = 5-80; the MNIST kernel at m = 750 with true, 10%-flipped and random labels and at
    m = 1,500 with true and 10%-flipped labels), in 1.1-2.7 times the sequential schedule's sweeps
    but at 5-11 times less time at m = 1,500 (one thread); pass damping < 1 if a run does not
    converge.
    """
    m = K.shape[0]
    tau = torch.zeros(m, dtype=K.dtype, device=K.device)
    nu = torch.zeros_like(tau)
    history: list[float] = []
    changes: list[float] = []
    converged = False
    sweeps = 0
    for sweeps in range(1, max_iter + 1):
        var, mu, L = _marginals(K, tau, nu)
        history.append(_log_marginal_at(y, tau, nu, var, mu, L, likelihood))
        tau_c = 1.0 / var - tau
        nu_c = mu / var - nu
        _, mean_hat, var_hat = _tilted_moments(y, nu_c / tau_c, 1.0 / tau_c, likelihood)
        tau_t = (1.0 / var_hat - tau_c).clamp(min=0.0)
        nu_t = mean_hat / var_hat - nu_c
        changes.append(max(_relative_change(tau_t, tau), _relative_change(nu_t, nu)))
        if changes[-1] < tol:
            converged = True
            break
        if sweeps == max_iter:
            break  # keep the sites that history[-1] and the marginals describe
        tau = tau + damping * (tau_t - tau)
        nu = nu + damping * (nu_t - nu)
    return tau, nu, mu, var, history, changes, converged, sweeps


def ep_log_marginal(
    K: torch.Tensor,
    y: torch.Tensor,
    *,
    likelihood: Likelihood = "heaviside",
    schedule: Schedule = "parallel",
    max_iter: int = 100,
    tol: float = 1e-6,
    damping: float = 1.0,
    kernel_rtol: float | None = None,
) -> EPResult:
    """Log marginal likelihood of labels y under a GP classifier, by expectation propagation.

    Approximates log P(y) = log int prod_i p(y_i | f_i) N(f; 0, K) df with the EP algorithm of
    Minka (2001) as given in Rasmussen & Williams (2006), Sec. 3.6, and eq. 3.65 for the marginal
    likelihood. Likelihoods:

    * ``"heaviside"``: p(y | f) = 1[y f > 0]. log P(y) is then the log Gaussian orthant probability
      P(y_i f_i > 0 for all i), i.e. the log prior probability (volume) of the sign function y --
      the quantity Zhang et al. (2021) call V(f). Its tilted moments use z = y mu / sigma.
    * ``"probit"``: p(y | f) = Phi(y f), GPy's default link and what the paper's code evaluated;
      z = y mu / sqrt(1 + sigma^2). It equals the Heaviside model on K + I.

    Schedules (both reach the same fixed point; tests/test_nngp.py checks they agree):

    * ``"parallel"`` (default): all sites refitted at once from one Cholesky factorisation per
      sweep (see ``_ep_parallel``); O(m^3 / 3 + m^3) flops per sweep in LAPACK/BLAS-3.
    * ``"sequential"``: R&W Alg. 3.5, sites in index order with rank-one posterior updates and a
      fresh factorisation after every sweep; the baseline, a per-site Python loop.

    EP is exact for m = 1 and approximate otherwise; on small problems it can be checked against
    exact orthant probabilities (see tests/test_nngp.py for the errors measured).

    Args:
        K: [m, m] symmetric positive semi-definite prior covariance (float64 recommended).
        y: [m] labels in {-1, +1} (a bool or {0, 1} tensor is rejected, to avoid silent flips).
        likelihood: "heaviside" or "probit", see above.
        schedule: "parallel" or "sequential", see above.
        max_iter: maximum number of sweeps over all sites.
        tol: convergence threshold on max_i |change of tau~_i, nu~_i| / (1 + |value|) per sweep.
        damping: step in natural parameters, 1 = undamped EP; use e.g. 0.5 if a run oscillates
            (``converged`` False, ``site_change`` not falling).
        kernel_rtol: relative rounding error of K's entries, for the Heaviside check of
            contradictory pairs (see ``_contradictions``); default 4,096 unit roundoffs of K's
            dtype (4.5e-13 in float64). 0 disables the check.

    Returns:
        EPResult (CPU tensors) with ``log_marginal`` in nats.

    Raises:
        ValueError: for bad input; for a Heaviside labelling of probability zero (two sites with
            correlation 1 within ``kernel_rtol`` and opposite labels, or EP diverging).

    Example:
        >>> import torch
        >>> res = ep_log_marginal(torch.eye(3, dtype=torch.float64), torch.tensor([1.0, -1.0, 1.0]))
        >>> round(res.log_marginal, 6) == round(3 * math.log(0.5), 6)   # independent sites: exact
        True
    """
    if likelihood not in _LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {_LIKELIHOODS}, got {likelihood!r}")
    if schedule not in _SCHEDULES:
        raise ValueError(f"schedule must be one of {_SCHEDULES}, got {schedule!r}")
    if not isinstance(K, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"K and y must be torch.Tensors, got {type(K).__name__} and {type(y).__name__}")
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] == 0:
        raise ValueError(f"K must be a non-empty square [m, m] matrix, got shape {tuple(K.shape)}")
    m = K.shape[0]
    if y.shape != (m,):
        raise ValueError(f"y must have shape [{m}] to match K, got {tuple(y.shape)}")
    if not K.dtype.is_floating_point:
        raise TypeError(f"K must be a floating-point tensor, got {K.dtype}")
    if not torch.isfinite(K).all():
        raise ValueError("K contains NaN or Inf entries")
    if not torch.allclose(K, K.T, rtol=1e-8, atol=1e-10 * float(K.abs().max())):
        raise ValueError("K must be symmetric; symmetrise it with 0.5 * (K + K.T) if the asymmetry is rounding")
    if K.diagonal().min() <= 0:
        raise ValueError("K must have a positive diagonal (every f_i needs positive prior variance)")
    if y.dtype == torch.bool or not bool(((y == 1) | (y == -1)).all()):
        raise ValueError("y must hold labels in {-1, +1}; map {0, 1} labels with 2 * y - 1")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if not (isinstance(damping, (int, float)) and 0 < damping <= 1):
        raise ValueError(f"damping must be in (0, 1], got {damping!r}")
    if kernel_rtol is None:
        kernel_rtol = _KERNEL_RTOL_UNIT_ROUNDOFFS * torch.finfo(K.dtype).eps / 2.0
    if isinstance(kernel_rtol, bool) or not isinstance(kernel_rtol, (int, float)) or not 0 <= kernel_rtol < 0.25:
        raise ValueError(f"kernel_rtol must be a number in [0, 0.25) (a relative rounding error), got {kernel_rtol!r}")

    K = 0.5 * (K + K.T)
    y = y.to(dtype=K.dtype, device=K.device)
    if likelihood == "heaviside" and kernel_rtol > 0:
        pairs, count = _contradictions(K, y, float(kernel_rtol))
        if pairs:
            shown = "; ".join(f"sites {i} and {j} (correlation 1 - {d:.1e}, labels {int(y[i]):+d} and {int(y[j]):+d})"
                              for i, j, d in pairs)
            raise ValueError(
                f"the labelling has zero probability under the Heaviside likelihood: {count} pair(s) of sites have "
                f"prior correlation 1 to within the kernel's rounding (1 - rho <= 4 * kernel_rtol = "
                f"{4 * kernel_rtol:.1e}: identical inputs, or positively parallel ones when sigma_b = 0) but opposite "
                f"labels, so the two outputs cannot both have their labels' signs: {shown}. Remove contradictory "
                "duplicates, or use likelihood='probit' (Heaviside on K + I), which tolerates them"
            )
    run = _ep_parallel if schedule == "parallel" else _ep_sequential
    try:
        tau, nu, mu, var, history, changes, converged, sweeps = run(K, y, likelihood, max_iter, tol, float(damping))
    except ValueError as err:  # a failed factorisation: say so if K itself is the cause
        _reject_indefinite(K, "EP's factorisation of I + S^1/2 K S^1/2 failed")
        raise err
    if not math.isfinite(history[-1]):
        # Only an indefinite K is diagnosed here (a NaN marked "converged" used to come back);
        # a valid kernel keeps EP's own result.
        _reject_indefinite(K, f"EP gave a non-finite log marginal ({history[-1]})")
    cpu = lambda t: t.detach().to("cpu")  # noqa: E731 - results hold CPU tensors, like VolumeEstimate
    return EPResult(
        log_marginal=history[-1],
        converged=converged,
        iterations=sweeps,
        site_precision=cpu(tau),
        site_natural_mean=cpu(nu),
        posterior_mean=cpu(mu),
        posterior_var=cpu(var),
        history=tuple(history),
        likelihood=likelihood,
        config={"schedule": schedule, "max_iter": max_iter, "tol": tol, "damping": damping,
                "kernel_rtol": float(kernel_rtol), "m": m, "dtype": str(K.dtype)},
        site_change=tuple(changes),
    )


def _reject_indefinite(K: torch.Tensor, what: str) -> None:
    """Raise a ValueError naming K as the cause when K has a clearly negative eigenvalue."""
    eig = torch.linalg.eigvalsh(K)
    eig_min, eig_max = float(eig.min()), float(eig.max())
    if eig_min < -1e-8 * max(1.0, abs(eig_max)):
        raise ValueError(
            f"{what}: K is not a valid covariance (smallest eigenvalue {eig_min:.3g}); pass a positive "
            "semi-definite kernel (e.g. from nngp_kernel) in float64"
        )


def _identical_inputs_with_different_labels(X: torch.Tensor, y: torch.Tensor) -> tuple[int, int] | None:
    """First pair (i, j) of bitwise-identical rows of X whose labels differ, or None: an exact
    check, independent of any rounding in the kernel."""
    _, group = torch.unique(X, dim=0, return_inverse=True)
    yf = y.to(torch.float64)
    lo = torch.full((int(group.max()) + 1,), math.inf, dtype=torch.float64, device=X.device).scatter_reduce(
        0, group, yf, "amin")
    mixed = (lo[group] != yf).nonzero()
    if len(mixed) == 0:
        return None
    j = int(mixed[0])
    i = int(((group == group[j]) & (yf != yf[j])).nonzero()[0])
    return min(i, j), max(i, j)


def log_prior_probability_of_function(
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    depth: int,
    sigma_w: float,
    sigma_b: float,
    likelihood: Likelihood = "heaviside",
    schedule: Schedule = "parallel",
    max_iter: int = 100,
    tol: float = 1e-6,
    damping: float = 1.0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> EPResult:
    """log P(f) of the function with outputs y on inputs X: NNGP kernel + EP (Zhang et al., App. A).

    X holds the inputs of S u E (training inputs followed by test inputs) and y the function's labels
    on them (S's labels, then the network's predictions on E), in {-1, +1}. For the paper's FCN pass
    ``**dataclasses.asdict(ZHANG_FCN_KERNEL)`` (depth 2, sigma_w = sqrt(2), sigma_b = 1) and choose
    the likelihood: "heaviside" is the prior probability of f itself; "probit" reproduces the paper's
    GPy computation (Heaviside on K + I). Identical inputs with different labels have probability
    zero under "heaviside" and raise ValueError (checked on X exactly, then on K by
    ``ep_log_marginal``).

    Example:
        >>> import dataclasses, torch
        >>> X = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
        >>> res = log_prior_probability_of_function(X, torch.tensor([1., 1., -1., 1.]),
        ...                                         **dataclasses.asdict(ZHANG_FCN_KERNEL))
        >>> res.converged and res.log_marginal < 0
        True
    """
    K = nngp_kernel(X, depth=depth, sigma_w=sigma_w, sigma_b=sigma_b, dtype=dtype, device=device)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor of labels in {{-1, +1}}, got {type(y).__name__}")
    labels_ok = y.shape == (len(X),) and y.dtype != torch.bool and bool(((y == 1) | (y == -1)).all())
    if likelihood == "heaviside" and labels_ok:  # bad labels get ep_log_marginal's error instead
        pair = _identical_inputs_with_different_labels(X.to(K.device), y.to(K.device))
        if pair is not None:
            i, j = pair
            raise ValueError(
                f"the labelling has zero probability under the Heaviside likelihood: inputs {i} and {j} are identical "
                f"but labelled {float(y[i]):+g} and {float(y[j]):+g}, and a function gives identical inputs one "
                "output. Remove contradictory duplicates, or use likelihood='probit' (Heaviside on K + I), which "
                "tolerates them"
            )
    return ep_log_marginal(K, y.to(K.device), likelihood=likelihood, schedule=schedule, max_iter=max_iter, tol=tol,
                           damping=damping)
