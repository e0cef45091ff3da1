"""Plumbing of the main paper's cases: train (or reuse) minima and measure them, one place for the
estimators' configuration and the direction-seed policy.

Direction seeds. Every measurement of model seed s uses direction seed s (plus a replicate offset
for independent direction sets, claims E1/E2): the measurements a claim compares within a seed
share their directions (paired; ``volbench.claims.stats`` asserts it), and different seeds are
independent replicates, as the t-interval over seeds assumes. The paper reuses one direction set
for every minimum; its procedure per measurement is unchanged.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from volbench.claims.stats import Terms
from volbench.lab import Measurement, MinimumSpec, measure_many, prefetch_minima, train_minimum
from volbench.lab import models as vmodels
from volbench.lab.train import TrainConfig

#: The principled estimator's configuration in every F and E case (and F12 judges exactly this).
#: rtol 1e-4 keeps the search's resolution at n log(1 + rtol) = 23.5 nats per term at n = 235,146
#: (rtol 1e-2 would be 2,340 nats), for ~4 more cost evaluations per ray than 1e-3.
PRINCIPLED_RTOL = 1e-4
#: Replicate offset of direction seeds: replicate r of model seed s uses seed s + r * REPLICATE_STRIDE.
REPLICATE_STRIDE = 1000


def recipe(case, **overrides) -> TrainConfig:
    """The main paper's recipe: AdamW (torch defaults, lr 1e-3), full batch, fixed epochs; a case's
    ``train`` parameter (TrainConfig fields, e.g. F14's weight decay and betas) and ``overrides``
    replace fields."""
    fields = dict(optimizer="adamw", lr=1e-3, weight_decay=0.01, batch_size=None, epochs=case["epochs"],
                  loss=case["loss"], history_every=max(1, case["epochs"] // 10))
    return TrainConfig(**{**fields, **dict(case.get("train", {})), **overrides})


@dataclass
class FanLab:
    """Minima and measurements of one case (its dataset, model, recipe, K and tau)."""

    case: Any
    store: Any
    device: Any

    def spec(self, size: int, seed: int, *, n_poison: int = 0, imbalance=None, model: str | None = None,
             **train_overrides) -> MinimumSpec:
        c = self.case
        return MinimumSpec(c["dataset"], model or c["model"], train_size=size, seed=seed, base=c["base"],
                           train=recipe(c, **train_overrides), n_poison=n_poison, imbalance=imbalance,
                           dataset_options=tuple(c.get("dataset_options", ())),
                           model_options=tuple(c.get("model_options", ())) if model is None else ())

    def minimum(self, size: int, seed: int, **kw):
        return train_minimum(self.spec(size, seed, **kw), self.store, device=self.device)

    def prefetch(self, needs: Sequence[tuple[int, int, Mapping[str, Any]]]) -> None:
        """Train first the minima of ``needs`` ((size, seed, spec options) each) that no other
        worker is training (``volbench.lab.prefetch_minima``); the case then reads them, or waits
        for those another worker holds. Cases that share minima on two xdist workers thereby train
        them in parallel instead of in lockstep."""
        prefetch_minima([self.spec(size, seed, **dict(kw)) for size, seed, kw in needs], self.store,
                        device=self.device)

    def prefetch_ordering(self, **train_overrides) -> None:
        """:meth:`prefetch` of every (size, seed) of the case."""
        self.prefetch([(D, s, train_overrides) for s in self.case["seeds"] for D in self.case["sizes"]])

    def n_params(self) -> int:
        """The case's model's parameter count n (the scale of its smallest effects of interest)."""
        return sum(p.numel() for p in vmodels.build(self.case["model"], seed=0).parameters())

    def measure(self, m, landscapes: Sequence[int], estimator: str, *, taus: Sequence[float] | None = None,
                K: int | None = None, directions: str = "filter", replicate: int = 0,
                extras: int = 0) -> dict[tuple[int, float], Measurement]:
        """Every (landscape, tau) of one minimum in one walk (``lab.measure_many``)."""
        c = self.case
        if directions == "plain" and estimator == "principled":
            directions = "isotropic"
        return measure_many(m, list(landscapes), list(taus or [c["tau"]]), estimator=estimator,
                            n_directions=K or c["K"], store=self.store,
                            direction_seed=m.spec.seed + replicate * REPLICATE_STRIDE, directions=directions,
                            rtol=PRINCIPLED_RTOL, landscape_extras=extras, device=self.device)

    def terms(self, m, landscape: int, estimator: str, **kw) -> Terms:
        """One measurement as :class:`Terms` (the tau is the case's unless ``taus=[tau]``)."""
        taus = kw.pop("taus", None)
        tau = (taus or [self.case["tau"]])[0]
        return Terms.from_measurement(self.measure(m, [landscape], estimator, taus=[tau], **kw)[(landscape, tau)])

    def ordering(self, estimator: str, *, landscapes: Sequence[int], K: int | None = None,
                 tau: float | None = None, directions: str = "filter", replicate: int = 0,
                 **train_overrides) -> tuple[dict[tuple, Terms], list[dict]]:
        """``measured[(seed, D, D')]``: the minimum trained on D' >= D in the landscape of D, for
        every seed and every D in ``landscapes``; and rows for the report."""
        c = self.case
        tau = tau or c["tau"]
        measured, rows = {}, []
        for seed in c["seeds"]:
            for Dp in c["sizes"]:
                lands = [D for D in landscapes if D <= Dp]
                if not lands:
                    continue
                m = self.minimum(Dp, seed, **train_overrides)
                got = self.measure(m, lands, estimator, taus=[tau], K=K, directions=directions, replicate=replicate)
                for D in lands:
                    meas = got[(D, tau)]
                    measured[(seed, D, Dp)] = Terms.from_measurement(meas)
                    rows.append({**measurement_row(meas), "trained_on": Dp, "seed": seed})
        return measured, rows


def measurement_row(m: Measurement) -> dict[str, Any]:
    """One measurement for a case's numbers: log V, its resolution bracket, radii, work done."""
    t = Terms.from_measurement(m)
    lo, hi = t.bracket
    r = [x for x in m.log_radii if math.isfinite(x)]
    return {"minimum": m.minimum, "landscape": m.landscape_size, "log_volume": m.log_volume,
            "bracket_low": lo, "bracket_high": hi, "anchor_cost": m.anchor_cost, "outside": m.outside,
            "direction_seed": m.direction_seed, "n_cost_evals": m.n_cost_evals, "seconds": m.seconds,
            "log_r_min": min(r) if r else math.nan, "log_r_mean": sum(r) / len(r) if r else math.nan,
            "log_r_max": max(r) if r else math.nan}


def seeds_of(case, directions: str = "= model seed (paired within a seed)") -> dict[str, Any]:
    return {"model": list(case["seeds"]), "data": [s + 10 for s in case["seeds"]], "directions": directions}


def mean_curve(values: Mapping[tuple[int, int], float], xs: Sequence, seeds: Sequence[int]) -> list[float]:
    out = []
    for x in xs:
        v = [values[(s, x)] for s in seeds if math.isfinite(values[(s, x)])]
        out.append(sum(v) / len(v) if v else -math.inf)
    return out
