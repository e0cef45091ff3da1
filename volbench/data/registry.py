"""``names()`` and ``load(name, ...)``: the data layer's entry points.

Example:
    >>> from volbench.data import load, names
    >>> "swiss_roll" in names()
    True
    >>> ds = load("swiss_roll", n_train=40, seed=3)
    >>> ds.train_inputs.shape, ds.train_targets.shape, ds.seed
    (torch.Size([40, 2]), torch.Size([40, 1]), 3)
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import torch

from volbench.data import images, synthetic, text
from volbench.data.dataset import Dataset

__all__ = ["names", "load", "LOADERS"]

LOADERS: Mapping[str, Callable[..., Dataset]] = MappingProxyType({
    "mnist": images.load_mnist,
    "fashion_mnist": images.load_fashion_mnist,
    "cifar10": images.load_cifar10,
    "svhn": images.load_svhn,
    "digits": images.load_digits,
    "swiss_roll": synthetic.load_swiss_roll,
    "modular_addition": synthetic.load_modular_addition,
    "boolean": synthetic.load_boolean,
    "mnist_binary": images.load_mnist_binary,
    "shakespeare_char": text.load_shakespeare_char,
})


def names() -> list[str]:
    """The data set names ``load`` accepts."""
    return list(LOADERS)


def options(name: str) -> dict[str, Any]:
    """The options ``load(name, ...)`` accepts beyond root and seed, with their defaults."""
    loader = _loader(name)
    return {p.name: p.default for p in inspect.signature(loader).parameters.values()
            if p.name not in ("root", "seed")}


def _loader(name: str) -> Callable[..., Dataset]:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    try:
        return LOADERS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(LOADERS)}") from None


def load(name: str, *, root: Any = None, seed: int = 0, device: torch.device | str | None = None,
         dtype: torch.dtype | None = None, **opts: Any) -> Dataset:
    """Load data set ``name`` (see ``names()``).

    Args:
        root: a data root folder (or a list of them) searched before ``$VOLBENCH_DATA`` and the
            user cache (``$XDG_CACHE_HOME/volbench/data``); ignored by generated data sets.
        seed: seeds any random split or generation; recorded in ``Dataset.seed``.
        device, dtype: where to put the tensors (default CPU) and the float dtype of inputs and
            float targets (default float32); labels stay int64.
        **opts: per-data-set options, listed by ``volbench.data.registry.options(name)``
            (e.g. ``variant``/``download`` for MNIST, ``n_train`` for swiss_roll, ``p`` for
            modular_addition). Unknown options raise TypeError naming the valid ones.
    """
    loader = _loader(name)
    valid = options(name)
    unknown = sorted(set(opts) - set(valid))
    if unknown:
        raise TypeError(f"load({name!r}) got unknown option(s) {', '.join(unknown)}; "
                        f"valid options: {', '.join(valid) or 'none'}")
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    ds = loader(root=root, seed=seed, **opts)
    return ds if device is None and dtype is None else ds.to(device=device, dtype=dtype)
