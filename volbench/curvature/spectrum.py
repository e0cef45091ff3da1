"""Flatness of a minimum read off its Hessian spectrum: the spectral norm ||H||_2 by power
iteration, and the k largest eigenvalues (their log product, a flatness measure) by Lanczos, both
from Hessian-vector products (:func:`volbench.curvature.hessian.hessian_vector_product`).

Zhang, Reid, Valle-Perez, Louis (ICML 2021), Sec. 2.2 and App. B: the spectral norm, and the product
of the top-k (k = 50) eigenvalues (Wu et al. 2017); for small eps, Keskar sharpness ~ 100 ||H||_2
eps^2 / (2 (1 + L)) (``volbench.function_space.sharpness.sharpness_from_spectral_norm``).

Example (a quadratic bowl 1/2 w^T A w with A = diag(4, 1): ||H||_2 = 4):
    >>> import torch
    >>> A = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    >>> res = hessian_spectral_norm(lambda w: 0.5 * w @ A @ w, torch.zeros(2, dtype=torch.float64), seed=0)
    >>> round(res.value, 6)
    4.0
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from volbench._checks import check_flat, check_seed
from volbench.curvature.hessian import hessian_vector_product

__all__ = ["SpectralNormResult", "hessian_spectral_norm", "TopEigenvalues", "hessian_top_eigenvalues"]

LossFn = Callable[..., torch.Tensor]


def _start_vector(n: int, seed: int, like: torch.Tensor) -> torch.Tensor:
    # Drawn on the CPU so the same seed gives the same start on every device.
    g = torch.Generator().manual_seed(int(seed))
    v = torch.randn(n, generator=g, dtype=torch.float64).to(device=like.device, dtype=like.dtype)
    return v / v.norm()


@dataclass(frozen=True)
class SpectralNormResult:
    """Power-iteration estimate of the Hessian's spectral norm ||H||_2 = max_i |lambda_i|.

    Attributes:
        value: ||H v|| for the final unit vector v, a lower bound on ||H||_2 that converges to it.
        rayleigh: v^T H v, the signed dominant eigenvalue (meaningless if +-lambda tie).
        iterations, converged: power iterations run and whether the relative change of ``value``
            fell below ``tol``.
        seed: seed of the random start vector. tol, max_iter: settings.
    """

    value: float
    rayleigh: float
    iterations: int
    converged: bool
    seed: int
    tol: float
    max_iter: int


def hessian_spectral_norm(
    loss_fn: LossFn, theta: torch.Tensor, *, max_iter: int = 200, tol: float = 1e-6, seed: int = 0
) -> SpectralNormResult:
    """Spectral norm of the Hessian at ``theta`` by power iteration with Hessian-vector products.

    v_0 ~ N(0, I) (seeded, normalised); v_{k+1} = H v_k / ||H v_k||. The estimate ||H v_k||
    converges to max |lambda| at the rate (lambda_2 / lambda_1)^(2k); iteration stops when it changes
    by less than ``tol`` relatively. Zhang et al. (2021), Sec. 2.2, App. B, Fig. S1-S2, S12, S14.

    Example:
        >>> import torch
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)   # eigenvalues 1, 3
        >>> r = hessian_spectral_norm(lambda w: 0.5 * w @ A @ w, torch.ones(2, dtype=torch.float64), seed=1)
        >>> round(r.value, 6), r.converged
        (3.0, True)
    """
    seed = check_seed(seed)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    hvp = hessian_vector_product(loss_fn, theta)
    v = _start_vector(theta.numel(), seed, theta)
    value, rayleigh, converged, it = 0.0, 0.0, False, 0
    for it in range(1, max_iter + 1):  # noqa: B007  `it` is read after the loop (the iteration count returned)
        w = hvp(v)
        new = float(w.norm())
        rayleigh = float(v @ w)
        if new == 0.0:  # H v = 0: v in the null space (or H = 0); nothing to iterate on
            value, converged = 0.0, True
            break
        v = w / new
        if abs(new - value) <= tol * new:
            value, converged = new, True
            break
        value = new
    return SpectralNormResult(value=value, rayleigh=rayleigh, iterations=it, converged=converged, seed=seed,
                              tol=tol, max_iter=max_iter)


@dataclass(frozen=True)
class TopEigenvalues:
    """The k largest (algebraic) Hessian eigenvalues and the log of their product.

    Attributes:
        eigenvalues: [k] float64 CPU tensor, descending.
        log_product: sum of log(lambda) over the positive ones among them -- the log of the
            "product of the top-k eigenvalues" flatness measure (Wu et al. 2017; Zhang et al. 2021,
            App. B, k = 50), in nats; -inf if none is positive.
        n_positive: how many of the k were positive (and entered ``log_product``).
        seed: seed of the Lanczos start vector.
    """

    eigenvalues: torch.Tensor
    log_product: float
    n_positive: int
    seed: int


def hessian_top_eigenvalues(
    loss_fn: LossFn, theta: torch.Tensor, k: int, *, seed: int = 0, tol: float = 0.0, max_iter: int | None = None
) -> TopEigenvalues:
    """The k largest eigenvalues of the Hessian at ``theta`` by implicitly restarted Lanczos.

    Uses ``scipy.sparse.linalg.eigsh`` (ARPACK, which="LA") on a ``LinearOperator`` whose matvec is a
    Hessian-vector product computed by torch on ``theta``'s device; the start vector is seeded.
    ``tol`` and ``max_iter`` are ARPACK's (0 = machine precision, None = 10 n). Requires k < n.

    Example:
        >>> import torch
        >>> A = torch.diag(torch.tensor([5.0, -1.0, 3.0, 2.0], dtype=torch.float64))
        >>> r = hessian_top_eigenvalues(lambda w: 0.5 * w @ A @ w, torch.zeros(4, dtype=torch.float64), 2)
        >>> [round(x, 6) for x in r.eigenvalues.tolist()], round(r.log_product, 6) == round(math.log(15), 6)
        ([5.0, 3.0], True)
    """
    from scipy.sparse.linalg import LinearOperator, eigsh  # scipy.sparse is heavy; load on use

    seed = check_seed(seed)
    theta = check_flat(theta, "theta").detach()
    n = theta.numel()
    if isinstance(k, bool) or not isinstance(k, int) or not 0 < k < n:
        raise ValueError(f"k must be an int with 0 < k < n = {n} (ARPACK); for k >= n use torch.func.hessian, got "
                         f"{k!r}")
    hvp = hessian_vector_product(loss_fn, theta)

    def matvec(x: np.ndarray) -> np.ndarray:
        v = torch.as_tensor(np.ascontiguousarray(x).reshape(-1), dtype=theta.dtype).to(theta.device)
        return hvp(v).to("cpu", torch.float64).numpy()

    op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = _start_vector(n, seed, torch.empty(0, dtype=torch.float64)).numpy()
    vals = eigsh(op, k=k, which="LA", v0=v0, tol=tol, maxiter=max_iter, return_eigenvectors=False)
    vals = torch.as_tensor(np.sort(vals)[::-1].copy(), dtype=torch.float64)
    pos = vals[vals > 0]
    log_product = float(torch.log(pos).sum()) if pos.numel() else -math.inf
    return TopEigenvalues(eigenvalues=vals, log_product=log_product, n_positive=int(pos.numel()), seed=seed)
