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

Independent check of the exit rule (``segment_check=G``): the rule can step over an exit (a cost
that rises above the threshold and falls back between two evaluated radii; ReLU nets do this, see
``volbench.estimator.search``), and then the estimator and this sampler overcount together, which
no comparison of the two can see. With ``segment_check=G`` every accepted draw's segment is also
evaluated at G evenly spaced points t |theta - theta0| / G, t = 1..G (the draw itself included);
``n_accepted_checked`` counts the accepted draws whose G points all lie below the threshold, so
``n_missed_exits = n_accepted - n_accepted_checked`` are exits the rule missed that a G-point grid
finds (a lower bound on the rule's misses: the grid has its own resolution, |theta - theta0| / G).

Levels chosen by a rule (claim E4 asks for measures in an informative range, neither ~1 nor
astronomically small, chosen before any comparison): ``calibrate_thresholds`` picks thresholds
whose acceptance under a fixed Gaussian is a target rate, from the segment maxima of independent
pilot draws; ``calibrate_local_scales`` picks the scale c of a Gaussian N(theta0, c^2 diag(s^2))
centred at the anchor so that its acceptance is a target rate, from the ratios r(u) / |s * z| of
independent pilot draws (the ray's direction does not depend on c, its length is c |s * z|).
``sample_local_scales`` measures several such scales from one set of draws, for the same reason.

Cost: one radius search per draw (about log2(range) + log2(log 2 / rtol) evaluations), batched on
the cost's device like the estimator. A request whose expected acceptance is too small to resolve
raises :class:`InsufficientSamplesError` with the estimated rate and the number of draws needed:
the rate is first estimated from a short pilot of prior-directed rays
(``estimate_log_volume(directions="prior")``, unbiased, never zero).

Example (a ball of radius 2 around an anchor at distance 1 from the origin, n = 3):
    >>> import torch
    >>> from volbench.crosscheck.oracles import gaussian_log_mass_of_ball
    >>> c = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    >>> cost = lambda p: ((p - c.to(p)) ** 2).sum(dim=1)
    >>> est = sample_star_domain_measure(cost, c, threshold=4.0, n_samples=2000, prior_std=1.0, seed=0,
    ...                                  dtype=torch.float64, rtol=1e-6)
    >>> low, high = est.log_interval()
    >>> bool(low < gaussian_log_mass_of_ball(2.0, c, 1.0) < high)
    True

Size: direct sampling of the star domain's Gaussian measure (fixed measure and local scales) with
its interval and its first-exit check.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from volbench._checks import check_count, check_flat
from volbench.estimator.measures import check_prior_mean, describe_prior_mean
from volbench.estimator.prior_rays import (
    MAX_BLOCK_ELEMENTS,
    SAMPLING_STREAM,
    check_prior_std,
    prior_points,
    prior_ray_directions,
)
from volbench.estimator.settings import SearchSettings

__all__ = ["SamplingEstimate", "InsufficientSamplesError", "clopper_pearson", "sample_star_domain_measure",
           "sample_local_scales", "ray_blocks", "block_rows", "search_settings"]


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
        n_accepted_checked: sure accepts whose segment also stays below the threshold at the
            ``segment_check`` grid points (None: no check was asked for).
    """

    n_samples: int
    n_accepted: int
    n_accepted_upper: int
    n_params: int
    n_cost_evals: int
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)
    pilot_log_rate: float | None = None
    n_accepted_checked: int | None = None

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

    @property
    def n_missed_exits(self) -> int | None:
        """Sure accepts whose segment the ``segment_check`` grid finds leaving the basin (None: no check)."""
        return None if self.n_accepted_checked is None else self.n_accepted - self.n_accepted_checked

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
                "n_accepted_checked": self.n_accepted_checked, "n_missed_exits": self.n_missed_exits,
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


def block_rows(cost, batch_size: int | None, n: int) -> int:
    rows = int(batch_size or getattr(cost, "max_batch", None) or 256)
    return max(1, min(rows, MAX_BLOCK_ELEMENTS // n))


def ray_blocks(cost, anchor, *, threshold, n_draws, std, mean, seed, stream, search, block_rows, progress, what):
    """Yield (u [b, n] float64 CPU, dist [b], lo [b], hi [b], n_evals, config) per block of draws
    from N(mean, diag(std^2)): the direction of each draw from the anchor and the estimator's
    radius bracket along it (its own search, ``search``: its ``SearchSettings``)."""
    from volbench.estimator.core import estimate_log_volume

    blocks = range(0, n_draws, block_rows)
    if progress:
        from tqdm.auto import tqdm

        blocks = tqdm(blocks, desc=f"{what} ({n_draws} draws)", unit="block")
    for first in blocks:
        last = min(n_draws, first + block_rows)
        u, dist = prior_ray_directions(prior_points(first, last, n=anchor.numel(), seed=seed, std=std, mean=mean,
                                                    stream=stream), anchor)
        est = estimate_log_volume(cost, anchor, threshold=threshold, n_directions=last - first, directions=u,
                                  measure="lebesgue", settings=search)
        yield u, dist, est.log_radii.double().exp(), est.log_radii_upper.double().exp(), est.n_cost_evals, est.config


def _segments_inside(cost, anchor, u, lengths, *, threshold, grid, device, dtype,
                     block_rows) -> tuple[torch.Tensor, int]:
    """[m] bool: whether cost < threshold at the ``grid`` points t * lengths / grid, t = 1..grid,
    of each ray u (rows), and the number of cost evaluations."""
    from volbench.estimator.core import as_batched_cost

    m = u.shape[0]
    inside = torch.ones(m, dtype=torch.bool)
    if m == 0:
        return inside, 0
    evaluate = as_batched_cost(cost, threshold)
    a = anchor.detach().to(device=device, dtype=dtype)
    fractions = torch.arange(1, grid + 1, dtype=torch.float64) / grid
    rays_per_call = max(1, block_rows // grid)
    for s in range(0, m, rays_per_call):
        e = min(m, s + rays_per_call)
        radii = (lengths[s:e, None] * fractions[None, :]).reshape(-1)
        dirs = u[s:e].repeat_interleave(grid, dim=0)
        params = a + (radii[:, None] * dirs).to(device=device, dtype=dtype)
        c = evaluate(params).detach().cpu().reshape(e - s, grid)
        inside[s:e] = (torch.isfinite(c) & (c < threshold)).all(dim=1)
    return inside, m * grid


def search_settings(rtol, max_radius, seed, device, dtype, batch_size, initial_radius, growth,
                     fine_scan) -> SearchSettings:
    """The estimator's search as the sampler runs it along each draw's ray (one settings object)."""
    return SearchSettings(rtol=rtol, max_radius=max_radius, seed=seed, device=device, dtype=dtype,
                          batch_size=batch_size, initial_radius=initial_radius, growth=growth, fine_scan=fine_scan)


def _resolution(rtol: float, segment_check: int) -> str:
    text = (f"first exit found by the estimator's search to rtol {rtol}: draws within (lo, hi) of their ray, "
            f"hi/lo - 1 <= rtol, count only towards n_accepted_upper")
    if segment_check:
        text += (f"; each sure accept's segment also evaluated at {segment_check} evenly spaced points "
                 f"(n_accepted_checked)")
    return text


def _recorded(inner_config: dict[str, Any]) -> dict[str, Any]:
    return {k: inner_config.get(k) for k in ("threshold", "anchor_cost", "rtol", "initial_radius", "growth",
                                             "max_radius", "fine_scan", "device", "dtype", "torch", "volbench")}


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
    segment_check: int = 0,
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
        segment_check: G > 0 also evaluates each sure accept's segment at G evenly spaced points
            (``n_accepted_checked``; costs G evaluations per accept); 0 = off.

    Raises:
        InsufficientSamplesError: the pilot predicts fewer than ``min_expected_accepts``
            accepts in N draws, or no draw was accepted; the message gives the estimated rate
            and the draws needed.
    """
    from volbench._checks import check_seed
    from volbench.estimator.core import default_device, estimate_log_volume

    t0 = time.perf_counter()
    check_count(n_samples, "n_samples", minimum=1)
    check_count(pilot, "pilot")
    check_count(min_expected_accepts, "min_expected_accepts")
    check_count(segment_check, "segment_check")
    check_flat(anchor, "anchor")
    seed = check_seed(seed)
    n = anchor.numel()
    std = check_prior_std(prior_std, n)
    mean = check_prior_mean(prior_mean, n)
    search = search_settings(rtol, max_radius, seed, device, dtype, batch_size, initial_radius, growth, fine_scan)
    n_evals = 0
    pilot_log_rate = None
    if pilot:
        est = estimate_log_volume(cost, anchor, threshold=threshold, n_directions=pilot, directions="prior",
                                  measure="gaussian", prior_std=std, prior_mean=mean, settings=search)
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
    rows = block_rows(cost, batch_size, n)
    dev = default_device(cost, anchor, device)
    accepted = accepted_upper = checked = 0
    inner_config: dict[str, Any] = {}
    for u, dist, lo, hi, evals, inner_config in ray_blocks(  # noqa: B007  inner_config is read after the loop
            cost, anchor, threshold=threshold, n_draws=n_samples, std=std, mean=mean, seed=seed,
            stream=SAMPLING_STREAM, search=search,
            block_rows=rows, progress=progress, what="sampling"):
        n_evals += evals
        sure = dist <= lo
        accepted += int(sure.sum())
        accepted_upper += int((dist < hi).sum())
        if segment_check:
            ok, evals = _segments_inside(cost, anchor, u[sure], dist[sure], threshold=threshold, grid=segment_check,
                                         device=dev, dtype=dtype, block_rows=rows)
            n_evals += evals
            checked += int(ok.sum())
    config = _recorded(inner_config)
    config.update({
        "method": "volbench.sample_star_domain_measure", "seed": seed, "stream": SAMPLING_STREAM,
        "n_samples": n_samples, "batch_size": batch_size, "pilot": pilot, "segment_check": segment_check,
        "prior_std": float(std[0]) if bool((std == std[0]).all()) else "per-parameter",
        "prior_mean": describe_prior_mean(mean, anchor), "resolution": _resolution(rtol, segment_check),
    })
    result = SamplingEstimate(n_samples=n_samples, n_accepted=accepted, n_accepted_upper=accepted_upper, n_params=n,
                              n_cost_evals=n_evals, seconds=time.perf_counter() - t0, config=config,
                              pilot_log_rate=pilot_log_rate, n_accepted_checked=checked if segment_check else None)
    if accepted == 0:
        _, high = clopper_pearson(accepted_upper, n_samples)
        raise InsufficientSamplesError(
            f"no draw of {n_samples} was accepted: the measure is below {high:.3g} (95% Clopper-Pearson upper bound), "
            f"and resolving it needs at least about {math.ceil(min_expected_accepts / high)} draws; use "
            f"estimate_log_volume(..., directions='prior', measure='gaussian') instead",
            rate=high, n_needed=math.ceil(max(min_expected_accepts, 1) / high), n_samples=n_samples, result=result)
    return result


def _check_scales(scales) -> tuple[float, ...]:
    try:
        out = tuple(float(c) for c in scales)
    except TypeError:
        raise TypeError(f"scales must be a sequence of positive floats, got {scales!r}") from None
    if not out or not all(math.isfinite(c) and c > 0 for c in out):
        raise ValueError(f"scales must be a non-empty sequence of positive finite floats, got {scales!r}")
    return out


def sample_local_scales(
    cost,
    anchor: torch.Tensor,
    *,
    threshold: float,
    n_samples: int,
    shape_std: float | torch.Tensor,
    scales,
    seed: int = 0,
    rtol: float = 1e-3,
    max_radius: float | None = None,
    initial_radius: float | None = None,
    growth: float = 2.0,
    fine_scan: int = 0,
    device=None,
    dtype: torch.dtype = torch.float32,
    batch_size: int | None = None,
    segment_check: int = 0,
    progress: bool = False,
) -> list[SamplingEstimate]:
    """Direct sampling of N(anchor, c^2 diag(shape_std^2)) for every c in ``scales`` from one set
    of N draws: theta_c = anchor + c * shape_std * z, so every scale shares the ray direction
    u = shape_std * z / |shape_std * z| and one radius search along u decides the draw at every
    scale (accepted at c when c |shape_std * z| <= r(u)). Draw for draw, the result at scale c is
    ``sample_star_domain_measure(prior_std=c * shape_std, prior_mean=anchor, pilot=0)`` with the
    same seed (tested), at the cost of one search per draw instead of one per draw and scale.
    The estimates at different scales share their draws, so they are correlated.

    Returns one :class:`SamplingEstimate` per scale, in the order given; a scale without a sure
    accept is returned with ``n_accepted == 0`` (its Clopper-Pearson interval still bounds it).
    """
    from volbench._checks import check_seed
    from volbench.estimator.core import default_device

    t0 = time.perf_counter()
    check_count(n_samples, "n_samples", minimum=1)
    check_count(segment_check, "segment_check")
    check_flat(anchor, "anchor")
    seed = check_seed(seed)
    cs = _check_scales(scales)
    n = anchor.numel()
    shape = check_prior_std(shape_std, n)
    mean = anchor.detach().to("cpu", torch.float64)
    search = search_settings(rtol, max_radius, seed, device, dtype, batch_size, initial_radius, growth, fine_scan)
    rows = block_rows(cost, batch_size, n)
    dev = default_device(cost, anchor, device)
    n_evals = 0
    accepted, upper, checked, check_evals = [0] * len(cs), [0] * len(cs), [0] * len(cs), [0] * len(cs)
    inner_config: dict[str, Any] = {}
    for u, dist, lo, hi, evals, inner_config in ray_blocks(  # noqa: B007  inner_config is read after the loop
            cost, anchor, threshold=threshold, n_draws=n_samples, std=shape, mean=mean, seed=seed,
            stream=SAMPLING_STREAM, search=search,
            block_rows=rows, progress=progress, what="sampling"):
        n_evals += evals
        for j, c in enumerate(cs):
            length = c * dist
            sure = length <= lo
            accepted[j] += int(sure.sum())
            upper[j] += int((length < hi).sum())
            if segment_check:
                ok, ev = _segments_inside(cost, anchor, u[sure], length[sure], threshold=threshold, grid=segment_check,
                                          device=dev, dtype=dtype, block_rows=rows)
                check_evals[j] += ev
                checked[j] += int(ok.sum())
    seconds = time.perf_counter() - t0
    out = []
    for j, c in enumerate(cs):
        std_c = c * shape
        config = _recorded(inner_config)
        config.update({
            "method": "volbench.sample_local_scales", "seed": seed, "stream": SAMPLING_STREAM, "n_samples": n_samples,
            "batch_size": batch_size, "pilot": 0, "segment_check": segment_check, "scale": c, "scales": list(cs),
            "prior_std": float(std_c[0]) if bool((std_c == std_c[0]).all()) else "per-parameter",
            "prior_mean": "anchor", "resolution": _resolution(rtol, segment_check),
            "shared_draws": "every scale uses the same draws and radius searches (n_cost_evals and seconds are the "
                            "shared run's, plus this scale's segment checks)",
        })
        out.append(SamplingEstimate(n_samples=n_samples, n_accepted=accepted[j], n_accepted_upper=upper[j],
                                    n_params=n, n_cost_evals=n_evals + check_evals[j], seconds=seconds, config=config,
                                    n_accepted_checked=checked[j] if segment_check else None))
    return out


# ----------------------------------------------------------------------------- calibration rules


