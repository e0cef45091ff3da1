"""See and reclaim the store: every cached minimum and measurement, whether the current code
would produce it, and pruning (``volbench cache list | du | prune``).

A store folder (``VOLBENCH_STORE``, default ``~/.cache/volbench/minima``) holds

* minima: ``<root>/<key>/`` (``meta.json`` records the configuration, with the code provenance
  of :func:`volbench.store.provenance.training_provenance`, and when it was created);
* measurements: ``<root>/measurements/<key>.json`` (configuration with
  :func:`volbench.store.provenance.measurement_provenance` and the minimum's key);
* shards: ``<root>/shards/<key>.json``, finished pieces of distributed measurements
  (:mod:`volbench.store.shards`; configuration with the measurement provenance);
* leftovers: entries moved aside as corrupt (``*.corrupt-*``) and temporary folders or files of
  writers that died (``.tmp-*``, ``.old-*``, ``.*.tmp``).

An entry is *current* when its recorded provenance equals the current code's (and, for a
measurement, its minimum is in the store and current); otherwise it is *stale*: a run of the
current code computes under a different key and never reads it again. Leftovers are never
current.

:func:`prune` deletes entries older than a number of days and/or stale ones, each under the
store's per-key file lock taken without waiting: an entry whose lock another process holds
(it is being trained, written or read under the lock) is kept and reported.

Example:
    >>> import tempfile, torch
    >>> from volbench.store.minima import MinimaStore
    >>> s = MinimaStore(tempfile.mkdtemp())
    >>> _ = s.get_or_train({"what": "demo"}, lambda: ({"params": torch.zeros(3)}, {}))
    >>> [(e.kind, e.current) for e in entries(s.root)]
    [('minimum', False)]
    >>> report = prune(s.root, stale=True)
    >>> len(report.deleted), entries(s.root)
    (1, [])
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from volbench.store.shards import SHARDS_FOLDER

__all__ = ["CacheEntry", "PruneReport", "entries", "prune", "summarise"]

_KEY = r"[0-9a-f]{64}"
_MINIMUM_RE = re.compile(rf"^({_KEY})$")
_CORRUPT_DIR_RE = re.compile(rf"^({_KEY})\.corrupt-")
_TMP_DIR_RE = re.compile(rf"^\.(?:tmp|old)-({_KEY})-")
_MEASUREMENT_RE = re.compile(rf"^({_KEY})\.json$")
_CORRUPT_FILE_RE = re.compile(rf"^({_KEY})\.json\.corrupt-")
_TMP_FILE_RE = re.compile(rf"^\.({_KEY})\.json\..*\.tmp$")
_CKPT_SUFFIX = re.compile(r"-ckpt\d+$")  # measurements of a checkpoint: "<minimum key>-ckpt<epoch>"


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """One thing in the store.

    Attributes:
        kind: ``"minimum"``, ``"measurement"``, ``"shard"``, ``"corrupt"`` or ``"temporary"``.
        key: the 64-hex key it belongs to.
        path: its file or folder.
        bytes: its size on disk (sum of its files).
        created: when it was written (``meta.json``'s time for minima, else the file's mtime), UTC.
        label: a short description (data set, model, size, seed; estimator and landscape).
        current: True if the current code would produce (and read) it.
        why: for a stale entry, what differs ("" when current).
    """

    kind: str
    key: str
    path: Path
    bytes: int
    created: datetime
    label: str
    current: bool
    why: str

    def age_days(self, now: float | None = None) -> float:
        now = time.time() if now is None else now
        return (now - self.created.timestamp()) / 86_400.0


@dataclasses.dataclass(frozen=True)
class PruneReport:
    """What :func:`prune` did: entries deleted, entries kept because another process holds their
    lock, entries that could not be deleted (with the error), and the bytes freed."""

    deleted: tuple[CacheEntry, ...]
    locked: tuple[CacheEntry, ...]
    failed: tuple[tuple[CacheEntry, str], ...]
    freed_bytes: int
    dry_run: bool


def _size(path: Path) -> int:
    try:
        if path.is_dir():
            return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def _mtime(path: Path) -> datetime:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    except OSError:
        return datetime.fromtimestamp(0, tz=timezone.utc)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _minimum_label(config: dict[str, Any]) -> str:
    if "model" in config and "train_size" in config:
        extra = f" +{config['n_poison']} poison" if config.get("n_poison") else ""
        return (f"{config.get('dataset_variant') or config.get('dataset', '?')} {config['model']} "
                f"D={config['train_size']}{extra} seed={config.get('seed', '?')}")
    return str(config.get("what") or config.get("kind") or "minimum")


def _measurement_label(config: dict[str, Any]) -> str:
    land = config.get("landscape") or {}
    return (f"{config.get('estimator', '?')} K={config.get('n_directions', '?')} tau={config.get('threshold', '?')} "
            f"D={land.get('size', '?')} of {str(config.get('minimum_key', '?'))[:12]}")


def _shard_label(config: dict[str, Any]) -> str:
    start, stop = (config.get("directions") or ["?", "?"])[:2]
    return (f"{config.get('mode', '?')} piece [{start}, {stop}) tau={config.get('threshold', '?')} "
            f"of {config.get('cost', '?')}")


def _created(info: dict[str, Any] | None, path: Path) -> datetime:
    text = (info or {}).get("created")
    if isinstance(text, str):
        try:
            stamp = datetime.fromisoformat(text)
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    return _mtime(path)


def entries(root: str | os.PathLike[str], *, training: dict[str, Any] | None = None,
            measurement: dict[str, Any] | None = None) -> list[CacheEntry]:
    """Every entry under the store ``root``, minima first, each with its status.

    ``training`` / ``measurement``: the current provenance to compare with (default: computed
    from the installed code by :mod:`volbench.store.provenance`).
    """
    from volbench.store.provenance import compare_provenance, measurement_provenance, training_provenance

    root = Path(root)
    if not root.is_dir():
        return []
    training = training_provenance() if training is None else training
    measurement = measurement_provenance() if measurement is None else measurement
    out: list[CacheEntry] = []
    minima_status: dict[str, bool] = {}
    for path in sorted(root.iterdir()):
        name = path.name
        if (m := _MINIMUM_RE.match(name)) and path.is_dir():
            info = _read_json(path / "meta.json")
            config = (info or {}).get("config") if info else None
            if info is None:
                why = "meta.json is missing or unreadable"
            elif not isinstance(config, dict):
                why = "no configuration recorded"
            else:
                why = compare_provenance(config, training)
            minima_status[m.group(1)] = not why
            out.append(CacheEntry("minimum", m.group(1), path, _size(path), _created(info, path),
                                  _minimum_label(config) if isinstance(config, dict) else "minimum", not why, why))
        elif (m := _CORRUPT_DIR_RE.match(name)) and path.is_dir():
            out.append(CacheEntry("corrupt", m.group(1), path, _size(path), _mtime(path), "minimum moved aside",
                                  False, "moved aside as corrupt"))
        elif (m := _TMP_DIR_RE.match(name)) and path.is_dir():
            out.append(CacheEntry("temporary", m.group(1), path, _size(path), _mtime(path), "unfinished write",
                                  False, "left by a writer that stopped (or one writing now)"))
    for folder, kind in ((root / "measurements", "measurement"), (root / SHARDS_FOLDER, "shard")):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            name = path.name
            if (m := _MEASUREMENT_RE.match(name)) and path.is_file():
                record = _read_json(path)
                config = (record or {}).get("config")
                if not isinstance(config, dict):
                    why = f"unreadable {kind} file"
                    label = kind
                elif kind == "shard":  # a piece of a distributed measurement (volbench.store.shards)
                    label = _shard_label(config)
                    why = compare_provenance(config, measurement)
                else:
                    label = _measurement_label(config)
                    why = compare_provenance(config, measurement)
                    base = _CKPT_SUFFIX.sub("", str(config.get("minimum_key", "")))
                    if not why and base not in minima_status:
                        why = f"its minimum {base[:12]} is not in the store"
                    elif not why and not minima_status[base]:
                        why = f"its minimum {base[:12]} is stale"
                out.append(CacheEntry(kind, m.group(1), path, _size(path), _mtime(path), label, not why, why))
            elif (m := _CORRUPT_FILE_RE.match(name)) and path.is_file():
                out.append(CacheEntry("corrupt", m.group(1), path, _size(path), _mtime(path), f"{kind} moved aside",
                                      False, "moved aside as corrupt"))
            elif (m := _TMP_FILE_RE.match(name)) and path.is_file():
                out.append(CacheEntry("temporary", m.group(1), path, _size(path), _mtime(path), "unfinished write",
                                      False, "left by a writer that stopped (or one writing now)"))
    return out


def summarise(found: list[CacheEntry]) -> list[dict[str, Any]]:
    """Per kind: number of entries and bytes, current and stale (``volbench cache du``)."""
    rows = []
    for kind in ("minimum", "measurement", "shard", "corrupt", "temporary"):
        mine = [e for e in found if e.kind == kind]
        cur = [e for e in mine if e.current]
        rows.append({"kind": kind, "entries": len(mine), "bytes": sum(e.bytes for e in mine),
                     "current": len(cur), "current_bytes": sum(e.bytes for e in cur),
                     "stale": len(mine) - len(cur),
                     "stale_bytes": sum(e.bytes for e in mine) - sum(e.bytes for e in cur)})
    return rows


def _delete(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def prune(root: str | os.PathLike[str], *, older_than_days: float | None = None, stale: bool = False,
          dry_run: bool = False, found: list[CacheEntry] | None = None,
          on_delete: Callable[[CacheEntry], None] | None = None) -> PruneReport:
    """Delete the entries older than ``older_than_days`` and, with ``stale``, those the current
    code would not produce (and every leftover). Both criteria may be given (either selects).

    Each entry is deleted while holding its key's lock (``<root>/.locks/<key>.lock``), taken
    without waiting: if another process holds it, the entry is kept and listed in
    ``PruneReport.locked``. ``dry_run`` reports what would go and deletes nothing.
    """
    if older_than_days is None and not stale:
        raise ValueError("say what to prune: older_than_days=N (days) and/or stale=True")
    if older_than_days is not None and (isinstance(older_than_days, bool) or not older_than_days >= 0):
        raise ValueError(f"older_than_days must be a number of days >= 0, got {older_than_days!r}")
    root = Path(root)
    found = entries(root) if found is None else found
    now = time.time()
    chosen = [e for e in found if (stale and not e.current)
              or (older_than_days is not None and e.age_days(now) > older_than_days)]
    deleted, locked, failed = [], [], []
    locks = root / ".locks"
    for entry in chosen:
        if dry_run:
            deleted.append(entry)
            continue
        try:
            locks.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(locks / f"{entry.key}.lock"), timeout=0)
            lock.acquire()
        except Timeout:
            locked.append(entry)
            continue
        except OSError as err:
            failed.append((entry, f"cannot take its lock: {err}"))
            continue
        try:
            if entry.path.exists():
                _delete(entry.path)
            deleted.append(entry)
            if on_delete is not None:
                on_delete(entry)
        except OSError as err:
            failed.append((entry, str(err)))
        finally:
            lock.release()
    return PruneReport(tuple(deleted), tuple(locked), tuple(failed), sum(e.bytes for e in deleted), dry_run)
