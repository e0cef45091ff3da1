"""The local learning coefficient (LLC) from volume scaling, its closed forms, and devinterp's SGLD
estimate beside it (claim E5).

Volume scaling. Near a minimum theta0 with L0 = L(theta0), the measure of the sublevel set
{theta : L(theta) - L0 < eps} scales like c eps^lambda (-log eps)^(m-1) as eps -> 0 (Watanabe,
"Algebraic Geometry and Statistical Learning Theory", 2009, Thm 7.1; lambda is the real log
canonical threshold, the "learning coefficient"; lambda = n/2 for a regular minimum). Hence the
slope of log V against log eps at small eps estimates lambda. ``fit_volume_scaling`` fits that
slope by least squares over the smallest decade of a threshold ladder (a fixed rule, below) with
a bootstrap interval that resamples the same directions at every threshold.

Caveat (a property of star domains, not of the sampler): the estimator measures the star domain
around theta0, the union of the segments from theta0 that stay below the threshold, which for a
singular minimum is smaller than the sublevel set. Around a smooth *curved* minimum manifold of
codimension R the sublevel set is a tube (lambda = R/2), while straight rays along its tangent
leave the tube at radius ~ eps^(1/4) instead of ~ eps^(1/2): the star domain's measure then scales
with exponent (n + R)/4 >= R/2 at small eps (integrate r(u)^n ~ min(eps^(n/2) phi^-n, eps^(n/4))
over the angle phi to the tangent space, measure phi^(R-1) dphi). Only flat minimum sets (linear
subspaces, e.g. W1 = 0 in a deep linear network, or any homogeneous loss seen from its centre) have
star domains that scale like the sublevel set. E5 reports where the slope agrees with lambda and
where it does not.

Closed forms.
* Reduced-rank regression (two-layer linear network, input M, hidden H, output N, true rank r):
  Aoyagi & Watanabe, "Stochastic complexities of reduced rank regression in Bayesian estimation",
  Neural Networks 18 (2005) 924-933, Main Theorem (four cases) — ``rrr_lambda``.
* Deep linear networks (widths H_1 = input, ..., H_{L+1} = output, true rank r): Aoyagi,
  "Consideration on the learning efficiency of multiple-layered neural networks with linear
  units", Neural Networks 172 (2024) 106132, Theorem 1 — ``dln_lambda``. With M_j = H_j - r there
  is a subset S of {1..L+1}, |S| = l + 1, with max_{S} M < min_{not S} M, sum_S M >= l max_S M
  and sum_S M < l min_{not S} M; then with a = sum_S M - l (ceil(sum_S M / l) - 1),

      lambda = (-r^2 + r (H_1 + H_{L+1}))/2 + a (l - a)/(4 l) - l (l - 1)/4 (sum_S M / l)^2
               + 1/2 sum_{i < j in S} M_i M_j.

  It reduces to MN/2 for one layer (a regular model) and to ``rrr_lambda`` for two (tested).

devinterp's SGLD estimate of the same quantity (Lau et al., "The local learning coefficient: a
singularity-aware complexity measure", 2023) is the independent answer: ``volbench.crosscheck.devinterp``.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from volbench.estimator.measures import logmeanexp

__all__ = ["rrr_lambda", "dln_lambda", "VolumeScalingError", "ScalingFit", "FIT_RULE", "epsilon_ladder",
           "fit_volume_scaling", "DeepLinearCost"]


# ----------------------------------------------------------------------------- closed forms

def _check_widths(widths: Sequence[int], rank: int) -> tuple[list[int], int]:
    if (not isinstance(widths, (list, tuple)) or len(widths) < 2
            or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths)):
        raise ValueError(f"widths must be a sequence of >= 2 positive ints (input, hidden..., output), got {widths!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank <= min(widths):
        raise ValueError(f"rank must be an int in [0, min(widths) = {min(widths)}] (the true product's rank), "
                         f"got {rank!r}")
    return list(widths), rank


def rrr_lambda(M: int, H: int, N: int, r: int) -> float:
    """Learning coefficient of reduced-rank regression y = B A x, A: H x M, B: N x H, true rank r
    (Aoyagi & Watanabe 2005, Main Theorem).

    Example:
        >>> rrr_lambda(2, 1, 2, 0), rrr_lambda(1, 2, 1, 0), rrr_lambda(3, 8, 4, 0)  # case 1 odd, even; case 4
        (1.0, 0.5, 6.0)
    """
    _check_widths([M, H, N], r)
    if N + r <= M + H and M + r <= N + H and H + r <= M + N:
        s = 2 * (H + r) * (M + N) - (M - N) ** 2 - (H + r) ** 2
        return (s + ((M + H + N + r) % 2)) / 8.0
    if M + H < N + r:
        return (H * M - H * r + N * r) / 2.0
    if N + H < M + r:
        return (H * N - H * r + M * r) / 2.0
    return M * N / 2.0  # M + N < H + r


def _aoyagi_subset_ok(M: np.ndarray, S: tuple[int, ...]) -> bool:
    ell = len(S) - 1
    sub = M[list(S)]
    rest = np.delete(M, list(S))
    if ell < 1:
        return False
    if rest.size and not sub.max() < rest.min():
        return False
    if not sub.sum() >= ell * sub.max():
        return False
    return not (rest.size and not sub.sum() < ell * rest.min())


def dln_lambda(widths: Sequence[int], rank: int) -> float:
    """Learning coefficient of the deep linear network x -> W_L ... W_1 x with layer widths
    ``widths`` = (H_1 = input, ..., H_{L+1} = output) whose true product has rank ``rank``
    (Aoyagi 2024, Theorem 1; see the module docstring). Exact rational arithmetic is not needed:
    all terms are quarter-integers.

    Example:
        >>> dln_lambda((3, 4), 2) == 3 * 4 / 2     # one layer: a regular model, n/2
        True
        >>> dln_lambda((1, 1, 1, 1), 0)           # scalar chain a b c, true product 0
        0.5
    """
    H, r = _check_widths(widths, rank)
    M = np.array(H, dtype=np.int64) - r
    values = set()
    for size in range(2, len(M) + 1):
        for S in itertools.combinations(range(len(M)), size):
            if not _aoyagi_subset_ok(M, S):
                continue
            sub = M[list(S)]
            ell = size - 1
            total = int(sub.sum())
            a = total - ell * (math.ceil(total / ell) - 1)
            pairs = sum(int(sub[i]) * int(sub[j]) for i in range(size) for j in range(i + 1, size))
            lam = ((-r * r + r * (H[0] + H[-1])) / 2 + a * (ell - a) / (4 * ell)
                   - ell * (ell - 1) / 4 * (total / ell) ** 2 + pairs / 2)
            values.add(round(lam * 4) / 4)  # quarter-integers: remove float round-off before comparing
    if not values:
        raise RuntimeError(f"no subset satisfies Aoyagi's conditions for widths {H}, rank {r} (should not happen)")
    if len(values) > 1:
        raise RuntimeError(f"Aoyagi's subsets disagree for widths {H}, rank {r}: {sorted(values)}")
    return values.pop()


# ----------------------------------------------------------------------------- slope fit

#: The fit-range rule, stated once and used for every case (never tuned per case).
FIT_RULE = ("least squares of log V on log eps over the thresholds whose eps lies within one decade of the "
            "smallest eps of the ladder (eps <= 10 eps_min); at least 3 such thresholds with finite log V")


class VolumeScalingError(ValueError):
    """A slope fit over a threshold range where log V is not finite, or with too few thresholds."""


@dataclass(frozen=True)
class ScalingFit:
    """lambda-hat = d log V / d log eps over the fit range, with a bootstrap interval.

    Attributes:
        slope, low, high, level: the estimate and its percentile bootstrap interval (directions
            resampled jointly at every threshold, ``n_boot`` resamples).
        epsilons, log_volumes: the whole ladder (eps = tau - L(anchor)).
        fit_epsilons: the thresholds the rule selected.
        rule: ``FIT_RULE``. local_slopes: slopes between neighbouring thresholds of the ladder.
    """

    slope: float
    low: float
    high: float
    level: float
    epsilons: tuple[float, ...]
    log_volumes: tuple[float, ...]
    fit_epsilons: tuple[float, ...]
    rule: str = FIT_RULE
    n_boot: int = 0
    local_slopes: tuple[float, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)


def epsilon_ladder(eps_min: float, decades: float, per_decade: int = 2) -> list[float]:
    """A geometric ladder eps_min * 10^(k / per_decade), k = 0..decades*per_decade.

    Example:
        >>> [round(e, 6) for e in epsilon_ladder(1e-3, 1, 2)]
        [0.001, 0.003162, 0.01]
    """
    if not (eps_min > 0 and decades > 0 and per_decade >= 1):
        raise ValueError("need eps_min > 0, decades > 0 and per_decade >= 1")
    steps = int(round(decades * per_decade))
    return [eps_min * 10 ** (k / per_decade) for k in range(steps + 1)]


def fit_volume_scaling(epsilons: Sequence[float], log_terms: Sequence[Sequence[float]], *, level: float = 0.95,
                       n_boot: int = 2000, seed: int = 0) -> ScalingFit:
    """Fit lambda-hat from per-direction log-terms at each eps of a ladder (rows: thresholds,
    columns: the same K directions at every threshold), by ``FIT_RULE``.

    Raises:
        VolumeScalingError: fewer than 3 thresholds in the fit range, or a threshold in it whose
            log V is not finite (the range is named).

    Example (a regular quadratic in n = 4: every term scales as eps^(n/2)):
        >>> import numpy as np
        >>> eps = [1e-3, 10 ** -2.5, 1e-2]
        >>> terms = [[2.0 * np.log(e) + c for c in (0.1, -0.3, 0.7)] for e in eps]
        >>> round(fit_volume_scaling(eps, terms).slope, 9)
        2.0
    """
    eps = np.asarray(epsilons, dtype=np.float64)
    terms = np.asarray(log_terms, dtype=np.float64)
    if eps.ndim != 1 or terms.ndim != 2 or terms.shape[0] != eps.size:
        raise ValueError(f"need one row of log-terms per eps: got {eps.size} eps and terms of shape {terms.shape}")
    if not (np.all(eps > 0) and np.all(np.diff(eps) > 0)):
        raise ValueError("epsilons must be positive and increasing (eps = tau - L(anchor))")
    log_v = logmeanexp(terms, axis=1)
    in_range = eps <= 10.0 * eps[0] * (1 + 1e-12)
    span = f"eps in [{eps[0]:.3g}, {eps[in_range][-1]:.3g}]"
    if int(in_range.sum()) < 3:
        raise VolumeScalingError(f"the fit range {span} (one decade above the smallest eps) holds "
                                 f"{int(in_range.sum())} threshold(s); at least 3 are needed: use a ladder with 2 or "
                                 f"more thresholds per decade")
    bad = in_range & ~np.isfinite(log_v)
    if bad.any():
        raise VolumeScalingError(f"log V is not finite at eps = {[float(e) for e in eps[bad]]} in the fit range {span} "
                                 f"(a minimum outside its basin, or a censored / infinite volume); the slope is "
                                 f"undefined there")
    x = np.log(eps[in_range])
    xc = x - x.mean()

    def slope_of(lv: np.ndarray) -> float:
        return float(np.dot(xc, lv - lv.mean()) / np.dot(xc, xc))

    slope = slope_of(log_v[in_range])
    rng = np.random.default_rng(seed)
    K = terms.shape[1]
    sub = terms[in_range]
    boot = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, K, K)
        boot[b] = slope_of(logmeanexp(sub[:, idx], axis=1))
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    lx = np.log(eps)
    with np.errstate(invalid="ignore"):
        local = tuple(float(v) for v in np.diff(log_v) / np.diff(lx))
    return ScalingFit(slope=slope, low=float(min(lo, slope)), high=float(max(hi, slope)), level=level,
                      epsilons=tuple(float(e) for e in eps), log_volumes=tuple(float(v) for v in log_v),
                      fit_epsilons=tuple(float(e) for e in eps[in_range]), n_boot=n_boot, local_slopes=local,
                      config={"seed": seed, "n_directions": K})


# ----------------------------------------------------------------------------- deep linear networks

class DeepLinearCost:
    """Mean squared error of a deep linear network x -> W_L ... W_1 x on data (X, Y), batched over
    flat parameter vectors laid out as [W_1 (H_2 x H_1, row-major), ..., W_L]: the cost protocol of
    docs/CONTRACTS.md. ``mean((W x - y)^2)`` over examples and outputs, as torch's mse_loss.

    Example:
        >>> X = torch.randn(50, 2, dtype=torch.float64)
        >>> c = DeepLinearCost((2, 1, 2), X, torch.zeros(50, 2, dtype=torch.float64))
        >>> c.n_params, float(c(torch.zeros(1, 4, dtype=torch.float64))[0])
        (4, 0.0)
    """

    def __init__(self, widths: Sequence[int], inputs: torch.Tensor, targets: torch.Tensor):
        self.widths, _ = _check_widths(widths, 0)
        if inputs.ndim != 2 or inputs.shape[1] != self.widths[0] or targets.shape != (inputs.shape[0], self.widths[-1]):
            raise ValueError(f"inputs must be [N, {self.widths[0]}] and targets [N, {self.widths[-1]}]")
        self.inputs, self.targets = inputs, targets
        self.shapes = [(o, i) for i, o in zip(self.widths[:-1], self.widths[1:])]
        self.n_params = sum(o * i for o, i in self.shapes)

    def product(self, params: torch.Tensor) -> torch.Tensor:
        """[B, H_{L+1}, H_1] products W_L ... W_1 of a [B, n] batch."""
        k, W = 0, None
        for o, i in self.shapes:
            layer = params[:, k:k + o * i].reshape(-1, o, i)
            k += o * i
            W = layer if W is None else torch.bmm(layer, W)
        return W

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        W = self.product(params)
        X = self.inputs.to(params)
        pred = torch.einsum("boi,ni->bno", W, X)
        return ((pred - self.targets.to(params)) ** 2).mean(dim=(1, 2))

    def module(self, params: torch.Tensor) -> torch.nn.Sequential:
        """The same network as an ``nn.Sequential`` of bias-free Linear layers (for devinterp)."""
        layers, k = [], 0
        for o, i in self.shapes:
            lin = torch.nn.Linear(i, o, bias=False, dtype=params.dtype)
            with torch.no_grad():
                lin.weight.copy_(params[k:k + o * i].reshape(o, i))
            k += o * i
            layers.append(lin)
        return torch.nn.Sequential(*layers)




