"""Speed across hardware: compare pytest-benchmark JSON files from several machines.

``volbench bench compare A.json B.json …`` (also ``volbench compare`` when every argument is such
a file) reads files written by ``python -m pytest benchmarks --benchmark-json=FILE`` and prints,
for each benchmark and machine:

* throughput at the median round: cost evaluations (parameter vectors) per second, (example,
  vector) pairs per second, achieved FLOP/s and its fraction of the device's peak (from the
  counts ``benchmarks/test_speed.py`` puts in ``extra_info``: ``cost_evals``, ``example_vectors``,
  ``flop_count``, ``peak_flops_per_s``; see ``benchmarks/README.md``);
* the time ratio to the baseline machine (median / baseline median: below 1 = faster) with asv's
  significance mark (:mod:`volbench.bench.significance`: Mann-Whitney U at p < 0.002 where the
  rounds allow, else non-overlap of 99% intervals; ``~`` = not significant);
* the machine keys that differ from the baseline's (CPU or GPU model, torch and CUDA versions,
  TF32 and bf16 switches, thread count, device, dtype): such rows are never compared silently,
  they carry the differing keys; ``--env-diff`` prints the whole machine_info difference. Rows
  whose workload differs (scale, directions, examples, …) get no ratio (``x``, not comparable).

Rounds: ``extra_info["seconds_all"]`` (volbench's own clock, which waits for the GPU) where
present, else pytest-benchmark's ``stats.data`` (which ``--benchmark-json`` always writes and
``--benchmark-save`` only with ``--benchmark-save-data``).

Bad input (a file that is not pytest-benchmark JSON, files from different benchmark versions, a
file without rounds) raises :class:`BenchInputError` with one line per problem; the CLI prints
them and exits 2. A machine key a file does not record is shown as ``unknown``, never guessed.

Example:
    >>> a = synthetic_bench_file("A", [1.0 + 0.01 * i for i in range(7)], threads=1)
    >>> b = synthetic_bench_file("B", [0.5 + 0.005 * i for i in range(7)], threads=2)
    >>> row = compare_files([a, b]).rows[1]
    >>> row.machine, row.ratio_text, row.mark, row.differs
    ('B', '0.50x', 'faster', 'threads 1→2')
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from volbench.bench.records import (  # noqa: F401  (synthetic_bench_file: the doctest uses it)
    WORKLOAD_KEYS,
    BenchFile,
    BenchInputError,
    BenchRecord,
    synthetic_bench_file,
    text_of,
)
from volbench.bench.significance import Significance, compare_rounds

__all__ = ["CompareRow", "BenchComparison", "compare_files"]


@dataclass(frozen=True)
class CompareRow:
    """One (benchmark, machine) line of the comparison."""

    benchmark: str
    machine: str
    record: BenchRecord | None
    significance: Significance | None
    mark: str  # "baseline", "faster", "slower", "~", "x" (not comparable), "-" (missing)
    ratio_text: str
    differs: str  # "key a→b; …" against the baseline, "" if none
    note: str = ""

    @property
    def is_baseline(self) -> bool:
        return self.mark == "baseline"


@dataclass(frozen=True)
class BenchComparison:
    files: tuple[BenchFile, ...]
    baseline: int
    rows: tuple[CompareRow, ...]
    machine_differences: Mapping[str, str] = field(default_factory=dict)  # label -> "key a→b; …"


def _key_diff(base: Mapping[str, str], other: Mapping[str, str]) -> str:
    return "; ".join(f"{key} {base[key]}→{other[key]}" for key in base if base[key] != other[key])


def compare_files(files: Sequence[BenchFile], baseline: int = 0) -> BenchComparison:
    """Compare every benchmark of every file with the same benchmark of ``files[baseline]``."""
    if not 0 <= baseline < len(files):
        raise BenchInputError([f"baseline {baseline} is not one of the {len(files)} files"])
    base_file = files[baseline]
    names: list[str] = []
    for f in files:
        names += [n for n in f.benchmarks if n not in names]
    rows: list[CompareRow] = []
    for name in names:
        base = base_file.benchmarks.get(name)
        base_keys = base_file.machine_keys(base) if base is not None else None
        for f in files:
            record = f.benchmarks.get(name)
            if record is None:
                rows.append(CompareRow(name, f.label, None, None, "-", "-", "", "not in this file"))
                continue
            if f is base_file:
                rows.append(CompareRow(name, f.label, record, None, "baseline", "1.00x", ""))
                continue
            keys = f.machine_keys(record)
            differs = _key_diff(base_keys, keys) if base_keys is not None else ""
            if base is None:
                rows.append(CompareRow(name, f.label, record, None, "-", "-", differs,
                                       f"not in the baseline {base_file.label}"))
                continue
            workload = [f"{k} {text_of(base.extra.get(k))}→{text_of(record.extra.get(k))}" for k in WORKLOAD_KEYS
                        if base.extra.get(k) != record.extra.get(k)]
            if workload:
                rows.append(CompareRow(name, f.label, record, None, "x", "x", differs,
                                       "different workload, not compared: " + "; ".join(workload)))
                continue
            sig = compare_rounds(base.rounds, record.rounds)
            rows.append(CompareRow(name, f.label, record, sig, sig.mark, sig.ratio_text(), differs,
                                   sig.describe()))
    machine_differences = {f.label: _key_diff(base_file.machine_keys(), f.machine_keys())
                           for f in files if f is not base_file}
    return BenchComparison(tuple(files), baseline, tuple(rows), MappingProxyType(machine_differences))








