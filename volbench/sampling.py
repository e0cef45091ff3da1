"""Direct sampling of the Gaussian measure of a star domain: the independent check of claim E4.

Draw parameters theta_1..theta_N from the Gaussian N(mu, diag(sigma^2)) (mu = 0, the
initialisation prior, by default; mu = the anchor gives a local measure) and accept theta when the
segment from the anchor theta0 to theta stays inside the basin {cost < threshold}, i.e. when the
basin's first exit along u = (theta - theta0)/|theta - theta0| lies beyond |theta - theta0|. The
acceptance rate k/N is an unbiased estimate of the prior mass of the star domain, the quantity
``estimate_log_volume(measure="gaussian")`` estimates (Chiang et al.'s "guess and check"; Zhang et
al.'s Boolean sampling counts functions, this counts a star domain).

The star-domain test uses the estimator's own first-exit rule: the radius along u is found by
``estimate_log_volume`` itself (u as an explicit direction, the same rtol, bracketing, fine scan
and cost protocol, early exit included), which returns an evaluated inside radius lo and the
smallest evaluated outside radius hi, hi/lo - 1 <= rtol. Resolution: a draw with lo <
|theta - theta0| < hi cannot be decided at that rtol; ``n_accepted`` counts the sure accepts
(distance <= lo, the estimator's ``log_terms``) and ``n_accepted_upper`` those not excluded
(distance < hi, its ``log_terms_upper``), so the interval reported runs from the Clopper-Pearson
lower bound of the first count to the upper bound of the second. An exit that the bracketing steps
over (a non-monotone cost between two evaluated radii) is missed here exactly as the estimator
misses it: the comparison tests the estimator's Monte Carlo over directions, not its search.

Cost: one radius search per draw (about log2(range) + log2(log 2 / rtol) evaluations), batched on
the cost's device like the estimator. A request whose expected acceptance is too small to resolve
raises :class:`InsufficientSamplesError` with the estimated rate and the number of draws needed:
the rate is first estimated from a short pilot of prior-directed rays
(``estimate_log_volume(directions="prior")``, unbiased, never zero).

Example (a ball of radius 2 around an anchor at distance 1 from the origin, n = 3):
    >>> import torch
    >>> from volbench.toy import gaussian_log_mass_of_ball
    >>> c = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    >>> cost = lambda p: ((p - c.to(p)) ** 2).sum(dim=1)
    >>> est = sample_star_domain_measure(cost, c, threshold=4.0, n_samples=2000, prior_std=1.0, seed=0,
    ...                                  dtype=torch.float64, rtol=1e-6)
    >>> low, high = est.log_interval()
    >>> bool(low < gaussian_log_mass_of_ball(2.0, c, 1.0) < high)
    True
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from .estimator.measures import check_prior_mean, describe_prior_mean
from .estimator.prior_rays import SAMPLING_STREAM, _MAX_BLOCK_ELEMENTS, check_prior_std, prior_points, \
    prior_ray_directions

__all__ = ["SamplingEstimate", "InsufficientSamplesError", "clopper_pearson", "sample_star_domain_measure"]


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial proportion: beta quantiles.

    Example:
        >>> lo, hi = clopper_pearson(0, 100)
        >>> lo, round(hi, 4)      # the "rule of three": about 3/n
        (0.0, 0.0362)
    """
    from scipy.stats import beta

    if not (isinstance(n, int) and n >= 1 and isinstance(k, int) and 0 <= k <= n):
        raise ValueError(f"need integers 0 <= k <= n, n >= 1; got k={k!r}, n={n!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    alpha = 1.0 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def _log(p: float) -> float:
    return math.log(p) if p > 0 else -math.inf


@dataclass(frozen=True)
class SamplingEstimate:
    """Direct-sampling estimate of the prior mass of a star domain.

    Attributes:
        n_samples: draws N.
        n_accepted: draws with |theta - theta0| <= the inside radius (sure accepts).
        n_accepted_upper: draws with |theta - theta0| < the outside radius (not excluded).
        n_cost_evals, seconds: work done (cost evaluations include every radius search).
        config: everything needed to reproduce the draws and the test (seed, stream, prior,
            rtol and the search settings, device, dtype, resolution).
        pilot_log_rate: the prior-directed pilot's log-estimate of the rate (None: no pilot).
    """

    n_samples: int
    n_accepted: int
    n_accepted_upper: int
    n_params: int
    n_cost_evals: int
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)
    pilot_log_rate: float | None = None

    @property
    def rate(self) -> float:
        return self.n_accepted / self.n_samples

    @property
    def log_p(self) -> float:
        """log(n_accepted / N): the point estimate (from the inside radius, like the estimator's)."""
        return _log(self.rate)

    @property
    def log_p_upper(self) -> float:
        """log(n_accepted_upper / N): the point estimate from the outside radius."""
        return _log(self.n_accepted_upper / self.n_samples)

    @property
    def n_ambiguous(self) -> int:
        """Draws within the search's resolution bracket (lo, hi): undecidable at this rtol."""
        return self.n_accepted_upper - self.n_accepted

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """(Clopper-Pearson lower bound of n_accepted, upper bound of n_accepted_upper)."""
        low, _ = clopper_pearson(self.n_accepted, self.n_samples, confidence)
        _, high = clopper_pearson(self.n_accepted_upper, self.n_samples, confidence)
        return low, high

    def log_interval(self, confidence: float = 0.95) -> tuple[float, float]:
        low, high = self.interval(confidence)
        return _log(low), _log(high)

    def summary(self) -> dict[str, Any]:
        low, high = self.log_interval()
        return {"n_samples": self.n_samples, "n_accepted": self.n_accepted, "n_accepted_upper": self.n_accepted_upper,
                "log_p": self.log_p, "log_p_low": low, "log_p_high": high, "n_cost_evals": self.n_cost_evals,
                "seconds": self.seconds, "pilot_log_rate": self.pilot_log_rate,
                "resolution": self.config.get("resolution", "")}


class InsufficientSamplesError(ValueError):
    """A sampling request that cannot resolve the measure: carries the estimated rate, the draws
    that would be needed, and (when sampling ran) the zero-count result."""

    def __init__(self, message: str, *, rate: float, n_needed: int | None, n_samples: int,
                 result: SamplingEstimate | None = None):
        super().__init__(message)
        self.rate = rate
        self.n_needed = n_needed
        self.n_samples = n_samples
        self.result = result


def sample_star_domain_measure(
    cost,
    anchor: torch.Tensor,
    *,
    threshold: float,
    n_samples: int,
    prior_std: float | torch.Tensor,
    prior_mean: float | torch.Tensor | None = None,
    seed: int = 0,
    rtol: float = 1e-3,
    max_radius: float | None = None,
    initial_radius: float | None = None,
    growth: float = 2.0,
    fine_scan: int = 0,
    device=None,
    dtype: torch.dtype = torch.float32,
    batch_size: int | None = None,
    pilot: int = 64,
    min_expected_accepts: int = 10,
    progress: bool = False,
) -> SamplingEstimate:
    """Direct-sampling estimate of the Gaussian measure of the star domain around ``anchor``.

    Args:
        cost, anchor, threshold: as for ``estimate_log_volume`` (docs/CONTRACTS.md cost protocol).
        n_samples: draws N from N(prior_mean, diag(prior_std^2)).
        prior_std, prior_mean: the Gaussian (prior_mean None: the origin; pass the anchor for a
            measure centred at the minimum).
        seed: draw i comes from block i // PRIOR_BLOCK of generator stream SAMPLING_STREAM
            (``volbench.estimator.prior_rays``), independent of the prior-directed rays' stream.
        rtol, max_radius, initial_radius, growth, fine_scan, device, dtype, batch_size: the
            estimator's search settings, passed to it unchanged (the same first-exit rule).
        pilot: prior-directed rays used to estimate the rate before sampling (0: no pilot).
        min_expected_accepts: refuse (InsufficientSamplesError) when N x the pilot's rate is
            below this; also the target count behind the "draws needed" figure.

    Raises:
        InsufficientSamplesError: the pilot predicts fewer than ``min_expected_accepts``
            accepts in N draws, or no draw was accepted; the message gives the estimated rate
            and the draws needed.
    """
    from .estimator.core import check_seed, estimate_log_volume

    t0 = time.perf_counter()
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    for name, value in (("pilot", pilot), ("min_expected_accepts", min_expected_accepts)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if not isinstance(anchor, torch.Tensor) or anchor.ndim != 1 or anchor.numel() == 0:
        raise ValueError("anchor must be a flat [n] tensor of parameters (torch.nn.utils.parameters_to_vector)")
    seed = check_seed(seed)
    n = anchor.numel()
    std = check_prior_std(prior_std, n)
    mean = check_prior_mean(prior_mean, n)
    search = dict(threshold=threshold, rtol=rtol, max_radius=max_radius, seed=seed, device=device, dtype=dtype,
                  batch_size=batch_size, initial_radius=initial_radius, growth=growth, fine_scan=fine_scan)
    n_evals = 0
    pilot_log_rate = None
    if pilot:
        est = estimate_log_volume(cost, anchor, n_directions=pilot, directions="prior", measure="gaussian",
                                  prior_std=std, prior_mean=mean, **search)
        n_evals += est.n_cost_evals
        pilot_log_rate = est.log_volume
        rate = math.exp(pilot_log_rate)
        if n_samples * rate < min_expected_accepts:
            needed = math.ceil(min_expected_accepts / rate) if rate > 0 else None
            raise InsufficientSamplesError(
                f"direct sampling cannot resolve this measure with {n_samples} draws: a {pilot}-ray prior-directed "
                f"pilot estimates the acceptance rate at {rate:.3g} (log {pilot_log_rate:.4g}), so about "
                f"{n_samples * rate:.3g} accepts are expected, fewer than {min_expected_accepts}; it needs about "
                f"{needed if needed is not None else 'infinitely many'} draws. Use estimate_log_volume(..., "
                f"directions='prior', measure='gaussian') instead (it never counts zero), or a measure centred "
                f"nearer the anchor (prior_mean) or a higher threshold. (The pilot's log-estimate is biased low for "
                f"large n, Jensen; pass pilot=0 to sample anyway.)",
                rate=rate, n_needed=needed, n_samples=n_samples)
    block_rows = int(batch_size or getattr(cost, "max_batch", None) or 256)
    block_rows = max(1, min(block_rows, _MAX_BLOCK_ELEMENTS // n))
    accepted = accepted_upper = 0
    inner_config: dict[str, Any] = {}
    blocks = range(0, n_samples, block_rows)
    if progress:
        from tqdm.auto import tqdm

        blocks = tqdm(blocks, desc=f"sampling ({n_samples} draws)", unit="block")
    for first in blocks:
        last = min(n_samples, first + block_rows)
        u, dist = prior_ray_directions(prior_points(first, last, n=n, seed=seed, std=std, mean=mean,
                                                    stream=SAMPLING_STREAM), anchor)
        est = estimate_log_volume(cost, anchor, n_directions=last - first, directions=u, measure="lebesgue",
                                  **search)
        n_evals += est.n_cost_evals
        inner_config = est.config
        lo = est.log_radii.double().exp()
        hi = est.log_radii_upper.double().exp()
        accepted += int((dist <= lo).sum())
        accepted_upper += int((dist < hi).sum())
    config = {k: inner_config.get(k) for k in ("threshold", "anchor_cost", "rtol", "initial_radius", "growth",
                                                "max_radius", "fine_scan", "device", "dtype", "torch", "volbench")}
    config.update({
        "method": "volbench.sample_star_domain_measure", "seed": seed, "stream": SAMPLING_STREAM,
        "n_samples": n_samples, "batch_size": batch_size, "pilot": pilot,
        "prior_std": float(std[0]) if bool((std == std[0]).all()) else "per-parameter",
        "prior_mean": describe_prior_mean(mean, anchor),
        "resolution": (f"first exit found by the estimator's search to rtol {rtol}: draws within (lo, hi) of their "
                       f"ray, hi/lo - 1 <= rtol, count only towards n_accepted_upper"),
    })
    result = SamplingEstimate(n_samples=n_samples, n_accepted=accepted, n_accepted_upper=accepted_upper, n_params=n,
                              n_cost_evals=n_evals, seconds=time.perf_counter() - t0, config=config,
                              pilot_log_rate=pilot_log_rate)
    if accepted == 0:
        _, high = clopper_pearson(accepted_upper, n_samples)
        raise InsufficientSamplesError(
            f"no draw of {n_samples} was accepted: the measure is below {high:.3g} (95% Clopper-Pearson upper bound), "
            f"and resolving it needs at least about {math.ceil(min_expected_accepts / high)} draws; use "
            f"estimate_log_volume(..., directions='prior', measure='gaussian') instead",
            rate=high, n_needed=math.ceil(max(min_expected_accepts, 1) / high), n_samples=n_samples, result=result)
    return result
