"""A cache of trained minima, safe for several processes at once.

Training a minimum is the expensive step of every claim case (500 epochs of an MNIST MLP, 5,000
of the modular one), and many cases share minima, so each trained minimum is stored once under a
key derived from everything that determines it::

    key = SHA-256( canonical JSON of {"recipe_version": RECIPE_VERSION, "config": config} )

where ``config`` is the whole configuration: data name and variant, subset description (or
:func:`fingerprint` of the indices), data and model seeds, model name and options, train config
(``TrainConfig.as_dict()``), epochs. Canonical JSON: sorted keys, no whitespace, ASCII, no NaN;
tuples are lists. Bump :data:`RECIPE_VERSION` when the training code changes in a way that changes
results, so old entries stop matching.

Layout (one folder per key under ``root``)::

    <root>/<key>/weights.safetensors   flat params, optimiser moments, checkpoints (named tensors)
    <root>/<key>/meta.json             user metadata (losses, accuracies, seconds, n_params),
                                       config, library versions, created time, weights SHA-256
    <root>/.locks/<key>.lock           filelock, one per key
    <root>/.tmp-<key>-*/               entries being written (garbage if their writer died)
    <root>/<key>.corrupt-<time>-<pid>  entries that failed verification, moved aside

Guarantees:

* Atomic writes: an entry is written into a temporary folder inside ``root``, files and folder
  fsynced, then renamed into place in one ``os.rename``; readers see a whole entry or none.
* One trainer per key: :meth:`MinimaStore.get_or_train` holds the key's file lock while it trains;
  other processes block on the lock and then read the finished entry. The lock is an OS lock
  (``flock``), released if the holder dies, so a crashed trainer never deadlocks the others.
* Verified reads: the reader hashes the exact bytes it loads and compares with ``meta.json``; a
  corrupt or incomplete entry is a miss with a :class:`CorruptEntryWarning`, moved aside (under
  the key's lock, after re-checking) to ``<key>.corrupt-<time>-<pid>``; it never crashes and never
  returns wrong data.

Example:
    >>> import tempfile, torch
    >>> store = MinimaStore(tempfile.mkdtemp())
    >>> config = {"data": "two-spirals", "model": "swiss_mlp", "seed": 0}
    >>> hit = store.get_or_train(config, lambda: ({"params": torch.arange(3.0)}, {"train_loss": 0.01}))
    >>> hit.trained, hit.params.tolist(), hit.metadata["train_loss"]
    (True, [0.0, 1.0, 2.0], 0.01)
    >>> store.get_or_train(config, lambda: 1 / 0).trained   # a hit: train_fn is not called
    False

Size: one class, the minima store: keys, atomic entries, per-key locks and verified reads belong
together.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from filelock import FileLock, Timeout
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from volbench._io import explain_write_error, fsync_dir, write_durably

__all__ = [
    "RECIPE_VERSION",
    "FORMAT_VERSION",
    "StoredMinimum",
    "MinimaStore",
    "CorruptEntryWarning",
    "canonical_json",
    "config_key",
    "fingerprint",
    "default_root",
]

#: Version of the training recipe baked into every key; bump it when a change in volbench's
#: training code changes the minima it produces.
RECIPE_VERSION = 1
#: Version of the on-disk entry layout (meta.json's "format").
FORMAT_VERSION = 1

WEIGHTS = "weights.safetensors"
META = "meta.json"
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")


class CorruptEntryWarning(UserWarning):
    """A stored entry failed verification and was treated as a miss (and moved aside)."""


# --------------------------------------------------------------------------- keys
def _normalise(obj: Any, path: str) -> Any:
    """Plain JSON types only, so the canonical text is unambiguous."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"config{path} is {obj}; non-finite floats have no canonical JSON form")
        return obj
    if isinstance(obj, np.generic):
        return _normalise(obj.item(), path)
    if isinstance(obj, (Tensor, np.ndarray)):
        raise TypeError(
            f"config{path} is an array; put its fingerprint in the config instead "
            "(volbench.store.minima.fingerprint(indices))"
        )
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"config{path} has a non-str key {k!r}; JSON keys must be strings")
            out[k] = _normalise(v, f"{path}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [_normalise(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _normalise(dataclasses.asdict(obj), path)
    if isinstance(obj, Enum):
        return _normalise(obj.value, path)
    if isinstance(obj, (torch.dtype, torch.device, PurePath)):
        return str(obj)
    raise TypeError(f"config{path} has type {type(obj).__name__}, which has no canonical JSON form")


def canonical_json(config: dict[str, Any]) -> str:
    """Sorted-key, whitespace-free ASCII JSON of ``config`` (tuples as lists; dataclasses,
    numpy scalars, dtypes, devices and paths converted; arrays and NaN refused)."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    return json.dumps(_normalise(config, ""), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False)


def config_key(config: dict[str, Any]) -> str:
    """SHA-256 hex digest of the canonical JSON of ``{"recipe_version", "config"}``.

    Example:
        >>> config_key({"a": 1, "b": (2, 3)}) == config_key({"b": [2, 3], "a": 1})
        True
    """
    if not isinstance(config, dict) or not config:
        raise ValueError("config must be a non-empty dict describing everything that determines the minimum")
    text = canonical_json({"recipe_version": RECIPE_VERSION, "config": config})
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def fingerprint(x: Tensor | np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes, e.g. of a subset's indices for a key.

    Example:
        >>> fingerprint(torch.arange(3)) == fingerprint(np.arange(3, dtype=np.int64))
        True
    """
    if isinstance(x, Tensor):
        x = x.detach().to("cpu").contiguous().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"fingerprint needs a torch.Tensor or numpy array, got {type(x).__name__}")
    x = np.ascontiguousarray(x)
    h = hashlib.sha256()
    h.update(f"{x.dtype.str}|{list(x.shape)}|".encode("ascii"))
    h.update(x.tobytes())
    return h.hexdigest()


def default_root() -> Path:
    """``$VOLBENCH_STORE`` if set, else ``~/.cache/volbench/minima``."""
    env = os.environ.get("VOLBENCH_STORE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "volbench" / "minima"


# --------------------------------------------------------------------------- entries
@dataclasses.dataclass(frozen=True)
class StoredMinimum:
    """One entry of the store.

    Attributes:
        key: the entry's key (64 hex digits).
        path: its folder.
        tensors: the named tensors (CPU), as put.
        metadata: the user metadata, as put (JSON types).
        info: the whole ``meta.json`` record (config, versions, created, weights_sha256, ...).
        trained: True if this call ran ``train_fn`` (a miss), False for a hit.
    """

    key: str
    path: Path
    tensors: dict[str, Tensor]
    metadata: dict[str, Any]
    info: dict[str, Any] = dataclasses.field(repr=False)
    trained: bool = False

    @property
    def params(self) -> Tensor:
        """The ``"params"`` tensor (flat parameters); KeyError naming the stored names if absent."""
        try:
            return self.tensors["params"]
        except KeyError:
            raise KeyError(f"entry {self.key[:12]} has no 'params' tensor; it holds {sorted(self.tensors)}") from None


class _Corrupt(Exception):
    """Internal: why an entry failed verification."""


def _versions() -> dict[str, str]:
    import safetensors

    from volbench import __version__ as volbench_version

    return {
        "volbench": volbench_version,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


class MinimaStore:
    """A folder of trained minima keyed by configuration (see the module docstring).

    Args:
        root: the store's folder (default :func:`default_root`); created on first write.
        lock_timeout: seconds to wait for another process's lock before ``filelock.Timeout``;
            None waits as long as it takes (training may take hours).
        provenance: merged into every configuration given to :meth:`get_or_train` that carries
            no ``"code"`` entry of its own, e.g. ``volbench.store.provenance.training_provenance`` (a
            callable, evaluated per call, or a dict), so minima trained by callers that build
            their own configurations are keyed by the code that trained them too.

    Example:
        >>> import tempfile, torch
        >>> s = MinimaStore(tempfile.mkdtemp())
        >>> k = s.key({"model": "mnist_mlp", "seed": 0})
        >>> _ = s.put(k, {"params": torch.ones(2)}, {"n_params": 2})
        >>> s.get(k).metadata, s.get(s.key({"model": "mnist_mlp", "seed": 1}))
        ({'n_params': 2}, None)
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, lock_timeout: float | None = None,
                 provenance: dict[str, Any] | Callable[[], dict[str, Any]] | None = None) -> None:
        if provenance is not None and not (callable(provenance) or isinstance(provenance, dict)):
            raise TypeError(f"provenance must be a dict, a callable returning one, or None; got "
                            f"{type(provenance).__name__}")
        self.provenance = provenance
        self.root = Path(root).expanduser() if root is not None else default_root()
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"store root {self.root} exists and is not a folder; pick another root")
        if lock_timeout is not None and not (lock_timeout >= 0):
            raise ValueError(f"lock_timeout must be >= 0 seconds or None, got {lock_timeout!r}")
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"MinimaStore({str(self.root)!r})"

    # ------------------------------------------------------------------ public API
    @staticmethod
    def key(config: dict[str, Any]) -> str:
        """:func:`config_key` of ``config``."""
        return config_key(config)

    def path(self, key: str) -> Path:
        """The folder of entry ``key`` (whether or not it exists)."""
        return self.root / _check_key(key)

    def keys(self) -> list[str]:
        """Keys of the complete-looking entries (sorted; not verified)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if _KEY_RE.match(p.name) and p.is_dir())

    def get(self, key: str) -> StoredMinimum | None:
        """The verified entry ``key``, or None (missing, or corrupt: warned and moved aside)."""
        return self._get(_check_key(key), locked=False)

    def put(self, key: str, tensors: dict[str, Tensor], metadata: dict[str, Any], *,
            config: dict[str, Any] | None = None, overwrite: bool = False) -> StoredMinimum:
        """Store ``tensors`` and ``metadata`` under ``key`` atomically and return the entry.

        If a valid entry already exists it is kept and returned unless ``overwrite`` (keys are
        hashes of the configuration, so both were produced by the same recipe). ``config`` is
        recorded in meta.json for inspection.
        """
        key = _check_key(key)
        tensors = _check_tensors(tensors)
        metadata = _check_metadata(metadata)
        with self._lock(key):
            if not overwrite:
                existing = self._get(key, locked=True)
                if existing is not None:
                    return existing
            return self._write(key, tensors, metadata, config)

    def get_or_train(self, config: dict[str, Any],
                     train_fn: Callable[[], tuple[dict[str, Tensor], dict[str, Any]]]) -> StoredMinimum:
        """The entry for ``config``, training it with ``train_fn()`` only on a miss.

        ``train_fn`` returns ``(tensors, metadata)``, e.g.
        ``(result.tensors(), result.metadata())`` of a ``volbench.lab.train.TrainResult``. While one
        process trains a key, the others calling this for the same key wait on its lock and then
        read its entry. The returned entry's ``trained`` says whether this call trained.
        """
        if not callable(train_fn):
            raise TypeError(f"train_fn must be callable, got {type(train_fn).__name__}")
        config = self._with_provenance(config)
        key = self.key(config)
        hit = self._get(key, locked=False)
        if hit is not None:
            return hit
        with self._lock(key):
            hit = self._get(key, locked=True)  # someone may have finished while we waited
            if hit is not None:
                return hit
            out = train_fn()
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError(f"train_fn must return (tensors: dict, metadata: dict), got {type(out).__name__}")
            tensors, metadata = _check_tensors(out[0]), _check_metadata(out[1])
            entry = self._write(key, tensors, metadata, config)
        return dataclasses.replace(entry, trained=True)

    def status(self, config: dict[str, Any]) -> str:
        """Where the entry for ``config`` stands, without waiting: "stored" (a complete-looking
        entry, not verified), "busy" (another process holds its lock: it is training or writing
        it) or "missing". Lets several processes that need the same minima train different ones
        instead of waiting on each other (``volbench.lab.prefetch_minima``); the answer may be
        stale by the time it is used, which costs at most a wait in :meth:`get_or_train`."""
        key = self.key(self._with_provenance(config))
        if (self.root / key / META).exists():
            return "stored"
        lock = FileLock(str(self.root / ".locks" / f"{key}.lock"), timeout=0)
        (self.root / ".locks").mkdir(parents=True, exist_ok=True)
        try:
            with lock:
                return "missing"
        except Timeout:
            return "busy"

    # ------------------------------------------------------------------ internals
    def _with_provenance(self, config: dict[str, Any]) -> dict[str, Any]:
        if self.provenance is not None and isinstance(config, dict) and "code" not in config:
            extra = self.provenance() if callable(self.provenance) else self.provenance
            config = {**extra, **config}
        return config

    def _lock(self, key: str) -> FileLock:
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        timeout = -1 if self.lock_timeout is None else self.lock_timeout
        return FileLock(str(locks / f"{key}.lock"), timeout=timeout)

    def _get(self, key: str, *, locked: bool) -> StoredMinimum | None:
        folder = self.root / key
        if not folder.exists():
            return None
        try:
            return self._read(key, folder)
        except _Corrupt as why:
            if locked:
                self._quarantine(key, folder, str(why))
                return None
            first_why = str(why)
        # Re-check under the lock before moving anything aside: a writer replacing the entry
        # holds it. Never wait here: if another process holds the lock it is (re)writing this
        # entry and will deal with the corrupt one, so this read is simply a miss.
        try:
            lock = self._lock(key)
            lock.acquire(timeout=0)
        except (Timeout, OSError) as err:
            reason = "another process holds its lock" if isinstance(err, Timeout) else f"cannot lock it ({err})"
            warnings.warn(f"minima store {self.root}: entry {key[:12]} is unreadable ({first_why}); treated as a "
                          f"miss and left in place: {reason}", CorruptEntryWarning, stacklevel=3)
            return None
        try:
            if not folder.exists():
                return None
            try:
                return self._read(key, folder)
            except _Corrupt as why:
                self._quarantine(key, folder, str(why))
                return None
        finally:
            lock.release()

    def _read(self, key: str, folder: Path) -> StoredMinimum:
        # Open the folder once and read both files relative to that handle: if the entry is
        # renamed (moved aside) while we read, we still read one consistent entry.
        try:
            dfd = os.open(folder, os.O_RDONLY)
        except FileNotFoundError:
            raise _Corrupt("the entry's folder vanished while reading") from None
        except OSError as err:
            raise _Corrupt(f"cannot open the entry folder: {err}") from None
        try:
            meta_bytes = _read_at(dfd, folder, META)
            weights = _read_at(dfd, folder, WEIGHTS)
        finally:
            os.close(dfd)
        try:
            info = json.loads(meta_bytes.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _Corrupt(f"{META} is not valid JSON ({err})") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT_VERSION or info.get("key") != key:
            raise _Corrupt(f"{META} is not a format-{FORMAT_VERSION} record for this key")
        digest = hashlib.sha256(weights).hexdigest()
        if digest != info.get("weights_sha256"):
            raise _Corrupt(f"{WEIGHTS} SHA-256 {digest[:12]} does not match meta.json's "
                           f"{str(info.get('weights_sha256'))[:12]}")
        try:
            tensors = st_load(weights)
        except (SafetensorError, ValueError, RuntimeError) as err:  # hash matched, so unlikely
            raise _Corrupt(f"{WEIGHTS} does not load: {err}") from None
        metadata = info.get("metadata")
        if not isinstance(metadata, dict):
            raise _Corrupt(f"{META} has no metadata record")
        return StoredMinimum(key=key, path=folder, tensors=tensors, metadata=metadata, info=info)

    def _quarantine(self, key: str, folder: Path, why: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        aside = self.root / f"{key}.corrupt-{stamp}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
        try:
            os.rename(folder, aside)
            where = f"moved aside to {aside.name}"
        except FileNotFoundError:
            where = "already gone"
        except OSError as err:  # e.g. permissions: still a miss, never a crash
            where = f"could not be moved aside ({err})"
        warnings.warn(f"minima store {self.root}: entry {key[:12]} is corrupt ({why}); treated as a miss, {where}",
                      CorruptEntryWarning, stacklevel=3)

    def _write(self, key: str, tensors: dict[str, Tensor], metadata: dict[str, Any],
               config: dict[str, Any] | None) -> StoredMinimum:
        """Write an entry; the caller holds the key's lock."""
        self.root.mkdir(parents=True, exist_ok=True)
        prefix = f".tmp-{key}-"
        for stale in self.root.glob(prefix + "*"):  # left by a writer that died holding the lock
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=self.root))
        try:
            weights = st_save(tensors, metadata={"volbench_key": key})
            write_durably(tmp / WEIGHTS, weights)
            info = {
                "format": FORMAT_VERSION,
                "key": key,
                "recipe_version": RECIPE_VERSION,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "versions": _versions(),
                "weights_sha256": hashlib.sha256(weights).hexdigest(),
                "weights_bytes": len(weights),
                "tensors": {k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape)}
                            for k, v in tensors.items()},
                "config": None if config is None else json.loads(canonical_json(config)),
                "metadata": metadata,
            }
            write_durably(tmp / META, json.dumps(info, indent=1, sort_keys=True, allow_nan=False).encode("utf-8"))
            fsync_dir(tmp)
            final = self.root / key
            if final.exists():  # overwrite (or a corrupt entry the caller chose to replace)
                old = self.root / f".old-{key}-{os.getpid()}-{time.monotonic_ns()}"
                os.rename(final, old)
                os.rename(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, final)
            fsync_dir(self.root)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) and exc.errno is not None:
                # Full disk, file-size limit, read-only folder: nothing was renamed into place.
                raise explain_write_error(
                    exc, self.root / key, what="minima store entry",
                    kept="the store is unchanged (any previous entry under this key is intact, no "
                         "partial entry was left); set VOLBENCH_STORE or MinimaStore(root=...) to use another folder",
                ) from exc
            raise
        return StoredMinimum(key=key, path=final, tensors={k: v.clone() for k, v in tensors.items()},
                             metadata=json.loads(json.dumps(metadata)), info=info)


def _read_at(dfd: int, folder: Path, name: str) -> bytes:
    try:
        if os.open in os.supports_dir_fd:
            fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
        else:  # pragma: no cover - non-Linux fallback
            fd = os.open(folder / name, os.O_RDONLY)
    except FileNotFoundError:
        raise _Corrupt(f"{name} is missing (half-written entry?)") from None
    except OSError as err:
        raise _Corrupt(f"cannot open {name}: {err}") from None
    try:
        with os.fdopen(fd, "rb") as f:
            return f.read()
    except OSError as err:
        raise _Corrupt(f"cannot read {name}: {err}") from None


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(f"store key must be 64 lowercase hex digits (from MinimaStore.key(config)), got {key!r}")
    return key


def _check_tensors(tensors: Any) -> dict[str, Tensor]:
    if not isinstance(tensors, dict) or not tensors:
        raise TypeError(f"tensors must be a non-empty dict[str, Tensor], got {type(tensors).__name__}")
    out = {}
    for k, v in tensors.items():
        if not isinstance(k, str) or not k:
            raise TypeError(f"tensor names must be non-empty strings, got {k!r}")
        if not isinstance(v, Tensor):
            raise TypeError(f"tensors[{k!r}] must be a torch.Tensor, got {type(v).__name__}")
        # Own contiguous CPU copies: safetensors refuses shared or strided storage.
        out[k] = v.detach().to("cpu").contiguous().clone()
    return out


def _check_metadata(metadata: Any) -> dict[str, Any]:
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        return json.loads(json.dumps(metadata, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise TypeError(f"metadata must be JSON-serialisable without NaN/inf (store NaN as None): {err}") from None
