"""The ``Dataset`` record every loader returns, and the data layer's error types.

A ``Dataset`` holds one train split and one test split as tensors, plus what is needed to report
which data ran: the variant (e.g. ``"mnist-10k"``), the seed, the source folder and checksums.

Targets come in the format the paper's loss wants; the integer class of every example is always
available separately as ``train_labels`` / ``test_labels``:

=====================  ==========================  ===================================
task                   ``*_targets``                ``*_labels`` (int64)
=====================  ==========================  ===================================
image classification   int64 class index [N]        the same tensor
binary (BCE) tasks     float32 0/1 [N, 1]           0/1 [N]
modular addition       float32 one-hot [N, p]       (a + b) mod p [N]
text windows           int64 next ids [N, T]        None (T classes per example)
=====================  ==========================  ===================================

Inputs are floats, except text windows: int64 token ids ``[N, T]``.

Example:
    >>> import torch
    >>> from volbench.data import Dataset
    >>> ds = Dataset(name="toy", train_inputs=torch.zeros(4, 2), train_targets=torch.tensor([0, 1, 0, 1]),
    ...              test_inputs=torch.zeros(2, 2), test_targets=torch.tensor([1, 0]), n_classes=2,
    ...              input_shape=(2,), variant="toy", seed=0, source="generated", meta={})
    >>> ds.n_train, ds.n_test, ds.train_labels.tolist()
    (4, 2, [0, 1, 0, 1])
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from volbench._checks import check_seed

__all__ = ["Dataset", "DatasetNotFoundError", "ChecksumError"]


class DatasetNotFoundError(FileNotFoundError):
    """No usable copy of a data set was found in any data root (and none could be downloaded).

    ``str(err)`` is the full message (folders searched, expected layout, fix); ``err.dataset`` the
    registry name; ``err.reason`` one line naming the data set, how to get it and where its files
    go (what a skipped claim case shows), or the message's first line where none was given.
    """

    def __init__(self, message: str = "", *, dataset: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.dataset = dataset
        self._reason = reason

    @property
    def reason(self) -> str:
        text = self._reason
        if not text and self.args:
            lines = str(self.args[0]).strip().splitlines()
            text = lines[0] if lines else ""
        return " ".join(text.split())  # one line, whatever the message held

    def __reduce__(self):  # keep dataset and reason through pickling (pytest-xdist, multiprocessing)
        return (_rebuild_not_found, (type(self), str(self.args[0]) if self.args else "", self.dataset, self._reason))


def _rebuild_not_found(cls, message: str, dataset: str, reason: str) -> DatasetNotFoundError:
    return cls(message, dataset=dataset, reason=reason)


class ChecksumError(ValueError):
    """A data file's SHA-256 differs from the known one: the file is corrupt or not the real data."""


def _check_split(name: str, split: str, inputs: Any, targets: Any, labels: Any) -> None:
    if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError(f"{name}: {split}_inputs and {split}_targets must be torch tensors")
    if not inputs.dtype.is_floating_point and inputs.dtype != torch.int64:
        raise TypeError(f"{name}: {split}_inputs must be floating point (float32 in [0, 1] for images) or int64 "
                        f"token ids (text windows), got {inputs.dtype}")
    if targets.dtype not in (torch.int64, torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise TypeError(f"{name}: {split}_targets must be int64 class labels or float targets, got {targets.dtype}")
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"{name}: {split} split has {inputs.shape[0]} inputs but {targets.shape[0]} targets; they must match"
        )
    if labels is not None:
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != (inputs.shape[0],):
            raise ValueError(f"{name}: {split}_labels must be an int64 tensor of shape [{inputs.shape[0]}]")


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """One data set: a train split, a test split, and the record of which data it is.

    Attributes:
        name: registry name (``"mnist"``, ``"swiss_roll"``, ...).
        train_inputs, test_inputs: float32; images as [N, C, H, W] in [0, 1], tabular as [N, d];
            text windows as int64 token ids [N, T].
        train_targets, test_targets: int64 class labels [N], or float32 targets ([N, 1] for BCE,
            [N, C] one-hot for MSE).
        n_classes: number of classes (None for pure regression).
        input_shape: shape of one input, e.g. (1, 28, 28).
        variant: which concrete data ran, e.g. ``"mnist-10k"`` or ``"mnist-full"``.
        seed: the seed that drew any random split or generated data (recorded even where unused).
        source: folder the files came from, or ``"generated"`` / ``"scikit-learn"``.
        meta: plain, JSON-serialisable dict: split sizes, preprocessing, checksums, split rules.
        train_labels, test_labels: int64 class index per example; filled from the targets when the
            targets are int64 labels. None only for regression data without classes.
    """

    name: str
    train_inputs: torch.Tensor
    train_targets: torch.Tensor
    test_inputs: torch.Tensor
    test_targets: torch.Tensor
    n_classes: int | None
    input_shape: tuple[int, ...]
    variant: str
    seed: int
    source: str
    meta: dict[str, Any]
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        # Integer targets are the class labels themselves; share the tensor rather than copy.
        for split in ("train", "test"):
            if getattr(self, f"{split}_labels") is None and isinstance(getattr(self, f"{split}_targets"), torch.Tensor):
                targets = getattr(self, f"{split}_targets")
                if targets.dtype == torch.int64 and targets.ndim == 1:
                    object.__setattr__(self, f"{split}_labels", targets)
        for split in ("train", "test"):
            _check_split(self.name, split, getattr(self, f"{split}_inputs"), getattr(self, f"{split}_targets"),
                         getattr(self, f"{split}_labels"))
        shape = tuple(int(s) for s in self.input_shape)
        object.__setattr__(self, "input_shape", shape)
        for split in ("train", "test"):
            got = tuple(getattr(self, f"{split}_inputs").shape[1:])
            if got != shape:
                raise ValueError(f"{self.name}: {split}_inputs have per-example shape {got}, input_shape says {shape}")
        if self.n_classes is not None and (not isinstance(self.n_classes, int) or self.n_classes < 1):
            raise ValueError(f"{self.name}: n_classes must be a positive int or None, got {self.n_classes!r}")
        if not isinstance(self.meta, dict):
            raise TypeError(f"{self.name}: meta must be a dict, got {type(self.meta).__name__}")

    # ----------------------------------------------------------------------------- conveniences
    @property
    def n_train(self) -> int:
        return int(self.train_inputs.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.test_inputs.shape[0])

    def targets_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Encode int64 class labels in this data set's target format (used for relabelled
        extras: poison and attack sets).

            int64 targets [N]     -> the labels
            float targets [N, 1]  -> labels as 0./1. in a column (binary BCE)
            float targets [N, C]  -> one-hot rows (MSE)
        """
        labels = torch.as_tensor(labels)
        if labels.dtype != torch.int64 or labels.ndim != 1:
            raise TypeError(f"labels must be a 1-D int64 tensor, got {labels.dtype} of shape {tuple(labels.shape)}")
        t = self.train_targets
        if t.dtype == torch.int64:
            return labels.clone()
        if t.ndim == 2 and t.shape[1] == 1:
            if labels.numel() and (labels.min() < 0 or labels.max() > 1):
                raise ValueError(f"{self.name}: binary targets need labels in {{0, 1}}")
            return labels.to(t.dtype).unsqueeze(1)
        if t.ndim == 2:
            return torch.nn.functional.one_hot(labels, num_classes=t.shape[1]).to(t.dtype)
        raise ValueError(f"{self.name}: cannot encode labels for targets of shape {tuple(t.shape)}")

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Dataset:
        """A copy with tensors on ``device``; ``dtype`` applies to inputs and float targets only
        (integer labels stay int64)."""
        def move(x: torch.Tensor | None) -> torch.Tensor | None:
            if x is None:
                return None
            if dtype is not None and x.dtype.is_floating_point:
                return x.to(device=device, dtype=dtype)
            return x.to(device=device)

        moved = {f: move(getattr(self, f)) for f in (
            "train_inputs", "train_targets", "test_inputs", "test_targets", "train_labels", "test_labels")}
        # Keep labels aliased to targets where they were the same tensor.
        for split in ("train", "test"):
            if getattr(self, f"{split}_labels") is getattr(self, f"{split}_targets"):
                moved[f"{split}_labels"] = moved[f"{split}_targets"]
        return dataclasses.replace(self, meta=dict(self.meta), **moved)

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable summary for result records: name, variant, seed, source, sizes,
        shapes and the loader's meta (checksums, split rule, preprocessing)."""
        return {
            "name": self.name,
            "variant": self.variant,
            "seed": self.seed,
            "source": self.source,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_classes": self.n_classes,
            "input_shape": list(self.input_shape),
            "target_dtype": str(self.train_targets.dtype).replace("torch.", ""),
            "target_shape": list(self.train_targets.shape[1:]),
            "meta": self.meta,
        }

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, variant={self.variant!r}, n_train={self.n_train}, "
                f"n_test={self.n_test}, input_shape={self.input_shape}, n_classes={self.n_classes}, "
                f"seed={self.seed}, source={self.source!r})")






def check_fraction(value: Any, what: str, *, low_open: bool = False, high_open: bool = False) -> float:
    """Validate a fraction in [0, 1] (optionally open at either end)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{what} must be a finite number in [0, 1], got {value!r}")
    lo_ok = value > 0 if low_open else value >= 0
    hi_ok = value < 1 if high_open else value <= 1
    if not (lo_ok and hi_ok):
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{what} must lie in {lo}0, 1{hi}, got {value}")
    return float(value)


def generator(seed: int) -> torch.Generator:
    """A CPU torch.Generator seeded with ``seed``; data is drawn on the CPU so a seed gives the
    same data whatever device it is later moved to."""
    return torch.Generator(device="cpu").manual_seed(check_seed(seed))
