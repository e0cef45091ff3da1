"""Search directions: isotropic, filter-normalised and preconditioned, drawn on the device.

Every direction k is drawn from its own counter-based stream keyed by ``direction_seed(seed, k)``
(Threefry-4x32-20, Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011),
written in torch int32 operations, which give the same bits on every device; a Box-Muller
transform in the output dtype turns them into N(0, 1) draws. So the k-th direction is the same
whatever the batch size, the device or the number of directions asked for, and it is built where
the cost is evaluated, in the compute dtype, without [K, n] float64 temporaries on the CPU
(claim E3: batched, chunked, CPU and GPU evaluation give the same radii; on two devices the
transcendental functions may differ in the last bit, nothing more).

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
    >>> bool(torch.equal(raw_gaussian(torch.tensor([2]), 5, seed=1), raw_gaussian(torch.arange(4), 5, seed=1)[2:3]))
    True
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["DIRECTION_GENERATOR", "direction_seed", "threefry4x32", "gaussian_rows", "raw_gaussian", "row_norms",
           "normalise_preconditioner", "DirectionSampler"]

#: Names the stream of raw Gaussian draws; recorded in results and cache keys (a different
#: generator gives different directions for the same seed).
DIRECTION_GENERATOR = "threefry4x32-20+box-muller/v1"

# Threefry-4x32 rotation constants and key-schedule parity (Random123 1.14, threefry.h).
_ROTATIONS = ((10, 26), (11, 21), (13, 27), (23, 5), (6, 20), (17, 11), (25, 10), (18, 20))
_PARITY = 0x1BD11BDA
# Elements per int32 operation: ~64k keeps every temporary in cache and amortises the per-op
# overhead (fastest on one CPU core; measured 1k..64k counters per step, torch 2.13).
_ELEMENTS_PER_STEP = 1 << 16


def direction_seed(seed: int, index: int) -> int:
    """64-bit seed of direction ``index`` for the run seed ``seed`` (numpy SeedSequence mixing,
    so neighbouring seeds and indices give unrelated streams)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and direction index must be non-negative, got {seed}, {index}")
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0]
    return int(state)


def _i32(value: int) -> int:
    """The int32 whose bits are the low 32 bits of ``value``."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= (1 << 31) else value


def _rotl(x: torch.Tensor, r: int) -> torch.Tensor:
    # int32 shifts: << wraps, >> sign-extends, so the low r bits are masked after it.
    return (x << r) | ((x >> (32 - r)) & ((1 << r) - 1))


def threefry4x32(counter: list[torch.Tensor], key: list[torch.Tensor], rounds: int = 20) -> list[torch.Tensor]:
    """Threefry-4x32 on int32 tensors holding uint32 bit patterns (broadcastable shapes).

    Additions wrap modulo 2^32 as the algorithm needs. Known-answer test (Random123 kat_vectors,
    20 rounds, counter = key = 0):

    >>> z = torch.zeros(1, dtype=torch.int32)
    >>> [format(int(x) & 0xFFFFFFFF, "08x") for x in threefry4x32([z] * 4, [z] * 4)]
    ['9c6ca96a', 'e17eae66', 'fc10ecd4', '5256a7d8']
    """
    ks = list(key) + [key[0] ^ key[1] ^ key[2] ^ key[3] ^ _i32(_PARITY)]
    x = [counter[i] + ks[i] for i in range(4)]
    for r in range(rounds):
        a, b = _ROTATIONS[r % 8]
        if r % 2 == 0:
            x[0] = x[0] + x[1]
            x[1] = _rotl(x[1], a) ^ x[0]
            x[2] = x[2] + x[3]
            x[3] = _rotl(x[3], b) ^ x[2]
        else:
            x[0] = x[0] + x[3]
            x[3] = _rotl(x[3], a) ^ x[0]
            x[2] = x[2] + x[1]
            x[1] = _rotl(x[1], b) ^ x[2]
        if r % 4 == 3:  # key injection
            s = (r + 1) // 4
            x = [x[i] + ks[(s + i) % 5] for i in range(4)]
            x[3] = x[3] + s
    return x


def gaussian_rows(keys: list[int], n: int, *, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[len(keys), n]`` N(0, 1) draws in ``dtype`` on ``device``, row i from the 64-bit key
    ``keys[i]``: block j of four draws is Threefry-4x32-20 of counter (j, 0, 0, 0) under key
    (low, high, 0, 0), mapped by Box-Muller (u1, u2) -> sqrt(-2 log u1) (cos, sin)(2 pi u2) with
    u = (bits + 0.5) / 2^32 in (0, 1) (|z| <= 6.7)."""
    device = torch.device("cpu") if device is None else torch.device(device)
    b = len(keys)
    out = torch.empty(b, -(-n // 4), 2, 2, dtype=dtype, device=device)
    if b == 0 or n == 0:
        return out.view(b, -1)[:, :n]
    k0 = torch.tensor([_i32(k) for k in keys], dtype=torch.int32, device=device).view(b, 1)
    k1 = torch.tensor([_i32(k >> 32) for k in keys], dtype=torch.int32, device=device).view(b, 1)
    zero = torch.zeros((1, 1), dtype=torch.int32, device=device)
    n_blocks = out.shape[1]
    # A signed int32 x stands for the uint32 x mod 2^32; x + 2^31 is a bijection of it onto
    # [0, 2^32), so (x + 2^31 + 0.5) / 2^32 is uniform on (0, 1) (exact in float64; rounded in
    # float32, where it can reach 1.0: log 1 = 0 is harmless).
    shift, scale = 2.0**31 + 0.5, 2.0**-32
    step = max(256, _ELEMENTS_PER_STEP // b)
    for j0 in range(0, n_blocks, step):
        j1 = min(n_blocks, j0 + step)
        j = torch.arange(j0, j1, dtype=torch.int32, device=device).view(1, -1)
        z = torch.zeros_like(j)
        x = threefry4x32([j, z, z, z], [k0, k1, zero, zero])
        radius = torch.stack((x[0], x[2]), -1).to(dtype).add_(shift).mul_(scale).log_().mul_(-2.0).sqrt_()
        angle = torch.stack((x[1], x[3]), -1).to(dtype).add_(shift).mul_(scale * 2.0 * math.pi)
        block = out[:, j0:j1]
        torch.mul(radius, torch.cos(angle), out=block[..., 0])
        torch.mul(radius, torch.sin(angle), out=block[..., 1])
    return out.view(b, -1)[:, :n]


def raw_gaussian(indices: torch.Tensor, n_params: int, seed: int, *, device=None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[len(indices), n] N(0, 1) draws, row k from ``direction_seed(seed, k)`` (see
    :func:`gaussian_rows`), on ``device`` in ``dtype``. Float32 (the default) is what the main
    paper's code draws."""
    keys = [direction_seed(seed, int(k)) for k in indices.tolist()]
    return gaussian_rows(keys, n_params, device=device, dtype=dtype)


def row_norms(x: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """[b] float64 L2 norms of the rows of ``x`` ([b, n], any float dtype), accumulated in float64
    over column chunks (no [b, n] float64 copy), on ``x``'s device. 2,048 columns keep a chunk in
    cache: 3.5x faster than one float64 copy on one CPU core (torch 2.13, 64 x 235,146)."""
    acc = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for lo in range(0, x.shape[1], chunk):
        part = x[:, lo:lo + chunk].to(torch.float64)
        acc += (part * part).sum(dim=1)
    return acc.sqrt()


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
        # max |P - P^T| against max |P|: one [n, n] temporary, where allclose makes several
        # (2.6 s -> 0.8 s per 4,810 x 4,810 float64 matrix on one thread, measured 2026-12-02).
        if float(torch.sub(p, p.T).abs_().max()) > 1e-6 * float(p.abs().max()):
            raise ValueError("matrix preconditioner must be symmetric (use V diag(p) V^T)")
        # One Cholesky factorisation both proves positive definiteness and gives log det P =
        # 2 sum log diag L: about n^3/3 flops, against an LU (slogdet) plus a symmetric eigensolve
        # (eigvalsh): 14.2 s -> 1.8 s per matrix at the digits MLP's n = 4,810 on one thread.
        factor, info = torch.linalg.cholesky_ex(p)
        if int(info) != 0:
            raise ValueError(f"matrix preconditioner must be positive definite (its Cholesky factorisation "
                             f"fails at column {int(info) - 1}); add eps to the curvature's eigenvalues")
        logdet = 2.0 * torch.log(torch.diagonal(factor)).sum()
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
        self._placed: dict[tuple, torch.Tensor] = {}  # the preconditioner on (device, dtype)

    def _on(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (str(device), dtype)
        if key not in self._placed:
            p = self.preconditioner
            # A matrix is applied in float64 (small n only: it is [n, n]); a diagonal in dtype.
            self._placed[key] = p.to(device=device, dtype=torch.float64 if p.ndim == 2 else dtype)
        return self._placed[key]

    def batch(self, indices: torch.Tensor, *, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Directions for ``indices``: ([b, n] unit vectors in ``dtype`` on ``device``,
        [b] float64 log ||P u|| on CPU). Built on ``device`` in ``dtype``; norms accumulate in
        float64."""
        device = torch.device("cpu") if device is None else torch.device(device)
        if self.explicit is not None:
            g = self.explicit[indices.to(self.explicit.device)].detach().to(device=device, dtype=dtype)
        else:
            g = raw_gaussian(indices, self.n_params, self.seed, device=device, dtype=dtype)
        norm_g = row_norms(g)
        u = g.div_(norm_g.to(dtype).unsqueeze(1))
        if self.preconditioner is None:
            # v = u: its norm is 1 up to the rounding of the division (log ||u|| ~ 1e-7 in float32).
            return u, torch.zeros(len(indices), dtype=torch.float64)
        if self.preconditioner.ndim == 1:
            w = u.mul_(self._on(device, dtype))
        else:
            w = (u.to(torch.float64) @ self._on(device, dtype).T).to(dtype)  # rows are (P u_k)^T
        norm_w = row_norms(w)
        v = w.div_(norm_w.to(dtype).unsqueeze(1))
        return v, torch.log(norm_w).cpu()

    def describe(self) -> dict:
        kind = "explicit" if self.explicit is not None else "isotropic"
        pre = None if self.preconditioner is None else ("diagonal" if self.preconditioner.ndim == 1 else "matrix")
        return {"directions": kind, "preconditioner": pre, "seed": self.seed, "generator": DIRECTION_GENERATOR}
