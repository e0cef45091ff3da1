"""The store: trained minima and measurement records on disk, keyed by what produced them.

Modules: ``minima`` (``MinimaStore``: one folder per trained minimum, atomic, one trainer per key),
``measurements`` (one checksummed JSON record per measurement), ``provenance`` (the digest of the
code that produced an entry, so a cache never serves what today's code would compute differently),
``inspect`` (listing, sizing and pruning, for ``volbench cache``).
"""
from volbench.store.minima import CorruptEntryWarning, MinimaStore, StoredMinimum, default_root

__all__ = ["MinimaStore", "StoredMinimum", "CorruptEntryWarning", "default_root"]
