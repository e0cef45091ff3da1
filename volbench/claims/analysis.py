"""Statistics behind the verdicts: log-mean-exp, bootstrap intervals, power-law fits, decisions.

Every interval here is a stated procedure with a confidence level, so a verdict can say how it was
reached:

* ``bootstrap_log_volume``: percentile bootstrap over directions of log mean_k exp(log_terms_k)
  (the Monte Carlo estimate's own sampling error; Efron & Tibshirani 1993, ch. 13).
* ``bootstrap_difference``: the same for log V_a - log V_b from independent resamples.
* ``fit_power_law``: least squares of log V on log D (scipy.stats.linregress) with a Student-t
  interval on the slope; the main paper's alpha is slope / n (Fan et al., Eq. 3-4: log V ~ n log
  r_max and r_max ~ D^alpha).
* ``decide``: pass when the interval lies on the claimed side of the reference value, fail when it
  lies on the other side, inconclusive when it straddles it. An inconclusive result never passes.

Example:
    >>> import torch
    >>> fit = fit_power_law([60, 600, 6000], [-100.0, -142.0, -184.0], n_params=235_146)
    >>> round(fit.slope, 3), fit.alpha < 0
    (-18.24, True)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from volbench.estimator.measures import logmeanexp

__all__ = [
    "bootstrap_log_volume",
    "bootstrap_difference",
    "PowerLawFit",
    "fit_power_law",
    "correlation",
]


def _resample_lme(log_terms: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    k = len(log_terms)
    idx = rng.integers(0, k, size=(n_boot, k))
    return logmeanexp(log_terms[idx], axis=1)


def bootstrap_log_volume(log_terms, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of log mean exp(log_terms) over directions."""
    t = np.asarray(log_terms, dtype=np.float64)
    t = t[~np.isnan(t)]
    if len(t) == 0:
        return (math.nan, math.nan)
    boots = _resample_lme(t, n_boot, np.random.default_rng(seed))
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_difference(log_terms_a, log_terms_b, *, n_boot: int = 2000, level: float = 0.95,
                         seed: int = 0) -> tuple[float, float, float]:
    """(point, low, high) of log V_a - log V_b with independent resampling of each set."""
    a = np.asarray(log_terms_a, dtype=np.float64)
    b = np.asarray(log_terms_b, dtype=np.float64)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    rng = np.random.default_rng(seed)
    diff = _resample_lme(a, n_boot, rng) - _resample_lme(b, n_boot, rng)
    lo, hi = np.quantile(diff, [(1 - level) / 2, (1 + level) / 2])
    return float(logmeanexp(a) - logmeanexp(b)), float(lo), float(hi)


@dataclass(frozen=True)
class PowerLawFit:
    """log V = intercept + slope * log D, with alpha = slope / n_params (Fan et al. Table 1)."""

    slope: float
    slope_low: float
    slope_high: float
    intercept: float
    r_squared: float
    n_points: int
    n_params: int
    level: float

    @property
    def alpha(self) -> float:
        return self.slope / self.n_params

    @property
    def alpha_interval(self) -> tuple[float, float]:
        return self.slope_low / self.n_params, self.slope_high / self.n_params

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(alpha=self.alpha, alpha_low=self.alpha_interval[0], alpha_high=self.alpha_interval[1])
        return d


def fit_power_law(sizes, log_volumes, *, n_params: int, level: float = 0.95) -> PowerLawFit:
    """Fit log V against log D (natural logs) by least squares; t-interval on the slope.

    ``sizes`` and ``log_volumes`` may hold several seeds per size (repeat the size). Needs at
    least three points and two distinct sizes.
    """
    from scipy import stats

    x = np.log(np.asarray(sizes, dtype=np.float64))
    y = np.asarray(log_volumes, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or len(np.unique(x)) < 2:
        raise ValueError(f"a power-law fit needs >= 3 finite points at >= 2 sizes, got {len(x)}")
    res = stats.linregress(x, y)
    dof = len(x) - 2
    t = stats.t.ppf((1 + level) / 2, dof)
    half = t * res.stderr
    return PowerLawFit(
        slope=float(res.slope),
        slope_low=float(res.slope - half),
        slope_high=float(res.slope + half),
        intercept=float(res.intercept),
        r_squared=float(res.rvalue**2),
        n_points=int(len(x)),
        n_params=int(n_params),
        level=level,
    )


def correlation(x, y, *, method: str = "spearman", level: float = 0.95, n_boot: int = 2000,
                seed: int = 0) -> tuple[float, float, float]:
    """(r, low, high): Spearman or Pearson correlation with a bootstrap percentile interval."""
    from scipy import stats

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    fn = {"spearman": lambda a, b: stats.spearmanr(a, b)[0], "pearson": lambda a, b: stats.pearsonr(a, b)[0]}
    if method not in fn:
        raise ValueError(f"method must be 'spearman' or 'pearson', got {method!r}")
    r = float(fn[method](x, y))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        if len(np.unique(x[i])) > 1 and len(np.unique(y[i])) > 1:
            boots.append(fn[method](x[i], y[i]))
    if not boots:
        return r, math.nan, math.nan
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return r, float(lo), float(hi)
