"""The landscape lab: trained minima in nested data landscapes, measured once and reused.

The main paper's experiments (Fan et al., Sec. 4-5) all have one shape: a data set, nested
training subsets (a base set plus prefixes of one shuffled pool; data seed = model seed + 10),
minima trained on some of them (optionally with poisoned or class-imbalanced extras, another
optimiser or batch size), and each minimum's basin volume measured in the loss landscape of some
subset, with the same directions for every minimum. This module turns that into three calls:

    spec = MinimumSpec("mnist", "mnist_mlp", train_size=600, seed=0, base=60, train=recipe)
    minimum = train_minimum(spec, store)                       # cached in the MinimaStore
    m = measure(minimum, landscape_size=60, estimator="reference", n_directions=50,
                threshold=0.1, store=store)                   # cached as JSON beside it

``measure`` returns a ``Measurement`` with the log-volume, per-direction log-terms (for bootstrap
intervals) and log-radii (for histograms). A minimum whose own cost in the landscape is not below
the threshold has left the basin: its volume is zero (log-volume -inf, ``outside=True``), as in
the paper's Fig. 10 (right), rather than an error.

Example (tiny and fast: the swiss roll):
    >>> import tempfile
    >>> from volbench.store import MinimaStore
    >>> from volbench.train import TrainConfig
    >>> store = MinimaStore(tempfile.mkdtemp())
    >>> spec = MinimumSpec("swiss_roll", "swiss_mlp", train_size=40, seed=0, base=20,
    ...                    train=TrainConfig(epochs=300, loss="bce"))
    >>> m = measure(train_minimum(spec, store), landscape_size=20, estimator="reference",
    ...             n_directions=8, threshold=0.1, store=store)
    >>> m.estimator, len(m.log_terms)
    ('reference', 8)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from . import data as vdata
from . import models as vmodels
from . import provenance
from ._writes import explain_write_error
from .costs import ModelCost
from .estimator.core import check_n_directions, estimate_log_volume_many
from .estimator.directions import DIRECTION_GENERATOR
from .reference import reference_log_volume_many
from .store import MinimaStore
from .train import TrainConfig, train

__all__ = ["MinimumSpec", "Minimum", "Measurement", "CacheWriteWarning", "CorruptCacheWarning", "load_dataset",
           "training_batch", "landscape_batch", "check_compatible", "train_minimum", "measure", "measure_many",
           "Ledger", "LEDGER", "LAB_VERSION"]

# Bump when the meaning of a spec or measurement changes, so caches from older code are not reused.
LAB_VERSION = 3  # 3: measurements carry their resolution bracket and direction seed


@lru_cache(maxsize=16)
def _load_cached(name: str, options: tuple) -> vdata.Dataset:
    return vdata.load(name, **dict(options))


def load_dataset(name: str, options: tuple = ()) -> vdata.Dataset:
    """``volbench.data.load`` with an in-process cache (options as a tuple of (key, value))."""
    return _load_cached(name, tuple(options))


@dataclass(frozen=True)
class MinimumSpec:
    """How one minimum is made.

    Attributes:
        dataset: data set name (``volbench.data.names()``); ``dataset_options`` as (key, value) pairs.
        model: architecture name (``volbench.models.names()``).
        train_size: clean training examples: the first ``train_size`` of the nested order.
        seed: model seed; the data order uses ``volbench.data.data_seed_for(seed)`` (= seed + 10).
        base: size of the base set every nested subset contains (MNIST 60, swiss roll 20, ...).
        train: the training recipe (``TrainConfig``; its own ``seed`` orders minibatches).
        n_poison: poisoned extras (real inputs outside the clean set with always-wrong labels).
        imbalance: (n_extra, target_class, ratio) class-imbalanced extras, or None.
    """

    dataset: str
    model: str
    train_size: int
    seed: int
    base: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    n_poison: int = 0
    imbalance: tuple[int, int, float] | None = None
    dataset_options: tuple = ()
    model_options: tuple = ()

    @property
    def data_seed(self) -> int:
        return vdata.data_seed_for(self.seed)

    def config(self) -> dict[str, Any]:
        """The store key's configuration: everything that changes the trained weights, including
        what trains them (``volbench.provenance.training_provenance``: a digest of the training,
        model and data-loading code, and the volbench and torch versions), so a fix there retrains."""
        ds = load_dataset(self.dataset, self.dataset_options)
        return {
            **provenance.training_provenance(),
            "kind": "volbench.lab.minimum",
            "lab_version": LAB_VERSION,
            "dataset": self.dataset,
            "dataset_variant": ds.variant,
            "dataset_files": _data_fingerprint(ds),
            "dataset_options": [list(kv) for kv in self.dataset_options],
            "model": self.model,
            "model_options": [list(kv) for kv in self.model_options],
            "train_size": self.train_size,
            "base": self.base,
            "seed": self.seed,
            "data_seed": self.data_seed,
            "n_poison": self.n_poison,
            "imbalance": list(self.imbalance) if self.imbalance else None,
            "train": self.train.as_dict(),
        }

    def label(self) -> str:
        extra = f"+{self.n_poison}poison" if self.n_poison else ""
        if self.imbalance:
            extra += f"+{self.imbalance[0]}imb{self.imbalance[1]}@{self.imbalance[2]:g}"
        opt = "" if self.train.optimizer == "adamw" else f"-{self.train.optimizer}"
        bs = "" if self.train.batch_size is None else f"-bs{self.train.batch_size}"
        return f"{self.model}-D{self.train_size}{extra}{opt}{bs}-s{self.seed}"


def _data_fingerprint(ds: vdata.Dataset) -> str | None:
    """SHA-256 over the checksums of the files a data set was read from (content sums where the
    loader has them, so a recompressed copy of the same data matches); None for generated data,
    which its name, options and seed determine. Two generated stand-ins of different sizes, or a
    replaced file, therefore never share a minimum."""
    files = ds.meta.get("files") if isinstance(ds.meta, dict) else None
    if isinstance(files, dict) and files:
        parts = [f"{k}={v.get('sha256_content') or v.get('sha256_file')}" for k, v in sorted(files.items())
                 if isinstance(v, dict)]
    elif isinstance(ds.meta, dict) and ds.meta.get("sha256_content"):
        parts = [str(ds.meta["sha256_content"])]
    else:
        return None
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def _nested_order(ds: vdata.Dataset, base: int, data_seed: int, size: int) -> torch.Tensor:
    return vdata.nested_subsets(ds, [size], base=base, seed=data_seed)[0]


def training_batch(spec: MinimumSpec) -> vdata.Batch:
    """The training examples of ``spec`` (clean nested subset, then any extras)."""
    ds = load_dataset(spec.dataset, spec.dataset_options)
    idx = _nested_order(ds, spec.base, spec.data_seed, spec.train_size)
    extras = None
    if spec.n_poison and spec.imbalance:
        raise ValueError("a minimum takes poisoned or imbalanced extras, not both")
    if spec.n_poison:
        extras = vdata.poisoned_extras(ds, idx, spec.n_poison, seed=spec.data_seed)
    elif spec.imbalance:
        n_extra, target, ratio = spec.imbalance
        extras = vdata.imbalanced_extras(ds, n_extra, target_class=target, ratio=ratio,
                                         seed=spec.data_seed, exclude=idx)
    return vdata.take(ds, idx, extras=extras)


def landscape_batch(dataset: str, size: int, *, seed: int, base: int = 0, dataset_options: tuple = ()) -> vdata.Batch:
    """The clean landscape of ``size`` examples for model seed ``seed`` (same nested order as the
    minima of that seed)."""
    ds = load_dataset(dataset, dataset_options)
    return vdata.take(ds, _nested_order(ds, base, vdata.data_seed_for(seed), size))


@dataclass(frozen=True)
class Minimum:
    spec: MinimumSpec
    params: torch.Tensor
    metrics: dict[str, Any]
    key: str
    trained_now: bool
    tensors: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)

    def build_model(self, device=None, dtype=torch.float32) -> torch.nn.Module:
        model = vmodels.build(self.spec.model, seed=self.spec.seed, device=device, dtype=dtype,
                              **dict(self.spec.model_options))
        torch.nn.utils.vector_to_parameters(self.params.to(device=device, dtype=dtype), model.parameters())
        return model


def check_compatible(spec: MinimumSpec) -> None:
    """Raise ValueError naming both if ``spec.model`` cannot take ``spec.dataset``'s inputs."""
    ds = load_dataset(spec.dataset, spec.dataset_options)
    ms = vmodels.spec(spec.model)
    shape = tuple(ds.input_shape)
    fits = (math.prod(shape) == ms.n_inputs) if ms.is_mlp else (shape == tuple(ms.input_shape))
    if not fits:
        matching = [name for name in vmodels.names()
                    if (math.prod(shape) == vmodels.spec(name).n_inputs if vmodels.spec(name).is_mlp
                        else shape == tuple(vmodels.spec(name).input_shape))]
        raise ValueError(
            f"model {spec.model!r} takes inputs of shape {tuple(ms.input_shape)} but data set {spec.dataset!r} "
            f"has inputs of shape {shape}: they are incompatible; use a model built for {spec.dataset!r} "
            f"({', '.join(matching) or 'none is registered'})"
        )


def train_minimum(spec: MinimumSpec, store: MinimaStore, *, device=None, progress: bool = False) -> Minimum:
    """The minimum of ``spec`` from the store, training it on a miss (ValueError first if the
    model and the data set do not fit together)."""
    check_compatible(spec)

    def train_fn():
        batch = training_batch(spec)
        ds = load_dataset(spec.dataset, spec.dataset_options)
        model = vmodels.build(spec.model, seed=spec.seed, device=device, **dict(spec.model_options))
        result = train(model, batch.inputs, batch.targets, spec.train, test_inputs=ds.test_inputs,
                       test_targets=ds.test_targets, device=device, progress=progress)
        return result.tensors(), result.metadata()

    entry = store.get_or_train(spec.config(), train_fn)
    if entry.trained:
        LEDGER.trained_seconds += float(entry.metadata.get("seconds", 0.0) or 0.0)
        LEDGER.minima_trained += 1
    else:
        LEDGER.minima_served += 1
    return Minimum(spec=spec, params=entry.params, metrics=dict(entry.metadata), key=entry.key,
                   trained_now=entry.trained, tensors=dict(entry.tensors))


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


def _atomic_write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, allow_nan=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise explain_write_error(
                exc, path, what="the measurement cache file",
                kept="no partial file was left (pass store=None to measure without caching)") from exc
        raise


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
        if (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)
                or not math.isfinite(threshold) or threshold <= 0):
            raise ValueError(f"threshold must be a finite positive number (a loss level), got {threshold!r}")
    allowed = ("filter", "plain") if estimator == "reference" else ("filter", "isotropic")
    if directions not in allowed:
        raise ValueError(f"directions for estimator={estimator!r} must be one of {allowed}, got {directions!r}")
    check_n_directions(n_directions)
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
            path = None if store is None else Path(store.root) / "measurements" / f"{key}.json"
            cached = _read_cached(path) if path is not None and path.exists() else None
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
                _cache_measurement(path, result)
            out[pair] = result
    return {(size, threshold): out[(size, threshold)] for size in landscape_sizes for threshold in thresholds}


#: What computes a measurement (in its cache key; see ``measure_many``).
ENGINE = {"direction_generator": DIRECTION_GENERATOR, "search": "itp+first-exit-guard/v1",
          "paper_grid": "ray-walk, plain-path ties/v1"}


def _measurement_config(minimum: Minimum, landscape_size: int, *, estimator, n_directions, threshold,
                        direction_seed, directions, rtol, loss, landscape_extras, dtype) -> dict[str, Any]:
    """The cache key's configuration of one measurement: everything that changes its result,
    including the minimum's key and what measures it (``volbench.provenance.measurement_provenance``:
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


def measurement_lock(path: Path):
    """The file lock of the cached measurement at ``<root>/measurements/<key>.json``: the store's
    per-key lock ``<root>/.locks/<key>.lock``, held while the file is written so that
    ``volbench cache prune`` never deletes it mid-write."""
    from filelock import FileLock

    locks = path.parent.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks / f"{path.stem}.lock"))


def _cache_measurement(path: Path, result: Measurement) -> None:
    record = result.to_dict()
    record["sha256"] = _record_digest(record)
    try:
        with measurement_lock(path):
            _atomic_write_json(path, record)
    except OSError as exc:  # a full disk must not lose the measurement just computed
        warnings.warn(f"{exc}; the measurement is returned uncached and will be recomputed next time",
                      CacheWriteWarning, stacklevel=3)


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


class CacheWriteWarning(UserWarning):
    """A measurement could not be cached (full disk, file-size limit, read-only store); it was
    returned anyway and no partial cache file was left."""


class CorruptCacheWarning(UserWarning):
    """A cached measurement failed its checksum or did not parse; it was moved aside and redone."""


def _record_digest(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=True).encode()).hexdigest()


def _read_cached(path: Path) -> Measurement | None:
    """The verified measurement at ``path``, or None after moving a corrupt file aside (warned)."""

    try:
        text = path.read_text()
    except FileNotFoundError:  # removed since the caller looked (volbench cache prune): a miss
        return None
    try:
        record = json.loads(text)
        digest = record.pop("sha256")
        if digest != _record_digest(record):
            raise ValueError(f"checksum mismatch (stored {digest[:12]}..., content {_record_digest(record)[:12]}...)")
        return Measurement(**record)
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as err:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        try:
            os.replace(path, aside)
        except OSError:
            aside = None
        warnings.warn(f"cached measurement {path} is corrupt ({err}); "
                      f"{'moved aside to ' + str(aside) if aside else 'ignored'} and recomputed",
                      CorruptCacheWarning, stacklevel=3)
        return None
