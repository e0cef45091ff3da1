"""Image data sets: MNIST, Fashion-MNIST, binarised MNIST, CIFAR-10, SVHN and UCI digits.

All images are float32 in [0, 1] with shape [N, C, H, W] (uint8 / 255; digits: value / 16), and
labels int64. Models flatten inputs themselves. Nothing is normalised beyond the [0, 1] scaling;
the papers' MLPs train on such inputs.

MNIST variants (``variant=`` option):

* ``"mnist-full"``: the four standard IDX files, 60,000 train / 10,000 test.
* ``"mnist-10k"``: only the t10k pair (what this repository's CI ships: the real 10,000-image
  MNIST test split). It is split once, by a fixed permutation that does not depend on the
  ``seed`` argument, into a train pool of 8,000 and a held-out test part of 2,000:
  ``numpy.random.RandomState(0).permutation(10000)``, first 8,000 train. A permutation rather
  than first/last blocks because the t10k file is ordered by writer population (its first
  5,000 digits are the cleaner ones; LeCun et al.), and a block split would shift the
  test distribution. NumPy's legacy RandomState stream is frozen, so the split is stable
  across NumPy versions.

Example (uses this repository's shipped 10k split):
    >>> from volbench.data import load
    >>> ds = load("mnist", root="/work/shared/data")         # doctest: +SKIP
    >>> ds.variant, ds.n_train, ds.n_test, tuple(ds.train_inputs.shape[1:])   # doctest: +SKIP
    ('mnist-10k', 8000, 2000, (1, 28, 28))

Size: the image data sets' loaders (MNIST, Fashion-MNIST, CIFAR-10, SVHN, UCI digits, binarised
MNIST), one short loader each over the shared IDX and checksum code.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from volbench._checks import check_count, check_seed
from volbench.data.dataset import ChecksumError, Dataset, DatasetNotFoundError, generator
from volbench.data.idx import IdxFile, KnownChecksum, find_idx, read_idx, verify
from volbench.data.roots import data_roots, not_found_message

__all__ = [
    "load_mnist", "load_fashion_mnist", "load_mnist_binary", "load_cifar10", "load_svhn", "load_digits",
    "ten_k_split", "MNIST_CHECKSUMS", "FASHION_MNIST_CHECKSUMS", "SVHN_CHECKSUMS", "SYNTHETIC_MARKER",
    "synthetic_marker", "locate_idx", "locate_cifar10", "locate_svhn",
]

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
FULL_STEMS = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
TEN_K_STEMS = (TEST_IMAGES, TEST_LABELS)

# Archive sums: the official .gz files as the mirrors in volbench.data.fetch serve them (the sums torchvision and
# TensorFlow pin). Content sums of the t10k pair: /work/shared/data/README.md (the recompressed
# copy shipped for CI; its content is the official test split). Content sums of the training
# pair are not published; an official archive is still recognised by its archive sum.
MNIST_CHECKSUMS: Mapping[str, KnownChecksum] = MappingProxyType({
    TRAIN_IMAGES: KnownChecksum(archive="440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                                provenance="official MNIST archive"),
    TRAIN_LABELS: KnownChecksum(archive="3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                                provenance="official MNIST archive"),
    TEST_IMAGES: KnownChecksum(archive="8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                               content="0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                               provenance="official MNIST t10k images, unpacked"),
    TEST_LABELS: KnownChecksum(archive="f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                               content="ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                               provenance="official MNIST t10k labels, unpacked"),
})
# Content sums measured on Debian's dataset-fashion-mnist package (recompressed archives, so the
# archive sums differ from Zalando's). Its content is Zalando's data: first labels 9 0 0 3 0 2 7 2 5 5
# (train) and 9 2 1 1 6 1 4 6 5 7 (test), exactly 6,000 / 1,000 images per class. Archive sums:
# Zalando's own .gz files as their mirror serves them (the SHA-256 sums that batchup and other
# dataset libraries pin; Zalando publishes MD5s).
_FASHION_PROVENANCE = "Fashion-MNIST content as packaged by Debian dataset-fashion-mnist"
FASHION_MNIST_CHECKSUMS: Mapping[str, KnownChecksum] = MappingProxyType({
    TRAIN_IMAGES: KnownChecksum(archive="08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
                                content="c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                                provenance=_FASHION_PROVENANCE),
    TRAIN_LABELS: KnownChecksum(archive="b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
                                content="bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                                provenance=_FASHION_PROVENANCE),
    TEST_IMAGES: KnownChecksum(archive="78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
                               content="5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                               provenance=_FASHION_PROVENANCE),
    TEST_LABELS: KnownChecksum(archive="42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
                               content="0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                               provenance=_FASHION_PROVENANCE),
})
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian: dataset-fashion-mnist

# A folder holding this file holds generated test fixtures in a real data set's file format (see
# ``volbench.data.fixtures``): loaders check its files against the sums it records, never against
# the real data's, and name the variant "<variant>-synthetic", so such data is never taken for real.
SYNTHETIC_MARKER = "volbench-synthetic.json"

TEN_K_SPLIT_SEED = 0      # numpy RandomState seed of the fixed 10k split; independent of `seed`
TEN_K_TRAIN = 8_000       # train pool of the 10k variant; the last 2,000 of the permutation are test


@dataclasses.dataclass(frozen=True)
class _IdxFamily:
    name: str                       # registry name, e.g. "mnist"
    label: str                      # variant prefix, e.g. "mnist"
    subdirs: tuple[str, ...]        # folders searched inside each data root
    system_dirs: tuple[Path, ...]   # absolute folders searched after all roots
    checksums: Mapping[str, KnownChecksum]
    class_names: tuple[str, ...]


_MNIST = _IdxFamily("mnist", "mnist", ("mnist", "MNIST/raw", "mnist-10k"), (), MNIST_CHECKSUMS,
                    tuple(str(i) for i in range(10)))
_FASHION = _IdxFamily(
    "fashion_mnist", "fashion-mnist", ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "fashion-mnist-10k"),
    (FASHION_MNIST_SYSTEM_DIR,), FASHION_MNIST_CHECKSUMS,
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)
IDX_FAMILIES: Mapping[str, _IdxFamily] = MappingProxyType({"mnist": _MNIST, "fashion_mnist": _FASHION})


def _one_line(name: str) -> str:
    """The one-line reason of a missing data set (how to get it, where its files go)."""
    from volbench.data.fetch import unavailable_message  # the download catalogue; kept out of the reading code

    return unavailable_message(name)


def synthetic_marker(folder: Path) -> dict[str, Any] | None:
    """The record of a folder of generated fixtures (``SYNTHETIC_MARKER``), or None for real data."""
    path = Path(folder) / SYNTHETIC_MARKER
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable synthetic-data record ({e}); delete the folder and regenerate it") from e
    if not isinstance(record, dict) or record.get("synthetic") is not True or not isinstance(record.get("files"), dict):
        raise ValueError(f"{path}: not a volbench synthetic-data record; delete the folder and regenerate it")
    return record


def _check_synthetic(marker: dict[str, Any], name: str, path: str, sha256_file: str) -> dict[str, object]:
    """A fixture file must be the one its generator wrote (the sum in the marker)."""
    expected = marker["files"].get(name)
    if expected != sha256_file:
        raise ChecksumError(f"{path}: SHA-256 {sha256_file}, expected {expected} from {SYNTHETIC_MARKER}: the "
                            f"generated fixture was altered; delete its folder and regenerate it")
    return {"path": path, "sha256_file": sha256_file, "verified": "synthetic"}
_VARIANTS = ("auto", "full", "10k")


def ten_k_split() -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed (train, test) index split of a 10,000-image t10k file: 8,000 / 2,000 positions of
    ``numpy.random.RandomState(0).permutation(10000)``. Independent of any ``seed`` argument."""
    perm = np.random.RandomState(TEN_K_SPLIT_SEED).permutation(10_000).astype(np.int64)
    return torch.from_numpy(perm[:TEN_K_TRAIN].copy()), torch.from_numpy(perm[TEN_K_TRAIN:].copy())


def _layout(family: _IdxFamily) -> str:
    folders = ", ".join(f"{d}/" for d in family.subdirs)
    files = ", ".join(f"{s}[.gz]" for s in FULL_STEMS)
    return (f"  one of {folders} holding the four IDX files ({files}) for the full set,\n"
            f"  or just {TEST_IMAGES}[.gz] and {TEST_LABELS}[.gz] for the 10k variant")


def _locations(family: _IdxFamily, root: Any) -> tuple[list[list[Path]], list[Path]]:
    """Candidate folders grouped by data root (search order), and the flat list for messages."""
    groups = [[r / sub for sub in family.subdirs] for r in data_roots(root)]
    groups += [[d] for d in family.system_dirs]
    return groups, [p for g in groups for p in g]


def _find_set(folder: Path, stems: Sequence[str]) -> dict[str, Path] | None:
    found = {s: find_idx(folder, s) for s in stems}
    return None if any(p is None for p in found.values()) else found  # type: ignore[misc]


def _locate(family: _IdxFamily, root: Any, variant: str) -> tuple[str, dict[str, Path]] | None:
    """("full" | "10k", files) of the first folder holding a set, in search order. ``"auto"``
    takes a full set wherever one is found before any 10k pair (a downloaded full set in the user
    cache wins over a 10k pair in an earlier root)."""
    groups, _ = _locations(family, root)
    kinds = (("full", FULL_STEMS), ("10k", TEN_K_STEMS))
    for kind, stems in kinds:
        if variant not in ("auto", kind):
            continue
        for group in groups:
            for folder in group:
                files = _find_set(folder, stems)
                if files:
                    return kind, files
    return None


def locate_idx(name: str, root: Any = None, variant: str = "auto") -> tuple[str, Path] | None:
    """("full" | "10k", folder) where ``load(name)`` would read MNIST or Fashion-MNIST, or None."""
    hit = _locate(IDX_FAMILIES[name], root, variant)
    return None if hit is None else (hit[0], next(iter(hit[1].values())).parent)


def _images_to_tensor(array: np.ndarray, index: np.ndarray | None = None) -> torch.Tensor:
    """uint8 [N, H, W] -> float32 [N, 1, H, W] in [0, 1] (a fresh tensor, never the cached array)."""
    a = array if index is None else array[index]
    return torch.from_numpy(a.astype(np.float32) / np.float32(255.0)).unsqueeze(1)


def _check_pair(images: IdxFile, labels: IdxFile, n_classes: int) -> None:
    im, lb = images.array, labels.array
    if im.ndim != 3 or im.dtype != np.uint8:
        raise ValueError(f"{images.path}: expected uint8 images [N, H, W], got {im.dtype} {im.shape}")
    if lb.ndim != 1 or lb.dtype != np.uint8:
        raise ValueError(f"{labels.path}: expected uint8 labels [N], got {lb.dtype} {lb.shape}")
    if im.shape[0] != lb.shape[0]:
        raise ValueError(f"{images.path} has {im.shape[0]} images but {labels.path} has {lb.shape[0]} labels")
    if lb.size and int(lb.max()) >= n_classes:
        raise ValueError(f"{labels.path}: label {int(lb.max())} out of range for {n_classes} classes")


def _load_idx_family(family: _IdxFamily, *, root: Any, seed: int, variant: str, download: bool,
                     mirrors: Sequence[str] | None) -> Dataset:
    check_seed(seed)
    if variant not in _VARIANTS:
        raise ValueError(f"variant must be one of {_VARIANTS}, got {variant!r}")
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False, got {download!r}")
    # With download=True, "auto" means: use the full set, fetching it if no root has it.
    hit = _locate(family, root, "full" if (download and variant == "auto") else variant)
    if hit is None and download:
        from volbench.data.fetch import fetch_idx  # the download code lives apart from the reading code

        stems = TEN_K_STEMS if variant == "10k" else FULL_STEMS
        hit = ("10k" if variant == "10k" else "full", fetch_idx(family, stems, mirrors=mirrors))
    if hit is None:
        _, searched = _locations(family, root)
        raise DatasetNotFoundError(not_found_message(family.name, searched, _layout(family), download_hint=True),
                                   dataset=family.name, reason=_one_line(family.name))
    kind, paths = hit
    files = {stem: read_idx(p) for stem, p in paths.items()}
    marker = synthetic_marker(next(iter(paths.values())).parent)
    if marker is not None:
        checks = {stem: _check_synthetic(marker, Path(f.path).name, f.path, f.sha256_file) for stem, f in files.items()}
    else:
        checks = {stem: verify(f, family.checksums.get(stem)) for stem, f in files.items()}
    n_classes = len(family.class_names)
    _check_pair(files[TEST_IMAGES], files[TEST_LABELS], n_classes)
    test_im, test_lb = files[TEST_IMAGES].array, files[TEST_LABELS].array
    if kind == "full":
        _check_pair(files[TRAIN_IMAGES], files[TRAIN_LABELS], n_classes)
        train_x = _images_to_tensor(files[TRAIN_IMAGES].array)
        train_y = torch.from_numpy(files[TRAIN_LABELS].array.astype(np.int64))
        test_x = _images_to_tensor(test_im)
        test_y = torch.from_numpy(test_lb.astype(np.int64))
        split = "official train/test files"
    else:
        if test_im.shape[0] != 10_000:
            raise ValueError(f"{files[TEST_IMAGES].path}: the 10k variant needs the 10,000-image t10k file, "
                             f"got {test_im.shape[0]} images")
        tr, te = (i.numpy() for i in ten_k_split())
        train_x, test_x = _images_to_tensor(test_im, tr), _images_to_tensor(test_im, te)
        train_y = torch.from_numpy(test_lb[tr].astype(np.int64))
        test_y = torch.from_numpy(test_lb[te].astype(np.int64))
        split = (f"t10k file split by numpy.random.RandomState({TEN_K_SPLIT_SEED}).permutation(10000): "
                 f"first {TEN_K_TRAIN} train, last {10_000 - TEN_K_TRAIN} test (fixed; independent of seed)")
    folder = str(next(iter(paths.values())).parent)
    meta = {
        "n_train": int(train_x.shape[0]), "n_test": int(test_x.shape[0]),
        "split": split, "split_seed": TEN_K_SPLIT_SEED if kind == "10k" else None,
        "preprocessing": "uint8 / 255 -> float32 in [0, 1], shape [N, 1, H, W]; no mean/std normalisation",
        "files": checks, "class_names": list(family.class_names),
    }
    if marker is not None:
        meta["synthetic"] = {k: v for k, v in marker.items() if k != "files"}
    return Dataset(name=family.name, train_inputs=train_x, train_targets=train_y, test_inputs=test_x,
                   test_targets=test_y, n_classes=n_classes, input_shape=tuple(train_x.shape[1:]),
                   variant=f"{family.label}-{kind}" + ("-synthetic" if marker is not None else ""), seed=seed,
                   source=folder, meta=meta)


def load_mnist(*, root: Any = None, seed: int = 0, variant: str = "auto", download: bool = False,
               mirrors: Sequence[str] | None = None) -> Dataset:
    """MNIST (LeCun, Cortes, Burges) from IDX files.

    Args:
        root: data root(s) searched before ``$VOLBENCH_DATA`` and the user cache.
        seed: recorded only; both variants' splits are fixed.
        variant: ``"auto"`` (the full set if any data root holds it, else the 10k pair; each in
            search order), ``"full"`` or ``"10k"``.
        download: fetch the missing files from ``mirrors`` into the user cache (SHA-256 checked,
            atomic). With ``variant="auto"`` this fetches the full set unless a root holds it.
        mirrors: base URLs tried in order (default ``volbench.data.fetch.MNIST_MIRRORS``).

    Raises DatasetNotFoundError (a FileNotFoundError) naming VOLBENCH_DATA, the folders searched
    and the layout; ChecksumError if a file's content differs from the known checksum.
    """
    return _load_idx_family(_MNIST, root=root, seed=seed, variant=variant, download=download, mirrors=mirrors)


def load_fashion_mnist(*, root: Any = None, seed: int = 0, variant: str = "auto", download: bool = False,
                       mirrors: Sequence[str] | None = None) -> Dataset:
    """Fashion-MNIST (Xiao, Rasul, Vollgraf 2017), same IDX format and options as ``load_mnist``.

    Also searched, after every data root: ``/usr/share/datasets/fashion-mnist`` (Debian's
    ``dataset-fashion-mnist`` package: 60,000 train + 10,000 test).
    """
    return _load_idx_family(_FASHION, root=root, seed=seed, variant=variant, download=download, mirrors=mirrors)


def load_mnist_binary(*, root: Any = None, seed: int = 0, variant: str = "auto", download: bool = False,
                      mirrors: Sequence[str] | None = None) -> Dataset:
    """Binarised MNIST of Zhang et al. (2021, Sec. 5.2): digits 0-4 -> class 0, 5-9 -> class 1.

    Targets are float32 [N, 1] (for BCE with logits); ``*_labels`` hold the int64 0/1 class. The
    original digit of example i is ``load("mnist")``'s label i (same files, same fixed split).
    Options as ``load_mnist``.
    """
    base = _load_idx_family(_MNIST, root=root, seed=seed, variant=variant, download=download, mirrors=mirrors)
    tr = (base.train_targets >= 5).to(torch.int64)
    te = (base.test_targets >= 5).to(torch.int64)
    meta = dict(base.meta, binarisation="digits 0-4 -> 0, 5-9 -> 1 (Zhang et al. 2021)",
                class_names=["0-4", "5-9"])
    return dataclasses.replace(
        base, name="mnist_binary", train_targets=tr.to(torch.float32).unsqueeze(1),
        test_targets=te.to(torch.float32).unsqueeze(1), train_labels=tr, test_labels=te, n_classes=2, meta=meta)


# ---------------------------------------------------------------------------------------- CIFAR-10
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
_CIFAR_SUBDIRS = ("cifar-10-batches-py", "cifar10/cifar-10-batches-py", "CIFAR10/cifar-10-batches-py")
_CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only. The CIFAR batches are pickles; a
    restricted unpickler keeps a tampered batch file from running code on load."""

    _ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to unpickle {module}.{name}: CIFAR batch files hold only numpy arrays and lists")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    raw = path.read_bytes()
    try:
        d = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({e})") from e
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise ValueError(f"{path}: a CIFAR-10 batch is a dict with b'data' and b'labels'")
    data = np.asarray(d[b"data"])
    labels = np.asarray(d[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise ValueError(f"{path}: expected uint8 data [N, 3072] and N labels, got {data.dtype} "
                         f"{data.shape} and {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels must lie in 0..9")
    return data, labels, hashlib.sha256(raw).hexdigest()


def load_cifar10(*, root: Any = None, seed: int = 0) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009) from the python-pickle batches ``cifar-10-batches-py/``
    (``data_batch_1..5`` = 50,000 train, ``test_batch`` = 10,000 test), as float32
    [N, 3, 32, 32] in [0, 1]. Each row of ``data`` is 1,024 red, then green, then blue values,
    row-major, so it reshapes directly to [3, 32, 32]. ``seed`` is recorded only."""
    check_seed(seed)
    folder, candidates = _find_cifar10(root)
    if folder is None:
        layout = (f"  {' or '.join(s + '/' for s in _CIFAR_SUBDIRS)} holding "
                  f"{', '.join(_CIFAR_FILES)} (the python version of CIFAR-10, as extracted from "
                  "cifar-10-python.tar.gz)")
        raise DatasetNotFoundError(not_found_message("cifar10", candidates, layout, download_hint=False),
                                   dataset="cifar10", reason=_one_line("cifar10"))
    parts = [_read_cifar_batch(folder / f) for f in _CIFAR_FILES]
    marker = synthetic_marker(folder)
    train_x = np.concatenate([p[0] for p in parts[:-1]])
    train_y = np.concatenate([p[1] for p in parts[:-1]])

    def to_tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x.astype(np.float32) / np.float32(255.0)).reshape(-1, 3, 32, 32)

    meta = {
        "n_train": int(train_x.shape[0]), "n_test": int(parts[-1][0].shape[0]), "split": "official batches",
        "preprocessing": "uint8 / 255 -> float32 in [0, 1], shape [N, 3, 32, 32]; no mean/std normalisation",
        "files": {f: (_check_synthetic(marker, f, str(folder / f), p[2]) if marker is not None else
                      {"path": str(folder / f), "sha256_file": p[2], "verified": "unverified"})
                  for f, p in zip(_CIFAR_FILES, parts)},
        "class_names": list(_CIFAR_CLASSES),
    }
    if marker is not None:
        meta["synthetic"] = {k: v for k, v in marker.items() if k != "files"}
    return Dataset(name="cifar10", train_inputs=to_tensor(train_x), train_targets=torch.from_numpy(train_y),
                   test_inputs=to_tensor(parts[-1][0]), test_targets=torch.from_numpy(parts[-1][1]),
                   n_classes=10, input_shape=(3, 32, 32), variant="cifar10" + ("-synthetic" if marker else ""),
                   seed=seed, source=str(folder), meta=meta)


def _find_cifar10(root: Any) -> tuple[Path | None, list[Path]]:
    candidates = [r / sub for r in data_roots(root) for sub in _CIFAR_SUBDIRS]
    return next((c for c in candidates if all((c / f).is_file() for f in _CIFAR_FILES)), None), candidates


def locate_cifar10(root: Any = None) -> Path | None:
    """The folder ``load("cifar10")`` would read, or None."""
    return _find_cifar10(root)[0]


# -------------------------------------------------------------------------------------------- SVHN
_SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
_SVHN_SUBDIRS = ("svhn", "SVHN", ".")
# SHA-256 of the official files as http://ufldl.stanford.edu/housenumbers/ serves them (the sums
# torchvision's dataset prototypes pin; the site publishes MD5s e26dedcc... and eb5a983b...).
SVHN_CHECKSUMS: Mapping[str, str] = MappingProxyType({
    "train_32x32.mat": "435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8",
    "test_32x32.mat": "cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b",
})


def _read_svhn(path: Path) -> tuple[torch.Tensor, torch.Tensor, str]:
    from scipy.io import loadmat  # scipy.io is a heavy import; only SVHN needs it

    try:
        d = loadmat(path)
    except (ValueError, OSError, TypeError) as e:
        raise ValueError(f"{path}: not a readable SVHN .mat file ({e})") from e
    if "X" not in d or "y" not in d:
        raise ValueError(f"{path}: an SVHN .mat file holds 'X' [32, 32, 3, N] and 'y' [N, 1]")
    x, y = np.asarray(d["X"]), np.asarray(d["y"]).reshape(-1).astype(np.int64)
    if x.dtype != np.uint8 or x.shape[:3] != (32, 32, 3) or x.ndim != 4 or x.shape[3] != y.shape[0]:
        raise ValueError(f"{path}: expected uint8 X of shape [32, 32, 3, N] and N labels, got {x.dtype} "
                         f"{x.shape} and {y.shape}")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise ValueError(f"{path}: SVHN labels must lie in 1..10 (10 is the digit 0)")
    y = np.where(y == 10, 0, y)  # SVHN stores the digit 0 as label 10
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.float32) / np.float32(255.0))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return images, torch.from_numpy(y), digest


def load_svhn(*, root: Any = None, seed: int = 0) -> Dataset:
    """SVHN cropped digits (Netzer et al. 2011) from ``train_32x32.mat`` / ``test_32x32.mat``
    (73,257 / 26,032 images), via ``scipy.io.loadmat``: X [32, 32, 3, N] -> float32
    [N, 3, 32, 32] in [0, 1]; label 10 (the digit 0) -> 0. ``seed`` is recorded only."""
    check_seed(seed)
    folder, candidates = _find_svhn(root)
    if folder is None:
        layout = "  svhn/, SVHN/ or the root itself holding train_32x32.mat and test_32x32.mat (cropped digits)"
        raise DatasetNotFoundError(not_found_message("svhn", candidates, layout, download_hint=False), dataset="svhn",
                                   reason=_one_line("svhn"))
    marker = synthetic_marker(folder)
    (train_x, train_y, h_train), (test_x, test_y, h_test) = (_read_svhn(folder / f) for f in _SVHN_FILES)

    def check(f: str, h: str) -> dict[str, object]:
        if marker is not None:
            return _check_synthetic(marker, f, str(folder / f), h)
        # A re-saved .mat differs in bytes but may hold the same arrays, so no match is not an error.
        return {"path": str(folder / f), "sha256_file": h,
                "verified": "file" if SVHN_CHECKSUMS[f] == h else "unverified"}

    meta = {
        "n_train": int(train_x.shape[0]), "n_test": int(test_x.shape[0]), "split": "official train/test files",
        "preprocessing": "uint8 / 255 -> float32 in [0, 1], [32,32,3,N] -> [N,3,32,32]; label 10 -> 0",
        "files": {f: check(f, h) for f, h in zip(_SVHN_FILES, (h_train, h_test))},
    }
    if marker is not None:
        meta["synthetic"] = {k: v for k, v in marker.items() if k != "files"}
    return Dataset(name="svhn", train_inputs=train_x, train_targets=train_y, test_inputs=test_x,
                   test_targets=test_y, n_classes=10, input_shape=(3, 32, 32),
                   variant="svhn-cropped" + ("-synthetic" if marker else ""), seed=seed, source=str(folder), meta=meta)


def _find_svhn(root: Any) -> tuple[Path | None, list[Path]]:
    candidates = [(r / sub if sub != "." else r) for r in data_roots(root) for sub in _SVHN_SUBDIRS]
    return next((c for c in candidates if all((c / f).is_file() for f in _SVHN_FILES)), None), candidates


def locate_svhn(root: Any = None) -> Path | None:
    """The folder ``load("svhn")`` would read, or None."""
    return _find_svhn(root)[0]


# ------------------------------------------------------------------------------------- UCI digits
DIGITS_N_TRAIN = 1_024  # Scherlis & Belrose: 1,024 training digits, the other 773 held out


def load_digits(*, root: Any = None, seed: int = 0, n_train: int = DIGITS_N_TRAIN) -> Dataset:
    """UCI optical handwritten digits (Alpaydin & Kaynak 1998) as bundled with scikit-learn:
    1,797 images of 8x8 pixels with values 0..16, scaled by 1/16 to float32 [N, 1, 8, 8] in [0, 1].

    Split: ``torch.randperm(1797, generator=seeded with seed)``, first ``n_train`` train, the
    rest test. The default 1,024 / 773 is the split size of Scherlis & Belrose (Sec. 6).
    ``root`` is ignored (the data ships inside scikit-learn).
    """
    del root
    from sklearn.datasets import load_digits as _sk_load_digits  # deferred: sklearn imports slowly

    check_seed(seed)
    bunch = _sk_load_digits()
    data = np.asarray(bunch.data, dtype=np.float64)
    n = data.shape[0]
    check_count(n_train, "n_train", minimum=1)
    if n_train >= n:
        raise ValueError(f"n_train must be below the {n} digits so a test part remains, got {n_train}")
    perm = torch.randperm(n, generator=generator(seed))
    x = torch.from_numpy((data / 16.0).astype(np.float32)).reshape(n, 1, 8, 8)
    y = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    tr, te = perm[:n_train], perm[n_train:]
    meta = {
        "n_train": int(n_train), "n_test": int(n - n_train),
        "split": f"torch.randperm({n}) with a CPU generator seeded {seed}: first {n_train} train, rest test",
        "preprocessing": "value / 16 -> float32 in [0, 1], shape [N, 1, 8, 8]",
        "sha256_content": hashlib.sha256(data.tobytes()).hexdigest(),
    }
    return Dataset(name="digits", train_inputs=x[tr], train_targets=y[tr], test_inputs=x[te],
                   test_targets=y[te], n_classes=10, input_shape=(1, 8, 8), variant=f"uci-digits-{n_train}",
                   seed=seed, source="scikit-learn", meta=meta)
