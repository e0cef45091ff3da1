"""The main paper's fixed-grid volume procedure, with its exact semantics, batched.

Fan, Sandlund & Ko, "Sharp minima can generalize", Sec. 4 and App. A.2 (and their public code,
see ../shared/NOTES.md):

* K raw directions g_k ~ N(0, I_n), one seed per direction, reused for every minimum;
* perturbation delta_k = g_k * scale: each weight row multiplied by that row's weight norm
  (filter normalisation), biases unscaled (``scale`` = 1 there);
* grid coefficients c_j = linspace(0, 1, 100)^2; the cost of theta0 + c_j delta_k is compared with
  the threshold and the radius is r_k = c_{j*} ||g_k|| for the first j* whose cost exceeds it
  (note: the norm of the *raw* Gaussian direction, not of delta_k);
* directions that never exceed the threshold are dropped;
* log V = log mean_{kept} r_k^n, with no unit-ball constant.

The paper's code walks every direction over all 100 grid points one forward pass at a time
(``paper_loop_radii`` below keeps that loop as the slow baseline for benchmarks). Here all
directions of a batch advance through the grid together and each stops at its first crossing
(``lookahead`` grid points per step trade extra evaluations for fewer sequential steps on a GPU);
the radii are identical because each direction's decision depends only on its own costs, and
both round every parameter vector like the paper's ``anchor + c_j * delta_k`` (a product, then a
sum; a fused multiply-add such as ``torch.addcmul`` rounds once and differs in the last bit).

Size: one procedure, the paper's grid, in its steps (setup, a piece of directions, assembly) for its
two paths (the flat batched loop and the ray walk), plus the sequential loop it is checked against.

Example:
    >>> import torch
    >>> from volbench import reference_log_volume
    >>> cost = lambda p: (p ** 2).sum(dim=1)
    >>> est = reference_log_volume(cost, torch.zeros(20), threshold=1.0, n_directions=16)
    >>> est.n_dropped, est.crossing_index.min().item() > 0
    (0, True)
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from volbench import __version__
from volbench._checks import check_dtype, check_flat, check_positive_int, check_seed, check_threshold
from volbench.estimator.core import (
    as_batched_cost,
    check_anchor,
    check_anchor_costs,
    default_device,
    filter_scale_at,
)
from volbench.estimator.directions import DIRECTION_GENERATOR, raw_gaussian, row_norms
from volbench.estimator.result import ReferenceEstimate
from volbench.estimator.walk import Question, grid_walk

__all__ = ["paper_coefficients", "reference_log_volume", "reference_log_volume_many", "paper_loop_radii",
           "reference_scale"]


def paper_coefficients(n_points: int = 100) -> torch.Tensor:
    """The paper's grid, linspace(0, 1, n_points)**2 (float64; cast where it is used)."""
    return torch.linspace(0.0, 1.0, n_points, dtype=torch.float64) ** 2


def reference_scale(cost, n: int, anchor: torch.Tensor | None = None) -> torch.Tensor:
    """The per-parameter multiplier of the paper's directions: the model cost's weight-row norms
    at ``anchor`` (biases unscaled; see ``filter_scale_at``), or all ones for a plain callable."""
    if getattr(cost, "filter_scale", None) is None:
        return torch.ones(n, dtype=torch.float32)
    if anchor is None:
        return cost.filter_scale(bias="unscaled").detach().cpu()
    return filter_scale_at(cost, anchor, "unscaled").detach().cpu()


def _prepare(cost, anchor, threshold, n_directions, directions, scale, coefficients, seed, device, dtype,
             check=True):
    device = default_device(cost, anchor, device)
    seed = check_seed(seed)
    dtype = check_dtype(dtype)
    if check:
        anchor, anchor_cost = check_anchor(cost, anchor, threshold, device=device, dtype=dtype)
    else:  # the caller computes the anchor's costs itself (every data size at once)
        anchor, anchor_cost = check_flat(anchor, "anchor").detach().to(device=device, dtype=dtype), math.nan
    n = anchor.numel()
    if directions is not None:
        if not isinstance(directions, torch.Tensor) or directions.ndim != 2 or directions.shape[1] != n:
            raise ValueError(f"directions must be a [K, {n}] tensor of raw Gaussian directions")
        K = directions.shape[0]
    else:
        K = check_positive_int(n_directions, "n_directions")
    if scale is not None and not isinstance(scale, torch.Tensor):
        try:
            scale = torch.as_tensor(scale)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"scale must be a finite [{n}] tensor (per-parameter multipliers), got "
                            f"{type(scale).__name__}") from None
    scale = reference_scale(cost, n, anchor) if scale is None else scale
    if scale.shape != (n,) or not torch.isfinite(scale).all():
        raise ValueError(f"scale must be a finite [{n}] tensor (per-parameter multipliers)")
    coef = paper_coefficients() if coefficients is None else torch.as_tensor(coefficients, dtype=torch.float64)
    if coef.ndim != 1 or len(coef) < 2 or not torch.isfinite(coef).all() or (coef.diff() < 0).any() or coef[0] < 0:
        raise ValueError("coefficients must be a finite, non-decreasing 1-D grid starting at >= 0")

    def raw(idx: torch.Tensor) -> torch.Tensor:
        # Float32 like the paper's draws, drawn on the evaluation device; explicit directions
        # stay on their own device (a GPU tensor is not copied to the CPU and back).
        if directions is not None:
            return directions[idx.to(directions.device)].detach().to(torch.float32)
        return raw_gaussian(idx, n, seed, device=device)

    return device, anchor, anchor_cost, n, K, scale, coef, raw


def reference_log_volume(
    cost: Callable[..., torch.Tensor],
    anchor: torch.Tensor,
    *,
    threshold: float,
    n_directions: int = 500,
    directions: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    coefficients: torch.Tensor | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    batch_size: int | None = None,
    lookahead: int = 1,
) -> ReferenceEstimate:
    """Run the main paper's procedure (see the module docstring) on all directions at once.

    Args:
        cost: callable [B, n] -> [B]; a ``ModelCost`` provides the filter scale.
        anchor: flat [n] parameters of the minimum.
        threshold: a direction crosses at the first grid point whose cost is > threshold. As in the
            paper's code a NaN cost never counts as a crossing (NaN > tau is False).
        n_directions: K raw Gaussian directions drawn from ``seed`` (one seed per direction).
        directions: explicit [K, n] raw Gaussian directions instead (to match other code).
        scale: per-parameter multiplier (default: the cost's weight-row norms, else ones).
        coefficients: the grid (default linspace(0, 1, 100)**2).
        batch_size: directions per batch (default: the cost's ``max_batch`` or 256).
        lookahead: grid points evaluated per direction per step (>= 1).
    """
    run = _grid_setup(cost, anchor, thresholds=[threshold], sizes=None, exact_costs=None, strict=True,
                      n_directions=n_directions, directions=directions, scale=scale, coefficients=coefficients,
                      seed=seed, device=device, dtype=dtype, batch_size=batch_size, lookahead=lookahead)
    pieces = [_grid_piece(run, s, min(run.K, s + run.batch_size)) for s in run.batch_starts()]
    return next(iter(_grid_assemble(run, pieces, time.perf_counter() - run.started).values()))


def paper_loop_radii(
    cost: Callable[..., torch.Tensor],
    anchor: torch.Tensor,
    *,
    threshold: float,
    n_directions: int = 500,
    directions: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    coefficients: torch.Tensor | None = None,
    seed: int = 0,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The paper's loop as its code runs it: for each direction, for each of the 100 grid points,
    one forward pass of one parameter vector, all points always evaluated. Returns [K] radii
    (NaN where the direction never crossed). This is the slow baseline the speed benchmarks
    compare against; it is not used by the estimator.
    """
    device, anchor, _, n, K, scale, coef, raw = _prepare(
        cost, anchor, threshold, n_directions, directions, scale, coefficients, seed, device, dtype)
    coef_d = coef.to(device=device, dtype=dtype)
    scale_d = scale.to(device=device, dtype=dtype)
    evaluate = as_batched_cost(cost, math.inf)  # no early exit: the paper evaluates everything
    radii = torch.full((K,), math.nan, dtype=torch.float64)
    for k in range(K):
        g = raw(torch.tensor([k]))
        delta = g.to(device=device, dtype=dtype)[0] * scale_d
        losses = [float(evaluate((anchor + coef_d[j] * delta).unsqueeze(0))[0]) for j in range(len(coef))]
        for j, loss in enumerate(losses):
            if loss > threshold:  # the paper's `loss.item() > tau`, in float64
                radii[k] = float(coef[j]) * float(row_norms(g)[0])
                break
    return radii


def reference_log_volume_many(
    cost: Callable[..., torch.Tensor],
    anchor: torch.Tensor,
    *,
    thresholds: Sequence[float],
    sizes: Sequence[int] | None = None,
    exact_costs: Mapping[int, Callable[..., torch.Tensor]] | None = None,
    **kwargs: Any,
) -> dict[tuple[int | None, float], ReferenceEstimate | None]:
    """The main paper's procedure for every (data size, threshold) pair from one grid walk.

    ``cost`` must offer the ray interface (``volbench.costs.ModelCost``); ``sizes`` are nested
    landscapes as prefixes of its data (None: the whole data set, key size None). Every ray walks
    the grid until each question has crossed (or the grid ends), so a smaller landscape's later
    crossing keeps it going. Decisions within the first-layer path's rounding margin of tau are
    re-made on the plain path of that landscape's own cost: ``exact_costs[size]`` if given, else
    ``cost.prefix(size)``, evaluated as the sequential loop evaluates it (no early exit), so every
    crossing equals ``paper_loop_radii`` on that landscape. Returns ``{(size, threshold):
    ReferenceEstimate}``, None where the anchor's cost is not below the threshold. Other keyword
    arguments: as ``reference_log_volume``.
    """
    if not getattr(cost, "accepts_rays", False):
        raise ValueError("reference_log_volume_many needs a cost with the ray interface (volbench.costs.ModelCost)")
    run = _grid_setup(cost, anchor, thresholds=list(thresholds), sizes=sizes, exact_costs=exact_costs, strict=False,
                      **kwargs)
    pieces = [_grid_piece(run, s, min(run.K, s + run.batch_size)) for s in run.batch_starts()]
    return _grid_assemble(run, pieces, time.perf_counter() - run.started)


@dataclass(frozen=True)
class _GridRun:
    """What every step of one grid measurement needs (:func:`_grid_setup`): the validated inputs,
    the questions, and how points are evaluated. ``rays``: the cost's ray interface
    (:func:`volbench.estimator.walk.grid_walk`, every question at once, ties re-made on the plain
    path), else the flat batched loop (one threshold, the whole data set)."""

    rays: bool
    started: float
    device: torch.device
    dtype: torch.dtype
    anchor: torch.Tensor
    c0: torch.Tensor  # the anchor's costs per data size, float64 [S]
    n: int
    K: int
    scale_d: torch.Tensor
    coef: torch.Tensor
    raw: Callable[[torch.Tensor], torch.Tensor]
    batch_size: int
    lookahead: int
    keys: list
    questions: list
    evaluate: Callable[[torch.Tensor], torch.Tensor] | None  # flat path: the cost with early exit at tau
    size_list: tuple | None  # ray path: the data sizes walked
    plain_of: Callable[[int], Callable] | None  # ray path: the plain cost of data size index si
    opener: Callable | None  # ray path: (origin, directions) -> the cost's rays over every size
    config: dict[str, Any]  # what every answer records (the walk's counts are added by _grid_assemble)

    @property
    def asked(self) -> list:
        return [q for q in self.questions if q is not None]

    def batch_starts(self) -> range:
        """Where the batches start (none when every question's anchor is outside)."""
        return range(0, self.K, self.batch_size) if self.asked else range(0)


def _grid_setup(cost, anchor, *, thresholds, sizes, exact_costs, strict, n_directions=500, directions=None,
                scale=None, coefficients=None, seed=0, device=None, dtype=torch.float32, batch_size=None,
                lookahead=1) -> _GridRun:
    """Validate the inputs and cost the anchor: the flat path takes one threshold on the whole
    data set (``strict``), the ray path any thresholds and data sizes."""
    started = time.perf_counter()
    rays = bool(getattr(cost, "accepts_rays", False))
    # What the scale was before _prepare fills it in (the record must say "given" only when it was).
    scale_label = "given" if scale is not None else "cost.filter_scale" if hasattr(cost, "filter_scale") else "ones"
    if not rays:
        threshold = thresholds[0]
        device, anchor, anchor_cost, n, K, scale_t, coef, raw = _prepare(
            cost, anchor, threshold, n_directions, directions, scale, coefficients, seed, device, dtype)
        if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 1:
            raise ValueError(f"lookahead must be an int >= 1, got {lookahead!r}")
        if batch_size is None:
            batch_size = int(getattr(cost, "max_batch", None) or 256)
        batch_size = check_positive_int(batch_size, "batch_size", " (rays searched together) or None")
        config = {
            "estimator": "volbench.reference_log_volume",
            "threshold": float(threshold),
            "anchor_cost": anchor_cost,
            "n_directions": K,
            "directions": "explicit" if directions is not None else "gaussian",
            "scale": scale_label,
            "grid_points": len(coef),
            "seed": seed,
            "device": str(device),
            "dtype": str(dtype).replace("torch.", ""),
            "batch_size": batch_size,
            "lookahead": lookahead,
            "torch": torch.__version__,
            "numpy": np.__version__,  # directions are seeded through numpy's SeedSequence
            "volbench": __version__,
        }
        return _GridRun(rays=False, started=started, device=device, dtype=dtype, anchor=anchor,
                        c0=torch.tensor([anchor_cost], dtype=torch.float64), n=n, K=K,
                        scale_d=scale_t.to(device=device, dtype=dtype), coef=coef, raw=raw, batch_size=batch_size,
                        lookahead=lookahead, keys=[(None, float(threshold))],
                        questions=[Question(0, float(threshold))], evaluate=as_batched_cost(cost, threshold),
                        size_list=None, plain_of=None, opener=None, config=config)
    if not thresholds:
        raise ValueError("at least one threshold is needed")
    thresholds = [check_threshold(t) for t in thresholds]
    device, anchor, _, n, K, scale_t, coef, raw = _prepare(
        cost, anchor, thresholds[0], n_directions, directions, scale, coefficients, seed, device, dtype, check=False)
    if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 1:
        raise ValueError(f"lookahead must be an int >= 1, got {lookahead!r}")
    if batch_size is None:
        batch_size = int(getattr(cost, "max_rays", None) or getattr(cost, "max_batch", None) or 256)
    batch_size = check_positive_int(batch_size, "batch_size", " (rays searched together) or None")
    size_list = cost.check_sizes(sizes)
    # The anchor's exact costs per size, through the plain path as the loop sees them.
    plain_cost: dict[int, Any] = {}

    def plain_of(si: int):
        if si not in plain_cost:
            size = size_list[si]
            if exact_costs is not None and size in exact_costs:
                chosen = exact_costs[size]
            elif sizes is None:
                chosen = cost
            else:
                chosen = cost.prefix(size)
            plain_cost[si] = as_batched_cost(chosen, math.inf)  # no early exit: the loop's arithmetic
        return plain_cost[si]

    c0 = torch.tensor([float(plain_of(si)(anchor.unsqueeze(0))[0]) for si in range(len(size_list))],
                      dtype=torch.float64)
    check_anchor_costs(c0, thresholds, strict)
    keys, questions = [], []
    for si, size in enumerate([None] if sizes is None else size_list):
        for tau in thresholds:
            keys.append((size, tau))
            questions.append(Question(si, tau) if float(c0[si]) < tau else None)
    config = {
        "estimator": "volbench.reference_log_volume",
        "n_directions": K,
        "directions": "explicit" if directions is not None else "gaussian",
        "direction_generator": None if directions is not None else DIRECTION_GENERATOR,
        "scale": scale_label,
        "grid_points": len(coef),
        "seed": seed,
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "batch_size": batch_size,
        "lookahead": lookahead,
        "engine": "rays (first-layer cache)" if getattr(cost, "path", None) == "matmul"
        and getattr(cost, "first_layer_cache", False) else "rays",
        "n_verified": 0,
        "torch": torch.__version__,
        "numpy": np.__version__,  # direction seeds come from numpy's SeedSequence
        "volbench": __version__,
    }
    return _GridRun(rays=True, started=started, device=device, dtype=dtype, anchor=anchor, c0=c0, n=n, K=K,
                    scale_d=scale_t.to(device=device, dtype=dtype), coef=coef, raw=raw, batch_size=batch_size,
                    lookahead=lookahead, keys=keys, questions=questions, evaluate=None, size_list=size_list,
                    plain_of=plain_of, opener=lambda origin, d: cost.open_rays(origin, d, sizes=size_list),
                    config=config)


def _grid_piece(run: _GridRun, start: int, stop: int) -> dict[str, Any]:
    """Walk the grid along directions ``start`` to ``stop`` (global indices, one batch): their
    first crossings ``crossing`` [b, A] (-1: never), raw direction norms ``raw_norm`` [b],
    ``evals_per_ray`` [b] (ray path; None on the flat path), ``n_evals`` (points evaluated, the
    anchor not counted) and ``n_verified`` (ties re-made on the plain path). A direction's
    crossings depend only on its own costs, so pieces of any size assemble into the same result."""
    idx = torch.arange(start, stop)
    device, dtype = run.device, run.dtype
    g = run.raw(idx)
    raw_norm = row_norms(g).cpu()
    delta = g.to(device=device, dtype=dtype) * run.scale_d
    if run.rays:
        rays = run.opener(run.anchor, delta)
        anchor, plain_of = run.anchor, run.plain_of

        def plain(rows, radii, si, delta=delta):
            # anchor + c * delta, rounded as the loop rounds it (a product, then a sum).
            params = torch.mul(radii.to(device=device, dtype=dtype).unsqueeze(1), delta[rows.to(device)]).add_(anchor)
            return plain_of(si)(params).detach().to(torch.float64).cpu()

        out = grid_walk(rays, run.asked, run.coef, dtype=dtype, lookahead=run.lookahead, plain=plain)
        return {"crossing": out.crossing, "raw_norm": raw_norm, "evals_per_ray": out.evals_per_ray,
                "n_evals": out.n_evals, "n_verified": out.n_verified}
    coef, n, anchor, lookahead = run.coef, run.n, run.anchor, run.lookahead
    coef_d = coef.to(device=device, dtype=dtype)
    n_points = len(coef)
    crossing = torch.full((len(idx),), -1, dtype=torch.long)
    n_evals = 0
    offs = torch.arange(lookahead)
    # The running directions' perturbations are compacted whenever some finish, so a step reads
    # them directly instead of gathering delta[rows] every time.
    rows = torch.arange(len(idx))  # positions in this batch of the running directions
    # Grid point 0 is the anchor itself (coefficient 0), already checked to be below threshold
    # in check_anchor; every direction starts at point 1 when coef[0] == 0.
    j = torch.full((len(idx),), 1 if float(coef[0]) == 0.0 else 0, dtype=torch.long)
    threshold = run.questions[0].threshold
    while len(rows):
        # Up to `lookahead` consecutive grid points per running direction, in one call.
        pts = j.unsqueeze(1) + offs  # [b, L]
        valid = pts < n_points
        c = coef_d[pts.clamp(max=n_points - 1).to(device)]  # [b, L]
        # [b, L, n] = c * delta + anchor in one fresh buffer, no [b, n] gather, no second
        # temporary; the same roundings as the loop's anchor + c * delta (see the docstring).
        params = torch.mul(c.unsqueeze(2), delta.unsqueeze(1)).add_(anchor).view(-1, n)
        if not bool(valid.all()):  # past the grid's end (directions that never cross)
            params = params[valid.reshape(-1).to(device)]
        # In float64, on the value the cost returned (the paper: `loss.item() > tau`). A
        # float32 tensor compared with a Python float would round tau to float32 first.
        crossed = (run.evaluate(params).to(torch.float64) > threshold).cpu()
        n_evals += int(valid.sum())
        hit = torch.zeros_like(pts, dtype=torch.bool)
        hit[valid] = crossed
        any_hit = hit.any(dim=1)
        first = hit.float().argmax(dim=1)
        crossing[rows[any_hit]] = pts[any_hit, first[any_hit]]
        j = pts[:, -1] + 1
        keep = ~any_hit & (j < n_points)  # crossed: done; past the end uncrossed: dropped
        if not bool(keep.all()):
            rows, j = rows[keep], j[keep]
            delta = delta[keep.to(device)]
    return {"crossing": crossing.unsqueeze(1), "raw_norm": raw_norm, "evals_per_ray": None, "n_evals": n_evals,
            "n_verified": 0}


def _grid_assemble(run: _GridRun, pieces: Sequence[dict[str, Any]], seconds: float,
                   ) -> dict[tuple[int | None, float], ReferenceEstimate | None]:
    """One ``ReferenceEstimate`` per question (None where the anchor is outside) from the pieces
    of :func:`_grid_piece`, in direction order, covering all K directions."""
    K, n, coef = run.K, run.n, run.coef
    A = len(run.asked)
    if pieces:
        crossing = torch.cat([p["crossing"] for p in pieces])
        raw_norm = torch.cat([p["raw_norm"] for p in pieces])
    else:
        crossing = torch.full((K, max(A, 1)), -1, dtype=torch.long)
        raw_norm = torch.empty(K, dtype=torch.float64)
    if crossing.shape[0] != K:
        raise RuntimeError(f"the pieces hold {crossing.shape[0]} directions, not {K}")
    n_verified = sum(int(p["n_verified"]) for p in pieces)
    n_evals = 1 + sum(int(p["n_evals"]) + int(p["n_verified"]) for p in pieces)  # the anchor, then every point
    evals_per_ray = None
    if run.rays:
        evals_per_ray = (torch.cat([p["evals_per_ray"] for p in pieces]) if pieces
                         else torch.zeros(K, dtype=torch.long))
    base_config = dict(run.config)
    if run.rays:
        base_config["n_verified"] = n_verified
    if A > 1:
        base_config["walk"] = {"questions": A, "cost_evals": n_evals, "seconds": seconds}
    shares = [n_evals // A + (1 if i < n_evals % A else 0) for i in range(A)] if A else []
    results: dict[tuple[int | None, float], ReferenceEstimate | None] = {}
    a = 0
    for key, q in zip(run.keys, run.questions):
        if q is None:
            results[key] = None
            continue
        cross = crossing[:, a]
        dropped = cross < 0
        kept = ~dropped
        log_radii = torch.full((K,), math.nan, dtype=torch.float64)
        log_radii[kept] = torch.log(coef[cross[kept]]) + torch.log(raw_norm[kept])
        log_lower = torch.full((K,), math.nan, dtype=torch.float64)
        # The grid point before the crossing was evaluated inside (index 0 is the anchor: radius 0).
        log_lower[kept] = torch.log(coef[(cross[kept] - 1).clamp(min=0)]) + torch.log(raw_norm[kept])
        if kept.any():
            log_volume = float(torch.logsumexp(n * log_radii[kept], dim=0) - math.log(int(kept.sum())))
        else:
            log_volume = math.nan
        if run.rays:
            config = {**base_config, "threshold": key[1], "anchor_cost": float(run.c0[q.size_index])}
            if key[0] is not None:
                config["landscape_size"] = key[0]
        else:
            config = base_config
        results[key] = ReferenceEstimate(
            log_volume=log_volume, log_radii=log_radii, crossing_index=cross.clone(), dropped=dropped,
            log_radii_lower=log_lower, n_params=n, n_directions=K,
            n_cost_evals=shares[a] if A > 1 else n_evals, seconds=seconds / A, config=config,
            evals_per_ray=evals_per_ray)
        a += 1
    return results
