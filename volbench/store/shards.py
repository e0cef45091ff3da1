"""Finished pieces of measurements that were shared out over processes: one checksummed JSON record
per piece, ``<root>/shards/<key>.json``, so a rerun computes only the pieces that are missing.

A *piece* is a run of consecutive directions ``[start, stop)`` of one measurement, walked as one
batch (``volbench.estimator.distributed``); its record holds each direction's bracket and
evaluation count. The key is the SHA-256 of the piece's configuration, which is what determines
those numbers (the cost's name, the anchor's digest and costs, the threshold, the search's
settings, the direction seed, dtype and device type: the caller's part), the direction range, and
:func:`volbench.store.provenance.measurement_provenance` (a digest of the code that measures, and
the library versions), so a fix to the estimator or the costs never reuses a piece it would
compute differently. Records are written and read as the store's measurement records are
(:func:`volbench.store.measurements.write_record` / ``read_record``: atomic, under the per-key lock
``<root>/.locks/<key>.lock``, checksummed; a corrupt one is moved aside and recomputed, a write
the disk refuses warns and leaves no partial file). ``volbench cache list`` shows them as kind
``shard``; ``volbench cache prune --stale`` removes those of older code.

Example:
    >>> import tempfile
    >>> shards = ShardStore(tempfile.mkdtemp())
    >>> config = {"kind": "demo", "threshold": 0.5}
    >>> shards.load(config, 0, 4) is None
    True
    >>> shards.save(config, 0, 4, {"lo": [0.5, 0.25, 1.0, 2.0]})
    >>> shards.load(config, 0, 4)
    {'lo': [0.5, 0.25, 1.0, 2.0]}
    >>> shards.load({**config, "threshold": 0.6}, 0, 4) is None   # another measurement: a miss
    True
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from volbench.store.measurements import read_record, write_record
from volbench.store.provenance import measurement_provenance

__all__ = ["ShardStore", "SHARDS_FOLDER"]

#: The store's sub-folder of piece records.
SHARDS_FOLDER = "shards"


class ShardStore:
    """Piece records of distributed measurements under ``root`` (a store folder: the same as the
    minima's and measurements', ``VOLBENCH_STORE``, or any folder every process can reach).

    ``load(config, start, stop)`` returns the stored data of that piece, or None (absent, stale
    or corrupt); ``save(config, start, stop, data)`` writes it. ``config`` and ``data`` must be
    JSON-serialisable (floats are written with ``repr``, which reads back to the same float64).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._provenance: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"ShardStore({str(self.root)!r})"

    def full_config(self, config: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
        """What the key digests: the caller's configuration, the direction range and the code's
        provenance (computed once per store object)."""
        if self._provenance is None:
            self._provenance = measurement_provenance()
        return {**self._provenance, "kind": "volbench.shard", **config, "directions": [int(start), int(stop)]}

    def key(self, config: dict[str, Any], start: int, stop: int) -> str:
        text = json.dumps(self.full_config(config, start, stop), sort_keys=True, allow_nan=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / SHARDS_FOLDER / f"{key}.json"

    def load(self, config: dict[str, Any], start: int, stop: int) -> dict[str, Any] | None:
        """The data of piece ``[start, stop)`` of the measurement ``config``, or None. A record
        is used only when its checksum holds and its recorded configuration is this one."""
        full = self.full_config(config, start, stop)
        path = self.path(self.key(config, start, stop))

        def decode(record: dict[str, Any]) -> dict[str, Any] | None:
            # Round-trip the expected configuration through JSON, as the record was (tuples
            # become lists), before comparing.
            if record["config"] != json.loads(json.dumps(full, allow_nan=True)):
                return None
            data = record["data"]
            if not isinstance(data, dict):
                raise ValueError("the piece's data is not a JSON object")
            return data

        return read_record(path, decode)

    def save(self, config: dict[str, Any], start: int, stop: int, data: dict[str, Any]) -> None:
        """Write piece ``[start, stop)`` (atomic, locked; warns instead of raising when the disk
        refuses it: the piece is then recomputed by the next run)."""
        full = self.full_config(config, start, stop)
        write_record(self.path(self.key(config, start, stop)), {"config": full, "data": data})
