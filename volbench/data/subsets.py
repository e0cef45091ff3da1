"""Experiment-building helpers: nested training sets, poisoned / imbalanced extras, attack sets.

All are deterministic for a seed (a CPU ``torch.Generator``), return int64 index tensors into a
data set's **train** split (plus relabelled targets where labels change), and record the seed.
``take`` materialises indices (and extras) into inputs / targets / labels.

Example (the main paper's MNIST design: base 60, nested extras; data seed = model seed + 10):
    >>> import torch
    >>> from volbench.data import load, nested_subsets, data_seed_for, take
    >>> ds = load("modular_addition", p=11)
    >>> sets = nested_subsets(ds, [10, 40, 100], base=10, seed=data_seed_for(0))
    >>> [len(s) for s in sets], bool(torch.isin(sets[0], sets[1]).all())
    ([10, 40, 100], True)
    >>> take(ds, sets[1]).inputs.shape
    torch.Size([40, 22])
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch

from volbench._checks import check_count, check_seed
from volbench.data.dataset import Dataset, check_fraction, generator

__all__ = ["NestedSubsets", "Extras", "Batch", "nested_subsets", "poisoned_extras", "imbalanced_extras",
           "attack_set", "take", "data_seed_for"]

DATA_SEED_OFFSET = 10  # Fan et al.'s code: model seed s trains on the data split drawn with seed s + 10


def data_seed_for(model_seed: int) -> int:
    """The data seed the main paper pairs with ``model_seed`` (s -> s + 10)."""
    return check_seed(model_seed, "model_seed") + DATA_SEED_OFFSET


def _pool_size(dataset: Dataset | int) -> int:
    if isinstance(dataset, Dataset):
        return dataset.n_train
    if isinstance(dataset, int) and not isinstance(dataset, bool):
        return check_count(dataset, "pool size")
    raise TypeError(f"dataset must be a volbench Dataset or a pool size (int), got {type(dataset).__name__}")


def _check_indices(indices: object, n: int, what: str) -> torch.Tensor:
    if not isinstance(indices, torch.Tensor):
        if isinstance(indices, (list, tuple, range)):
            indices = torch.as_tensor(list(indices), dtype=torch.int64)
        else:
            raise TypeError(f"{what} must be an int64 index tensor (or a list of ints), got {type(indices).__name__}")
    if indices.dtype != torch.int64 or indices.ndim != 1:
        raise TypeError(f"{what} must be a 1-D int64 index tensor, got {indices.dtype} of shape {tuple(indices.shape)}")
    idx = indices.cpu()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise ValueError(f"{what} must index the train split [0, {n}), got values in [{int(idx.min())}, "
                         f"{int(idx.max())}]")
    if torch.unique(idx).numel() != idx.numel():
        raise ValueError(f"{what} contains repeated indices; each example may appear once")
    return idx


def _complement(n: int, exclude: torch.Tensor) -> torch.Tensor:
    keep = torch.ones(n, dtype=torch.bool)
    keep[exclude] = False
    return keep.nonzero().squeeze(1)


@dataclasses.dataclass(frozen=True, eq=False)
class NestedSubsets(Sequence[torch.Tensor]):
    """Nested index sets into a train split; behaves as a sequence of int64 tensors in the order
    of ``sizes``. ``base`` is contained in every set; ``order`` is the full draw order (base
    first, then the shuffled pool), of which every set is a prefix."""

    indices: tuple[torch.Tensor, ...]
    sizes: tuple[int, ...]
    base: torch.Tensor
    order: torch.Tensor
    seed: int

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):  # type: ignore[override]
        return self.indices[i]

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.indices)

    def describe(self) -> dict[str, object]:
        return {"sizes": list(self.sizes), "base_size": int(self.base.numel()), "seed": self.seed}


def nested_subsets(dataset: Dataset | int, sizes: Sequence[int], *, base: int | torch.Tensor | None = None,
                   seed: int) -> NestedSubsets:
    """Nested training sets: a base set plus prefixes of one shuffled pool (Fan et al., Sec. 4:
    MNIST base 60 with extras up to 59,940; CIFAR base 50; swiss roll base 20; mod-97 base 94).

        order = [base..., shuffled(pool \\ base)...],   set(size) = order[:size]

    so for sizes s <= s' the set of size s is contained in the set of size s', and every set
    contains the base.

    Args:
        dataset: a Dataset (indices into its train split) or the pool size n.
        sizes: set sizes, each in [len(base), n]; any order (the result follows it).
        base: None (no base), an int k (the first k of a seeded permutation of all n), or an
            explicit int64 index tensor (e.g. a class-balanced base); the pool is the rest.
        seed: seeds the CPU generator that shuffles the pool (main paper: model seed + 10,
            see ``data_seed_for``).
    """
    check_seed(seed)
    n = _pool_size(dataset)
    if isinstance(sizes, (int, str)) or not isinstance(sizes, Sequence):
        raise TypeError(f"sizes must be a sequence of ints, got {sizes!r}")
    sizes = tuple(check_count(s, "every size") for s in sizes)
    g = generator(seed)
    if base is None or (isinstance(base, int) and not isinstance(base, bool)):
        k = 0 if base is None else check_count(base, "base")
        if k > n:
            raise ValueError(f"base size {k} exceeds the {n} examples in the pool")
        order = torch.randperm(n, generator=g)
        base_idx = order[:k].clone()
    else:
        base_idx = _check_indices(base, n, "base")
        pool = _complement(n, base_idx)
        order = torch.cat([base_idx, pool[torch.randperm(pool.numel(), generator=g)]])
    k = base_idx.numel()
    for s in sizes:
        if s > n:
            raise ValueError(f"size {s} exceeds the {n} examples available in the train split")
        if s < k:
            raise ValueError(f"size {s} is smaller than the base set ({k}); every set must contain the base")
    return NestedSubsets(indices=tuple(order[:s].clone() for s in sizes), sizes=sizes, base=base_idx,
                         order=order, seed=seed)


@dataclasses.dataclass(frozen=True, eq=False)
class Extras:
    """Extra training examples drawn from a train split, possibly relabelled.

    Attributes:
        indices: int64 positions in the train split.
        labels: int64 labels to train on (wrong ones for poison / attack sets).
        true_labels: int64 labels the data set gives these examples.
        targets: ``labels`` in the data set's target format (see ``Dataset.targets_from_labels``).
        seed: the seed that drew them.
        kind: ``"poison"``, ``"attack"`` or ``"imbalanced"``.
    """

    indices: torch.Tensor
    labels: torch.Tensor
    true_labels: torch.Tensor
    targets: torch.Tensor
    seed: int
    kind: str

    def __len__(self) -> int:
        return int(self.indices.numel())

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind, "n": len(self), "seed": self.seed,
                "n_relabelled": int((self.labels != self.true_labels).sum())}


def _labels(dataset: Dataset) -> torch.Tensor:
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a volbench Dataset, got {type(dataset).__name__}")
    if dataset.train_labels is None:
        raise ValueError(f"{dataset.name} has no class labels; relabelling needs a classification data set")
    return dataset.train_labels.cpu()


def _relabelled(dataset: Dataset, exclude: torch.Tensor | None, n: int, seed: int, n_classes: int | None,
                kind: str, what: str) -> Extras:
    labels = _labels(dataset)
    check_seed(seed)
    check_count(n, what)
    c = dataset.n_classes if n_classes is None else check_count(n_classes, "n_classes")
    if c is None or c < 2:
        raise ValueError(f"relabelling needs at least 2 classes, got n_classes={c}")
    if labels.numel() and int(labels.max()) >= c:
        raise ValueError(f"n_classes={c} but {dataset.name} has label {int(labels.max())}")
    exclude_idx = (torch.zeros(0, dtype=torch.int64) if exclude is None
                   else _check_indices(exclude, dataset.n_train, "the excluded (base) indices"))
    pool = _complement(dataset.n_train, exclude_idx)
    if n > pool.numel():
        raise ValueError(f"asked for {n} {kind} examples but only {pool.numel()} train examples lie outside "
                         f"the {exclude_idx.numel()} excluded ones")
    g = generator(seed)
    # Shuffle the whole pool and draw an offset for every pool element, then take prefixes: a
    # larger n extends a smaller one with the same seed (nested poison levels).
    order = pool[torch.randperm(pool.numel(), generator=g)]
    offsets = torch.randint(1, c, (pool.numel(),), generator=g)  # 1..C-1: never the true label
    idx = order[:n].clone()
    true = labels[idx]
    new = (true + offsets[:n]) % c
    return Extras(indices=idx, labels=new, true_labels=true, targets=dataset.targets_from_labels(new),
                  seed=seed, kind=kind)


def poisoned_extras(dataset: Dataset, base_indices: torch.Tensor | None, n_poison: int, *, seed: int,
                    n_classes: int | None = None) -> Extras:
    """Poisoned extras (Huang et al. 2020; Fan et al. Sec. 5.1): real train inputs outside the
    base, each relabelled ``(label + randint(1, C)) mod C`` with randint uniform on 1..C-1, so
    the new label is always wrong (for C = 2: flipped).

    With one seed, ``n_poison = m`` returns the first m of ``n_poison = m' > m``.
    """
    return _relabelled(dataset, base_indices, n_poison, seed, n_classes, "poison", "n_poison")


def attack_set(dataset: Dataset, size: int, *, seed: int, exclude: torch.Tensor | None = None,
               n_classes: int | None = None) -> Extras:
    """Attack set A of Zhang et al. (2021, Sec. 5.2, after Wu et al. 2017): mislabelled train
    examples, disjoint from the training set S (pass S's indices as ``exclude``) and from the
    test set E (A comes from the train split, E from the test split). Binary tasks: the label is
    flipped; with C > 2 classes the same always-wrong rule as ``poisoned_extras``."""
    return _relabelled(dataset, exclude, size, seed, n_classes, "attack", "size")


def imbalanced_extras(dataset: Dataset, n: int, *, target_class: int, ratio: float, seed: int,
                      exclude: torch.Tensor | None = None) -> Extras:
    """Class-imbalanced extras (Fan et al. Sec. 5.5, Fig. 12: extras 90% from one class).

    ``round(ratio * n)`` examples are drawn uniformly from ``target_class``, the rest uniformly
    from all other classes, none from ``exclude``; the union is returned in a seeded random
    order with its true labels.
    """
    labels = _labels(dataset)
    check_seed(seed)
    check_count(n, "n")
    check_fraction(ratio, "ratio")
    check_count(target_class, "target_class")
    if dataset.n_classes is not None and target_class >= dataset.n_classes:
        raise ValueError(f"target_class must be below n_classes={dataset.n_classes}, got {target_class}")
    exclude_idx = (torch.zeros(0, dtype=torch.int64) if exclude is None
                   else _check_indices(exclude, dataset.n_train, "exclude"))
    pool = _complement(dataset.n_train, exclude_idx)
    major_pool, minor_pool = pool[labels[pool] == target_class], pool[labels[pool] != target_class]
    n_major = round(ratio * n)
    n_minor = n - n_major
    if n_major > major_pool.numel() or n_minor > minor_pool.numel():
        raise ValueError(
            f"need {n_major} examples of class {target_class} and {n_minor} of other classes, but only "
            f"{major_pool.numel()} and {minor_pool.numel()} are available outside the excluded indices")
    g = generator(seed)
    major = major_pool[torch.randperm(major_pool.numel(), generator=g)[:n_major]]
    minor = minor_pool[torch.randperm(minor_pool.numel(), generator=g)[:n_minor]]
    both = torch.cat([major, minor])
    idx = both[torch.randperm(both.numel(), generator=g)]
    true = labels[idx]
    return Extras(indices=idx, labels=true.clone(), true_labels=true, targets=dataset.targets_from_labels(true),
                  seed=seed, kind="imbalanced")


class Batch(NamedTuple):
    """Materialised examples: inputs, targets (training format) and int64 labels."""

    inputs: torch.Tensor
    targets: torch.Tensor
    labels: torch.Tensor | None


def take(dataset: Dataset, indices: torch.Tensor, *, extras: Extras | None = None, split: str = "train") -> Batch:
    """Inputs / targets / labels of ``indices`` in ``split``, followed by ``extras`` (train split)
    with the labels the extras carry (wrong ones for poison and attack sets).

    Tensors stay on the data set's device; indices may live on any device.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a volbench Dataset, got {type(dataset).__name__}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    n = dataset.n_train if split == "train" else dataset.n_test
    idx = _check_indices(indices, n, "indices")
    x, y, lab = (getattr(dataset, f"{split}_{f}") for f in ("inputs", "targets", "labels"))
    dev = x.device
    parts_x, parts_y = [x[idx.to(dev)]], [y[idx.to(dev)]]
    parts_l = [lab[idx.to(dev)]] if lab is not None else None
    if extras is not None:
        if not isinstance(extras, Extras):
            raise TypeError(f"extras must be an Extras from poisoned_extras/attack_set/imbalanced_extras, "
                            f"got {type(extras).__name__}")
        e = _check_indices(extras.indices, dataset.n_train, "extras.indices").to(dev)
        if split == "train" and torch.isin(e, idx.to(dev)).any():
            raise ValueError("extras overlap the given indices; draw them with those indices excluded")
        parts_x.append(dataset.train_inputs[e])
        parts_y.append(extras.targets.to(device=dev, dtype=y.dtype))
        if parts_l is not None:
            parts_l.append(extras.labels.to(dev))
    return Batch(torch.cat(parts_x), torch.cat(parts_y), torch.cat(parts_l) if parts_l is not None else None)
