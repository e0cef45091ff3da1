"""The radius search's settings, and the bit-only search (bracketing, then bisection).

``search_radii`` below is the estimator's original search, kept as ``search="bisect"`` (the
benchmarks' baseline): it uses only whether each point is inside. The default search
(``walk.search_walk``) also uses the cost values.

The basin is the star domain around theta0 where cost < threshold; its radius along a ray is the
first exit. A cost need not be monotone along a ray (rays of the main paper's 2-D toy basin leave
it and can come back, Fan et al. App. A.1), so the search must not jump over an exit:

1. Bracket: starting at ``initial_radius``, multiply by ``growth`` (bounded, default 2) while the
   ray is inside; or divide while it is outside, down to ``min_radius`` (below it the radius is 0,
   the anchor itself). Optional ``fine_scan`` first evaluates that many evenly spaced points on
   (0, hi] and keeps the first exit among them (for costs known to be rough, like the paper's grid).
2. Bisection in log-radius between the last inside and the first outside radius until
   hi / lo - 1 <= rtol.

All directions of a batch advance together and converged ones are masked out of further cost
evaluations. The returned radius ``lo`` is always a radius whose cost was evaluated and found
inside (or 0, the anchor); ``hi`` is the smallest evaluated radius found outside (inf when the ray
is still inside at ``max_radius``: censored). A non-finite cost counts as outside.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["SearchConfig", "SearchResult", "search_radii"]

InsideFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SearchConfig:
    """Knobs of the radius search (radii in parameter-space units along unit directions).

    rtol: relative width hi/lo - 1 at which bisection stops (1e-3: log-volume error <= n * 1e-3
        nats from the radius alone, and each halving costs one batched cost evaluation).
    initial_radius: first radius tried on every ray.
    growth: bracketing factor (> 1); 2 balances evaluations (log2 of the radius range) against the
        gap between evaluated radii in which an exit could hide.
    max_radius: rays still inside here are censored (radius kept as a lower bound).
    min_radius: rays already outside here get radius 0.
    fine_scan: evenly spaced points evaluated on (0, hi] after bracketing (0 = off).
    robust: (value-based search only) where the evaluated inside costs rise and then fall before
        the first exit, look for a hidden exit at that local maximum (see ``walk.search_walk``).
    robust_evals: at most this many such points per ray and question (8 locate a smooth
        maximum by successive parabolic interpolation well below rtol 1e-2).
    flat_steps: (value-based search only) while the cost along a ray has risen by less than 1%
        of tau - c0, a growth step may multiply the radius by growth**flat_steps (default 8x
        instead of 2x): nothing measurable has happened yet, and the default initial radius
        (1% of ||anchor||) is often two decades below the exit.
    """

    rtol: float = 1e-3
    initial_radius: float = 1e-2
    growth: float = 2.0
    max_radius: float = 1e3
    min_radius: float = 1e-12
    fine_scan: int = 0
    robust: bool = True
    robust_evals: int = 8
    flat_steps: int = 3

    def __post_init__(self):
        for name in ("rtol", "initial_radius", "growth", "max_radius", "min_radius"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
        if isinstance(self.fine_scan, bool) or not isinstance(self.fine_scan, numbers.Integral):
            raise TypeError(f"fine_scan must be an int >= 0, got {self.fine_scan!r}")
        if not (0 < self.rtol < 1):
            raise ValueError(f"rtol must be in (0, 1), got {self.rtol}")
        if not (1 < self.growth <= 16):
            raise ValueError(f"growth must be in (1, 16], got {self.growth}")
        if not (0 < self.min_radius < self.initial_radius <= self.max_radius < math.inf):
            raise ValueError(
                "need 0 < min_radius < initial_radius <= max_radius < inf, got "
                f"{self.min_radius}, {self.initial_radius}, {self.max_radius}"
            )
        if self.fine_scan < 0:
            raise ValueError(f"fine_scan must be >= 0, got {self.fine_scan}")
        for name in ("robust_evals", "flat_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")


@dataclass(frozen=True)
class SearchResult:
    lo: torch.Tensor  # [b] float64: largest evaluated radius known inside (0 = anchor)
    hi: torch.Tensor  # [b] float64: smallest evaluated radius known outside (inf = censored)
    n_evals: int  # parameter vectors evaluated


def search_radii(inside: InsideFn, n_rays: int, cfg: SearchConfig) -> SearchResult:
    """Find the first exit along ``n_rays`` rays.

    ``inside(rows, radii)`` evaluates ray ``rows[i]`` at radius ``radii[i]`` (float64 CPU tensors)
    and returns a bool tensor (True = cost finite and below the threshold).
    """
    lo = torch.zeros(n_rays, dtype=torch.float64)
    hi = torch.full((n_rays,), math.inf, dtype=torch.float64)
    n_evals = 0

    # 1. Bracket. state: +1 growing (inside so far), -1 shrinking (outside so far), 0 done.
    r = torch.full((n_rays,), cfg.initial_radius, dtype=torch.float64)
    state = torch.zeros(n_rays, dtype=torch.int8)
    first = True
    active = torch.ones(n_rays, dtype=torch.bool)
    while active.any():
        rows = active.nonzero().squeeze(1)
        ok = inside(rows, r[rows]).cpu()
        n_evals += len(rows)
        if first:
            state[rows] = torch.where(ok, 1, -1).to(torch.int8)
            first = False
        grow = state[rows] == 1
        # Growing rays: inside -> lo = r and grow again (capped at max_radius); outside -> done.
        g_in = rows[grow & ok]
        lo[g_in] = r[g_in]
        g_out = rows[grow & ~ok]
        hi[g_out] = r[g_out]
        state[g_out] = 0
        at_cap = g_in[r[g_in] >= cfg.max_radius]
        state[at_cap] = 0  # censored: still inside at max_radius
        r[g_in] = torch.clamp(r[g_in] * cfg.growth, max=cfg.max_radius)
        # Shrinking rays: outside -> hi = r and shrink again; inside -> done.
        s_out = rows[~grow & ~ok]
        hi[s_out] = r[s_out]
        s_in = rows[~grow & ok]
        lo[s_in] = r[s_in]
        state[s_in] = 0
        r[s_out] = r[s_out] / cfg.growth
        floor = s_out[r[s_out] < cfg.min_radius]
        state[floor] = 0  # radius below min_radius: keep lo = 0 (the anchor)
        active = state != 0

    # 1b. Optional fine scan of (0, hi]: first exit on an even grid, like the paper's.
    if cfg.fine_scan > 0:
        scan = torch.isfinite(hi).nonzero().squeeze(1)
        top = hi[scan].clone()
        pending = torch.ones(len(scan), dtype=torch.bool)
        for j in range(1, cfg.fine_scan + 1):
            idx = pending.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            rows = scan[idx]
            radii = top[idx] * (j / (cfg.fine_scan + 1))
            ok = inside(rows, radii).cpu()
            n_evals += len(rows)
            out_rows = rows[~ok]
            exit_r = radii[~ok]
            previous = top[idx][~ok] * ((j - 1) / (cfg.fine_scan + 1))  # 0 for j = 1: the anchor
            # Keep a bracketing radius below this exit if one was evaluated inside; otherwise the
            # exit lies before it (non-monotone cost) and the previous grid point is the bound.
            old_lo = lo[out_rows]
            lo[out_rows] = torch.where(old_lo < exit_r, torch.maximum(old_lo, previous), previous)
            hi[out_rows] = exit_r
            in_rows = rows[ok]
            lo[in_rows] = torch.maximum(lo[in_rows], radii[ok])
            pending[idx[~ok]] = False
        # Rays whose scan never exited keep the bracket [max(lo, last grid point), hi].

    # 2. Bisection in log-radius.
    # A ray with lo = 0 (exit found before the first inside point) halves hi geometrically until
    # an inside point appears or hi drops below min_radius.
    def unconverged():
        return torch.isfinite(hi) & torch.where(lo > 0, hi > lo * (1.0 + cfg.rtol), hi >= cfg.min_radius)

    active = unconverged()
    while active.any():
        rows = active.nonzero().squeeze(1)
        mid = torch.where(lo[rows] > 0, torch.sqrt(lo[rows] * hi[rows]), hi[rows] / cfg.growth)
        ok = inside(rows, mid).cpu()
        n_evals += len(rows)
        lo[rows[ok]] = mid[ok]
        hi[rows[~ok]] = mid[~ok]
        active = unconverged()
    return SearchResult(lo=lo, hi=hi, n_evals=n_evals)
