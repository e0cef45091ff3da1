"""Checked, atomic downloads with urllib.

A file is streamed into a temporary file next to its destination while its SHA-256 is
computed; only a file whose checksum matches is moved into place with ``os.replace`` (atomic
on one file system), so a reader never sees a partial or wrong file. A ``filelock`` lock on
``<dest>.lock`` keeps parallel test workers from downloading the same file twice.

Faults, and what each leaves behind:

* no network / a firewalled host: before any transfer the server (or the configured proxy) is
  probed with a connect timeout of ``CONNECT_TIMEOUT`` seconds, name resolution included, so the
  attempt fails within seconds, not minutes (``DownloadError``); an unreachable host is
  remembered for ``UNREACHABLE_MEMORY`` seconds, so later files and data sets fail at once;
* a corrupt or wrong file: deleted, ``ChecksumError`` with the expected and the actual SHA-256;
* an interrupted transfer (connection cut, Ctrl-C, a short body): the temporary file is deleted;
  after a hard kill the next attempt deletes the stale ``.<name>.*.part`` file under the lock;
* a full disk: the temporary file is deleted and the OSError names the file, what was kept
  (files already complete) and the fix.

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
import http.client
import os
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock
from tqdm import tqdm

from volbench._io import explain_write_error
from volbench.data.dataset import ChecksumError

__all__ = ["download_file", "sha256_of", "check_reachable", "DownloadError", "CONNECT_TIMEOUT", "READ_TIMEOUT"]

_CHUNK = 1 << 20
CONNECT_TIMEOUT = 5.0   # s to resolve and reach the server: a firewall that drops packets would otherwise hang
READ_TIMEOUT = 30.0     # s without a byte before a transfer is abandoned (urllib's socket timeout)
UNREACHABLE_MEMORY = 300.0  # s an unreachable host:port is not probed again in this process

_unreachable: dict[tuple[str, int], tuple[float, str]] = {}
_unreachable_lock = threading.Lock()


class DownloadError(OSError):
    """A download failed for a network reason (unreachable, timed out, cut short); nothing was
    written to the destination."""


def sha256_of(path: str | os.PathLike[str], *, unpack_gzip: bool = False) -> str:
    """SHA-256 of a file's bytes, or of its gzip-decompressed content when ``unpack_gzip``."""
    h = hashlib.sha256()
    opener: Callable = gzip.open if unpack_gzip else open
    with opener(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _endpoint(url: str) -> tuple[str, int] | None:
    """The (host, port) a download of ``url`` connects to first: the proxy if one applies."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if p.hostname:
            return p.hostname, p.port or (443 if p.scheme == "https" else 80)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def check_reachable(url: str, timeout: float | None = None) -> None:
    """Raise DownloadError within about ``timeout`` seconds (default ``CONNECT_TIMEOUT``) if the
    server of ``url`` (or its proxy) cannot be reached; file:// and other local schemes pass."""
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    endpoint = _endpoint(url)
    if endpoint is None:
        return
    now = time.monotonic()
    with _unreachable_lock:
        seen = _unreachable.get(endpoint)
    if seen is not None and now - seen[0] < UNREACHABLE_MEMORY:
        raise DownloadError(f"cannot reach {endpoint[0]}:{endpoint[1]} ({seen[1]}, {now - seen[0]:.0f} s ago)")
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            socket.create_connection(endpoint, timeout=timeout).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(err)

    worker = threading.Thread(target=probe, name="volbench-probe", daemon=True)
    worker.start()
    worker.join(timeout + 1.0)  # getaddrinfo has no timeout of its own: bound it here
    if outcome and outcome[0] is None:
        return
    why = f"no answer within {timeout:g} s" if not outcome else (str(outcome[0]) or type(outcome[0]).__name__)
    with _unreachable_lock:
        _unreachable[endpoint] = (now, why)
    raise DownloadError(f"cannot reach {endpoint[0]}:{endpoint[1]} ({why}); no network, or a firewall in the way")


def download_file(url: str, dest: str | os.PathLike[str], *, sha256: str | None = None,
                  content_sha256: str | None = None, timeout: float = READ_TIMEOUT,
                  connect_timeout: float | None = None, progress: Any = False) -> Path:
    """Download ``url`` to ``dest`` and check it; return ``dest``.

    Args:
        url: any URL urllib opens (https://, http://, file://).
        dest: destination file; its folder is created.
        sha256: expected SHA-256 of the downloaded bytes.
        content_sha256: expected SHA-256 of the gzip-decompressed bytes (for mirrors whose
            archives are not pinned but whose content is). At least one of the two is required:
            an unchecked download is refused.
        timeout: seconds without data before the transfer is abandoned.
        connect_timeout: seconds to reach the server (default ``CONNECT_TIMEOUT``; see
            :func:`check_reachable`).
        progress: show a tqdm progress bar: True on stderr where it is a terminal, or a writable
            stream to draw it on (the claim cases pass the terminal, which pytest does not capture).

    If ``dest`` already exists and matches, nothing is downloaded. On a mismatch the temporary
    file is deleted and ChecksumError names the URL, the expected and the actual checksum;
    ``dest`` is left untouched. Network failures raise DownloadError (an OSError); a failed
    write (full disk) raises an OSError naming ``dest``, what was kept and the fix.
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

    kept = (f"no partial file was left; files already complete in {dest.parent} were kept. "
            f"Download into another data root with `volbench data fetch NAME --root DIR`")
    with FileLock(str(dest) + ".lock"):
        if dest.is_file() and matches(dest)[0]:
            return dest
        # Left by a download that was killed (no finally ran); we hold the lock, so no live writer owns it.
        for stale in dest.parent.glob(f".{dest.name}.*.part"):
            stale.unlink(missing_ok=True)
        check_reachable(url, connect_timeout)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            # Unbuffered: a failed write raises here, not again from a buffer flush on close.
            with os.fdopen(fd, "wb", buffering=0) as out:
                try:
                    response = urllib.request.urlopen(url, timeout=timeout)
                except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                    raise DownloadError(f"{url}: {getattr(e, 'reason', None) or e}") from e
                with response:
                    total = response.headers.get("Content-Length") if hasattr(response, "headers") else None
                    received = 0
                    # read1: whatever has arrived (up to 1 MiB), so the file and the bar grow as data comes.
                    read = getattr(response, "read1", response.read)
                    stream = progress if hasattr(progress, "write") else None
                    with tqdm(total=int(total) if total else None, unit="B", unit_scale=True, desc=dest.name,
                              file=stream, disable=False if stream else (None if progress else True),
                              leave=False) as bar:
                        while True:
                            try:
                                chunk = read(_CHUNK)
                            except (OSError, http.client.HTTPException) as e:
                                raise DownloadError(f"{url}: the transfer broke off after {received} bytes "
                                                    f"({e})") from e
                            if not chunk:
                                break
                            try:
                                view = memoryview(chunk)
                                while view:  # a raw write may take part of the chunk
                                    view = view[out.write(view):]
                            except OSError as e:
                                raise explain_write_error(e, dest, what="the download", kept=kept) from e
                            received += len(chunk)
                            bar.update(len(chunk))
                    if total and received != int(total):
                        raise DownloadError(f"{url}: the transfer broke off after {received} of {total} bytes")
                try:
                    os.fsync(out.fileno())
                except OSError as e:
                    raise explain_write_error(e, dest, what="the download", kept=kept) from e
            ok, expected, actual = matches(tmp)
            if not ok:
                kind = "file" if sha256 is not None else "unpacked content"
                raise ChecksumError(
                    f"download of {url} failed its check: SHA-256 of the {kind} is {actual}, expected {expected}. "
                    "The mirror served a different or corrupt file; it was deleted and nothing was written to "
                    f"{dest}. Try another mirror."
                )
            try:
                os.replace(tmp, dest)
            except OSError as e:
                raise explain_write_error(e, dest, what="the download", kept=kept) from e
        finally:
            if tmp.exists():
                tmp.unlink()
    return dest
