"""``estimate_log_volume``: the principled star-domain volume estimator.

    V = V_n E_u[ s(u)^n ]   (Lebesgue)      mu = |S^(n-1)| E_u[ int_0^s(u) rho(theta0 + t P u) t^(n-1) dt ]

estimated from K directions u_k uniform on the sphere (optionally mapped by a unit-determinant
preconditioner P, see ``directions``), with the radius along each ray found to relative
precision ``rtol`` by ``search.search_radii``. Unlike the main paper's procedure (``reference``)
radii are not snapped to a grid, rays that never leave are kept as censored lower bounds, and the
unit-ball constant is included, so a ball of radius R gets exactly log(V_n R^n).

Example (a ball of radius 2 in 50 dimensions; every ray has radius 2):
    >>> import torch, math
    >>> from volbench import estimate_log_volume
    >>> from volbench.estimator.measures import log_unit_ball_volume
    >>> cost = lambda p: (p ** 2).sum(dim=1)
    >>> est = estimate_log_volume(cost, torch.zeros(50), threshold=4.0, n_directions=8, rtol=1e-6,
    ...                           dtype=torch.float64)
    >>> abs(est.log_volume - (log_unit_ball_volume(50) + 50 * math.log(2.0))) < 50 * 1e-6
    True

Size: the estimator's public entry points and its four steps (_setup, the questions, _walk,
_assemble), with the checks of the cost protocol they rely on.
"""
from __future__ import annotations

import inspect
import math
import numbers
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from volbench import __version__
from volbench._checks import as_device, check_dtype, check_flat, check_positive_int, check_seed, check_threshold
from volbench.estimator.directions import DIRECTION_GENERATOR, DirectionSampler, row_norms
from volbench.estimator.measures import (
    check_prior_mean,
    describe_prior_mean,
    gaussian_log_ray_mass_at,
    gaussian_ray_coefficients,
    log_unit_ball_volume,
    log_unit_sphere_area,
)
from volbench.estimator.result import CensoredRaysWarning, VolumeEstimate
from volbench.estimator.search import SearchConfig, search_radii
from volbench.estimator.settings import DEFAULT_RESOLUTION_NATS, SearchSettings, default_rtol
from volbench.estimator.walk import FlatRays, Question, search_walk

__all__ = ["estimate_log_volume", "estimate_log_volume_many", "default_rtol", "DEFAULT_RESOLUTION_NATS",
           "SearchSettings", "filter_scale_at", "check_anchor", "as_batched_cost", "default_device"]

Cost = Callable[..., torch.Tensor]


def as_batched_cost(cost: Cost, threshold: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap ``cost`` so it is called with ``stop_above=threshold`` when it supports early exit,
    and its output is checked against the cost protocol ([B] tensor for [B, n] input)."""
    if not callable(cost):
        raise TypeError(f"cost must be callable mapping [B, n] parameters to [B] costs, got {type(cost).__name__}")
    early = bool(getattr(cost, "accepts_stop_above", False))

    def evaluate(params: torch.Tensor) -> torch.Tensor:
        out = cost(params, stop_above=threshold) if early else cost(params)
        if not isinstance(out, torch.Tensor) or out.shape != (params.shape[0],):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"cost returned {shape} for a [{params.shape[0]}, {params.shape[1]}] batch; it must "
                f"return a [{params.shape[0]}] tensor (one cost per parameter vector)"
            )
        if out.is_complex():
            raise TypeError(f"cost returned a {out.dtype} tensor; a cost must be real (a loss value per vector)")
        return out

    return evaluate


def default_device(cost, anchor, device) -> torch.device:
    """The device to evaluate on: the one asked for, else the cost's own (a ModelCost lives on
    one), else the anchor's, else the CPU."""
    if device is not None:
        return as_device(device)
    if getattr(cost, "device", None) is not None:
        return torch.device(cost.device)
    return anchor.device if isinstance(anchor, torch.Tensor) else torch.device("cpu")


def check_anchor(cost: Cost, anchor: Any, threshold: float, *, device, dtype) -> tuple[torch.Tensor, float]:
    """Validate anchor and threshold; return the anchor on device/dtype and its cost."""
    anchor = check_flat(anchor, "anchor")
    check_threshold(threshold)
    anchor = anchor.detach().to(device=device, dtype=dtype)
    c0 = as_batched_cost(cost, threshold)(anchor.unsqueeze(0))
    c0 = float(c0[0])
    if not math.isfinite(c0):
        raise ValueError(f"the cost at the anchor is {c0}: the cost function or the minimum is broken")
    if c0 >= threshold:
        raise ValueError(
            f"the anchor's cost {c0:.6g} is not below the threshold {threshold:.6g}: the anchor is not "
            "inside its own basin; train it further or raise the threshold"
        )
    return anchor, c0


def filter_scale_at(cost, anchor: torch.Tensor, bias: str) -> torch.Tensor | None:
    """``cost.filter_scale(bias=...)`` at ``anchor`` (the point the rays start from), or None for a
    cost without filter scales.

    The weight-row norms must be those of ``anchor``, not of whatever point the cost was built
    around: a cost whose ``filter_scale`` takes an ``anchor`` argument (``ModelCost``) is asked
    at ``anchor``; any other raises when its own ``cost.anchor`` differs from ``anchor``.
    """
    fn = getattr(cost, "filter_scale", None)
    if fn is None:
        return None
    try:
        takes_anchor = "anchor" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        takes_anchor = False
    if takes_anchor:
        return fn(bias=bias, anchor=anchor)
    own = getattr(cost, "anchor", None)
    if not isinstance(own, torch.Tensor) or own.shape != anchor.shape or not torch.equal(
            own.detach().to("cpu", torch.float64), anchor.detach().to("cpu", torch.float64)):
        raise ValueError(
            "the cost's filter_scale() measures weight rows at its own anchor, which differs from the anchor "
            "given to the estimator; pass the cost's anchor, or give filter_scale an `anchor` argument")
    return fn(bias=bias)


def _resolve_directions(cost, anchor, directions, preconditioner):
    """(explicit tensor or None, preconditioner or None, label) from the user's arguments."""
    if isinstance(directions, torch.Tensor):
        return directions, preconditioner, "explicit"
    if directions == "isotropic":
        return None, preconditioner, "isotropic"
    if directions == "filter":
        if preconditioner is not None:
            raise ValueError("directions='filter' builds its own preconditioner; pass preconditioner=None")
        scale = filter_scale_at(cost, anchor, "row")
        if scale is None:
            raise ValueError(
                "directions='filter' needs a model cost (volbench.costs.ModelCost) that knows the "
                "layer structure; a plain callable has no weight rows to normalise by"
            )
        scale = scale.detach().to(torch.float64).cpu()
        if (scale <= 0).any():
            raise ValueError("filter normalisation found a weight row of norm zero; cannot scale by it")
        return None, scale, "filter"
    raise ValueError(f"directions must be 'isotropic', 'filter', 'prior' or a [K, n] tensor, got {directions!r}")


def estimate_log_volume(
    cost: Cost,
    anchor: torch.Tensor,
    *,
    threshold: float,
    n_directions: int = 500,
    directions: str | torch.Tensor = "isotropic",
    preconditioner: torch.Tensor | None = None,
    measure: str = "lebesgue",
    prior_std: float | torch.Tensor | None = None,
    prior_mean: float | torch.Tensor | None = None,
    rtol: float | None = None,
    max_radius: float | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    batch_size: int | None = None,
    initial_radius: float | None = None,
    growth: float = 2.0,
    fine_scan: int = 0,
    progress: bool = False,
    resolution_nats: float = DEFAULT_RESOLUTION_NATS,
    search: str = "itp",
    robust: bool = True,
    settings: SearchSettings | None = None,
) -> VolumeEstimate:
    """Estimate the log-volume of the basin {theta: cost(theta) < threshold} star-shaped around
    ``anchor``.

    Args:
        cost: callable [B, n] -> [B] (see docs/CONTRACTS.md); a ``ModelCost`` adds early exit,
            filter normalisation and the ray interface (first-layer cache).
        anchor: flat [n] parameters of the minimum; its cost must be finite and below threshold.
        threshold: the basin's cost level tau (> 0). The cost's value (in the dtype it returns)
            is compared with tau in float64: inside iff ``value < tau``.
        n_directions: K, the number of rays (ignored when ``directions`` is a tensor).
        directions: "isotropic", "filter" (diagonal preconditioner of weight-row norms at
            ``anchor``, biases scaled with their row, unit determinant), "prior" (Gaussian measure
            only: rays towards points drawn from the prior, each term the fraction of its ray's
            prior mass inside the basin; see ``volbench.estimator.prior_rays``) or an explicit
            [K, n] tensor.
        preconditioner: None, a positive [n] diagonal or an SPD [n, n] matrix; normalised to unit
            determinant and applied as v = P u with importance weight ||P u||^(-n).
        measure: "lebesgue" (volume) or "gaussian" (mass under N(0, diag(prior_std^2))).
        prior_std: the Gaussian prior's std, a float or an [n] tensor (required for "gaussian").
        prior_mean: the Gaussian's centre, None (the origin, the initialisation prior), a float or
            an [n] tensor (e.g. the anchor itself: a local measure).
        rtol: relative precision of every radius: the search stops when the outside radius is
            within a factor 1 + rtol of the inside one. Default (None): ``default_rtol(n, dtype,
            resolution_nats)``, so that the log V bracket [from inside radii, from outside radii]
            is at most ``resolution_nats`` wide (n log(1 + rtol) nats: a fixed rtol of 1e-3 allows
            235 nats at n = 235,146).
        max_radius: rays still inside at this radius are censored (default 1e3 * max(1, ||anchor||)).
        seed: direction k is drawn from seed (seed, k); recorded in the result.
        device, dtype: where and in which precision the cost is evaluated (default: the cost's
            device when it has one, e.g. a ModelCost, else the anchor's; float32). Directions
            are drawn there, in ``dtype``.
        batch_size: rays searched together (default: the cost's ``max_rays`` (ray interface) or
            ``max_batch``, else 256).
        initial_radius: first radius tried (default 1e-2 * max(1, ||anchor||)).
        growth, fine_scan: bracketing knobs of ``SearchConfig``.
        progress: show a tqdm bar over direction batches.
        resolution_nats: target width of the log V bracket that sets the default rtol.
        search: "itp" (default: brackets guided by the cost values, then ITP root-finding on
            cost - tau; ``walk.search_walk``) or "bisect" (the original bit-only bracketing and
            bisection, ``search.search_radii``; kept as the benchmarks' baseline).
        robust: (search="itp") look for hidden exits where the inside costs rise and fall before
            the first exit (``SearchConfig.robust``).
        settings: all the search's settings at once (``volbench.estimator.settings.SearchSettings``),
            instead of rtol ... robust above: how the other layers (prior-directed rays, the
            direct samplers, the lab) pass them down.

    Warns (``CensoredRaysWarning``) when some rays are still inside at ``max_radius``: their
    radii are lower bounds, and at large n one of them can dominate log V.
    """
    if settings is None:
        settings = SearchSettings(rtol=rtol, resolution_nats=resolution_nats, max_radius=max_radius,
                                  initial_radius=initial_radius, growth=growth, fine_scan=fine_scan, search=search,
                                  robust=robust, seed=seed, device=device, dtype=dtype, batch_size=batch_size,
                                  progress=progress)
    if isinstance(directions, str) and directions == "prior":
        from volbench.estimator.prior_rays import estimate_prior_directed

        return estimate_prior_directed(cost, anchor, threshold=threshold, n_directions=n_directions, measure=measure,
                                       prior_std=prior_std, prior_mean=prior_mean, preconditioner=preconditioner,
                                       settings=settings)
    results = _estimate(cost, anchor, thresholds=[threshold], sizes=None, strict=True, n_directions=n_directions,
                        directions=directions, preconditioner=preconditioner, measure=measure, prior_std=prior_std,
                        prior_mean=prior_mean, settings=settings)
    return next(iter(results.values()))


def estimate_log_volume_many(cost: Cost, anchor: torch.Tensor, *, thresholds: Sequence[float],
                             sizes: Sequence[int] | None = None, n_directions: int = 500,
                             directions: str | torch.Tensor = "isotropic", preconditioner: torch.Tensor | None = None,
                             measure: str = "lebesgue", prior_std: float | torch.Tensor | None = None,
                             prior_mean: float | torch.Tensor | None = None, settings: SearchSettings | None = None,
                             **search: Any) -> dict[tuple[int | None, float], VolumeEstimate | None]:
    """``estimate_log_volume`` for every (data size, threshold) pair from one walk per ray batch.

    ``sizes``: nested landscapes as prefixes of the cost's data (``ModelCost.open_rays``; the
    data must be in the nested order, as the lab builds it); None = the whole data set (key
    size None). Every answer uses the same directions; each point evaluated serves every
    question. Returns ``{(size, threshold): VolumeEstimate}``, with None where the anchor's cost
    in that landscape is not below the threshold (outside its own basin). ``n_cost_evals`` and
    ``seconds`` of each estimate are its share of the walk's (``config["walk"]`` has the totals).
    The search's settings: ``settings``, or its fields as keyword arguments (search="itp" only).
    """
    if settings is None:
        settings = SearchSettings(**search)
    elif search:
        raise TypeError(f"give the search's settings as settings= or as keywords, not both ({sorted(search)})")
    return _estimate(cost, anchor, thresholds=list(thresholds), sizes=sizes, strict=False, n_directions=n_directions,
                     directions=directions, preconditioner=preconditioner, measure=measure, prior_std=prior_std,
                     prior_mean=prior_mean, settings=settings)


def _gaussian_std(prior_std, n: int) -> torch.Tensor:
    if prior_std is None:
        raise ValueError("measure='gaussian' needs prior_std (a float or an [n] tensor); see volbench.estimator.priors")
    if not isinstance(prior_std, (numbers.Real, torch.Tensor)) or isinstance(prior_std, bool):
        raise TypeError(f"prior_std must be a positive float or a positive [{n}] tensor, got "
                        f"{type(prior_std).__name__}")
    std = torch.as_tensor(prior_std, dtype=torch.float64).cpu()
    if std.ndim == 0:
        std = std.expand(n)
    if std.shape != (n,) or not torch.isfinite(std).all() or (std <= 0).any():
        raise ValueError(f"prior_std must be a positive float or a positive [{n}] tensor")
    return std


def _anchor_costs(cost, anchor: torch.Tensor, sizes, thresholds, strict: bool, dtype) -> tuple[torch.Tensor, Any]:
    """Exact costs at the anchor per data size (float64 [S]) and the ray-evaluator factory."""
    if getattr(cost, "accepts_rays", False):
        def opener(origin, dirs):
            return cost.open_rays(origin, dirs, sizes=sizes)
        c0 = cost.prefix_costs(anchor, sizes)
    else:
        if sizes is not None:
            raise ValueError("sizes (nested data prefixes) need a cost with the ray interface "
                             "(volbench.costs.ModelCost)")
        evaluate = as_batched_cost(cost, math.inf)
        c0 = evaluate(anchor.unsqueeze(0)).detach().to(torch.float64).cpu()

        def opener(origin, dirs):
            return FlatRays(cost, origin, dirs, check=_check_output)
    check_anchor_costs(c0, thresholds, strict)
    return c0, opener


def check_anchor_costs(c0: torch.Tensor, thresholds: Sequence[float], strict: bool) -> None:
    """The anchor's costs per data size (float64 [S]) must be finite, and with ``strict`` the
    whole data set's below the first threshold; else a ValueError naming the fix."""
    if not bool(torch.isfinite(c0).all()):
        bad = c0.tolist()
        raise ValueError(f"the cost at the anchor is {bad[0] if len(bad) == 1 else bad}: the cost function or the "
                         "minimum is broken")
    if strict and not float(c0[-1]) < thresholds[0]:
        raise ValueError(
            f"the anchor's cost {float(c0[-1]):.6g} is not below the threshold {thresholds[0]:.6g}: the anchor is not "
            "inside its own basin; train it further or raise the threshold"
        )


def _check_output(out: torch.Tensor, params: torch.Tensor) -> None:
    if not isinstance(out, torch.Tensor) or out.shape != (params.shape[0],):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"cost returned {shape} for a [{params.shape[0]}, {params.shape[1]}] batch; it must "
                         f"return a [{params.shape[0]}] tensor (one cost per parameter vector)")
    if out.is_complex():
        raise TypeError(f"cost returned a {out.dtype} tensor; a cost must be real (a loss value per vector)")


def _estimate(cost, anchor, *, thresholds, sizes, strict, n_directions, directions, preconditioner, measure,
              prior_std, prior_mean, settings: SearchSettings) -> dict[tuple[int | None, float], VolumeEstimate | None]:
    """The estimator in four steps: validate and cost the anchor (:func:`_setup`), pose the
    questions (one per data size and threshold whose anchor is inside), walk every batch of rays
    (:func:`_walk`), and turn radii into estimates (:func:`_assemble`)."""
    start = time.perf_counter()
    run = _setup(cost, anchor, thresholds, sizes, strict, n_directions, directions, preconditioner, measure,
                 prior_std, prior_mean, settings)
    keys, questions = [], []
    size_keys = [None] if run.size_list is None else list(run.size_list)
    for si, size in enumerate(size_keys):
        for tau in thresholds:
            keys.append((size, float(tau)))
            questions.append(Question(si, float(tau)) if float(run.c0[si]) < tau else None)
    walked = _walk(cost, run, [q for q in questions if q is not None], thresholds, settings)
    return _assemble(run, walked, keys, questions, settings, time.perf_counter() - start)


@dataclass(frozen=True)
class _Run:
    """What every step of one estimate needs: the validated inputs and the search's configuration."""

    device: torch.device
    anchor: torch.Tensor
    c0: torch.Tensor
    opener: Any
    n: int
    K: int
    size_list: tuple[int, ...] | None
    sampler: DirectionSampler
    label: str
    explicit: bool
    measure: str
    std: torch.Tensor | None
    mean: torch.Tensor | None
    cfg: SearchConfig
    batch_size: int
    seed: int


def _setup(cost, anchor, thresholds, sizes, strict, n_directions, directions, preconditioner, measure, prior_std,
           prior_mean, settings: SearchSettings) -> _Run:
    device = default_device(cost, anchor, settings.device)
    if measure not in ("lebesgue", "gaussian"):
        raise ValueError(f"measure must be 'lebesgue' or 'gaussian', got {measure!r}")
    if not thresholds:
        raise ValueError("at least one threshold is needed")
    for tau in thresholds:
        check_threshold(tau)
    seed = check_seed(settings.seed)
    dtype = check_dtype(settings.dtype)
    if settings.search == "bisect":
        if sizes is not None or len(thresholds) != 1:
            raise ValueError("search='bisect' answers one threshold on the whole data set; use search='itp'")
        anchor_t, c0_single = check_anchor(cost, anchor, thresholds[0], device=device, dtype=dtype)
        c0, opener = torch.tensor([c0_single], dtype=torch.float64), None
    else:
        anchor_t = check_flat(anchor, "anchor").detach().to(device=device, dtype=dtype)
        c0, opener = _anchor_costs(cost, anchor_t, sizes, thresholds, strict, dtype)
    n = anchor_t.numel()
    size_list = None if sizes is None else tuple(cost.check_sizes(sizes))
    explicit, precond, label = _resolve_directions(cost, anchor_t, directions, preconditioner)
    K = check_positive_int(n_directions, "n_directions") if explicit is None else explicit.shape[0]
    std = mean = None
    if measure == "gaussian":
        std = _gaussian_std(prior_std, n)
        mean = check_prior_mean(prior_mean, n)
    elif prior_std is not None:
        raise ValueError("prior_std is only used with measure='gaussian'")
    elif prior_mean is not None:
        raise ValueError("prior_mean is only used with measure='gaussian'")
    batch_size = settings.batch_size
    if batch_size is None:
        batch_size = int(getattr(cost, "max_rays", None) or getattr(cost, "max_batch", None) or 256)
    batch_size = check_positive_int(batch_size, "batch_size", " (rays searched together) or None")
    return _Run(device=device, anchor=anchor_t, c0=c0, opener=opener, n=n, K=K, size_list=size_list,
                sampler=DirectionSampler(n, seed=seed, preconditioner=precond, explicit=explicit), label=label,
                explicit=explicit is not None, measure=measure, std=std, mean=mean,
                cfg=settings.config(n, float(row_norms(anchor_t.unsqueeze(0))[0])), batch_size=batch_size, seed=seed)


@dataclass
class _Walked:
    """The radii of every ray and question (columns), their direction norms, the Gaussian terms."""

    lo: list = field(default_factory=list)
    hi: list = field(default_factory=list)
    log_norm: list = field(default_factory=list)
    evals: list = field(default_factory=list)
    terms: list = field(default_factory=list)
    terms_upper: list = field(default_factory=list)
    n_evals: int = 1  # the anchor
    rounds: int = 0
    n_questions: int = 0


def _walk(cost, run: _Run, asked: list, thresholds, settings: SearchSettings, start: int = 0,
          stop: int | None = None) -> _Walked:
    """Search every batch of rays for every question's first exit: directions ``start`` to
    ``stop`` (default all K), by global index, in batches of ``run.batch_size`` from ``start``
    (``volbench.estimator.distributed`` walks one rank's share this way)."""
    stop = run.K if stop is None else stop
    out = _Walked(n_questions=len(asked))
    dtype, device, n = settings.dtype, run.device, run.n
    std_d = None if run.std is None else run.std.to(device)
    # Only the offset from the prior's centre enters each ray's Gaussian integral: once, in float64.
    offset = None if run.std is None else (
        run.anchor if run.mean is None else run.anchor.double() - run.mean.to(run.anchor.device))
    batches = range(start, stop, run.batch_size)
    if settings.progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=f"volume ({stop - start} rays)", unit="batch")
    for start_k in batches:
        idx = torch.arange(start_k, min(stop, start_k + run.batch_size))
        v, log_norm_w = run.sampler.batch(idx, device=device, dtype=dtype)
        if settings.search == "bisect":
            lo, hi, ev = _bisect_batch(cost, run.anchor, v, thresholds[0], run.cfg, device, dtype)
            lo, hi = lo.unsqueeze(1), hi.unsqueeze(1)
            out.n_evals += ev
            out.evals.append(torch.full((len(idx),), -1, dtype=torch.long))
        elif asked:
            found = search_walk(run.opener(run.anchor, v), asked, run.cfg, dtype=dtype, anchor_values=run.c0)
            lo, hi = found.lo, found.hi
            out.n_evals += found.n_evals
            out.rounds += found.n_rounds
            out.evals.append(found.evals_per_ray)
        else:
            break
        out.lo.append(lo)
        out.hi.append(hi)
        out.log_norm.append(log_norm_w)
        if run.measure == "gaussian":
            const = (log_unit_sphere_area(n) - n * log_norm_w).unsqueeze(1)
            coeffs = gaussian_ray_coefficients(v, offset, std_d)
            out.terms.append(torch.stack([gaussian_log_ray_mass_at(lo[:, a], coeffs, n) for a in range(lo.shape[1])],
                                         1) + const)
            out.terms_upper.append(torch.stack([gaussian_log_ray_mass_at(hi[:, a], coeffs, n)
                                                for a in range(hi.shape[1])], 1) + const)
    return out


def _assemble(run: _Run, walked: _Walked, keys, questions, settings: SearchSettings,
              seconds: float) -> dict[tuple[int | None, float], VolumeEstimate | None]:
    """One ``VolumeEstimate`` per question (None where the anchor is outside), with the record of
    what produced it."""
    n, K, A, std = run.n, run.K, walked.n_questions, run.std
    config = {
        "estimator": "volbench.estimate_log_volume",
        "n_directions": K,
        "directions": run.label,
        "direction_generator": None if run.explicit else DIRECTION_GENERATOR,
        "preconditioner": run.sampler.describe()["preconditioner"],
        "measure": run.measure,
        "prior_std": None if std is None else (float(std[0]) if bool((std == std[0]).all()) else "per-parameter"),
        "prior_mean": None if std is None else describe_prior_mean(run.mean, run.anchor),
        "rtol": run.cfg.rtol,
        "resolution_nats": settings.resolution_nats,
        "search": settings.search,
        "robust": bool(settings.robust) if settings.search == "itp" else None,
        "initial_radius": run.cfg.initial_radius,
        "growth": settings.growth,
        "max_radius": run.cfg.max_radius,
        "fine_scan": settings.fine_scan,
        "seed": run.seed,
        "device": str(run.device),
        "dtype": str(settings.dtype).replace("torch.", ""),
        "batch_size": run.batch_size,
        "torch": torch.__version__,
        "numpy": np.__version__,  # direction seeds come from numpy's SeedSequence
        "volbench": __version__,
    }
    results: dict[tuple[int | None, float], VolumeEstimate | None] = {}
    evals_per_ray = torch.cat(walked.evals) if walked.evals else torch.zeros(0, dtype=torch.long)
    if A:
        lo, hi, log_norm = torch.cat(walked.lo), torch.cat(walked.hi), torch.cat(walked.log_norm)
        if run.measure == "gaussian":
            lt_all, lu_all = torch.cat(walked.terms), torch.cat(walked.terms_upper)
    if A > 1:
        config["walk"] = {"questions": A, "cost_evals": walked.n_evals, "seconds": seconds, "rounds": walked.rounds}
    n_evals = walked.n_evals
    shares = [n_evals // A + (1 if i < n_evals % A else 0) for i in range(A)] if A else []
    a = 0
    for key, q in zip(keys, questions):
        if q is None:
            results[key] = None
            continue
        log_r = torch.log(lo[:, a])
        log_u = torch.log(hi[:, a])
        if run.measure == "lebesgue":
            log_terms = log_unit_ball_volume(n) + n * (log_r - log_norm)
            log_terms_upper = log_unit_ball_volume(n) + n * (log_u - log_norm)
        else:
            log_terms, log_terms_upper = lt_all[:, a], lu_all[:, a]
        censored = torch.isinf(hi[:, a])
        if bool(censored.any()):
            n_cens = int(censored.sum())
            warnings.warn(
                f"{n_cens} of {K} rays ({n_cens / K:.1%}) are still inside the basin at "
                f"max_radius={run.cfg.max_radius:.4g}"
                f"{'' if key[0] is None else f' (landscape {key[0]}, threshold {key[1]:g})'}: their radii and terms "
                "are lower bounds, so the estimate is a lower bound, and under the Lebesgue measure at large n such "
                "rays can dominate it; raise max_radius, or use measure='gaussian' where some directions are "
                "unbounded", CensoredRaysWarning, stacklevel=4)
        results[key] = VolumeEstimate(
            log_volume=float(torch.logsumexp(log_terms, dim=0) - math.log(K)),
            log_radii=log_r,
            log_radii_upper=log_u,
            censored=censored,
            log_terms=log_terms,
            log_terms_upper=log_terms_upper,
            n_params=n,
            n_directions=K,
            n_cost_evals=shares[a] if A > 1 else n_evals,
            seconds=seconds / A,
            config={**config, "threshold": key[1], "anchor_cost": float(run.c0[q.size_index]),
                    **({} if key[0] is None else {"landscape_size": key[0]})},
            evals_per_ray=evals_per_ray if settings.search == "itp" else None,
        )
        a += 1
    return results


def _bisect_batch(cost, anchor, v, threshold, cfg, device, dtype):
    """The original search on one batch of directions: (lo, hi, evaluations)."""
    evaluate = as_batched_cost(cost, threshold)

    def inside(rows: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
        rows_d = rows.to(device)
        params = anchor + radii.to(device=device, dtype=dtype).unsqueeze(1) * v[rows_d]
        c = evaluate(params).to(torch.float64)  # compare in float64, not with tau rounded to c's dtype
        return (torch.isfinite(c) & (c < threshold)).cpu()

    res = search_radii(inside, v.shape[0], cfg)
    return res.lo, res.hi, res.n_evals
