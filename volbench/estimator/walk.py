"""One walk along a batch of rays that answers many questions at once.

A *question* is (landscape size, threshold tau): where does the cost over the first ``size``
examples of the data first exceed tau along each ray? The walk keeps every ray's evaluated points
(radius t, the cost over every requested data prefix, whether each value is exact or an
early-exit lower bound) in a :class:`History`; each question's state is derived from it, so a
point evaluated for one question also moves every other question's bracket, and a smaller
landscape's crossing found after a larger one's simply keeps the walk going.

Two walks:

* :func:`search_walk` (the principled estimator): per question, geometric bracketing guided by the
  cost values, then a safeguarded root-finder on ``cost - tau`` in log-radius (ITP: Oliveira &
  Takahashi, "An enhancement of the bisection method average performance preserving minmax
  optimality", ACM TOMS 47(1), 2021) until ``hi <= lo (1 + rtol)``. Guarantees, for every
  question and ray: ``lo`` was evaluated inside (cost < tau; or 0, the anchor), ``hi`` is the
  smallest radius evaluated outside (cost >= tau or not finite; inf = censored) and every point
  evaluated below ``lo`` was inside: ``lo`` is the last inside point before the first evaluated
  exit. First-exit robustness: where the evaluated costs *decrease* between two inside points
  (the ray is not monotone there), the interval is split until it is within rtol or an exit
  appears in it (``SearchConfig.robust``); ``fine_scan`` adds an even scan of (0, hi].
* :func:`grid_walk` (the main paper's procedure): every ray walks the grid c_j in order until
  each question has seen its first ``cost > tau`` (or the grid ends). When the costs come from
  an approximate path (the first-layer cache; :meth:`RayBatch.rounding_margin`), a decision
  within the margin of tau is re-made on the plain path's value, so the crossings are the
  sequential loop's (``volbench.estimator.reference.paper_loop_radii``) wherever the margin covers the
  rounding and the plain path rounds a point as the loop does; elsewhere they can differ only at
  a point whose cost lies within rounding of tau (``volbench.estimator.agreement`` decides that).

Costs are read from a ray evaluator: ``ModelCost.open_rays`` (``volbench.costs.RayBatch``) or
:class:`FlatRays` around any cost callable.

Size: the two walks along rays (the value-guided search and the paper's grid) share the history of
evaluated points and its brackets; each walk's phases are functions of their own.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch

__all__ = ["Question", "FlatRays", "History", "SearchOutcome", "search_walk", "GridOutcome", "grid_walk"]

F64 = torch.float64


@dataclass(frozen=True)
class Question:
    """Where does the mean cost over the first ``sizes[size_index]`` examples first reach tau?"""

    size_index: int
    threshold: float


class FlatRays:
    """The ray interface over any cost callable ``cost(params[B, n]) -> [B]`` (one data size).

    Points are formed like the plain estimators form them, ``t * d + origin`` (a product, then a
    sum), and evaluated with ``stop_above`` when the cost accepts it. Values are exact where
    ``<= stop``; above it they may be lower bounds (``exact`` False, ``done`` -1: unknown).
    """

    linear = False

    def __init__(self, cost: Callable[..., torch.Tensor], origin: torch.Tensor, directions: torch.Tensor,
                 check: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> None:
        self._cost = cost
        self._origin = origin
        self._dirs = directions
        self.n_rays = int(directions.shape[0])
        self.sizes = (0,)  # "the cost as given"
        self.dtype = origin.dtype
        self._early = bool(getattr(cost, "accepts_stop_above", False))
        self._check = check

    def rounding_margin(self, values: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(values)

    def costs(self, rows: torch.Tensor, radii: torch.Tensor, stop: torch.Tensor):
        dev = self._dirs.device
        params = torch.mul(radii.to(device=dev, dtype=self.dtype).unsqueeze(1), self._dirs[rows.to(dev)])
        params.add_(self._origin)
        finite = stop[:, 0][torch.isfinite(stop[:, 0])]
        needs_exact = bool((stop[:, 0] == math.inf).any())
        level = None if (needs_exact or finite.numel() == 0 or not self._early) else float(finite.max())
        out = self._cost(params, stop_above=level) if level is not None else self._cost(params)
        if self._check is not None:
            self._check(out, params)
        values = out.detach().to(F64).cpu().unsqueeze(1)
        exact = ~(values > level) if level is not None else torch.ones_like(values, dtype=torch.bool)
        done = torch.full((len(rows),), -1, dtype=torch.long)
        return values, exact, done


class History:
    """Every evaluated point of ``n_rays`` rays: radius ``t`` [K, P] float64 (NaN: empty slot),
    ``values`` [K, P, S] float64, ``exact`` [K, P, S] bool, ``done`` [K, P] examples processed
    (-1 unknown). Slot 0 of every ray is the anchor (t = 0) with its exact costs. Capacity grows
    by doubling; :meth:`view` gives the used slots of some rays."""

    def __init__(self, n_rays: int, anchor_values: torch.Tensor, capacity: int = 16) -> None:
        S = anchor_values.numel()
        self.t = torch.full((n_rays, capacity), math.nan, dtype=F64)
        self.values = torch.full((n_rays, capacity, S), math.nan, dtype=F64)
        self.exact = torch.zeros((n_rays, capacity, S), dtype=torch.bool)
        self.done = torch.full((n_rays, capacity), -1, dtype=torch.long)
        self.t[:, 0] = 0.0
        self.values[:, 0] = anchor_values.to(F64).view(1, S)
        self.exact[:, 0] = True
        self.count = torch.ones(n_rays, dtype=torch.long)

    @property
    def n_rays(self) -> int:
        return self.t.shape[0]

    def add(self, rows: torch.Tensor, t: torch.Tensor, values: torch.Tensor, exact: torch.Tensor,
            done: torch.Tensor) -> None:
        if len(rows) == 0:
            return
        order = torch.argsort(rows, stable=True)
        rows, t, values, exact, done = rows[order], t[order], values[order], exact[order], done[order]
        per_ray = torch.bincount(rows, minlength=self.n_rays)
        first = torch.cumsum(per_ray, 0) - per_ray
        rank = torch.arange(len(rows)) - first[rows]
        slot = self.count[rows] + rank
        need = int(slot.max()) + 1
        if need > self.t.shape[1]:
            grow = max(need, 2 * self.t.shape[1]) - self.t.shape[1]
            K, S = self.n_rays, self.values.shape[2]
            self.t = torch.cat([self.t, torch.full((K, grow), math.nan, dtype=F64)], 1)
            self.values = torch.cat([self.values, torch.full((K, grow, S), math.nan, dtype=F64)], 1)
            self.exact = torch.cat([self.exact, torch.zeros((K, grow, S), dtype=torch.bool)], 1)
            self.done = torch.cat([self.done, torch.full((K, grow), -1, dtype=torch.long)], 1)
        self.t[rows, slot] = t
        self.values[rows, slot] = values
        self.exact[rows, slot] = exact
        self.done[rows, slot] = done
        self.count += per_ray

    def view(self, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(t, values, exact, done) of ``rows`` (all when None), trimmed to the used slots."""
        if rows is None:
            P = int(self.count.max())
            return self.t[:, :P], self.values[:, :P], self.exact[:, :P], self.done[:, :P]
        P = int(self.count[rows].max())
        return self.t[rows, :P], self.values[rows, :P], self.exact[rows, :P], self.done[rows, :P]

    @property
    def evals_per_ray(self) -> torch.Tensor:
        """Points evaluated per ray (the anchor not counted)."""
        return self.count - 1


class _Asked:
    """The questions as tensors: size index, tau and size per question."""

    def __init__(self, questions: Sequence[Question], sizes: Sequence[int]) -> None:
        self.s_idx = torch.tensor([q.size_index for q in questions])
        self.tau = torch.tensor([q.threshold for q in questions], dtype=F64)
        self.size = torch.tensor([float(sizes[q.size_index]) for q in questions], dtype=F64).view(1, -1)
        self.single = bool((self.s_idx == 0).all()) and len(sizes) == 1


def _brackets(view, q: _Asked):
    """Per (ray, question) of a history ``view``: lo, hi, their values (hi's projected when it is
    a lower bound), the anchor value, and the inside points below hi (for the robustness check)."""
    s_idx, tau = q.s_idx, q.tau
    T, values, exact, done = view  # [K, P], [K, P, S], [K, P, S], [K, P]
    valid = ~torch.isnan(T)
    if q.single and len(s_idx) == 1:  # one question on one size: no gather needed
        vals, ex = values, exact
    else:
        vals = values[:, :, s_idx]  # [K, P, A]
        ex = exact[:, :, s_idx]
    tau_ = tau.view(1, 1, -1)
    outside = valid.unsqueeze(2) & ((ex & ~(vals < tau_)) | (~ex & (vals >= tau_)))
    inside = valid.unsqueeze(2) & ex & (vals < tau_)
    Tx = T.unsqueeze(2).expand_as(vals)
    hi, hi_at = torch.where(outside, Tx, torch.full_like(Tx, math.inf)).min(dim=1)
    below = inside & (Tx < hi.unsqueeze(1))
    lo, lo_at = torch.where(below, Tx, torch.full_like(Tx, -1.0)).max(dim=1)
    v_lo = vals.gather(1, lo_at.unsqueeze(1)).squeeze(1)
    v_hi = vals.gather(1, hi_at.unsqueeze(1)).squeeze(1)
    hi_exact = ex.gather(1, hi_at.unsqueeze(1)).squeeze(1)
    d_hi = done.gather(1, hi_at).to(F64)
    # A lower bound over d of s examples projects to (s / d) x itself (losses spread evenly).
    proj = torch.where(~hi_exact & (d_hi > 0), v_hi * q.size / d_hi.clamp_min(1.0), v_hi)
    c0 = vals[:, 0, :]  # slot 0: the anchor
    return dict(lo=lo, hi=hi, v_lo=v_lo, v_hi=proj, c0=c0, below=below, vals=vals, T=Tx)


@dataclass(frozen=True)
class SearchOutcome:
    """Result of :func:`search_walk` for K rays and A questions: ``lo`` / ``hi`` [K, A] float64
    (see the module docstring), ``evals_per_ray`` [K], ``n_evals`` (points evaluated, all rays),
    ``n_rounds`` (batched evaluation calls)."""

    lo: torch.Tensor
    hi: torch.Tensor
    evals_per_ray: torch.Tensor
    n_evals: int
    n_rounds: int


def _round_to(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` rounded to ``dtype`` and back: the radius the evaluated point really has."""
    return t.to(dtype).to(F64)


def search_walk(rays: Any, questions: Sequence[Question], cfg: Any, *, dtype: torch.dtype,
                anchor_values: torch.Tensor, max_rounds: int = 10_000) -> SearchOutcome:
    """Find every question's first exit along every ray of ``rays`` (see the module docstring).

    ``cfg`` is a ``SearchConfig`` (rtol, initial_radius, growth, max_radius, min_radius,
    fine_scan, robust). ``anchor_values`` [S]: the exact costs at the anchor per data size.

    Each round, every live (ray, question) proposes at most one radius, by the first of these
    that applies: bracketing up (:func:`_propose_up`), bracketing down (:func:`_propose_down`),
    refinement by ITP (:func:`_propose_itp`), a first-exit robustness point
    (:func:`_propose_robust`), an even scan (:func:`_propose_scan`); the proposals are then
    evaluated together (:func:`_evaluate_proposals`). A ray that proposes nothing is settled.
    """
    K, A = rays.n_rays, len(questions)
    hist = History(K, anchor_values)
    # The largest radius as the compute dtype holds it: points are evaluated at radii rounded to
    # dtype, and a max_radius that rounds down (11,379.8 in float32) would otherwise never be
    # reached by the last inside point, so the ray would propose it for ever.
    max_r = float(torch.tensor(cfg.max_radius, dtype=F64).to(dtype).to(F64))
    asked = _Asked(questions, rays.sizes)
    n_evals = rounds = 0
    # A ray that proposes nothing in a round is settled for good: only its own proposals add
    # points to it. Each round works on the live rays only.
    live = torch.arange(K)
    full = _WalkState.start(K, A)
    while live.numel():
        everyone = live.numel() == K
        st = full if everyone else full.rows(live)
        view = hist.view(None if everyone else live)
        b = _brackets(view, asked)
        b["lo"] = b["lo"].clamp_min(0.0)
        b["depth"] = (asked.tau.view(1, -1) - b["c0"]).clamp_min(0.0)
        prop = torch.full((live.numel(), A), math.nan, dtype=F64)
        growing = torch.isinf(b["hi"])
        # Growth predictions that came back inside count as misses (then plain growth).
        st.misses = torch.where(st.was_up & growing, st.misses + 1, st.misses)
        prop, up, flat = _propose_up(b, growing, st, cfg, max_r, prop)
        prop, floor = _propose_down(b, growing, cfg, prop)
        prop, itp = _propose_itp(b, asked, growing, st, cfg, dtype, prop)
        if cfg.robust and view[0].shape[1] >= 3:
            prop = _propose_robust(b, asked, itp["converged"] | floor, st, cfg, dtype, prop)
        if cfg.fine_scan > 0:
            prop = _propose_scan(b, growing, st, cfg, prop)
        want = ~torch.isnan(prop)
        from_itp = itp["active"] & want & (prop == itp["t"])
        st.itp_j = torch.where(from_itp, st.itp_j + 1.0, st.itp_j)
        st.was_up = up & want & ~flat  # flat steps aim inside
        if not everyone:
            full.put(live, st)
        if not bool(want.any()):
            break
        rounds += 1
        if rounds > max_rounds:
            raise RuntimeError(f"the radius search did not settle in {max_rounds} rounds; the cost may be "
                               "non-deterministic or NaN-valued near the threshold")
        n_evals += _evaluate_proposals(rays, hist, asked, live, prop, want, from_itp, b["lo"], b["hi"], itp, cfg,
                                       dtype)
        live = live[want.any(dim=1)]
    b = _brackets(hist.view(), asked)
    return SearchOutcome(lo=b["lo"].clamp_min(0.0), hi=b["hi"], evals_per_ray=hist.evals_per_ray.clone(),
                         n_evals=n_evals, n_rounds=rounds)


@dataclass
class _WalkState:
    """Per (ray, question) state of :func:`search_walk` between rounds: the ITP bracket at its
    initialisation (a, b), its n_max and iteration j; growth steps whose prediction stayed inside
    (misses); robustness points spent; the even scan's top and step; whether the last proposal
    was a growth step."""

    itp_a: torch.Tensor
    itp_b: torch.Tensor
    itp_n: torch.Tensor
    itp_j: torch.Tensor
    misses: torch.Tensor
    robust_used: torch.Tensor
    scan_top: torch.Tensor
    scan_j: torch.Tensor
    was_up: torch.Tensor

    @classmethod
    def start(cls, K: int, A: int) -> _WalkState:
        nan = torch.full((K, A), math.nan, dtype=F64)
        return cls(itp_a=nan.clone(), itp_b=nan.clone(), itp_n=torch.zeros((K, A), dtype=F64),
                   itp_j=torch.zeros((K, A), dtype=F64), misses=torch.zeros((K, A), dtype=torch.long),
                   robust_used=torch.zeros((K, A), dtype=torch.long), scan_top=nan.clone(),
                   scan_j=torch.zeros((K, A), dtype=torch.long), was_up=torch.zeros((K, A), dtype=torch.bool))

    def rows(self, live: torch.Tensor) -> _WalkState:
        return _WalkState(**{f.name: getattr(self, f.name)[live] for f in fields(self)})

    def put(self, live: torch.Tensor, part: _WalkState) -> None:
        for f in fields(self):
            getattr(self, f.name)[live] = getattr(part, f.name)


def _propose_up(b: dict, growing: torch.Tensor, st: _WalkState, cfg: Any, max_r: float,
                prop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """1. Bracketing up: to the crossing predicted by c(t) - c0 ~ a t^2, at most x growth; x
    growth^flat_steps while the cost has risen by less than 1% of tau - c0 (nothing measurable to
    hide an exit behind: one step instead of several doublings)."""
    lo, c0, depth = b["lo"], b["c0"], b["depth"]
    up = growing & (lo < max_r)
    rise = b["v_lo"] - c0
    ratio = torch.where(rise > 1e-6 * depth, depth / rise.clamp_min(1e-300), torch.full_like(rise, math.inf))
    flat = rise < 1e-2 * depth
    # Aim 5% past the predicted crossing; on a flat stretch at 70% of it (stay inside).
    factor = (ratio ** 0.5) * torch.where(flat, torch.full_like(ratio, 0.7), torch.full_like(ratio, 1.05))
    cap = torch.where(flat, torch.full_like(ratio, cfg.growth ** cfg.flat_steps), torch.full_like(ratio, cfg.growth))
    factor = torch.where(st.misses >= 2, cap, factor)
    factor = torch.minimum(factor.clamp(min=1.0 + 4.0 * cfg.rtol), cap)
    step_up = torch.where(lo > 0, lo * factor, torch.full_like(lo, cfg.initial_radius))
    return torch.where(up, step_up.clamp(max=max_r), prop), up, flat


def _propose_down(b: dict, growing: torch.Tensor, cfg: Any, prop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2. Bracketing down: only the anchor inside below the first outside point."""
    lo, hi, c0, depth = b["lo"], b["hi"], b["c0"], b["depth"]
    down = ~growing & (lo <= 0)
    excess = b["v_hi"] - c0
    shrink = torch.where(torch.isfinite(excess) & (excess > depth),
                         (depth / excess.clamp_min(1e-300)) ** 0.5 * 0.95, torch.full_like(excess, 0.0))
    shrink = shrink.clamp(min=1.0 / cfg.growth, max=1.0 - 4.0 * cfg.rtol)
    step_down = hi * shrink
    floor = down & (step_down < cfg.min_radius)
    return torch.where(down & ~floor, step_down, prop), floor


def _propose_itp(b: dict, asked: _Asked, growing: torch.Tensor, st: _WalkState, cfg: Any, dtype: torch.dtype,
                 prop: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """3. Refinement: ITP on f = cost - tau in log-radius. Returns the proposals and what the
    round needs of it: converged, active, the ITP points t, and the representable neighbours of
    the bracket's ends (next_up above lo, hi_dn below hi)."""
    lo, hi, c0, depth, tau = b["lo"], b["hi"], b["c0"], b["depth"], asked.tau
    log_tol = math.log1p(cfg.rtol)
    refine = ~growing & (lo > 0)
    lo_d = lo.to(dtype)
    next_up = torch.nextafter(lo_d, torch.full_like(lo_d, math.inf)).to(F64)
    hi_dn = torch.nextafter(hi.to(dtype), torch.zeros_like(lo_d)).to(F64)
    converged = refine & ((hi <= lo * (1.0 + cfg.rtol)) | (next_up >= hi) | (next_up > hi_dn))
    active = refine & ~converged
    a_, b_ = torch.log(lo.clamp_min(1e-300)), torch.log(hi.clamp(max=1e300))
    fresh = active & (torch.isnan(st.itp_a) | (a_ < st.itp_a - 1e-12) | (b_ > st.itp_b + 1e-12))
    width0 = (b_ - a_).clamp_min(1e-300)
    n_half = torch.ceil(torch.log2((width0 / log_tol).clamp_min(1.0)))
    st.itp_a = torch.where(fresh, a_, st.itp_a)
    st.itp_b = torch.where(fresh, b_, st.itp_b)
    st.itp_n = torch.where(fresh, n_half + 1.0, st.itp_n)  # n0 = 1
    st.itp_j = torch.where(fresh, torch.zeros_like(st.itp_j), st.itp_j)
    # kappa1 = 0.05 / (initial width): the truncation step moves the interpolated point 5% of
    # the bracket toward its middle at first (0.2, the paper's example, cost ~1 evaluation
    # per ray more on MNIST rays; 0.01 let regula falsi stall on one side).
    kappa1 = 0.05 / (st.itp_b - st.itp_a).clamp_min(1e-300)
    # Interpolate log(c - c0) - log(tau - c0) where both ends rose above the anchor's cost: a
    # power law c - c0 ~ a t^p is then linear in log t (regula falsi exact); else c - tau.
    fa = b["v_lo"] - tau.view(1, -1)
    fb = b["v_hi"] - tau.view(1, -1)
    rise_lo, rise_hi = b["v_lo"] - c0, b["v_hi"] - c0
    powerlaw = (rise_lo > 1e-6 * depth) & torch.isfinite(rise_hi) & (rise_hi > 0) & (depth > 0)
    log_depth = torch.log(depth.clamp_min(1e-300))
    fa = torch.where(powerlaw, torch.log(rise_lo.clamp_min(1e-300)) - log_depth, fa)
    fb = torch.where(powerlaw, torch.log(rise_hi.clamp_min(1e-300)) - log_depth, fb)
    mid = 0.5 * (a_ + b_)
    usable = torch.isfinite(fb) & (fb > fa)
    xf = torch.where(usable, (fb * a_ - fa * b_) / torch.where(usable, fb - fa, torch.ones_like(fb)), mid)
    sigma = torch.sign(mid - xf)
    delta = kappa1 * (b_ - a_) ** 2
    xt = torch.where(delta <= (mid - xf).abs(), xf + sigma * delta, mid)
    r = (0.5 * log_tol * torch.pow(2.0, st.itp_n - st.itp_j) - 0.5 * (b_ - a_)).clamp_min(0.0)
    x_itp = torch.where((xt - mid).abs() <= r, xt, mid - sigma * r)
    # Never closer than half the target width to an end: if the root lies there, the next
    # point either closes the bracket or moves the end by that much (Brent's safeguard),
    # instead of creeping by single ulps where the cost is flat at the float's resolution.
    half = 0.5 * log_tol
    x_itp = torch.minimum(torch.maximum(x_itp, a_ + half), b_ - half)
    t_itp = torch.exp(x_itp)
    return (torch.where(active, t_itp, prop),
            {"converged": converged, "active": active, "t": t_itp, "next_up": next_up, "hi_dn": hi_dn})


def _propose_robust(b: dict, asked: _Asked, settled: torch.Tensor, st: _WalkState, cfg: Any, dtype: torch.dtype,
                    prop: torch.Tensor) -> torch.Tensor:
    """4. First-exit robustness, once a question has settled its bracket: where the inside costs
    below lo rise and then fall (a sampled local maximum), successive parabolic interpolation
    homes in on that maximum, at most robust_evals points, until the interpolated peak is below
    tau or an exit shows up (which reopens the bracket)."""
    tau, depth = asked.tau, b["depth"]
    check = settled.any(dim=1) & (st.robust_used < cfg.robust_evals).any(dim=1)
    if not bool(check.any()):
        return prop
    rows_c = check.nonzero().squeeze(1)
    Tq = torch.where(b["below"][rows_c], b["T"][rows_c], torch.full_like(b["T"][rows_c], math.inf))
    order = torch.argsort(Tq, dim=1)
    Ts, Vs = Tq.gather(1, order), b["vals"][rows_c].gather(1, order)
    ok = torch.isfinite(Ts)
    noise = (1e-3 * depth[rows_c] + 64 * torch.finfo(dtype).eps * tau.view(1, -1)).unsqueeze(1)
    # p = 1..P-2 (slot 0 is the anchor): an inside point followed by a lower inside one.
    falls = ok[:, 2:] & ok[:, 1:-1] & (Vs[:, 1:-1] > Vs[:, 2:] + noise)
    has = falls.any(dim=1) & (st.robust_used[rows_c] < cfg.robust_evals) & settled[rows_c]
    p = falls.to(torch.int8).argmax(dim=1, keepdim=True) + 1
    x0, x1, x2 = (Ts.gather(1, p + d).squeeze(1) for d in (-1, 0, 1))
    y0, y1, y2 = (Vs.gather(1, p + d).squeeze(1) for d in (-1, 0, 1))
    # Parabola through the three points (x0 may be the anchor, t = 0), Newton form
    # y1 + s01 (x - x1) + curv (x - x1)(x - x0).
    d01, d12, d02 = x0 - x1, x1 - x2, x0 - x2
    curv = (y0 / (d01 * d02) - y1 / (d01 * d12) + y2 / (d02 * d12))
    slope01 = (y0 - y1) / d01
    vertex = 0.5 * (x0 + x1) - slope01 / (2.0 * curv)
    vertex = torch.where(curv < 0, vertex, 0.5 * (x1 + x2))
    peak = y1 + curv * (vertex - x1) * (vertex - x0) + slope01 * (vertex - x1)
    peak = torch.where(curv < 0, torch.maximum(peak, y1), y1)
    # Keep the point inside (x0, x2) and off x1 by at least rtol.
    gap = cfg.rtol * x1
    vertex = vertex.clamp(min=x0 + 0.05 * (x1 - x0), max=x2 - 0.05 * (x2 - x1))
    vertex = torch.where((vertex - x1).abs() < gap, torch.where(x2 - x1 > x1 - x0, 0.5 * (x1 + x2),
                                                                    0.5 * (x0 + x1)), vertex)
    worth = has & (peak > tau.view(1, -1) - noise.squeeze(1)) & ((x2 - x0) > gap)
    sub = prop[rows_c]
    prop[rows_c] = torch.where(worth, vertex, sub)
    st.robust_used[rows_c] = st.robust_used[rows_c] + worth.long()
    return prop


def _propose_scan(b: dict, growing: torch.Tensor, st: _WalkState, cfg: Any, prop: torch.Tensor) -> torch.Tensor:
    """5. Optional even scan of (0, hi] once a first outside point is known."""
    hi = b["hi"]
    start = ~growing & torch.isnan(st.scan_top)
    st.scan_top = torch.where(start, hi, st.scan_top)
    scanning = ~growing & (st.scan_j < cfg.fine_scan) & (hi >= st.scan_top * (1 - 1e-15))
    j_next = (st.scan_j + 1).to(F64)
    scan_t = st.scan_top * j_next / (cfg.fine_scan + 1)
    st.scan_j = torch.where(scanning, st.scan_j + 1, st.scan_j)
    return torch.where(scanning, scan_t, prop)


def _evaluate_proposals(rays: Any, hist: History, asked: _Asked, live: torch.Tensor, prop: torch.Tensor,
                        want: torch.Tensor, from_itp: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, itp: dict,
                        cfg: Any, dtype: torch.dtype) -> int:
    """Evaluate the round's proposals (one point per ray for proposals within rtol / 4 of each
    other), each for every data size a question of it asks about, and add them to the history.
    Returns the number of points evaluated."""
    log_tol = math.log1p(cfg.rtol)
    sizes = rays.sizes
    t_prop = _round_to(prop, dtype)
    # An ITP point that rounds onto an end of its bracket moves one representable step in.
    t_prop = torch.where(from_itp & (t_prop <= lo), itp["next_up"], t_prop)
    t_prop = torch.where(from_itp & (t_prop >= hi), itp["hi_dn"], t_prop)
    k_loc, a_idx = want.nonzero(as_tuple=True)
    t_q = t_prop[k_loc, a_idx]
    k_idx = live[k_loc]
    order = torch.argsort(k_idx * (len(t_q) + 1) + torch.argsort(torch.argsort(t_q)), stable=True)
    k_s, a_s, t_s = k_idx[order], a_idx[order], t_q[order]
    new_group = torch.ones(len(k_s), dtype=torch.bool)
    if len(k_s) > 1:
        same_ray = k_s[1:] == k_s[:-1]
        close = (torch.log(t_s[1:] / t_s[:-1]).abs() < log_tol / 4)
        new_group[1:] = ~(same_ray & close)
    group = torch.cumsum(new_group.long(), 0) - 1
    n_groups = int(group[-1]) + 1
    rows = k_s[new_group]
    radii = t_s[new_group]
    stop = torch.full((n_groups, len(sizes)), -math.inf, dtype=F64)
    flat = group * len(sizes) + asked.s_idx[a_s]
    stop.view(-1).scatter_reduce_(0, flat, asked.tau[a_s], reduce="amax", include_self=True)
    values, exact, done = rays.costs(rows, radii, stop)
    hist.add(rows, radii, values.to(F64), exact, done)
    return n_groups


@dataclass(frozen=True)
class GridOutcome:
    """Result of :func:`grid_walk`: ``crossing`` [K, A] first grid index with cost > tau (-1:
    never), ``evals_per_ray`` [K], ``n_evals`` (points evaluated), ``n_verified`` (decisions
    re-made on the plain path because the approximate cost lay within its margin of tau)."""

    crossing: torch.Tensor
    evals_per_ray: torch.Tensor
    n_evals: int
    n_verified: int


def grid_walk(rays: Any, questions: Sequence[Question], coefficients: torch.Tensor, *, dtype: torch.dtype,
              lookahead: int = 1, plain: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor] | None = None,
              ) -> GridOutcome:
    """The main paper's grid walk for every question at once (see the module docstring).

    ``coefficients``: the grid (float64); point j of ray k is ``origin + c_j d_k`` with c_j rounded
    to ``dtype``. ``plain(rows, radii, size_index)``: the plain path's float64 costs, used for
    decisions within ``rays.rounding_margin`` of tau (required when ``rays.linear``).
    """
    K, A = rays.n_rays, len(questions)
    S = len(rays.sizes)
    n_points = len(coefficients)
    coef_d = coefficients.to(dtype)
    s_idx = torch.tensor([q.size_index for q in questions])
    tau = torch.tensor([q.threshold for q in questions], dtype=F64)
    crossing = torch.full((K, A), -1, dtype=torch.long)
    pos = torch.full((K,), 1 if float(coefficients[0]) == 0.0 else 0, dtype=torch.long)
    evals = torch.zeros(K, dtype=torch.long)
    offs = torch.arange(lookahead)
    n_evals = n_verified = 0
    # The value above which an approximate early-exit bound certifies "plain cost > tau":
    # v - margin(v) > tau with margin = rel (|v| + 1e-3) (RayBatch.rounding_margin).
    probe = rays.rounding_margin(torch.ones(1, dtype=F64))
    rel = float(probe[0] / (1.0 + 1e-3))
    while True:
        pending = (crossing < 0) & (pos < n_points).unsqueeze(1)
        active = pending.any(dim=1).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        pts = pos[active].unsqueeze(1) + offs  # [ka, L]
        valid = pts < n_points
        ka, L = pts.shape
        rows = active.unsqueeze(1).expand(ka, L)[valid]
        idx = pts[valid]
        radii = coef_d[idx].to(F64)
        # Per size: the largest tau among this ray's pending questions of that size, lifted by the
        # margin so that an early exit proves the plain path's cost is above every one of them.
        need = torch.full((K, S), -math.inf, dtype=F64)
        kk, aa = pending.nonzero(as_tuple=True)
        need.view(-1).scatter_reduce_(0, kk * S + s_idx[aa], tau[aa], reduce="amax", include_self=True)
        stop_ray = torch.where(torch.isfinite(need), (need + rel * 1e-3) / (1.0 - rel), need)
        stop = stop_ray[rows]
        values, exact, _done = rays.costs(rows, radii, stop)
        n_evals += len(rows)
        evals.index_add_(0, rows, torch.ones_like(rows))
        # Decisions per (point, question) for the pending questions of the point's ray.
        v = values[:, s_idx]  # [m, A]
        ex = exact[:, s_idx]
        margin = rays.rounding_margin(v)
        above = v > tau + margin  # certain (a bound is only returned above its lifted stop)
        below = ex & (v < tau - margin)
        relevant = pending[rows]
        unsure = relevant & ~above & ~below
        if bool(unsure.any()):
            if plain is None:
                raise RuntimeError("grid_walk needs plain() to settle decisions within the rounding margin")
            pi, qi = unsure.nonzero(as_tuple=True)
            for s in torch.unique(s_idx[qi]).tolist():
                sel = s_idx[qi] == s
                pts_s = torch.unique(pi[sel])
                exact_v = plain(rows[pts_s], radii[pts_s], int(s))
                full = torch.full((len(rows),), math.nan, dtype=F64)
                full[pts_s] = exact_v.to(F64)
                for q in qi[sel].unique().tolist():
                    m_q = pi[qi == q]
                    above[m_q, q] = full[m_q] > tau[q]
                n_verified += len(pts_s)
        hit = torch.zeros((ka, L, A), dtype=torch.bool)
        hit[valid] = above & relevant
        any_hit = hit.any(dim=1)  # [ka, A]
        first = hit.to(torch.int8).argmax(dim=1)  # [ka, A]
        first_pt = pts.gather(1, first)
        cur = crossing[active]
        crossing[active] = torch.where((cur < 0) & any_hit, first_pt, cur)
        pos[active] = pts[:, -1] + 1
    return GridOutcome(crossing=crossing, evals_per_ray=evals, n_evals=n_evals, n_verified=n_verified)
