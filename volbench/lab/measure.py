"""Measuring minima: ``measure`` / ``measure_many`` give each minimum's basin volume in clean
landscapes of its data order, from as few walks as possible, cached in the store's measurement
records (``volbench.store.measurements``) keyed by configuration and provenance."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from volbench import data as vdata
from volbench._checks import check_positive_int, check_threshold
from volbench.costs import ModelCost
from volbench.estimator.core import estimate_log_volume_many
from volbench.estimator.directions import DIRECTION_GENERATOR
from volbench.estimator.reference import reference_log_volume_many
from volbench.lab.ledger import LEDGER
from volbench.lab.minima import Minimum
from volbench.lab.spec import LAB_VERSION, landscape_batch, training_batch
from volbench.store import provenance
from volbench.store.measurements import read_record, record_path, write_record
from volbench.store.minima import MinimaStore


@dataclass(frozen=True)
class Measurement:
    """One volume measurement of a minimum in a landscape (JSON-serialisable via ``to_dict``)."""

    minimum: str  # spec label
    minimum_key: str
    landscape_size: int
    estimator: str  # "reference" | "principled"
    log_volume: float
    log_terms: list[float]
    log_radii: list[float]
    anchor_cost: float
    outside: bool
    n_params: int
    n_directions: int
    n_cost_evals: int
    seconds: float
    config: dict[str, Any]
    summary: dict[str, Any]
    # Per-direction bounds of log_terms from the estimator's resolution: the principled search's
    # [inside, outside] radius bracket (rtol), or the reference grid's [last inside, first outside]
    # points (log_terms is the paper's value, the upper one). Empty when outside; NaN = dropped.
    log_terms_low: list[float] = field(default_factory=list)
    log_terms_high: list[float] = field(default_factory=list)
    direction_seed: int = 0
    directions: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _finite_list(t: torch.Tensor) -> list[float]:
    return [float(x) for x in t.double().tolist()]


def measure(
    minimum: Minimum,
    landscape_size: int,
    *,
    estimator: str,
    n_directions: int,
    threshold: float,
    store: MinimaStore | None = None,
    direction_seed: int = 0,
    directions: str = "filter",
    rtol: float | None = None,
    loss: str | None = None,
    landscape_extras: int = 0,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> Measurement:
    """Measure ``minimum``'s basin in the clean landscape of ``landscape_size`` examples.

    Args:
        estimator: "reference" (the paper's grid procedure; ``directions`` must be "filter" or
            "plain" for unscaled raw Gaussians) or "principled" (``estimate_log_volume`` with
            ``directions`` "filter" or "isotropic").
        direction_seed: the same for every minimum and landscape of an experiment (as the paper).
        rtol: the principled estimator's radius tolerance; None (default) derives it from a 1-nat
            log V resolution (``volbench.estimator.core.default_rtol``; 4.3e-6 for the MNIST
            MLP, about two more cost evaluations per ray than rtol 1e-2 with the value-based
            search, for a bracket of 1 nat instead of ~2,300).
        loss: the landscape's loss (default: the training loss of the recipe).
        store: where measurements are cached (``<store root>/measurements``); None = no cache.
        landscape_extras: append the first k of the minimum's own extras (poisoned or imbalanced
            examples, with the labels it was trained on) to the clean landscape (claim F7: the
            landscape moving toward an imbalanced training distribution).
    """
    return measure_many(minimum, [landscape_size], [threshold], estimator=estimator, n_directions=n_directions,
                        store=store, direction_seed=direction_seed, directions=directions, rtol=rtol, loss=loss,
                        landscape_extras=landscape_extras, device=device, dtype=dtype)[(landscape_size, threshold)]


def measure_many(
    minimum: Minimum,
    landscape_sizes: Sequence[int],
    thresholds: Sequence[float],
    *,
    estimator: str,
    n_directions: int,
    store: MinimaStore | None = None,
    direction_seed: int = 0,
    directions: str = "filter",
    rtol: float | None = None,
    loss: str | None = None,
    landscape_extras: int = 0,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> dict[tuple[int, float], Measurement]:
    """Measure ``minimum`` in every (landscape size, threshold) pair at once.

    Returns ``{(landscape_size, threshold): Measurement}``. Every entry is cached (and served)
    individually, exactly as :func:`measure` would cache it, and every entry uses the same
    directions (``direction_seed``, ``n_directions``), so any two of them, and any two minima
    measured with the same arguments, are paired direction by direction.

    The entries not in the cache come from one walk: the clean landscapes are prefixes of one
    nested order, so a single cost on the largest answers every size and threshold at once
    (per-example losses summed over the prefixes; a walk goes on until every answer is settled).
    The paper's answers equal separate runs of its sequential loop; the principled ones lie in
    the resolution bracket of separate runs. ``n_cost_evals`` / ``seconds`` of each entry are its
    share of the walk (``config["walk"]`` holds the totals). With ``landscape_extras`` the
    landscapes are not nested: one walk per size, every threshold at once.
    """
    if estimator not in ("reference", "principled"):
        raise ValueError(f"estimator must be 'reference' or 'principled', got {estimator!r}")
    # Checked before the cache and the anchor test: a bad threshold would otherwise be recorded
    # (and cached) as a minimum outside its own basin.
    thresholds = list(thresholds)
    landscape_sizes = list(landscape_sizes)
    if not thresholds or not landscape_sizes:
        raise ValueError("measure_many needs at least one landscape size and one threshold")
    for threshold in thresholds:
        check_threshold(threshold)
    allowed = ("filter", "plain") if estimator == "reference" else ("filter", "isotropic")
    if directions not in allowed:
        raise ValueError(f"directions for estimator={estimator!r} must be one of {allowed}, got {directions!r}")
    check_positive_int(n_directions, "n_directions")
    spec = minimum.spec
    loss = loss or spec.train.loss
    out: dict[tuple[int, float], Measurement] = {}
    pending: dict[tuple[int, float], tuple[dict[str, Any], Path | None]] = {}
    for size in landscape_sizes:
        for threshold in thresholds:
            config = _measurement_config(minimum, size, estimator=estimator, n_directions=n_directions,
                                         threshold=threshold, direction_seed=direction_seed, directions=directions,
                                         rtol=rtol, loss=loss, landscape_extras=landscape_extras, dtype=dtype)
            # The walk that computes it: directions from a counter-based generator (a new stream
            # for the same seed), the value-based search. Part of the key so older caches are
            # not served for what this code computes.
            config["engine"] = dict(ENGINE)
            key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
            path = None if store is None else record_path(store.root, key)
            cached = None if path is None else read_record(path, lambda record: Measurement(**record))
            if cached is not None:
                LEDGER.served(cached)
                out[(size, threshold)] = cached
            else:
                pending[(size, threshold)] = (config, path)
    if pending:
        computed = _compute_measurements(minimum, {k: c for k, (c, _) in pending.items()}, estimator=estimator,
                                         n_directions=n_directions, direction_seed=direction_seed,
                                         directions=directions, rtol=rtol, loss=loss,
                                         landscape_extras=landscape_extras, device=device, dtype=dtype)
        for pair, (_, path) in pending.items():
            result = computed[pair]
            LEDGER.computed(result)
            if path is not None:
                write_record(path, result.to_dict())
            out[pair] = result
    return {(size, threshold): out[(size, threshold)] for size in landscape_sizes for threshold in thresholds}


#: What computes a measurement (in its cache key; see ``measure_many``).
ENGINE = {"direction_generator": DIRECTION_GENERATOR, "search": "itp+first-exit-guard/v1",
          "paper_grid": "ray-walk, plain-path ties/v1"}


def _measurement_config(minimum: Minimum, landscape_size: int, *, estimator, n_directions, threshold,
                        direction_seed, directions, rtol, loss, landscape_extras, dtype) -> dict[str, Any]:
    """The cache key's configuration of one measurement: everything that changes its result,
    including the minimum's key and what measures it (``volbench.store.provenance.measurement_provenance``:
    a digest of the estimator, reference, cost and landscape code, and the library versions)."""
    spec = minimum.spec
    return {
        **provenance.measurement_provenance(),
        "kind": "volbench.lab.measurement",
        "lab_version": LAB_VERSION,
        "minimum_key": minimum.key,
        "landscape": {"dataset": spec.dataset, "size": landscape_size, "base": spec.base,
                      "seed": spec.seed, "options": [list(kv) for kv in spec.dataset_options],
                      "extras": landscape_extras},
        "estimator": estimator,
        "n_directions": n_directions,
        "threshold": threshold,
        "direction_seed": direction_seed,
        "directions": directions,
        "rtol": rtol if estimator == "principled" else None,
        "loss": loss,
        "dtype": str(dtype).replace("torch.", ""),
    }


def _landscape_cost(minimum: Minimum, landscape_size: int, *, loss, landscape_extras, device, dtype) -> ModelCost:
    """The minimum's model cost on its clean landscape of ``landscape_size`` examples (plus the
    first ``landscape_extras`` of its own extras)."""
    spec = minimum.spec
    batch = landscape_batch(spec.dataset, landscape_size, seed=spec.seed, base=spec.base,
                            dataset_options=spec.dataset_options)
    if landscape_extras:
        own = training_batch(spec)
        n_extra = len(own.inputs) - spec.train_size
        if not 0 < landscape_extras <= n_extra:
            raise ValueError(f"landscape_extras must be in 1..{n_extra} (the minimum's extras), got {landscape_extras}")
        lo, hi = spec.train_size, spec.train_size + landscape_extras
        batch = vdata.Batch(torch.cat([batch.inputs, own.inputs[lo:hi]]),
                            torch.cat([batch.targets, own.targets[lo:hi]]),
                            None if batch.labels is None or own.labels is None
                            else torch.cat([batch.labels, own.labels[lo:hi]]))
    model = minimum.build_model(device=device, dtype=dtype)
    return ModelCost(model, batch.inputs, batch.targets, loss=loss, device=device, dtype=dtype)


def _compute_measurements(minimum: Minimum, configs: dict[tuple[int, float], dict[str, Any]], *, estimator,
                          n_directions, direction_seed, directions, rtol, loss, landscape_extras, device,
                          dtype) -> dict[tuple[int, float], Measurement]:
    """Every (landscape size, threshold) of ``configs`` from as few walks as possible: clean
    landscapes are nested prefixes of one data order, so one cost on the largest of them answers
    every size and threshold in one walk per ray batch (``*_many`` estimators); landscapes with
    extras appended (F7) are not prefixes of each other, so each size gets its own walk (still
    every threshold at once)."""
    pairs = list(configs)
    sizes = sorted({size for size, _ in pairs})
    taus = sorted({tau for _, tau in pairs})
    groups = [(sizes, None)] if not landscape_extras else [([size], size) for size in sizes]
    out: dict[tuple[int, float], Measurement] = {}
    for group_sizes, alone in groups:
        top = group_sizes[-1]
        cost = _landscape_cost(minimum, top, loss=loss, landscape_extras=landscape_extras, device=device, dtype=dtype)
        anchor = cost.anchor
        n = anchor.numel()
        prefix_sizes = None if alone is not None else group_sizes
        wanted = [tau for tau in taus if any((size, tau) in configs for size in group_sizes)]
        if estimator == "reference":
            scale = None if directions == "filter" else torch.ones(n)
            results = reference_log_volume_many(cost, anchor, thresholds=wanted, sizes=prefix_sizes,
                                                n_directions=n_directions, scale=scale, seed=direction_seed,
                                                device=device, dtype=dtype)
        else:
            results = estimate_log_volume_many(cost, anchor, thresholds=wanted, sizes=prefix_sizes,
                                               n_directions=n_directions, directions=directions, rtol=rtol,
                                               seed=direction_seed, device=device, dtype=dtype)
        for size in group_sizes:
            plain = cost if size == top else cost.prefix(size)
            for tau in wanted:
                if (size, tau) not in configs:
                    continue
                est = results[(None if prefix_sizes is None else size, tau)]
                anchor_cost = float(est.config["anchor_cost"]) if est is not None else float(plain(anchor[None])[0])
                out[(size, tau)] = _measurement(minimum, size, configs[(size, tau)], est, anchor_cost, tau,
                                                estimator=estimator, n_directions=n_directions,
                                                direction_seed=direction_seed, directions=directions, n=n)
    return out


def _measurement(minimum: Minimum, landscape_size: int, config: dict[str, Any], est, anchor_cost: float,
                 threshold: float, *, estimator, n_directions, direction_seed, directions, n) -> Measurement:
    """The one place a Measurement is built: from an estimate, or as "outside" (est None)."""
    if est is None:
        # Left the basin: volume zero (Fan et al. Fig. 10 right), not an error.
        fields = dict(log_volume=-math.inf, log_terms=[], log_radii=[], outside=True, n_cost_evals=1, seconds=0.0,
                      config=config, summary={"reason": f"anchor cost {anchor_cost:.4g} >= threshold {threshold:g}"})
    else:
        if estimator == "reference":
            terms = n * est.log_radii  # NaN for dropped directions, as the paper drops them
            low, high = n * est.log_radii_lower, terms
        else:
            terms = est.log_terms
            low, high = est.log_terms, est.log_terms_upper
        fields = dict(log_volume=est.log_volume, log_terms=_finite_list(terms), log_radii=_finite_list(est.log_radii),
                      log_terms_low=_finite_list(low), log_terms_high=_finite_list(high),
                      outside=False, n_cost_evals=est.n_cost_evals, seconds=est.seconds,
                      config={**config, **est.config}, summary=est.summary())
    return Measurement(minimum=minimum.spec.label(), minimum_key=minimum.key, landscape_size=landscape_size,
                       estimator=estimator, anchor_cost=anchor_cost, n_params=n, n_directions=n_directions,
                       direction_seed=direction_seed, directions=directions, **fields)
