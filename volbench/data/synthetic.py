"""Generated data sets: two spirals ("swiss roll"), modular addition, and Boolean functions.

Everything is drawn on the CPU from a ``torch.Generator`` seeded with ``seed`` (in float64, then
stored as float32), so a seed gives the same data on every device. Train and test parts use
separate generators (seeds derived from ``seed`` by SHA-256, recorded in ``meta``), so changing
``n_test`` never changes the training data.

Example:
    >>> from volbench.data import load
    >>> ds = load("modular_addition", p=5, train_fraction=0.6, seed=1)
    >>> ds.n_train, ds.n_test, ds.input_shape, ds.n_classes
    (15, 10, (10,), 5)
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import torch

from volbench._checks import check_count, check_seed
from volbench.data.dataset import Dataset, check_fraction, generator

__all__ = ["load_swiss_roll", "load_modular_addition", "load_boolean", "derive_seed", "swiss_roll_points",
           "boolean_inputs", "boolean_truth_table"]


def derive_seed(seed: int, *keys: str | int) -> int:
    """A child seed for ``(seed, *keys)``: the first 8 bytes of SHA-256 of their text, below 2**63.
    Stable across Python, NumPy and torch versions (unlike ``hash``)."""
    check_seed(seed)
    text = "/".join(str(k) for k in (seed, *keys)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


# ------------------------------------------------------------------------------------ swiss roll
SPIRAL_TURNS = 1.7     # t ranges over [0, 1.7 * 2 pi]: 1.7 turns (Fan et al., two-spirals generator)
SPIRAL_SCALE = 1.5     # arm radius grows as 1.5 t
SPIRAL_NOISE = 0.3     # std of the isotropic Gaussian noise on each point


def swiss_roll_points(n_pairs: int, *, seed: int, noise: float = SPIRAL_NOISE) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved spirals, the main paper's generator (Fan et al., swiss-roll experiments):

        U ~ Uniform(0, 1),  t = sqrt(U) * 1.7 * 2 pi
        arm = (-1.5 t cos t, 1.5 t sin t) + N(0, noise^2 I)          -> class 0
        second class = -arm  (the point reflection of the same noisy point) -> class 1

    sqrt(U) makes points uniform in arc area rather than in t. Returns float64 ``(x [2n, 2],
    labels [2n])``: rows 0..n-1 are class 0, rows n..2n-1 their reflections (class 1).

    Draw order (fixed, so tests can replay it): ``U = torch.rand(n)``, then
    ``eps = torch.randn(n, 2)``, both float64 from one CPU generator seeded ``seed``.
    """
    check_count(n_pairs, "n_pairs")
    if not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite standard deviation >= 0, got {noise!r}")
    g = generator(seed)
    u = torch.rand(n_pairs, generator=g, dtype=torch.float64)
    eps = torch.randn(n_pairs, 2, generator=g, dtype=torch.float64)
    t = torch.sqrt(u) * SPIRAL_TURNS * 2 * math.pi
    arm = torch.stack([-SPIRAL_SCALE * t * torch.cos(t), SPIRAL_SCALE * t * torch.sin(t)], dim=1) + noise * eps
    x = torch.cat([arm, -arm])
    labels = torch.cat([torch.zeros(n_pairs, dtype=torch.int64), torch.ones(n_pairs, dtype=torch.int64)])
    return x, labels


def load_swiss_roll(*, root: Any = None, seed: int = 0, n_train: int = 800, n_test: int = 1_000,
                    noise: float = SPIRAL_NOISE) -> Dataset:
    """Two-spirals binary classification (main paper: MLP 2-32x5-1, BCE loss).

    Args:
        seed: data seed; train points use ``derive_seed(seed, "train")``, test points
            ``derive_seed(seed, "test")``.
        n_train: even; default 800 = the paper's largest set (base 20 + extras to 780).
        n_test: even; default 1,000 (standard error of a test accuracy near 90% is about 1%).
        noise: std of the Gaussian noise (paper: 0.3).

    Inputs float32 [N, 2]; targets float32 0/1 [N, 1] for BCE; labels int64 [N]. Each split is
    class-balanced (every point's reflection is in the same split). ``root`` is ignored.
    """
    del root
    check_seed(seed)
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        check_count(n, name)
        if n % 2:
            raise ValueError(f"{name} must be even (each point comes with its mirror image in the other class), got "
                             f"{n}")
    seeds = {"train": derive_seed(seed, "train"), "test": derive_seed(seed, "test")}
    xtr, ytr = swiss_roll_points(n_train // 2, seed=seeds["train"], noise=noise)
    xte, yte = swiss_roll_points(n_test // 2, seed=seeds["test"], noise=noise)
    meta = {
        "n_train": n_train, "n_test": n_test, "noise": float(noise), "turns": SPIRAL_TURNS, "scale": SPIRAL_SCALE,
        "generator": "t = sqrt(U)*1.7*2pi; arm = (-1.5 t cos t, 1.5 t sin t) + N(0, noise^2); class 1 = -arm",
        "derived_seeds": seeds,
    }
    return Dataset(name="swiss_roll", train_inputs=xtr.float(), train_targets=ytr.float().unsqueeze(1),
                   test_inputs=xte.float(), test_targets=yte.float().unsqueeze(1), n_classes=2,
                   input_shape=(2,), variant="two-spirals", seed=seed, source="generated", meta=meta,
                   train_labels=ytr, test_labels=yte)


# ------------------------------------------------------------------------------ modular addition
MODULAR_TRAIN_FRACTION = 0.9
# Fan et al. call 2,822 examples "33% of the dataset": 2,822 / 0.333 = 8,468 = 90% of 97^2 = 9,409
# pairs, so their training pool held 90% of the pairs; we hold the other 10% out for test accuracy.


def load_modular_addition(*, root: Any = None, seed: int = 0, p: int = 97,
                          train_fraction: float = MODULAR_TRAIN_FRACTION) -> Dataset:
    """Addition modulo p on all p^2 pairs (a, b) (main paper: p = 97, MLP 194-250-97, MSE loss).

    Input: concatenated one-hots ``[e_a, e_b]`` (2p dims). Target: float32 one-hot of
    ``(a + b) mod p`` (for MSE). The integer answer is in ``train_labels`` / ``test_labels``;
    ``a`` and ``b`` are ``x[:, :p].argmax(1)`` and ``x[:, p:].argmax(1)``.

    The p^2 pairs, in order a * p + b, are permuted by ``torch.randperm`` with a CPU generator
    seeded ``seed``; the first ``round(train_fraction * p^2)`` are the training pool, the rest
    are held out, so train and test pairs never overlap (the paper's code mixed them).
    ``train_fraction = 1`` leaves an empty test split. ``root`` is ignored.
    """
    del root
    check_seed(seed)
    check_count(p, "p", minimum=2)
    check_fraction(train_fraction, "train_fraction", low_open=True)
    n = p * p
    n_train = round(train_fraction * n)
    if n_train == 0:
        raise ValueError(f"train_fraction={train_fraction} leaves no training pair out of {n}; raise it")
    pair = torch.arange(n)
    a, b = pair // p, pair % p
    x = torch.cat([torch.nn.functional.one_hot(a, p), torch.nn.functional.one_hot(b, p)], dim=1).float()
    labels = (a + b) % p
    y = torch.nn.functional.one_hot(labels, p).float()
    perm = torch.randperm(n, generator=generator(seed))
    tr, te = perm[:n_train], perm[n_train:]
    meta = {
        "n_train": int(n_train), "n_test": int(n - n_train), "p": p, "train_fraction": float(train_fraction),
        "split": f"torch.randperm({n}) with a CPU generator seeded {seed} over pairs a*p+b; first {n_train} train",
        "encoding": "input [one_hot(a), one_hot(b)]; target one_hot((a+b) mod p) as float32 for MSE",
    }
    return Dataset(name="modular_addition", train_inputs=x[tr], train_targets=y[tr], test_inputs=x[te],
                   test_targets=y[te], n_classes=p, input_shape=(2 * p,), variant=f"mod-{p}", seed=seed,
                   source="generated", meta=meta, train_labels=labels[tr], test_labels=labels[te])


# ------------------------------------------------------------------------------------- Boolean
_NAMED_FUNCTIONS = ("zeros", "ones", "parity", "majority")


def boolean_inputs(n: int) -> torch.Tensor:
    """All 2^n inputs in {0, 1}^n as int64 [2^n, n]; row i is i in binary, most significant bit
    first (x_j = bit n-1-j of i)."""
    check_count(n, "n", minimum=1)
    i = torch.arange(2 ** n).unsqueeze(1)
    shifts = torch.arange(n - 1, -1, -1)
    return (i >> shifts) & 1


def boolean_truth_table(function: str | int | Sequence[int] | torch.Tensor, n: int) -> torch.Tensor:
    """The int64 [2^n] outputs of ``function`` on ``boolean_inputs(n)``, in row order.

    ``function`` is one of ``"zeros"`` (the default: the all-zero function, the largest-volume
    function in Zhang et al., Fig. 2), ``"ones"``, ``"parity"`` (XOR of the bits), ``"majority"``
    (1 if more than n/2 bits are set); an int in [0, 2^(2^n)) whose bit i is f(row i); or a
    sequence of 2^n values in {0, 1}.
    """
    rows = 2 ** n
    x = boolean_inputs(n)
    if isinstance(function, str):
        if function == "zeros":
            return torch.zeros(rows, dtype=torch.int64)
        if function == "ones":
            return torch.ones(rows, dtype=torch.int64)
        if function == "parity":
            return x.sum(1) % 2
        if function == "majority":
            return (2 * x.sum(1) > n).to(torch.int64)
        raise ValueError(f"unknown Boolean function {function!r}; use one of {_NAMED_FUNCTIONS}, "
                         f"an int truth table, or a sequence of {rows} bits")
    if isinstance(function, bool):
        raise TypeError("function must be a name, an int truth table or a sequence of bits, not a bool")
    if isinstance(function, int):
        if not 0 <= function < 2 ** rows:
            raise ValueError(f"an int truth table for n={n} must lie in [0, 2**{rows}), got {function}")
        return torch.tensor([(function >> i) & 1 for i in range(rows)], dtype=torch.int64)
    table = torch.as_tensor(function)
    if table.shape != (rows,) or table.is_floating_point() or not bool(((table == 0) | (table == 1)).all()):
        raise ValueError(f"a truth table for n={n} must be {rows} integer values in {{0, 1}}, "
                         f"got shape {tuple(table.shape)} dtype {table.dtype}")
    return table.to(torch.int64)


def load_boolean(*, root: Any = None, seed: int = 0, n: int = 7, function: Any = "zeros",
                 encoding: str = "01", n_train: int | None = None) -> Dataset:
    """The Boolean system of Zhang et al. (2021, Sec. 5.1; after Valle-Perez et al. 2018):
    all 2^n inputs (n = 7: 128), one binary output each, FCN 7-40-40-1.

    Args:
        n: number of input bits (1..16; the paper uses 7).
        function: the target function, see ``boolean_truth_table`` (default: all zeros).
        encoding: ``"01"`` inputs in {0, 1} (default) or ``"pm1"`` inputs in {-1, +1}.
        n_train: None (default) puts all 2^n inputs in the train split, the test split empty
            (the paper's volumes are over the full input space). An int draws a seeded
            ``torch.randperm`` split: first n_train rows train, the rest test.

    Inputs float32 [2^n, n]; targets float32 0/1 [N, 1] (BCE); labels int64. ``root`` is ignored.
    """
    del root
    check_seed(seed)
    check_count(n, "n", minimum=1)
    if n > 16:
        raise ValueError(f"n must be at most 16 (2^n inputs are materialised), got {n}")
    if encoding not in ("01", "pm1"):
        raise ValueError(f"encoding must be '01' or 'pm1', got {encoding!r}")
    bits = boolean_inputs(n)
    labels = boolean_truth_table(function, n)
    x = bits.float() if encoding == "01" else (2 * bits - 1).float()
    rows = 2 ** n
    if n_train is None:
        tr, te = torch.arange(rows), torch.arange(0)
        split = f"all {rows} inputs in train (row i = i in binary, MSB first); test empty"
    else:
        check_count(n_train, "n_train", minimum=1)
        if n_train > rows:
            raise ValueError(f"n_train must be at most the {rows} inputs, got {n_train}")
        perm = torch.randperm(rows, generator=generator(seed))
        tr, te = perm[:n_train], perm[n_train:]
        split = f"torch.randperm({rows}) with a CPU generator seeded {seed}: first {n_train} train"
    fname = function if isinstance(function, str) else "custom"
    table_int = sum(int(v) << i for i, v in enumerate(labels.tolist()))
    meta = {
        "n_train": int(tr.numel()), "n_test": int(te.numel()), "n": n, "encoding": encoding, "function": fname,
        "truth_table_hex": f"{table_int:0{rows // 4 if rows >= 4 else 1}x}", "split": split,
    }
    return Dataset(name="boolean", train_inputs=x[tr], train_targets=labels[tr].float().unsqueeze(1),
                   test_inputs=x[te], test_targets=labels[te].float().unsqueeze(1), n_classes=2,
                   input_shape=(n,), variant=f"boolean-{n}-{fname}", seed=seed, source="generated", meta=meta,
                   train_labels=labels[tr], test_labels=labels[te])
