"""Curvature-based preconditioners for the volume estimator (Scherlis & Belrose, Sec. 3.2).

The estimator searches along v = P u / ||P u|| (u uniform on the unit sphere) and weights each ray
by ||P u||^(-n). Any P with |det P| = 1 keeps the estimator unbiased; the closer P is to a multiple
of H^(-1/2) for a quadratic basin with Hessian H, the smaller its variance (zero for the exact
one, claim S4). This module turns curvature into such a P:

    diagonal curvature h (Eq. 18):   p_i = 1 / (|h_i|^exponent + eps),  P = diag(p) / exp(mean log p)
    matrix curvature H = V diag(h) V^T (Eq. 17):
                                     P = V diag(p) V^T / exp(mean log p)

so that sum log p = log det P = 0. Note the matrix form is V diag(p) V^T; the paper's public code
applied diag(p) V^T x instead (regression-tested in tests/test_preconditioners.py: both have unit
determinant and stay unbiased, but only V diag(p) V^T makes a rotated ellipsoid round).

The curvature itself comes from ``volbench.curvature`` (the Hessian, its diagonal exact or by
Hutchinson, HesScale, Adam's buffers), computed on the one loss at flat parameters
(:class:`~volbench.curvature.FlatLoss`).

Example (the paper's diag(H) preconditioner on a tiny model):
    >>> import torch
    >>> from torch import nn
    >>> torch.manual_seed(0) and None
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    >>> x, y = torch.randn(8, 3, dtype=torch.float64), torch.tensor([0, 1] * 4)
    >>> from volbench.curvature import FlatLoss, hessian_diagonal
    >>> f = FlatLoss(model, x, y, "ce")
    >>> h = hessian_diagonal(f, f.anchor)
    >>> P = make_preconditioner(h, **PAPER.hessian_diagonal.as_kwargs())
    >>> P.shape, abs(float(P.log().sum())) < 1e-9
    (torch.Size([26]), True)
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import Tensor

from volbench._checks import check_flat

__all__ = ["CurvatureSetting", "PaperSettings", "PAPER", "make_preconditioner", "matrix_preconditioner_sweep",
           "eigen_preconditioner_sweeps", "preconditioners_from_eigh", "filter_preconditioner"]


@dataclass(frozen=True)
class CurvatureSetting:
    """How one curvature source becomes a preconditioner: p = 1 / (|h|^exponent + eps).

    Attributes:
        eps: added to |h|^exponent (units of |h|^exponent); caps p at 1/eps where the curvature
            vanishes, so flat directions do not swamp the determinant normalisation.
        exponent: 0.5 makes P ~ H^(-1/2), the zero-variance choice for a quadratic basin (Eq. 16).
    """

    eps: float
    exponent: float = 0.5

    def as_kwargs(self) -> dict:
        """``{"eps": ..., "exponent": ...}`` for ``make_preconditioner(h, **setting.as_kwargs())``."""
        return asdict(self)


@dataclass(frozen=True)
class PaperSettings:
    """The epsilons Scherlis & Belrose tuned on their digits MLP (Sec. 4.1: "eps = 0.1 works best
    for the Hessian, while eps = 0.01 is best for diag(H) and HesScale and eps = 0.001 is best for
    both Adam preconditioners"). Their curvature there is the Hessian of the KL cost.

    ``adam_second_moment`` has exponent 1.0 because ``adam_second_moment(v)`` returns
    h = sqrt(v): 1 / (sqrt(v)^1 + eps) is exactly what the paper's code computes from the raw
    buffer (it applies exponent 0.5 to v itself). The first moment is fed as |m| with exponent
    0.5 in both.
    """

    hessian: CurvatureSetting = CurvatureSetting(eps=0.1)
    hessian_diagonal: CurvatureSetting = CurvatureSetting(eps=0.01)
    hesscale: CurvatureSetting = CurvatureSetting(eps=0.01)
    adam_first_moment: CurvatureSetting = CurvatureSetting(eps=0.001)
    adam_second_moment: CurvatureSetting = CurvatureSetting(eps=0.001, exponent=1.0)


PAPER = PaperSettings()


# ----------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Scalar loss of the flat parameters
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Exact curvature
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# HesScale
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Adam moments
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Preconditioners
# ----------------------------------------------------------------------------------------------

def _log_p(h: Tensor, exponent: float, eps: float) -> Tensor:
    """Centred log p, p = 1/(|h|^exponent + eps), in float64; raises if some p is infinite."""
    denom = h.abs() ** exponent + eps
    if (denom <= 0).any():
        raise ValueError("curvature has zero entries and eps = 0, so p = 1/0; pass eps > 0 (see PAPER)")
    log_p = -torch.log(denom)
    return log_p - log_p.mean()


def make_preconditioner(curvature: Tensor, *, eps: float, exponent: float = 0.5,
                        kind: Literal["auto", "diagonal", "matrix"] = "auto") -> Tensor:
    """Unit-determinant preconditioner from curvature (Scherlis & Belrose Eqs. 17-18).

    Diagonal ([n] curvature h):    p_i = 1/(|h_i|^exponent + eps);  returns p / exp(mean log p), [n].
    Matrix ([n, n] symmetric H = V diag(h) V^T): same p on the eigenvalues; returns
    V diag(p / exp(mean log p)) V^T, [n, n], symmetric positive definite.

    Either way log det P = sum log p = 0. Taking |h| keeps P positive definite where the
    curvature is negative or zero; eps caps p at 1/eps in flat directions. With exponent 0.5 and
    eps = 0 the matrix form is exactly det-normalised H^(-1/2), the zero-variance preconditioner of a
    quadratic basin (claim S4). Computed in float64, returned in the curvature's dtype and device.

    Args:
        curvature: [n] diagonal curvature or [n, n] symmetric matrix (e.g. ``hessian``).
        eps: >= 0, in units of |h|^exponent; the paper's values are in ``PAPER``.
        exponent: >= 0; 0.5 aims at H^(-1/2) (Eq. 16); 0 gives the identity.
        kind: "auto" (by shape), "diagonal" (an [n, n] input contributes its diagonal: the diag(H)
            preconditioner of Eq. 18 from a full Hessian) or "matrix" (requires [n, n]).

    Example:
        >>> import torch
        >>> p = make_preconditioner(torch.tensor([1.0, 4.0, 16.0]), eps=0.0)
        >>> [round(x, 6) for x in p.tolist()]  # |h|^-1/2 = 1, 1/2, 1/4, divided by their geometric mean 1/2
        [2.0, 1.0, 0.5]
    """
    if not isinstance(curvature, Tensor):
        raise TypeError(f"curvature must be a torch.Tensor ([n] or [n, n]), got {type(curvature).__name__}")
    if not curvature.is_floating_point():
        raise TypeError(f"curvature must be floating point, got {curvature.dtype}")
    if not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r} (the paper's values are in PAPER)")
    if not isinstance(exponent, (int, float)) or not math.isfinite(exponent) or exponent < 0:
        raise ValueError(f"exponent must be a finite number >= 0, got {exponent!r}")
    if kind not in ("auto", "diagonal", "matrix"):
        raise ValueError(f"kind must be 'auto', 'diagonal' or 'matrix', got {kind!r}")
    if curvature.numel() == 0 or not torch.isfinite(curvature).all():
        raise ValueError("curvature must be non-empty and finite (check the curvature source)")
    square = curvature.ndim == 2 and curvature.shape[0] == curvature.shape[1]
    if curvature.ndim != 1 and not square:
        raise ValueError(f"curvature must be [n] or [n, n], got shape {tuple(curvature.shape)}")
    if kind == "matrix" and not square:
        raise ValueError("kind='matrix' needs an [n, n] curvature matrix; a vector gives a diagonal preconditioner")

    h = curvature.detach().to(torch.float64)
    if curvature.ndim == 1 or kind == "diagonal":
        if h.ndim == 2:
            h = torch.diagonal(h)
        P = torch.exp(_log_p(h, float(exponent), float(eps)))
    else:
        scale = float(h.abs().max())
        if not torch.allclose(h, h.T, rtol=1e-6, atol=1e-9 * scale):
            raise ValueError("matrix curvature must be symmetric (a Hessian); symmetrise it with (H + H.T) / 2")
        evals, V = torch.linalg.eigh(0.5 * (h + h.T))
        P = _matrix_from_eigh(evals, V, float(exponent), float(eps))
    return P.to(dtype=curvature.dtype, device=curvature.device)


def _matrix_from_eigh(evals: Tensor, V: Tensor, exponent: float, eps: float) -> Tensor:
    p = torch.exp(_log_p(evals, exponent, eps))
    P = (V * p) @ V.T  # V diag(p) V^T, not diag(p) V^T
    return 0.5 * (P + P.T)


def matrix_preconditioner_sweep(hessian_matrix: Tensor, eps_values: Sequence[float], *,
                                exponent: float = 0.5) -> dict[float, Tensor]:
    """``{eps: make_preconditioner(H, eps=eps, exponent=exponent, kind="matrix")}`` from one
    eigendecomposition: an eps sweep over a dense Hessian (claim S5) then costs one eigh (about
    20 s in float64 for the 4,810-parameter digits MLP on 2 CPU cores) instead of one per eps.

    Example:
        >>> import torch
        >>> H = torch.diag(torch.tensor([1.0, 4.0]))
        >>> Ps = matrix_preconditioner_sweep(H, [0.0, 1.0])
        >>> torch.allclose(Ps[0.0], make_preconditioner(H, eps=0.0, kind="matrix"))
        True
    """
    faithful, _ = eigen_preconditioner_sweeps(hessian_matrix, eps_values, exponent=exponent)
    return faithful


def eigen_preconditioner_sweeps(hessian_matrix: Tensor, eps_values: Sequence[float], *, exponent: float = 0.5
                                ) -> tuple[dict[float, Tensor], dict[float, Tensor]]:
    """From one eigendecomposition H = V diag(h) V^T, for every eps: the faithful full-matrix
    preconditioner V diag(p) V^T (Eq. 17, as ``matrix_preconditioner_sweep``) and what the second
    paper's public code does with it.

    That code applies the matrix to a Gaussian u as diag(p) V^T u. Since V is orthogonal, V^T u is
    again a standard Gaussian vector, so its rays have the law of diag(p) u': a *diagonal*
    preconditioner whose entries are the eigenvalue-based scales p (in eigh's ascending order of
    eigenvalues) assigned to the parameter coordinates in their flat order, i.e. to arbitrary
    coordinates. The importance weight ||diag(p) V^T u||^(-n) = ||diag(p) u'||^(-n) matches too,
    so running the estimator with this [n] vector reproduces the paper code's estimator exactly in
    distribution (with directions u' = V^T u). Claim S5 reports it beside the faithful one.

    Returns:
        (faithful {eps: [n, n]}, paper_code {eps: [n] unit-determinant diagonal}).

    Example:
        >>> import torch
        >>> H = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)  # eigenvalues 1, 3
        >>> faithful, code = eigen_preconditioner_sweeps(H, [0.0])
        >>> [round(x, 6) for x in code[0.0].tolist()]  # 3^(1/4), 3^(-1/4): p of the eigenvalues, on coordinates 0, 1
        [1.316074, 0.759836]
        >>> bool(torch.allclose(faithful[0.0] @ faithful[0.0] @ H, torch.eye(2, dtype=torch.float64) * 3 ** 0.5))
        True
    """
    if not isinstance(hessian_matrix, Tensor) or hessian_matrix.ndim != 2 or \
            hessian_matrix.shape[0] != hessian_matrix.shape[1]:
        raise ValueError("hessian_matrix must be a square [n, n] tensor (use make_preconditioner for [n] curvature)")
    eps_values = list(eps_values)
    if not eps_values:
        raise ValueError("eps_values is empty: pass the epsilons to sweep, e.g. [1e-3, 1e-2, 1e-1]")
    for eps in eps_values:
        if not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
            raise ValueError(f"every eps must be a finite number >= 0, got {eps!r}")
    if not isinstance(exponent, (int, float)) or not math.isfinite(exponent) or exponent < 0:
        raise ValueError(f"exponent must be a finite number >= 0, got {exponent!r}")
    h = hessian_matrix.detach().to(torch.float64)
    scale = float(h.abs().max())
    if not torch.isfinite(h).all() or not torch.allclose(h, h.T, rtol=1e-6, atol=1e-9 * scale):
        raise ValueError("hessian_matrix must be finite and symmetric; symmetrise it with (H + H.T) / 2")
    evals, V = torch.linalg.eigh(0.5 * (h + h.T))
    like = dict(dtype=hessian_matrix.dtype, device=hessian_matrix.device)
    faithful, paper_code = {}, {}
    for eps in eps_values:
        f, c = preconditioners_from_eigh(evals, V, eps, exponent=exponent)
        faithful[eps], paper_code[eps] = f.to(**like), c.to(**like)
    return faithful, paper_code


def preconditioners_from_eigh(evals: Tensor, V: Tensor, eps: float, *, exponent: float = 0.5
                              ) -> tuple[Tensor, Tensor]:
    """(V diag(p) V^T, p) for one eps from a kept eigendecomposition (``torch.linalg.eigh`` of the
    Hessian, float64): the faithful full-matrix preconditioner and the diagonal law of the paper
    code's diag(p) V^T map (see :func:`eigen_preconditioner_sweeps`), so a sweep over eps needs one
    eigh however its values arrive."""
    if not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return (_matrix_from_eigh(evals, V, float(exponent), float(eps)),
            torch.exp(_log_p(evals, float(exponent), float(eps))))


def filter_preconditioner(scale: Tensor) -> Tensor:
    """Filter normalisation as a diagonal preconditioner: scale / exp(mean log scale), [n].

    ``scale`` is the per-parameter multiplier of filter-normalised directions (Fan et al.: each
    weight entry gets its output row's / filter's norm; see ``cost.filter_scale`` in
    docs/CONTRACTS.md). Dividing by the geometric mean makes the determinant 1, so the estimator
    with importance weight ||P u||^(-n) stays unbiased for the Lebesgue volume.

    Example:
        >>> import torch
        >>> filter_preconditioner(torch.tensor([1.0, 4.0])).tolist()
        [0.5, 2.0]
    """
    s = check_flat(scale, "scale")
    if (s <= 0).any():
        raise ValueError("scale must be strictly positive (a weight row of norm zero cannot scale a direction)")
    log_s = torch.log(s.detach().to(torch.float64))
    return torch.exp(log_s - log_s.mean()).to(dtype=s.dtype, device=s.device)
