"""Levels for the sampling cross-check (claim E4) chosen before any comparison, by stated rules on
independent pilot draws: thresholds whose Gaussian measure hits target acceptance rates
(``THRESHOLD_RULE``, ``calibrate_thresholds``), and scales of a Gaussian centred at the anchor at
a fixed threshold (``SCALE_RULE``, ``calibrate_local_scales``). A calibrated level is measured, so
it is named by its configured target rate (``Calibration.names``)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from volbench._checks import check_count, check_flat
from volbench.crosscheck.sampling import block_rows, ray_blocks, search_settings
from volbench.estimator.measures import check_prior_mean, describe_prior_mean
from volbench.estimator.prior_rays import (
    CALIBRATION_STREAM,
    check_prior_std,
    prior_points,
)

#: How ``calibrate_thresholds`` picks a threshold for a target acceptance rate a (stated once).
THRESHOLD_RULE = ("threshold tau_a = the a-quantile of the segment maxima max_t cost(theta0 + t (theta_i - theta0)) "
                  "over an evenly spaced grid t = 1/G..1, of pilot draws theta_i from the fixed Gaussian (an "
                  "independent stream): a pilot draw's segment stays below tau exactly when its maximum does, so a "
                  "fraction ~a of the measure lies in the star domain at tau_a (up to the grid's resolution)")


#: How ``calibrate_local_scales`` picks the scale c of N(theta0, c^2 diag(s^2)) for a target rate a.
SCALE_RULE = ("scale c_a = the (1 - a)-quantile of r(u_i) / |s * z_i| over pilot draws z_i ~ N(0, I) (an independent "
              "stream), u_i = s * z_i / |s * z_i| and r the estimator's inside radius along u_i: the draw "
              "theta0 + c s z_i is accepted exactly when c <= r(u_i) / |s * z_i|, so a fraction ~a of the measure lies "
              "in the star domain at c_a")


@dataclass(frozen=True)
class Calibration:
    """Levels chosen by a stated rule from independent pilot draws (before any comparison).

    Attributes:
        targets: the target acceptance rates, as given.
        levels: the threshold (``calibrate_thresholds``) or scale (``calibrate_local_scales``)
            for each target.
        rule: ``THRESHOLD_RULE`` or ``SCALE_RULE``.
        n_pilot, seed, stream: the pilot draws.
        pilot_statistic: quantiles (1%, 10%, 50%, 90%, 99%) of the pilot statistic the levels are
            quantiles of (segment maxima, or radius ratios).
        n_cost_evals, seconds: the pilot's work.
    """

    targets: tuple[float, ...]
    levels: tuple[float, ...]
    rule: str
    n_pilot: int
    seed: int
    stream: int
    pilot_statistic: dict[str, float]
    n_cost_evals: int
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        """A stable name per level, ``target-rate-0.03``: the target is configured, the level is
        measured (it moves with the pilot's rounding and the trained net), so ids, baselines and
        reports key a level by its target and give the measured level in its text and numbers.

        >>> Calibration((0.3, 0.03), (2.9, 6.4), "rule", 8, 0, 0, {}, 0, 0.0).names
        ('target-rate-0.3', 'target-rate-0.03')
        """
        return tuple(f"target-rate-{t:g}" for t in self.targets)

    def as_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "targets": list(self.targets), "levels": list(self.levels),
                "rule": self.rule,
                "n_pilot": self.n_pilot, "seed": self.seed, "stream": self.stream,
                "pilot_statistic": dict(self.pilot_statistic), "n_cost_evals": self.n_cost_evals,
                "seconds": self.seconds, **self.config}


def _check_targets(targets, n_pilot: int, min_tail: int) -> tuple[float, ...]:
    try:
        out = tuple(float(a) for a in targets)
    except TypeError:
        raise TypeError(f"targets must be a sequence of rates in (0, 1), got {targets!r}") from None
    if not out or not all(0 < a < 1 for a in out):
        raise ValueError(f"targets must be a non-empty sequence of rates in (0, 1), got {targets!r}")
    worst = min(min(out), 1 - max(out))
    if n_pilot * worst < min_tail:
        raise ValueError(f"a pilot of {n_pilot} draws cannot place the target rate {worst:.3g}: it would rest on "
                         f"{n_pilot * worst:.3g} draws; use n_pilot >= {math.ceil(min_tail / worst)}")
    return out


def _quantiles(x: np.ndarray) -> dict[str, float]:
    qs = (0.01, 0.1, 0.5, 0.9, 0.99)
    return {f"q{q:g}": float(v) for q, v in zip(qs, np.quantile(x, qs))}


def calibrate_thresholds(cost, anchor: torch.Tensor, *, prior_std, prior_mean=None, targets, n_pilot: int = 1024,
                         grid: int = 32, seed: int = 0, device=None, dtype: torch.dtype = torch.float32,
                         batch_size: int | None = None, min_tail: int = 10, rates_at=()) -> Calibration:
    """Thresholds whose star domains hold a target fraction of N(prior_mean, diag(prior_std^2)),
    by ``THRESHOLD_RULE``. The pilot's draws come from ``CALIBRATION_STREAM`` (independent of
    sampling and the prior-directed rays) and cost ``n_pilot * grid`` evaluations (without early
    exit: the maxima themselves are needed).

    ``rates_at``: thresholds fixed elsewhere (e.g. issue Q5's) whose pilot rate (the fraction of
    pilot maxima below each) is recorded in ``config["pilot_rates_at"]``.

    Raises:
        ValueError: a target the pilot cannot place (fewer than ``min_tail`` draws on its side),
            or a threshold at or below the anchor's cost (the measure at that level is 0).

    Example (a ball cost around c: the star domain at tau is the ball of radius sqrt(tau)):
        >>> c = torch.tensor([0.5, 0.0], dtype=torch.float64)
        >>> cal = calibrate_thresholds(lambda p: ((p - c.to(p)) ** 2).sum(1), c, prior_std=1.0, targets=(0.1,),
        ...                            n_pilot=4000, dtype=torch.float64)
        >>> from scipy.stats import ncx2   # P(|theta - c|^2 <= tau) for theta ~ N(0, I): noncentral chi2
        >>> round(float(ncx2.cdf(cal.levels[0], 2, 0.25)), 1)
        0.1
    """
    from volbench._checks import check_seed
    from volbench.estimator.core import default_device

    t0 = time.perf_counter()
    check_flat(anchor, "anchor")
    check_count(n_pilot, "n_pilot", minimum=1)
    check_count(grid, "grid", minimum=1)
    seed = check_seed(seed)
    a = _check_targets(targets, n_pilot, min_tail)
    n = anchor.numel()
    std = check_prior_std(prior_std, n)
    mean = check_prior_mean(prior_mean, n)
    dev = default_device(cost, anchor, device)
    rows = block_rows(cost, batch_size, n)
    base = anchor.detach().to(device=dev, dtype=dtype)
    anchor_cost = float(cost(base[None])[0])
    fractions = torch.arange(1, grid + 1, dtype=torch.float64) / grid
    maxima = []
    per_call = max(1, rows // grid)
    for first in range(0, n_pilot, per_call):
        last = min(n_pilot, first + per_call)
        theta = prior_points(first, last, n=n, seed=seed, std=std, mean=mean, stream=CALIBRATION_STREAM)
        diff = theta - anchor.detach().to("cpu", torch.float64)
        pts = (fractions[None, :, None] * diff[:, None, :]).reshape(-1, n).to(device=dev, dtype=dtype) + base
        c = cost(pts).detach().cpu().double().reshape(last - first, grid)
        c = torch.where(torch.isfinite(c), c, torch.full_like(c, math.inf))
        maxima.append(c.max(dim=1).values)
    m = torch.cat(maxima).numpy()
    levels = tuple(float(np.quantile(m, t)) for t in a)
    for t, tau in zip(a, levels):
        if not tau > anchor_cost:
            raise ValueError(f"the calibrated threshold for rate {t:g} is {tau:.4g}, not above the anchor's cost "
                             f"{anchor_cost:.4g}: the anchor is not a minimum of this landscape at that level")
    return Calibration(targets=a, levels=levels, rule=THRESHOLD_RULE, n_pilot=n_pilot, seed=seed,
                       stream=CALIBRATION_STREAM, pilot_statistic=_quantiles(m), n_cost_evals=1 + n_pilot * grid,
                       seconds=time.perf_counter() - t0,
                       config={"grid": grid, "anchor_cost": anchor_cost,
                               "pilot_rates_at": {f"{float(t):.6g}": float(np.mean(m < float(t))) for t in rates_at},
                               "prior_std": float(std[0]) if bool((std == std[0]).all()) else "per-parameter",
                               "prior_mean": describe_prior_mean(mean, anchor)})


def calibrate_local_scales(cost, anchor: torch.Tensor, *, threshold: float, shape_std, targets, n_pilot: int = 1024,
                           seed: int = 0, rtol: float = 1e-3, max_radius: float | None = None,
                           initial_radius: float | None = None, growth: float = 2.0, fine_scan: int = 0, device=None,
                           dtype: torch.dtype = torch.float32, batch_size: int | None = None,
                           min_tail: int = 10) -> Calibration:
    """Scales c such that N(anchor, c^2 diag(shape_std^2)) puts a target fraction of its mass in
    the star domain at ``threshold``, by ``SCALE_RULE`` (pilot draws from ``CALIBRATION_STREAM``;
    one radius search per pilot draw, with the estimator's settings given here).

    Example (a ball of radius 1 around the anchor in n = 3: the mass of N(c, s^2 I) in it is
    chi2_3.cdf(1 / s^2), a known function of s):
        >>> c = torch.tensor([0.5, 0.0, 1.0], dtype=torch.float64)
        >>> cal = calibrate_local_scales(lambda p: ((p - c.to(p)) ** 2).sum(1), c, threshold=1.0, shape_std=1.0,
        ...                              targets=(0.5,), n_pilot=4000, rtol=1e-6, dtype=torch.float64)
        >>> from scipy.stats import chi2
        >>> round(float(chi2.cdf(1.0 / cal.levels[0] ** 2, 3)), 1)
        0.5
    """
    from volbench._checks import check_seed

    t0 = time.perf_counter()
    check_flat(anchor, "anchor")
    check_count(n_pilot, "n_pilot", minimum=1)
    seed = check_seed(seed)
    a = _check_targets(targets, n_pilot, min_tail)
    n = anchor.numel()
    shape = check_prior_std(shape_std, n)
    search = search_settings(rtol, max_radius, seed, device, dtype, batch_size, initial_radius, growth, fine_scan)
    rows = block_rows(cost, batch_size, n)
    ratios, n_evals = [], 0
    mean = anchor.detach().to("cpu", torch.float64)
    for _, dist, lo, _, evals, _ in ray_blocks(cost, anchor, threshold=threshold, n_draws=n_pilot, std=shape,
                                                 mean=mean, seed=seed,
                                                 stream=CALIBRATION_STREAM, search=search, block_rows=rows,
                                                 progress=False, what="calibration"):
        ratios.append(lo / dist)  # dist = |s z|: the pilot draws are theta0 + s z
        n_evals += evals
    r = torch.cat(ratios).numpy()
    levels = tuple(float(np.quantile(r, 1 - t)) for t in a)
    if not all(c > 0 for c in levels):
        raise ValueError(f"a calibrated scale is 0 (levels {levels}): most pilot rays leave the basin at once; the "
                         f"anchor is not inside the basin at threshold {threshold}")
    return Calibration(targets=a, levels=levels, rule=SCALE_RULE, n_pilot=n_pilot, seed=seed, stream=CALIBRATION_STREAM,
                       pilot_statistic=_quantiles(r), n_cost_evals=n_evals, seconds=time.perf_counter() - t0,
                       config={"threshold": float(threshold), "rtol": rtol, "fine_scan": fine_scan,
                               "shape_std": float(shape[0]) if bool((shape == shape[0]).all()) else "per-parameter"})
