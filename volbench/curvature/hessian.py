"""The Hessian of a scalar function of the flat parameters: products, the exact matrix, its
diagonal (exact, or Hutchinson's estimate).

``f`` is any scalar function of a flat ``[n]`` tensor that ``torch.func`` can transform (no
``.item()``, no in-place writes to its argument, no data-dependent Python control flow), such as a
:class:`~volbench.curvature.flat_loss.FlatLoss`. Everything here rests on one Hessian-vector
product, :func:`hessian_vector_product` (forward-over-reverse); the diagonal pushes ``chunk_size``
basis (or Rademacher) vectors through it at once with ``vmap``.

Example:
    >>> import torch
    >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    >>> f = lambda x: 0.5 * x @ A @ x
    >>> hessian_diagonal(f, torch.zeros(2, dtype=torch.float64)).tolist()
    [2.0, 3.0]
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torch.func import grad, jvp, vmap

from volbench._checks import check_flat

__all__ = ["HESSIAN_MAX_PARAMS", "hessian_vector_product", "hessian", "hessian_diagonal", "hutchinson_diagonal",
           "check_scalar_function"]


# Largest n for which ``hessian`` builds the dense [n, n] matrix by default: 5,000 covers the
# paper's 4,810-parameter digits MLP (its Hessian is 93 MB in float32); beyond that, use a
# diagonal source or pass ``max_params`` explicitly.
HESSIAN_MAX_PARAMS = 5_000


def check_scalar_function(f, theta: Tensor) -> None:
    if not callable(f):
        raise TypeError(f"f must be a callable Tensor[n] -> Tensor[], got {type(f).__name__}")
    value = f(theta)
    if not isinstance(value, Tensor) or value.ndim != 0:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"f must return a 0-dim tensor (reduce with .mean() or .sum()), got {shape}")
    if not torch.isfinite(value):
        raise ValueError("f(theta) is not finite; curvature at this anchor is undefined")


def _seed_for(seed: int, index: int) -> int:
    """64-bit seed of draw ``index`` under run seed ``seed`` (numpy SeedSequence mixing), so draw k
    is the same whatever the chunking or device."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0]
    return int(state)


def hessian(f: Callable[[Tensor], Tensor], theta: Tensor, *, max_params: int = HESSIAN_MAX_PARAMS) -> Tensor:
    """Exact Hessian H_ij = d^2 f / d theta_i d theta_j at ``theta`` (``torch.func.hessian``,
    forward-over-reverse), an [n, n] tensor on theta's device and dtype.

    Memory and time grow as n^2 (one forward-mode pass per parameter, vmapped), so this refuses
    n > ``max_params`` (default ``HESSIAN_MAX_PARAMS`` = 5,000). It feeds the paper's full-Hessian
    preconditioner P ~ V (|D|^(1/2) + eps)^(-1) V^T (Eq. 17), used there on the 4,810-parameter
    digits MLP only.

    Example:
        >>> import torch
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> H = hessian(lambda x: 0.5 * x @ A @ x, torch.zeros(2, dtype=torch.float64))
        >>> bool(torch.allclose(H, A))
        True
    """
    theta = check_flat(theta, "theta")
    n = theta.numel()
    if not isinstance(max_params, int) or max_params < 1:
        raise ValueError(f"max_params must be a positive integer, got {max_params!r}")
    if n > max_params:
        raise ValueError(
            f"hessian: n = {n} parameters exceeds max_params = {max_params} (an [n, n] Hessian needs "
            f"{n * n * theta.element_size() / 2**20:.0f} MiB and n forward passes); use hessian_diagonal, "
            f"hutchinson_diagonal or hesscale_diagonal, or raise max_params if you have the memory"
        )
    theta = theta.detach()
    check_scalar_function(f, theta)
    return torch.func.hessian(f)(theta).detach()


def _check_chunk(chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")


def hessian_vector_product(f: Callable[[Tensor], Tensor], theta: Tensor) -> Callable[[Tensor], Tensor]:
    """v -> H v, H = d^2 f / d theta^2 at ``theta``: forward-mode differentiation (``torch.func.jvp``)
    of the reverse-mode gradient (``torch.func.grad``), composable with ``vmap`` (batches of v, as
    :func:`hessian_diagonal` pushes them). Each product costs about two gradient passes. The one
    Hessian-vector product of volbench: the preconditioners' curvature and the flatness measures
    (``volbench.curvature.spectrum``) both use it.

    Example:
        >>> import torch
        >>> hvp = hessian_vector_product(lambda w: (w ** 3).sum(), torch.tensor([1.0, 2.0]))
        >>> hvp(torch.tensor([1.0, 1.0])).tolist()   # H = diag(6 w)
        [6.0, 12.0]
    """
    theta = check_flat(theta, "theta").detach()
    check_scalar_function(f, theta)
    g = grad(f)

    def hvp(v: Tensor) -> Tensor:
        if v.shape != theta.shape:
            raise ValueError(f"v must have shape {tuple(theta.shape)}, got {tuple(v.shape)}")
        return jvp(g, (theta,), (v.to(theta),))[1]

    return hvp


def hessian_diagonal(f: Callable[[Tensor], Tensor], theta: Tensor, *, chunk_size: int = 64) -> Tensor:
    """Exact Hessian diagonal diag(H)_i = e_i^T H e_i from n Hessian-vector products, [n].

    Each product H e_i is a forward-mode derivative (``torch.func.jvp``) of the reverse-mode
    gradient (``torch.func.grad``); ``chunk_size`` basis vectors are pushed through together with
    ``vmap``, so memory is ~chunk_size x (one gradient computation) and the cost is n gradient-
    like passes: exact, but as expensive as the full Hessian (the paper's Sec. 3.2 remark). Use it
    as the reference for HesScale and Hutchinson, or on small networks.

    Example:
        >>> import torch
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> hessian_diagonal(lambda x: 0.5 * x @ A @ x, torch.zeros(2, dtype=torch.float64)).tolist()
        [2.0, 3.0]
    """
    theta = check_flat(theta, "theta").detach()
    _check_chunk(chunk_size)
    check_scalar_function(f, theta)
    n = theta.numel()
    batched = vmap(hessian_vector_product(f, theta))
    out = torch.empty_like(theta)
    for start in range(0, n, chunk_size):
        stop = min(n, start + chunk_size)
        rows = torch.arange(stop - start, device=theta.device)
        basis = torch.zeros(stop - start, n, dtype=theta.dtype, device=theta.device)
        basis[rows, start + rows] = 1.0
        out[start:stop] = batched(basis)[rows, start + rows]
    return out


def hutchinson_diagonal(f: Callable[[Tensor], Tensor], theta: Tensor, *, n_samples: int, seed: int,
                        chunk_size: int = 64) -> Tensor:
    """Hutchinson's estimate of diag(H): (1/S) sum_s z_s * (H z_s), z_s with i.i.d. +-1 entries, [n].

    Unbiased because E[z_i z_j] = delta_ij; the variance of entry i is sum_{j != i} H_ij^2 / S, so
    the error shrinks as S^(-1/2) and is small where the Hessian is diagonally dominant. Any size:
    memory ~chunk_size gradient computations, cost S Hessian-vector products.

    Sample s draws its signs from a CPU generator seeded by (seed, s), so the estimate depends only
    on (seed, n_samples), not on chunk_size or device. Accumulation is in float64.

    Example:
        >>> import torch
        >>> A = torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64))
        >>> d = hutchinson_diagonal(lambda x: 0.5 * x @ A @ x, torch.zeros(2, dtype=torch.float64),
        ...                         n_samples=3, seed=0)
        >>> d.tolist()  # exact for a diagonal Hessian: z_i^2 = 1
        [1.0, 4.0]
    """
    theta = check_flat(theta, "theta").detach()
    _check_chunk(chunk_size)
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    check_scalar_function(f, theta)
    n = theta.numel()
    batched = vmap(hessian_vector_product(f, theta))
    gen = torch.Generator(device="cpu")
    total = torch.zeros(n, dtype=torch.float64, device=theta.device)
    for start in range(0, n_samples, chunk_size):
        stop = min(n_samples, start + chunk_size)
        z = torch.empty(stop - start, n, dtype=torch.float32)
        for row, s in enumerate(range(start, stop)):
            gen.manual_seed(_seed_for(seed, s))
            z[row] = torch.randint(0, 2, (n,), generator=gen, dtype=torch.float32)
        z = (2.0 * z - 1.0).to(device=theta.device, dtype=theta.dtype)
        total += (z * batched(z)).to(torch.float64).sum(dim=0)
    return (total / n_samples).to(theta.dtype)
