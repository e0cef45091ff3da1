"""The store's measurement records: one JSON file per measurement, ``<root>/measurements/<key>.json``.

A record is written atomically (``volbench._io``) while the store's per-key lock
``<root>/.locks/<key>.lock`` is held, so ``volbench cache prune`` never deletes it mid-write, and
carries a SHA-256 of its content. Reading verifies it: a record that fails its checksum or does not
decode is moved aside (``<key>.json.corrupt-<time>``, warned) and read as a miss, so it is
recomputed. A write that fails (full disk, file-size limit, read-only store) warns and leaves no
partial file: the measurement just computed is returned uncached. The lab turns records into its
``Measurement`` objects (``volbench.lab.measure``); this module knows only JSON.

Example:
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> write_record(record_path(root, "abc"), {"log_volume": -3.5})
    >>> read_record(record_path(root, "abc"), dict)
    {'log_volume': -3.5}
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from volbench._io import atomic_write_text

__all__ = ["CacheWriteWarning", "CorruptCacheWarning", "record_path", "measurement_lock", "read_record",
           "write_record"]

T = TypeVar("T")


class CacheWriteWarning(UserWarning):
    """A measurement could not be cached (full disk, file-size limit, read-only store); it was
    returned anyway and no partial cache file was left."""


class CorruptCacheWarning(UserWarning):
    """A cached measurement failed its checksum or did not parse; it was moved aside and redone."""


def record_path(root: str | os.PathLike, key: str) -> Path:
    """Where the record of measurement ``key`` lives in the store at ``root``."""
    return Path(root) / "measurements" / f"{key}.json"


def measurement_lock(path: Path):
    """The file lock of the record at ``<root>/measurements/<key>.json``: the store's per-key lock
    ``<root>/.locks/<key>.lock``."""
    from filelock import FileLock

    locks = path.parent.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks / f"{path.stem}.lock"))


def _digest(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=True).encode()).hexdigest()


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` (with its checksum) atomically under its lock; warn, never raise, when the
    disk refuses it."""
    record = {**record, "sha256": _digest(record)}
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with measurement_lock(path):
            atomic_write_text(path, json.dumps(record, allow_nan=True), what="the measurement cache file",
                              kept="no partial file was left (pass store=None to measure without caching)")
    except OSError as exc:  # a full disk must not lose the measurement just computed
        warnings.warn(f"{exc}; the measurement is returned uncached and will be recomputed next time",
                      CacheWriteWarning, stacklevel=3)


def read_record(path: Path, decode: Callable[[dict[str, Any]], T]) -> T | None:
    """``decode(record)`` of the verified record at ``path``; None when there is none, or after
    moving a corrupt one aside (warned)."""
    try:
        text = path.read_text()
    except FileNotFoundError:  # none, or removed since the caller looked (volbench cache prune): a miss
        return None
    try:
        record = json.loads(text)
        digest = record.pop("sha256")
        if digest != _digest(record):
            raise ValueError(f"checksum mismatch (stored {digest[:12]}..., content {_digest(record)[:12]}...)")
        return decode(record)
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as err:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        try:
            os.replace(path, aside)
        except OSError:
            aside = None
        warnings.warn(f"cached measurement {path} is corrupt ({err}); "
                      f"{'moved aside to ' + str(aside) if aside else 'ignored'} and recomputed",
                      CorruptCacheWarning, stacklevel=3)
        return None
