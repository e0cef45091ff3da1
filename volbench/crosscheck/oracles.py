"""Analytic basins with known volumes: the oracles the estimators are tested against.

* ``QuadraticCost``: cost(theta) = 1/2 (theta - c)^T A (theta - c). Its basin {cost < tau} is an
  ellipsoid, convex hence star-shaped around c, with Lebesgue volume
  V_n (2 tau)^(n/2) det(A)^(-1/2), and for A = lambda I its Gaussian prior mass under
  N(0, sigma^2 I) is the noncentral chi-square CDF P(chi'^2_n(||c||^2/sigma^2) <= R^2/sigma^2)
  with R^2 = 2 tau / lambda.
* ``HyperbolicBand``: the main paper's 2-D toy model of scale invariance (Fan et al., App. A.1):
  cost(x, y) = |x y - 1| with threshold s, seen from the anchor (b, 1/b). The paper derives a
  closed form for the star-domain area, independent of b (``HyperbolicBand.paper_area``).

Example:
    >>> import torch
    >>> q = QuadraticCost(torch.tensor([1.0, 4.0]))
    >>> round(q.exact_log_volume(0.5), 6) == round(float(torch.log(torch.tensor(torch.pi / 2))), 6)
    True
"""
from __future__ import annotations

import math

import torch

from volbench.estimator.measures import log_unit_ball_volume

__all__ = ["QuadraticCost", "HyperbolicBand", "gaussian_log_mass_of_ball", "random_rotation"]


def random_rotation(n: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    """A Haar-random orthogonal [n, n] matrix (QR of a Gaussian matrix with sign fix)."""
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=dtype))
    return q * torch.sign(torch.diagonal(r))


class QuadraticCost:
    """cost(theta) = 1/2 (theta - center)^T A (theta - center), batched over rows of theta.

    Args:
        curvature: a positive [n] diagonal of A, or an SPD [n, n] matrix A.
        center: [n] minimum (default 0).
    """

    def __init__(self, curvature: torch.Tensor, center: torch.Tensor | None = None):
        self.A = curvature.to(torch.float64)
        n = self.A.shape[0]
        if self.A.ndim == 1:
            if (self.A <= 0).any():
                raise ValueError("diagonal curvature must be positive")
            self.logdet = float(torch.log(self.A).sum())
        elif self.A.shape == (n, n):
            sign, logdet = torch.linalg.slogdet(self.A)
            if sign <= 0:
                raise ValueError("curvature matrix must be positive definite")
            self.logdet = float(logdet)
        else:
            raise ValueError(f"curvature must be [n] or [n, n], got {tuple(self.A.shape)}")
        self.n_params = n
        self.center = torch.zeros(n, dtype=torch.float64) if center is None else center.to(torch.float64)

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        d = params - self.center.to(params.device, params.dtype)
        A = self.A.to(params.device, params.dtype)
        if A.ndim == 1:
            return 0.5 * (d * d * A).sum(dim=1)
        return 0.5 * ((d @ A) * d).sum(dim=1)

    def exact_log_volume(self, threshold: float) -> float:
        """log of V_n (2 tau)^(n/2) det(A)^(-1/2)."""
        n = self.n_params
        return log_unit_ball_volume(n) + 0.5 * n * math.log(2.0 * threshold) - 0.5 * self.logdet

    def inverse_sqrt(self) -> torch.Tensor:
        """A^(-1/2): the zero-variance preconditioner (Scherlis & Belrose, claim S4)."""
        if self.A.ndim == 1:
            return self.A.rsqrt()
        evals, evecs = torch.linalg.eigh(self.A)
        return (evecs * evals.rsqrt()) @ evecs.T


def gaussian_log_mass_of_ball(radius: float, center: torch.Tensor, prior_std: float) -> float:
    """log P(||z - center|| < radius) for z ~ N(0, prior_std^2 I): the noncentral chi-square CDF."""
    from scipy.stats import chi2, ncx2

    n = center.numel()
    x = (radius / prior_std) ** 2
    nc = float((center.double() / prior_std).pow(2).sum())
    if nc == 0.0:
        return float(chi2.logcdf(x, n))
    return float(ncx2.logcdf(x, n, nc))


class HyperbolicBand:
    """The band 1 - s < x y < 1 + s (cost |x y - 1|, threshold s) of Fan et al. App. A.1."""

    n_params = 2

    def __init__(self, s: float):
        if not 0 < s < 1:
            raise ValueError(f"s must be in (0, 1), got {s}")
        self.s = s

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        return (params[:, 0] * params[:, 1] - 1.0).abs()

    @staticmethod
    def anchor(b: float, dtype=torch.float64) -> torch.Tensor:
        return torch.tensor([b, 1.0 / b], dtype=dtype)

    def paper_area(self) -> float:
        """The paper's closed form of the star-domain area seen from (b, 1/b) (App. A.1)."""
        s = self.s
        q1 = math.sqrt(s / (1 + s))
        q2 = math.sqrt(2 * s / (1 + s))
        return (2 * math.sqrt(2 * s * (1 + s)) + 2 * s * math.log((1 + q1) / (1 - q1))
                - (1 - s) * math.log((1 + q2) / (1 - q2)))
