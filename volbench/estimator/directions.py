"""Search directions: isotropic, filter-normalised and preconditioned.

Every direction k is drawn from its own CPU generator seeded by ``(seed, k)``, so the k-th
direction is the same whatever the batch size, the device or the number of directions asked for
(claim E3: batched, chunked, CPU and GPU evaluation give the same radii).

Preconditioning (Scherlis & Belrose, Sec. 3). With u uniform on the unit sphere and a linear map P
of unit determinant, search along w = P u. Because det P = 1 the basin's volume equals the volume
of its preimage under x -> theta0 + P x, whose radius along u is s(u) = r(v) / ||P u|| where r(v) is
the radius found along the unit vector v = P u / ||P u||. Hence

    V = V_n E_u[s(u)^n] = V_n E_u[r(v)^n ||P u||^(-n)],

an unbiased estimator for every P; the closer P is to (a multiple of) H^(-1/2) for a quadratic
basin with Hessian H, the smaller its variance (zero for the exact one, claim S4).

Example:
    >>> import torch
    >>> s = DirectionSampler(n_params=3, seed=0, preconditioner=torch.tensor([1.0, 2.0, 0.5]))
    >>> v, log_norm_w = s.batch(torch.arange(4))
    >>> v.shape, bool(torch.allclose(v.norm(dim=1), torch.ones(4, dtype=v.dtype)))
    (torch.Size([4, 3]), True)
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["direction_seed", "raw_gaussian", "normalise_preconditioner", "DirectionSampler"]


def direction_seed(seed: int, index: int) -> int:
    """64-bit seed of direction ``index`` for the run seed ``seed`` (numpy SeedSequence mixing,
    so neighbouring seeds and indices give unrelated streams)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and direction index must be non-negative, got {seed}, {index}")
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0]
    return int(state)


def raw_gaussian(indices: torch.Tensor, n_params: int, seed: int) -> torch.Tensor:
    """[len(indices), n] float32 CPU tensor of N(0, 1) entries, row k from its own seed.

    Float32 is what the main paper's code draws; the estimator casts afterwards.
    """
    out = torch.empty(len(indices), n_params, dtype=torch.float32)
    gen = torch.Generator(device="cpu")
    for row, k in enumerate(indices.tolist()):
        gen.manual_seed(direction_seed(seed, k))
        torch.randn(n_params, generator=gen, out=out[row])
    return out


def normalise_preconditioner(p: torch.Tensor, n_params: int) -> torch.Tensor:
    """Return P scaled to unit |determinant| (float64): a positive [n] diagonal or an [n, n]
    symmetric positive-definite matrix. Raises with the fix for anything else."""
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"preconditioner must be a torch.Tensor ([n] or [n, n]), got {type(p).__name__}")
    p = p.detach().to(torch.float64)
    if not torch.isfinite(p).all():
        raise ValueError("preconditioner has non-finite entries; check the curvature it was built from")
    if p.shape == (n_params,):
        if (p <= 0).any():
            raise ValueError("diagonal preconditioner must be strictly positive (add eps to the curvature)")
        return p / torch.exp(torch.log(p).mean())
    if p.shape == (n_params, n_params):
        if not torch.allclose(p, p.T, rtol=1e-6, atol=1e-12 * float(p.abs().max())):
            raise ValueError("matrix preconditioner must be symmetric (use V diag(p) V^T)")
        sign, logdet = torch.linalg.slogdet(p)
        eig_min = torch.linalg.eigvalsh(p).min()
        if sign <= 0 or eig_min <= 0:
            raise ValueError("matrix preconditioner must be positive definite")
        return p / torch.exp(logdet / n_params)
    raise ValueError(
        f"preconditioner shape {tuple(p.shape)} does not match n_params={n_params}: "
        f"pass a [{n_params}] diagonal or a [{n_params}, {n_params}] matrix"
    )


class DirectionSampler:
    """Unit search directions v_k = P u_k / ||P u_k|| and their log ||P u_k||.

    Args:
        n_params: dimension n.
        seed: run seed; direction k uses ``direction_seed(seed, k)``.
        preconditioner: None, a positive [n] diagonal or an SPD [n, n] matrix (normalised here to
            unit determinant).
        explicit: optional [K, n] tensor whose rows replace the Gaussian draws (each row is
            normalised to the unit sphere before P is applied); rows must be non-zero.
    """

    def __init__(self, n_params: int, seed: int = 0, preconditioner: torch.Tensor | None = None,
                 explicit: torch.Tensor | None = None):
        self.n_params = int(n_params)
        self.seed = int(seed)
        self.preconditioner = None if preconditioner is None else normalise_preconditioner(preconditioner, n_params)
        if explicit is not None:
            if explicit.ndim != 2 or explicit.shape[1] != n_params:
                raise ValueError(f"explicit directions must be [K, {n_params}], got {tuple(explicit.shape)}")
            if not torch.isfinite(explicit).all() or (explicit.norm(dim=1) == 0).any():
                raise ValueError("explicit directions must be finite and non-zero")
        self.explicit = explicit

    def batch(self, indices: torch.Tensor, *, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Directions for ``indices``: ([b, n] unit vectors in ``dtype`` on ``device``,
        [b] float64 log ||P u|| on CPU)."""
        if self.explicit is not None:
            g = self.explicit[indices.to(self.explicit.device)].detach().to("cpu", torch.float64)
        else:
            g = raw_gaussian(indices, self.n_params, self.seed).to(torch.float64)
        u = g / g.norm(dim=1, keepdim=True)
        if self.preconditioner is None:
            w = u
        elif self.preconditioner.ndim == 1:
            w = u * self.preconditioner
        else:
            w = u @ self.preconditioner.T  # rows are (P u_k)^T
        norm_w = w.norm(dim=1)
        v = (w / norm_w[:, None]).to(device=device, dtype=dtype)
        return v, torch.log(norm_w)

    def describe(self) -> dict:
        kind = "explicit" if self.explicit is not None else "isotropic"
        pre = None if self.preconditioner is None else ("diagonal" if self.preconditioner.ndim == 1 else "matrix")
        return {"directions": kind, "preconditioner": pre, "seed": self.seed}

