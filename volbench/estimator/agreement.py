"""Whether two searches agree on each ray's first exit, decided in the cost domain.

Two runs that search the same rays ``origin + t * d_k`` (another batch size, data chunking, an
independent oracle, another device) each return a bracket per ray: ``t_in`` evaluated inside
(cost below tau) and ``t_out`` evaluated outside (the first exit lies between). The runs agree on a
ray when their brackets overlap. When they do not, the gap between them holds a point that one run
evaluated outside and the other inside (or that both searched past): either the two kernels
rounded a cost that lies within rounding of tau to different sides of it, which is no
disagreement, or the searches really differ.

This module measures which: for every gap it evaluates the cost at both ends with every kernel
involved (the ray interface and the plain forward pass of each cost) and the derived rounding bound
there (:meth:`volbench.costs.ModelCost.rounding_bound`). The decision is a pure rule
(``volbench.claims.estimator.e3_same_radii``): a gap is explained when every such cost lies within
the bound of tau; a point clearly inside for one kernel and clearly outside for another, or a gap
whose ends are both clearly on one side, is a real disagreement.

Example (two brackets per ray, one pair disjoint):
    >>> import torch
    >>> f64 = dict(dtype=torch.float64)
    >>> gaps = bracket_gaps(torch.tensor([1.0, 2.0], **f64), torch.tensor([1.1, 2.1], **f64),
    ...                     torch.tensor([1.05, 2.2], **f64), torch.tensor([1.2, 2.3], **f64))
    >>> [(g.ray, g.t_low, g.t_high) for g in gaps]
    [(1, 2.1, 2.2)]
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Gap", "bracket_gaps", "grid_brackets", "loop_crossings", "plain_kernel", "ray_kernel", "gap_end_costs",
           "rays_of", "same_exits"]

Kernel = Callable[[Tensor, Tensor], Tensor]  # (ray indices [m], t [m]) -> costs [m]


@dataclass(frozen=True)
class Gap:
    """Ray ``ray``: one run's bracket ends at ``t_low`` (evaluated outside, or the top of its
    bracket) below the other's ``t_high`` (evaluated inside): the brackets are disjoint."""

    ray: int
    t_low: float
    t_high: float

    @property
    def log_gap(self) -> float:
        """log(t_high / t_low): the gap's width in log-radius (0 when the ends touch)."""
        return math.log(self.t_high / self.t_low) if self.t_low > 0 else math.inf


def bracket_gaps(a_in: Tensor, a_out: Tensor, b_in: Tensor, b_out: Tensor) -> list[Gap]:
    """The rays whose brackets ``[a_in, a_out]`` and ``[b_in, b_out]`` (``t`` evaluated inside and
    outside; ``a_out = inf`` for a ray that never left) are disjoint or touch, i.e. some point was
    judged outside by one run at or below a point the other judged inside."""
    gaps = []
    for k in range(len(a_in)):
        ai, ao, bi, bo = (float(a_in[k]), float(a_out[k]), float(b_in[k]), float(b_out[k]))
        if ao <= bi:
            gaps.append(Gap(k, ao, bi))
        elif bo <= ai:
            gaps.append(Gap(k, bo, ai))
    return gaps


def grid_brackets(crossing: Tensor, coef: Tensor) -> tuple[Tensor, Tensor]:
    """The paper's bracket per ray in grid coefficients from its crossing indices: (the point
    before the first crossing, evaluated inside; the crossing, evaluated outside). A ray that never
    crossed (index -1) was evaluated inside at the grid's end and never outside (``inf``).

    >>> t_in, t_out = grid_brackets(torch.tensor([2, -1]), torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64))
    >>> t_in.tolist(), t_out.tolist()
    ([0.25, 1.0], [0.5, inf])
    """
    crossed = crossing >= 0
    t_in = torch.where(crossed, coef[(crossing - 1).clamp(min=0)], coef[-1])
    t_out = torch.where(crossed, coef[crossing.clamp(min=0)], torch.full_like(coef[:1], math.inf).expand_as(t_in))
    return t_in, t_out


def loop_crossings(radii: Tensor, raw_norms: Tensor, coef: Tensor) -> Tensor:
    """Crossing indices of radii given as ``coef[j] * ||g_k||`` (``volbench.estimator.reference.paper_loop_radii``;
    NaN: never crossed, index -1): the grid point nearest to ``radius / ||g_k||``. The grid's
    neighbours differ by at least ``2 / 99`` relative (``paper_coefficients``), far beyond the
    rounding of that quotient, so the nearest point is the one the loop crossed at.

    >>> coef = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    >>> loop_crossings(torch.tensor([1.0, math.nan], dtype=torch.float64), torch.tensor([2.0, 3.0]), coef).tolist()
    [2, -1]
    """
    ratio = torch.nan_to_num(radii.double()) / raw_norms.double()
    nearest = (ratio.unsqueeze(1) - coef.double()).abs().argmin(dim=1)
    return torch.where(torch.isnan(radii), torch.full_like(nearest, -1), nearest)


def plain_kernel(cost, origin: Tensor, directions: Tensor) -> Kernel:
    """The cost's own forward pass at ``origin + t * d_k``, one point per call (the paper's loop and
    the scalar oracles evaluate this way), the point formed as a product, then a sum."""
    def evaluate(rows: Tensor, t: Tensor) -> Tensor:
        out = []
        for k, tk in zip(rows.tolist(), t.tolist()):
            point = origin + torch.tensor(tk, dtype=origin.dtype, device=origin.device) * directions[k]
            out.append(float(cost(point.unsqueeze(0))[0]))
        return torch.tensor(out, dtype=torch.float64)
    return evaluate


def ray_kernel(cost, origin: Tensor, directions: Tensor) -> Kernel:
    """The ray interface (``cost.open_rays``) at ``origin + t * d_k``: the kernel the batched
    searches use (a cached first layer on the matmul path)."""
    rays = cost.open_rays(origin, directions)

    def evaluate(rows: Tensor, t: Tensor) -> Tensor:
        return rays(rows, t.to(torch.float64)).to(torch.float64)
    return evaluate


def gap_end_costs(gaps: Sequence[Gap], kernels: Mapping[str, Kernel], *, origin: Tensor, directions: Tensor,
                  bound: Callable[[Tensor, Tensor], Tensor], tau: float) -> list[dict]:
    """For each gap and each of its two ends: the cost under every kernel and the rounding bound
    there (``bound(points [m, n] float64, origin)``), as JSON-able records
    ``{"ray", "t", "costs": {kernel: value}, "tolerance", "ratio"}`` where ``ratio`` is the largest
    ``|cost - tau| / tolerance`` over the kernels (<= 1: this end may lie on either side of tau)."""
    records = []
    if not gaps:
        return records
    rows = torch.tensor([g.ray for g in gaps for _ in (0, 1)], dtype=torch.long)
    ts = torch.tensor([t for g in gaps for t in (g.t_low, g.t_high)], dtype=torch.float64)
    finite = torch.isfinite(ts)
    o64, d64 = origin.detach().double().cpu(), directions.detach().double().cpu()
    values = {}
    for name, kernel in kernels.items():
        v = torch.full_like(ts, math.nan)
        if bool(finite.any()):
            v[finite] = kernel(rows[finite], ts[finite].to(torch.float64)).cpu().double()
        values[name] = v
    tol = torch.full_like(ts, math.inf)
    if bool(finite.any()):
        pts = o64 + ts[finite, None] * d64[rows[finite]]
        tol[finite] = bound(pts, o64).double().cpu()
    for i in range(len(ts)):
        costs = {name: float(v[i]) for name, v in values.items()}
        t = float(ts[i])
        if not math.isfinite(t):  # an end at infinity: a ray one run never saw leave
            ratio = math.inf
        else:
            ratio = max(abs(c - tau) / float(tol[i]) if math.isfinite(c) else math.inf for c in costs.values())
        records.append({"ray": int(rows[i]), "t": t, "costs": costs, "tolerance": float(tol[i]), "ratio": ratio})
    return records


def rays_of(estimate, cost, origin: Tensor, *, directions: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``(t_in, t_out, d)`` of an estimate: its bracket per ray and the rays ``origin + t d_k``
    rebuilt exactly as the estimator formed them (same seed, same scaling, same dtype).

    * ``estimate_log_volume`` (isotropic, filter, or explicit ``directions``): unit rays, t the radius;
    * ``reference_log_volume`` (seeded Gaussians or explicit raw ``directions``, scaled by the
      cost's weight-row norms): ``d_k = g_k * scale``, t the grid coefficient.
    Other preconditioners cannot be rebuilt from the record: ValueError.
    """
    from volbench.estimator.core import filter_scale_at
    from volbench.estimator.directions import DirectionSampler, raw_gaussian
    from volbench.estimator.reference import paper_coefficients, reference_scale

    cfg = estimate.config
    dtype = getattr(torch, cfg["dtype"])
    n, K = estimate.n_params, estimate.n_directions
    idx = torch.arange(K)
    if cfg["estimator"] == "volbench.reference_log_volume":
        if cfg["scale"] not in ("cost.filter_scale", "ones"):
            raise ValueError("rays_of: a reference estimate with a given scale cannot be rebuilt")
        g = directions.to(torch.float32) if directions is not None else raw_gaussian(idx, n, cfg["seed"])
        scale = reference_scale(cost, n, origin) if cfg["scale"] == "cost.filter_scale" else torch.ones(n)
        d = g.to(dtype).cpu() * scale.to(dtype)
        t_in, t_out = grid_brackets(estimate.crossing_index, paper_coefficients())
        return t_in, t_out, d
    label = cfg["directions"]
    if label == "filter":
        pre = filter_scale_at(cost, origin, "row").detach().to(torch.float64).cpu()
        sampler = DirectionSampler(n, seed=cfg["seed"], preconditioner=pre)
    elif label == "isotropic" and cfg["preconditioner"] is None:
        sampler = DirectionSampler(n, seed=cfg["seed"])
    elif label == "explicit" and directions is not None:
        sampler = DirectionSampler(n, explicit=directions)
    else:
        raise ValueError(f"rays_of: directions {label!r} with preconditioner {cfg['preconditioner']!r} cannot be "
                         "rebuilt from the record; pass explicit directions")
    d, _ = sampler.batch(idx, dtype=dtype)
    return estimate.log_radii.exp(), estimate.log_radii_upper.exp(), d


def same_exits(est_a, est_b, costs: Sequence, tau: float, *, origin: Tensor | None = None,
               directions: Tensor | None = None, roundoff: float | None = None) -> list[dict]:
    """The gap-end records (:func:`gap_end_costs`) of two estimates of the same rays: empty when
    every pair of brackets overlaps. Kernels: the plain and ray paths of every cost in ``costs``;
    bound: the first cost's :meth:`~volbench.costs.ModelCost.rounding_bound` (with ``roundoff``,
    e.g. TF32's 2^-11, where a kernel rounds coarser than the cost's dtype). ``est_b`` may also be
    a pair ``(t_in, t_out)`` of brackets along ``est_a``'s rays (an oracle's: the sequential loop's
    ``grid_brackets(loop_crossings(...))``). A test asserts ``all(r["ratio"] <= 1 for r in
    records)``: the two agree up to rounding."""
    base = costs[0]
    origin = base.anchor if origin is None else origin
    a_in, a_out, d = rays_of(est_a, base, origin, directions=directions)
    if isinstance(est_b, tuple):
        b_in, b_out = (x.to(torch.float64).cpu() for x in est_b)
    else:
        b_in, b_out, _ = rays_of(est_b, base, origin, directions=directions)
    gaps = bracket_gaps(a_in, a_out, b_in, b_out)
    if not gaps:  # every pair of brackets overlaps: nothing to evaluate
        return []
    kernels = {}
    for i, c in enumerate(costs):
        kernels[f"cost{i} plain"] = plain_kernel(c, origin.to(c.device, c.dtype), d.to(c.device, c.dtype))
        kernels[f"cost{i} rays"] = ray_kernel(c, origin.to(c.device, c.dtype), d.to(c.device, c.dtype))
    return gap_end_costs(gaps, kernels, origin=origin, directions=d, tau=tau,
                         bound=lambda pts, o: base.rounding_bound(pts.to(base.device), origin=o.to(base.device),
                                                                  roundoff=roundoff))
