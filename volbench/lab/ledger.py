"""What this process computed versus served from caches: the figures a claim case reports as its
timing (seconds and cost evaluations of measurements, seconds of minima trained)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from volbench.lab.measure import Measurement

import dataclasses
from dataclasses import dataclass


@dataclass
class Ledger:
    """What this process computed versus served from caches (claim-case timing, Q4): seconds and
    cost evaluations of measurements, seconds of minima trained. ``snapshot()`` / ``since()``
    give the figures of one case."""

    measured_seconds: float = 0.0
    measured_cost_evals: int = 0
    measurements_computed: int = 0
    measurements_served: int = 0
    served_seconds: float = 0.0  # what the served measurements had cost when they were computed
    trained_seconds: float = 0.0
    minima_trained: int = 0
    minima_served: int = 0

    def computed(self, m: Measurement) -> None:
        self.measured_seconds += float(m.seconds)
        self.measured_cost_evals += int(m.n_cost_evals)
        self.measurements_computed += 1

    def served(self, m: Measurement) -> None:
        self.served_seconds += float(m.seconds)
        self.measurements_served += 1

    def snapshot(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    def since(self, before: dict[str, float]) -> dict[str, float]:
        now = self.snapshot()
        return {k: now[k] - before.get(k, 0) for k in now}


#: The process-wide ledger (each xdist worker has its own).
LEDGER = Ledger()
