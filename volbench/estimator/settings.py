"""How the estimator searches every ray: one frozen record of the knobs that the estimator, the
prior-directed rays, the direct samplers and the lab share (``SearchSettings``), and the radius
tolerance that gives a log V bracket of a chosen width (``default_rtol``).

The estimator's public functions still take these as keyword arguments; they build one
``SearchSettings`` at the entry point and pass that object down, so no layer repeats the keyword
list. ``SearchSettings.config(n, anchor_norm)`` turns it into the inner ``SearchConfig`` (radii in
parameter-space units, scaled by the anchor's norm).

Example:
    >>> s = SearchSettings(rtol=1e-4, fine_scan=20)
    >>> cfg = s.config(n=10, anchor_norm=3.0)
    >>> cfg.rtol, cfg.initial_radius, cfg.max_radius
    (0.0001, 0.03, 3000.0)
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch

from volbench.estimator.search import SearchConfig

__all__ = ["DEFAULT_RESOLUTION_NATS", "default_rtol", "SearchSettings"]

#: Default target width (nats) of the log V bracket from the radius search alone; see ``default_rtol``.
DEFAULT_RESOLUTION_NATS = 1.0


def default_rtol(n: int, dtype: torch.dtype = torch.float32, resolution_nats: float = DEFAULT_RESOLUTION_NATS) -> float:
    """The radius tolerance whose log V bracket is ``resolution_nats`` wide in n dimensions.

    Every term of log V is n log r, so radii known to a factor 1 + rtol bound log V within
    n log(1 + rtol) nats: rtol = expm1(resolution_nats / n). Capped at 1e-3 (small n: each radius
    still to 0.1%) and floored at 16 ulp of ``dtype`` (below it the evaluated points
    anchor + r v stop changing with r), where the bracket is then wider than asked.

    >>> round(default_rtol(235_146), 9), default_rtol(10)
    (4.253e-06, 0.001)
    """
    if (isinstance(resolution_nats, bool) or not isinstance(resolution_nats, numbers.Real)
            or not math.isfinite(resolution_nats) or resolution_nats <= 0):
        raise ValueError(f"resolution_nats must be a finite positive number of nats, got {resolution_nats!r}")
    floor = 16 * torch.finfo(dtype).eps
    return float(min(1e-3, max(floor, math.expm1(resolution_nats / n))))


@dataclass(frozen=True, eq=False)
class SearchSettings:
    """The radius search's settings, shared by every caller of the estimator.

    Attributes:
        rtol: relative precision of every radius (the search stops when the outside radius is
            within a factor 1 + rtol of the inside one); None: ``default_rtol(n, dtype,
            resolution_nats)``.
        resolution_nats: target width of the log V bracket that sets the default rtol (nats).
        max_radius: rays still inside here are censored (parameter units); None: 1e3 * max(1, ||anchor||).
        initial_radius: first radius tried; None: 1e-2 * max(1, ||anchor||).
        growth: bracketing factor (> 1).
        fine_scan: evenly spaced points evaluated on (0, hi] after bracketing (0 = off).
        search: "itp" (value-guided brackets, then ITP on cost - tau) or "bisect" (the original
            bit-only bracketing and bisection; the benchmarks' baseline).
        robust: (itp) look for hidden exits where the inside costs rise and fall before the exit.
        seed: direction k is drawn from (seed, k).
        device, dtype: where and in which precision the cost is evaluated (device None: the
            cost's own, else the anchor's).
        batch_size: rays searched together (None: the cost's ``max_rays`` or ``max_batch``, else 256).
        progress: a tqdm bar over ray batches.
    """

    rtol: float | None = None
    resolution_nats: float = DEFAULT_RESOLUTION_NATS
    max_radius: float | None = None
    initial_radius: float | None = None
    growth: float = 2.0
    fine_scan: int = 0
    search: str = "itp"
    robust: bool = True
    seed: int = 0
    device: Any = None
    dtype: torch.dtype = torch.float32
    batch_size: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.search not in ("itp", "bisect"):
            raise ValueError(f"search must be 'itp' (value-based) or 'bisect' (bit-only baseline), got {self.search!r}")

    def replace(self, **changes: Any) -> SearchSettings:
        return dataclasses.replace(self, **changes)

    def resolved_rtol(self, n: int) -> float:
        return self.rtol if self.rtol is not None else default_rtol(n, self.dtype, self.resolution_nats)

    def config(self, n: int, anchor_norm: float) -> SearchConfig:
        """The inner ``SearchConfig`` for n parameters and an anchor of this norm."""
        scale = max(1.0, float(anchor_norm))
        return SearchConfig(
            rtol=self.resolved_rtol(n),
            initial_radius=self.initial_radius if self.initial_radius is not None else 1e-2 * scale,
            growth=self.growth,
            max_radius=self.max_radius if self.max_radius is not None else 1e3 * scale,
            min_radius=1e-12 * scale,
            fine_scan=self.fine_scan,
            robust=bool(self.robust),
        )
