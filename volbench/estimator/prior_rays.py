"""Prior-directed rays: the Gaussian measure of a star domain by direct sampling, Rao-Blackwellised
along each ray.

Draw theta from the prior N(mu, diag(sigma^2)) and take the ray from the anchor theta0 through it,
u = (theta - theta0) / |theta - theta0|. On the unit sphere u has the density (w.r.t. surface area)

    p(u) = m(u, inf),     m(u, r) = int_0^r rho(theta0 + t u) t^(n-1) dt,

the same radial integral the Gaussian measure evaluates (``measures.gaussian_log_ray_mass``),
taken to r = inf. The star domain S with radius r(u) along u has prior mass
mu(S) = int dsigma(u) m(u, r(u)), hence

    mu(S) = E_{u ~ p}[ m(u, r(u)) / m(u, inf) ] = E_{u ~ p}[ P(|theta - theta0| <= r(u) | u) ],

the mean of the fraction of each ray's prior mass that lies inside the basin. Each term is the
conditional expectation, given the direction, of direct sampling's acceptance indicator
1{|theta - theta0| <= r(u)}, so the estimator is unbiased and its variance is at most direct
sampling's mu (1 - mu) / K (Rao-Blackwell: Var E[X | u] <= Var X). It never counts zero, and the
terms live in log space, so it stays usable where acceptance is far too small to count. Unlike
isotropic directions (whose weights |S^(n-1)| m(u, r(u)) are dominated by the few rays that point
towards the prior's bulk), the rays go where the prior mass is.

Structural reliability's "directional simulation" (Ditlevsen et al. 1987; Bjerager, "Probability
integration by directional simulation", J. Eng. Mech. 114(8), 1988) is the same construction with
rays from the centre of a standard normal space, where the radial law is chi with n degrees of
freedom; its variance is the variance of the per-ray probability, estimated by the sample variance
(the CLT interval of the mean). Here the rays start at the anchor, because the basin is star-shaped
around the anchor, and the radial law along u is a noncentral one evaluated by ``log_J``.

With mu = theta0 and an isotropic sigma, p(u) is uniform and each term equals the isotropic
estimator's |S^(n-1)| m(u, r(u)): the two estimators coincide (tested).

Reproducibility: the prior points are drawn in fixed blocks of ``PRIOR_BLOCK`` rows; block b uses
its own CPU generator seeded by SeedSequence([seed, b, stream]) in float64, so ray k is the same
whatever the batch size, the device or the number of rays asked for.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from volbench.estimator.measures import check_prior_mean, describe_prior_mean, gaussian_log_ray_mass
from volbench.estimator.result import VolumeEstimate
from volbench.estimator.settings import SearchSettings

__all__ = ["PRIOR_BLOCK", "PRIOR_RAY_STREAM", "SAMPLING_STREAM", "CALIBRATION_STREAM", "check_prior_std",
           "prior_points", "prior_ray_directions", "log_ray_fractions", "estimate_prior_directed"]

#: Rows per generator block (part of a draw's identity: changing it changes which points are drawn).
PRIOR_BLOCK = 256
#: Stream tags that keep the prior rays and direct sampling independent for one user seed.
PRIOR_RAY_STREAM = 1
SAMPLING_STREAM = 2
#: Pilot draws that calibrate a measure or threshold ladder (``volbench.crosscheck.sampling.calibrate_*``):
#: independent of the draws and rays the calibrated levels are then measured with.
CALIBRATION_STREAM = 3
#: Rows of [rows, n] float64 directions held at once (256 MiB): bounds memory for large n.
MAX_BLOCK_ELEMENTS = 1 << 25


def check_prior_std(prior_std, n: int) -> torch.Tensor:
    """The Gaussian's standard deviations as a positive [n] float64 CPU tensor, else an error."""
    if prior_std is None:
        raise ValueError("the Gaussian measure needs prior_std (a float or an [n] tensor); "
                         "see volbench.estimator.priors")
    if isinstance(prior_std, bool) or not isinstance(prior_std, (int, float, torch.Tensor)):
        raise TypeError(f"prior_std must be a positive float or a positive [{n}] tensor, got "
                        f"{type(prior_std).__name__}")
    std = torch.as_tensor(prior_std, dtype=torch.float64).detach().cpu()
    if std.ndim == 0:
        std = std.expand(n)
    if std.shape != (n,) or not torch.isfinite(std).all() or (std <= 0).any():
        raise ValueError(f"prior_std must be a positive float or a positive [{n}] tensor")
    return std


def _block_seed(seed: int, block: int, stream: int) -> int:
    words = np.random.SeedSequence([int(seed), int(block), int(stream)]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])  # < 2^63, valid for manual_seed


def prior_points(start: int, stop: int, *, n: int, seed: int, std: torch.Tensor, mean: torch.Tensor | None,
                 stream: int) -> torch.Tensor:
    """Prior draws start..stop-1 as a [stop - start, n] float64 CPU tensor, theta = mu + sigma z.

    Example:
        >>> a = prior_points(0, 300, n=3, seed=0, std=torch.ones(3), mean=None, stream=1)
        >>> b = prior_points(250, 260, n=3, seed=0, std=torch.ones(3), mean=None, stream=1)
        >>> bool(torch.equal(a[250:260], b))
        True
    """
    if not 0 <= start <= stop:
        raise ValueError(f"need 0 <= start <= stop, got {start}, {stop}")
    out = torch.empty(stop - start, n, dtype=torch.float64)
    gen = torch.Generator(device="cpu")
    for block in range(start // PRIOR_BLOCK, -(-stop // PRIOR_BLOCK)):
        lo, hi = block * PRIOR_BLOCK, (block + 1) * PRIOR_BLOCK
        gen.manual_seed(_block_seed(seed, block, stream))
        z = torch.randn(PRIOR_BLOCK, n, generator=gen, dtype=torch.float64)
        a, b = max(lo, start), min(hi, stop)
        out[a - start:b - start] = z[a - lo:b - lo]
    out.mul_(std)
    if mean is not None:
        out.add_(mean)
    return out


def prior_ray_directions(points: torch.Tensor, anchor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(unit directions u = (theta - theta0) / |theta - theta0| [b, n], distances |theta - theta0| [b]),
    float64 CPU."""
    diff = points - anchor.detach().to("cpu", torch.float64)
    dist = diff.norm(dim=1)
    if bool((dist == 0).any()):  # probability zero for a continuous prior
        raise RuntimeError("a prior draw coincides with the anchor; its ray direction is undefined")
    return diff / dist[:, None], dist


def log_ray_fractions(radii: torch.Tensor, u: torch.Tensor, anchor: torch.Tensor, std: torch.Tensor,
                      mean: torch.Tensor | None, log_total: torch.Tensor | None = None) -> torch.Tensor:
    """log m(u, r) - log m(u, inf) per row: the log-fraction of each ray's prior mass within r.
    ``log_total``: log m(u, inf) when already computed (it depends on the ray, not on r)."""
    anchor = anchor.detach().to("cpu", torch.float64)
    inside = gaussian_log_ray_mass(radii, u, anchor, std, mean)
    if log_total is None:
        log_total = gaussian_log_ray_mass(torch.full_like(radii, math.inf, dtype=torch.float64), u, anchor, std, mean)
    return torch.clamp(inside - log_total, max=0.0)  # a fraction <= 1; the clamp removes float round-off only


def estimate_prior_directed(cost, anchor: torch.Tensor, *, threshold: float, n_directions: int = 500,
                            measure: str = "gaussian", prior_std=None, prior_mean=None, preconditioner=None,
                            settings: SearchSettings | None = None) -> VolumeEstimate:
    """``estimate_log_volume(..., directions="prior")``: the prior mass of the star domain from
    rays towards prior draws (see the module docstring). The radius along each ray is found by
    the estimator's own search (``estimate_log_volume`` with the rays as explicit directions), so
    the first-exit rule, rtol and bracketing are exactly the isotropic estimator's.

    Returns a ``VolumeEstimate`` whose ``log_terms`` are the per-ray log-fractions (from the inside
    radius) and ``log_terms_upper`` the same from the outside radius; ``log_volume`` is the log of
    their mean, ``config["directions"] == "prior"``.
    """
    from volbench._checks import check_positive_int, check_seed
    from volbench.estimator.core import estimate_log_volume

    start_time = time.perf_counter()
    if measure != "gaussian":
        raise ValueError("directions='prior' estimates a Gaussian measure: pass measure='gaussian' with prior_std "
                         "(and optionally prior_mean)")
    if preconditioner is not None:
        raise ValueError("directions='prior' draws its rays from the prior; pass preconditioner=None")
    if not isinstance(anchor, torch.Tensor) or anchor.ndim != 1 or anchor.numel() == 0:
        raise ValueError("anchor must be a flat [n] tensor of parameters (torch.nn.utils.parameters_to_vector)")
    settings = settings if settings is not None else SearchSettings()
    K = check_positive_int(n_directions, "n_directions")
    seed = check_seed(settings.seed)
    batch_size = settings.batch_size
    n = anchor.numel()
    std = check_prior_std(prior_std, n)
    mean = check_prior_mean(prior_mean, n)
    block_rows = int(batch_size or getattr(cost, "max_batch", None) or 256)
    block_rows = max(1, min(block_rows, MAX_BLOCK_ELEMENTS // n))
    inner = settings.replace(progress=False)  # the outer loop shows the progress
    lo_parts, hi_parts, cens_parts, terms, terms_upper = [], [], [], [], []
    n_evals, inner_config = 0, {}
    blocks = range(0, K, block_rows)
    if settings.progress:
        from tqdm.auto import tqdm

        blocks = tqdm(blocks, desc=f"prior rays ({K})", unit="block")
    for first in blocks:
        last = min(K, first + block_rows)
        u, _ = prior_ray_directions(prior_points(first, last, n=n, seed=seed, std=std, mean=mean,
                                                 stream=PRIOR_RAY_STREAM), anchor)
        est = estimate_log_volume(cost, anchor, threshold=threshold, n_directions=last - first, directions=u,
                                  measure="lebesgue", settings=inner)
        n_evals += est.n_cost_evals
        inner_config = est.config
        lo, hi = est.log_radii.double().exp(), est.log_radii_upper.double().exp()
        total = gaussian_log_ray_mass(torch.full_like(lo, math.inf), u, anchor.detach().to("cpu", torch.float64),
                                      std, mean)
        terms.append(log_ray_fractions(lo, u, anchor, std, mean, log_total=total))
        terms_upper.append(log_ray_fractions(hi, u, anchor, std, mean, log_total=total))
        lo_parts.append(est.log_radii)
        hi_parts.append(est.log_radii_upper)
        cens_parts.append(est.censored)
    log_terms = torch.cat(terms)
    config = dict(inner_config)
    config.update({
        "n_directions": K, "directions": "prior", "preconditioner": None, "measure": "gaussian",
        "prior_std": float(std[0]) if bool((std == std[0]).all()) else "per-parameter",
        "prior_mean": describe_prior_mean(mean, anchor), "prior_block": PRIOR_BLOCK,
        "prior_stream": PRIOR_RAY_STREAM, "batch_size": batch_size,
    })
    return VolumeEstimate(
        log_volume=float(torch.logsumexp(log_terms, dim=0) - math.log(K)),
        log_radii=torch.cat(lo_parts), log_radii_upper=torch.cat(hi_parts), censored=torch.cat(cens_parts),
        log_terms=log_terms, log_terms_upper=torch.cat(terms_upper), n_params=n, n_directions=K,
        n_cost_evals=n_evals,  # includes the anchor's evaluation by each block's search call
        seconds=time.perf_counter() - start_time, config=config,
    )
