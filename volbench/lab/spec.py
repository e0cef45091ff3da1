"""How a minimum is made (``MinimumSpec``) and the data it is trained and measured on: the
nested training subsets (a base set plus prefixes of one shuffled pool, data seed = model seed +
10), poisoned or class-imbalanced extras, and the clean landscapes of the same order."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch

from volbench import data as vdata
from volbench.lab.train import TrainConfig
from volbench.store import provenance

# Bump when the meaning of a spec or measurement changes, so caches from older code are not reused.
LAB_VERSION = 3  # 3: measurements carry their resolution bracket and direction seed


@lru_cache(maxsize=16)
def _load_cached(name: str, options: tuple) -> vdata.Dataset:
    return vdata.load(name, **dict(options))


def forget_datasets() -> None:
    """Empty the in-process cache of :func:`load_dataset` (after a download replaced a smaller
    variant of a data set)."""
    _load_cached.cache_clear()


def load_dataset(name: str, options: tuple = ()) -> vdata.Dataset:
    """``volbench.data.load`` with an in-process cache (options as a tuple of (key, value))."""
    return _load_cached(name, tuple(options))


@dataclass(frozen=True)
class MinimumSpec:
    """How one minimum is made.

    Attributes:
        dataset: data set name (``volbench.data.names()``); ``dataset_options`` as (key, value) pairs.
        model: architecture name (``volbench.lab.models.names()``).
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
        what trains them (``volbench.store.provenance.training_provenance``: a digest of the training,
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
