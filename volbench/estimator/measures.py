"""Measures of a star domain: Lebesgue volume and Gaussian prior mass, per ray.

In polar coordinates around the anchor theta0, a star domain with radius r(v) along the unit
vector v has

    Lebesgue volume   V  = |S^(n-1)| E_v[ int_0^r(v) t^(n-1) dt ]           = V_n E_v[r(v)^n]
    Gaussian mass     mu = |S^(n-1)| E_v[ int_0^r(v) rho(theta0 + t v) t^(n-1) dt ]

with rho the density of N(mu, diag(sigma^2)) (mu = 0: the initialisation prior of Scherlis &
Belrose, Sec. 4; mu = theta0: a local measure centred at the minimum). Only theta0 - mu enters, so
below theta0 stands for theta0 - mu. Along a ray, -log rho is quadratic in t:

    -2 log rho(theta0 + t v) = a t^2 + 2 b t + c + n log(2 pi) + 2 sum log sigma_i,
    a = sum (v_i/sigma_i)^2,  b = sum theta0_i v_i / sigma_i^2,  c = sum (theta0_i/sigma_i)^2.

Substituting y = t sqrt(a) and beta = b / sqrt(a):

    int_0^r rho t^(n-1) dt = (2 pi)^(-n/2) prod(1/sigma) a^(-n/2) exp(-d^2/2) J(r sqrt(a), beta, n),
    J(R, beta, n) = int_0^R exp(-(y + beta)^2 / 2) y^(n-1) dy,

where d^2 = c - b^2/a is the squared (whitened) distance from the prior mean to the ray's line.

``log_J`` evaluates J in log space for every n from 1 to 1e8 and beyond. The log-integrand
f(y) = -(y + beta)^2/2 + (n - 1) log y is concave, so the mass lies in the single interval where f
is within ``window_nats`` of its maximum on [0, R]; that interval is found by bisection and
integrated with composite Gauss-Legendre quadrature. The truncation error is below
R exp(-window_nats) relative to the peak (e^-60 ~ 1e-26 by default) and the quadrature error of a
smooth concave log-integrand spanning 60 nats on 8 x 32 nodes is at the level of float64 rounding;
tests check it against the chi-square CDF (beta = 0), the noncentral chi-square CDF and adaptive
quadrature.

Example:
    >>> import math, torch
    >>> from scipy.stats import chi2
    >>> n, R = 10, 3.0   # mass of a radius-3 ball centred at the prior mean, sigma = 1
    >>> lj = log_J(torch.tensor([R], dtype=torch.float64), torch.zeros(1, dtype=torch.float64), n)
    >>> log_mu = log_unit_sphere_area(n) - 0.5 * n * math.log(2 * math.pi) + float(lj[0])
    >>> bool(abs(math.exp(log_mu) - chi2.cdf(R**2, n)) < 1e-12)
    True
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

__all__ = ["logmeanexp", "log_unit_ball_volume", "log_unit_sphere_area", "log_J", "gaussian_log_ray_mass",
           "gaussian_ray_coefficients", "gaussian_log_ray_mass_at", "check_prior_mean", "describe_prior_mean"]


def log_unit_ball_volume(n: int) -> float:
    """log V_n = (n/2) log(pi) - lgamma(n/2 + 1), the volume of the unit n-ball."""
    return 0.5 * n * math.log(math.pi) - math.lgamma(0.5 * n + 1.0)


def log_unit_sphere_area(n: int) -> float:
    """log |S^(n-1)| = log(2) + (n/2) log(pi) - lgamma(n/2) = log(n V_n)."""
    return math.log(2.0) + 0.5 * n * math.log(math.pi) - math.lgamma(0.5 * n)


@lru_cache(maxsize=8)
def _gauss_legendre(n_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    return torch.from_numpy(x), torch.from_numpy(w)


def _rel_log_integrand(y: torch.Tensor, m: torch.Tensor, beta: torch.Tensor, n: int) -> torch.Tensor:
    """f(y) - f(m), computed without cancelling the large terms of f (n up to 1e8+)."""
    quad = -0.5 * (y - m) * (y + m + 2.0 * beta)
    if n == 1:
        return quad
    # (n-1) log(y/m) with log1p for y near m; y = 0 gives -inf as it should.
    ratio = torch.where(m > 0, (y - m) / torch.where(m > 0, m, torch.ones_like(m)), torch.zeros_like(m))
    return quad + (n - 1) * torch.log1p(ratio)


def log_J(R: torch.Tensor, beta: torch.Tensor, n: int, *, window_nats: float = 60.0,
          panels: int = 8, nodes: int = 32, bisection_steps: int = 80) -> torch.Tensor:
    """log of J(R, beta, n) = int_0^R exp(-(y+beta)^2/2) y^(n-1) dy, elementwise (float64).

    R >= 0 and beta are tensors of one shape; n >= 1 is an integer. R = 0 gives -inf, R = inf is
    allowed.
    """
    if n < 1:
        raise ValueError(f"dimension n must be >= 1, got {n}")
    R = R.to(torch.float64)
    beta = beta.to(torch.float64)
    # Peak of f on (0, inf): root of y^2 + beta y - (n - 1) = 0 (n = 1: y = -beta), clamped to [0, R].
    peak = 0.5 * (-beta + torch.sqrt(beta * beta + 4.0 * (n - 1)))
    peak = torch.clamp(peak, min=0.0)
    m = torch.minimum(peak, R)
    f_m = -0.5 * (m + beta) ** 2 + ((n - 1) * torch.log(m) if n > 1 else 0.0)

    def bisect(lo, hi, increasing: bool):
        # f - f(m) + window is monotone on [lo, hi]; find where it crosses zero.
        for _ in range(bisection_steps):
            mid = 0.5 * (lo + hi)
            above = _rel_log_integrand(mid, m, beta, n) > -window_nats
            if increasing:
                hi = torch.where(above, mid, hi)
                lo = torch.where(above, lo, mid)
            else:
                lo = torch.where(above, mid, lo)
                hi = torch.where(above, hi, mid)
        return lo, hi

    zero = torch.zeros_like(m)
    left_ok = _rel_log_integrand(zero, m, beta, n) > -window_nats  # mass reaches y = 0
    _, left = bisect(zero, m, increasing=True)
    left = torch.where(left_ok | (m == 0), zero, left)
    # For R = inf: f <= f(m) - (y - m)^2 / 2 beyond the peak (f'' <= -1), so this end is far enough.
    finite_R = torch.where(torch.isfinite(R), R, m + math.sqrt(2.0 * window_nats) + 1.0)
    right_ok = _rel_log_integrand(finite_R, m, beta, n) > -window_nats
    _, right = bisect(m, finite_R, increasing=False)
    right = torch.where(right_ok & torch.isfinite(R), finite_R, right)
    x, w = _gauss_legendre(nodes)
    x = x.to(R.device)
    w = w.to(R.device)
    edges = torch.linspace(0.0, 1.0, panels + 1, dtype=torch.float64, device=R.device)
    lo = left.unsqueeze(-1)
    width = (right - left).unsqueeze(-1)
    # Nodes of all panels: [..., panels * nodes].
    a = edges[:-1].repeat_interleave(nodes)
    h = (edges[1] - edges[0]).item()
    t = a + 0.5 * h * (x.repeat(panels) + 1.0)
    y = lo + width * t
    log_w = torch.log(0.5 * h * w.repeat(panels)) + torch.log(width)
    vals = _rel_log_integrand(y, m.unsqueeze(-1), beta.unsqueeze(-1), n) + log_w
    out = f_m + torch.logsumexp(vals, dim=-1)
    return torch.where(R > 0, out, torch.full_like(out, -math.inf))


def gaussian_ray_coefficients(v: torch.Tensor, anchor: torch.Tensor, prior_std: torch.Tensor,
                              chunk: int = 1 << 16) -> dict[str, torch.Tensor]:
    """Per-ray coefficients of the Gaussian log-density along ``anchor + t v``: a, beta, d^2 (see
    the module docstring), float64 ``[b]`` on ``v``'s device.

    Reductions over the n parameters run on ``v``'s device in column chunks accumulated in
    float64, so no ``[b, n]`` float64 copy is made. d^2 is summed from the perpendicular part
    itself (a second pass), not as ||z0||^2 - beta^2, which cancels when a ray points at the
    prior mean.
    """
    device = v.device
    std = prior_std.to(device=device, dtype=torch.float64)
    if std.ndim == 0:
        std = std.expand(v.shape[1])
    a = torch.zeros(v.shape[0], dtype=torch.float64, device=device)
    bz = torch.zeros_like(a)
    for lo in range(0, v.shape[1], chunk):
        vw = v[:, lo:lo + chunk].to(torch.float64) / std[lo:lo + chunk]
        z0 = anchor[lo:lo + chunk].to(device=device, dtype=torch.float64) / std[lo:lo + chunk]
        a += (vw * vw).sum(dim=1)
        bz += vw @ z0
    ratio = bz / a  # the point of the ray's line nearest the prior mean is at t = -ratio
    d2 = torch.zeros_like(a)
    for lo in range(0, v.shape[1], chunk):
        vw = v[:, lo:lo + chunk].to(torch.float64) / std[lo:lo + chunk]
        z0 = anchor[lo:lo + chunk].to(device=device, dtype=torch.float64) / std[lo:lo + chunk]
        perp = z0.unsqueeze(0) - ratio.unsqueeze(1) * vw
        d2 += (perp * perp).sum(dim=1)
    n = v.shape[1]
    log_norm = -0.5 * n * math.log(2 * math.pi) - torch.log(std).sum()
    return {"a": a.cpu(), "beta": (bz / a.sqrt()).cpu(), "d2": d2.cpu(), "log_norm": float(log_norm)}


def gaussian_log_ray_mass_at(radii: torch.Tensor, coeffs: dict[str, torch.Tensor], n: int) -> torch.Tensor:
    """log int_0^r rho(theta0 + t v) t^(n-1) dt from :func:`gaussian_ray_coefficients` ([b] float64)."""
    a = coeffs["a"]
    R = radii.to(torch.float64).cpu() * torch.sqrt(a)
    return coeffs["log_norm"] - 0.5 * n * torch.log(a) - 0.5 * coeffs["d2"] + log_J(R, coeffs["beta"], n)


def gaussian_log_ray_mass(radii: torch.Tensor, v: torch.Tensor, anchor: torch.Tensor,
                          prior_std: torch.Tensor, prior_mean: torch.Tensor | None = None) -> torch.Tensor:
    """log int_0^r rho(theta0 + t v) t^(n-1) dt for each row v of ``v`` (float64, [b]), rho the
    density of N(prior_mean, diag(prior_std^2)).

    Args:
        radii: [b] radii along the rows of v (>= 0, may be inf).
        v: [b, n] unit directions.
        anchor: [n] theta0.
        prior_std: [n] (or broadcastable scalar tensor) prior standard deviations sigma.
        prior_mean: [n] (or scalar) centre mu of the Gaussian; None is the origin. Only the offset
            theta0 - mu enters (the formulas above with theta0 replaced by theta0 - mu).
    """
    offset = anchor.to(torch.float64)
    if prior_mean is not None:
        offset = offset - torch.as_tensor(prior_mean, dtype=torch.float64, device=offset.device)
    return gaussian_log_ray_mass_at(radii, gaussian_ray_coefficients(v, offset, prior_std), anchor.numel())


def check_prior_mean(prior_mean, n: int) -> torch.Tensor | None:
    """The Gaussian measure's centre as an [n] float64 CPU tensor (None: the origin), else a
    TypeError / ValueError naming the fix. A float is the same centre in every coordinate."""
    if prior_mean is None:
        return None
    if isinstance(prior_mean, bool) or not isinstance(prior_mean, (int, float, torch.Tensor)):
        raise TypeError(f"prior_mean must be None (the origin), a float or an [{n}] tensor, got "
                        f"{type(prior_mean).__name__}")
    mean = torch.as_tensor(prior_mean, dtype=torch.float64).detach().cpu()
    if mean.ndim == 0:
        mean = mean.expand(n)
    if mean.shape != (n,) or not torch.isfinite(mean).all():
        raise ValueError(f"prior_mean must be a finite float or a finite [{n}] tensor (one centre per parameter), "
                         f"got shape {tuple(mean.shape)}; pass cost.anchor for a measure centred at the minimum")
    return mean


def describe_prior_mean(mean: torch.Tensor | None, anchor: torch.Tensor | None = None):
    """How a result's config records the centre: 0.0 (origin), "anchor", a float, or "per-parameter"."""
    if mean is None or bool((mean == 0).all()):
        return 0.0
    if anchor is not None and torch.equal(mean, anchor.detach().to("cpu", torch.float64)):
        return "anchor"
    return float(mean[0]) if bool((mean == mean[0]).all()) else "per-parameter"


def logmeanexp(x: torch.Tensor | np.ndarray | Sequence[float], axis: int = -1) -> np.ndarray | float:
    """log mean exp(x) along ``axis``, stable for entries of any size (NaN entries ignored): how
    per-direction log-terms become a log-volume, and how a bootstrap resample of them does. The one
    log-mean-exp of volbench.

    >>> round(logmeanexp([0.0, math.log(3.0)]), 9)  # log((1 + 3) / 2)
    0.693147181
    """
    a = np.asarray(x, dtype=np.float64)
    a = np.where(np.isnan(a), -np.inf, a)
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    count = np.sum(~np.isnan(np.asarray(x, dtype=np.float64)), axis=axis)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - m), axis=axis)) + np.squeeze(m, axis=axis) - np.log(count)
    return float(out) if np.ndim(out) == 0 else out
