"""Checked, atomic downloads with urllib.

A file is streamed into a temporary file next to its destination while its SHA-256 is
computed; only a file whose checksum matches is moved into place with ``os.replace`` (atomic
on one file system), so a reader never sees a partial or wrong file. A ``filelock`` lock on
``<dest>.lock`` keeps parallel test workers from downloading the same file twice.

Example (a local file:// URL; any urllib scheme works):
    >>> import hashlib, pathlib, tempfile
    >>> from volbench.data.download import download_file
    >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "src").write_bytes(b"hello")
    5
    >>> out = download_file((d / "src").as_uri(), d / "dst", sha256=hashlib.sha256(b"hello").hexdigest())
    >>> out.read_bytes()
    b'hello'
"""
from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable

from filelock import FileLock
from tqdm import tqdm

from .dataset import ChecksumError

__all__ = ["download_file", "sha256_of"]

_CHUNK = 1 << 20


def sha256_of(path: str | os.PathLike[str], *, unpack_gzip: bool = False) -> str:
    """SHA-256 of a file's bytes, or of its gzip-decompressed content when ``unpack_gzip``."""
    h = hashlib.sha256()
    opener: Callable = gzip.open if unpack_gzip else open
    with opener(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def download_file(url: str, dest: str | os.PathLike[str], *, sha256: str | None = None,
                  content_sha256: str | None = None, timeout: float = 60.0,
                  progress: bool = False) -> Path:
    """Download ``url`` to ``dest`` and check it; return ``dest``.

    Args:
        url: any URL urllib opens (https://, http://, file://).
        dest: destination file; its folder is created.
        sha256: expected SHA-256 of the downloaded bytes.
        content_sha256: expected SHA-256 of the gzip-decompressed bytes (for mirrors whose
            archives are not pinned but whose content is). At least one of the two is required:
            an unchecked download is refused.
        timeout: socket timeout in seconds (urllib's; 60 s is ample for 10 MB MNIST files).
        progress: show a tqdm progress bar on stderr.

    If ``dest`` already exists and matches, nothing is downloaded. On a mismatch the temporary
    file is deleted and ChecksumError names the URL, the expected and the actual checksum;
    ``dest`` is left untouched. Network errors propagate as ``urllib.error.URLError``/OSError.
    """
    if sha256 is None and content_sha256 is None:
        raise ValueError(f"refusing to download {url} without a checksum; pass sha256= or content_sha256=")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)

    def matches(path: Path) -> tuple[bool, str, str]:
        if sha256 is not None:
            actual = sha256_of(path)
            return actual == sha256, sha256, actual
        try:
            actual = sha256_of(path, unpack_gzip=True)
        except (OSError, EOFError) as e:  # not gzip, or a broken stream
            return False, str(content_sha256), f"<not a valid gzip file: {e}>"
        return actual == content_sha256, str(content_sha256), actual

    with FileLock(str(dest) + ".lock"):
        if dest.is_file() and matches(dest)[0]:
            return dest
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                total = response.headers.get("Content-Length") if hasattr(response, "headers") else None
                with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                          desc=dest.name, disable=not progress, leave=False) as bar:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            ok, expected, actual = matches(tmp)
            if not ok:
                kind = "file" if sha256 is not None else "unpacked content"
                raise ChecksumError(
                    f"download of {url} failed its check: SHA-256 of the {kind} is {actual}, expected {expected}. "
                    "The mirror served a different or corrupt file; nothing was written to "
                    f"{dest}. Try another mirror."
                )
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                tmp.unlink()
    return dest
