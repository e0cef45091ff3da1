"""Reading pytest-benchmark JSON files into records: one :class:`BenchRecord` per benchmark, the
machine keys each file records (``unknown`` where it records none, never guessed), its rounds
(volbench's own clock where present); bad input raises :class:`BenchInputError` with one line per
problem. ``synthetic_bench_file`` builds one for tests and doctests."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = ["UNKNOWN", "MACHINE_KEYS", "WORKLOAD_KEYS", "BenchInputError", "BenchRecord", "BenchFile", "text_of",
           "is_benchmark_json", "load_bench_file", "load_bench_files", "synthetic_bench_file"]

UNKNOWN = "unknown"


#: Machine keys shown per machine and compared per benchmark (name -> what it is).
MACHINE_KEYS: Mapping[str, str] = MappingProxyType({
    "cpu": "CPU model (pytest-benchmark's machine_info.cpu.brand_raw)",
    "gpu": "GPU model(s) (volbench_gpu; none on a CPU-only machine)",
    "device": "device the benchmark ran on (extra_info.device_name)",
    "torch": "torch version",
    "cuda": "CUDA version torch was built with (none for a CPU build)",
    "tf32": "TF32 for float32 matmuls during the benchmark (extra_info.tf32, else machine_info)",
    "bf16": "reduced-precision reduction in bf16 GEMMs (volbench_bf16_reduced_precision_reduction)",
    "threads": "torch CPU threads during the benchmark (extra_info.torch_threads)",
    "dtype": "dtype of the parameters and data",
})


#: extra_info keys that define what was measured; rows differing in one are not compared.
WORKLOAD_KEYS = ("scale", "method", "landscape", "n_directions", "n_examples", "n_params", "threshold",
                 "grid_points", "data_variant", "table1", "sizes", "seeds", "epochs")


class BenchInputError(ValueError):
    """Bad benchmark input. ``problems`` holds one line per problem (the CLI prints each)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


def text_of(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _looked_up(mapping: Mapping[str, Any], key: str) -> str | None:
    """The value as text if the key is recorded (None recorded = "none"), else None."""
    if key not in mapping:
        return None
    return text_of(mapping[key])


@dataclass(frozen=True)
class BenchRecord:
    """One benchmark of one file: its rounds (seconds) and ``extra_info``."""

    name: str
    rounds: tuple[float, ...]
    rounds_source: str
    extra: Mapping[str, Any]

    @property
    def median(self) -> float:
        values = sorted(self.rounds)
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])

    def rate(self, count_key: str) -> float | None:
        """``extra[count_key] / median seconds``, or None where the count is not recorded."""
        count = self.extra.get(count_key)
        if not isinstance(count, (int, float)) or isinstance(count, bool) or not self.median > 0:
            return None
        return float(count) / self.median

    def fraction_of_peak(self) -> float | None:
        flops = self.rate("flop_count")
        peak = self.extra.get("peak_flops_per_s")
        if flops is None or not isinstance(peak, (int, float)) or not peak > 0:
            return None
        return flops / float(peak)


@dataclass(frozen=True)
class BenchFile:
    """One pytest-benchmark JSON file: machine, commit, benchmark version and benchmarks."""

    path: Path
    label: str
    machine_info: Mapping[str, Any]
    commit_info: Mapping[str, Any]
    datetime: str
    benchmark_version: Any
    volbench: Mapping[str, Any]
    benchmarks: Mapping[str, BenchRecord]

    def machine_keys(self, record: BenchRecord | None = None) -> dict[str, str]:
        """The :data:`MACHINE_KEYS` of this file (and of ``record`` where it says more), each a
        text or ``"unknown"`` where nothing records it."""
        mi, extra = self.machine_info, (record.extra if record is not None else {})
        cpu = mi.get("cpu")
        cpu_name = None
        if isinstance(cpu, Mapping):
            cpu_name = cpu.get("brand_raw") or cpu.get("brand")
        keys = {
            "cpu": text_of(cpu_name) if cpu_name else None,
            "gpu": _looked_up(mi, "volbench_gpu"),
            "device": _looked_up(extra, "device_name"),
            "torch": _looked_up(extra, "torch") or _looked_up(mi, "volbench_torch"),
            "cuda": _looked_up(mi, "volbench_cuda"),
            "tf32": _looked_up(extra, "tf32") or _looked_up(mi, "volbench_tf32_matmul"),
            "bf16": _looked_up(mi, "volbench_bf16_reduced_precision_reduction"),
            # machine_info's volbench_torch_threads is read after the session restored torch's
            # default, so it is not used: per benchmark, else the count the session recorded
            "threads": _looked_up(extra, "torch_threads") or _looked_up(self.volbench, "threads"),
            "dtype": _looked_up(extra, "dtype"),
        }
        return {key: (value if value is not None else UNKNOWN) for key, value in keys.items()}

    def describe(self) -> str:
        keys = self.machine_keys()
        host = self.machine_info.get("node", UNKNOWN)
        return (f"CPU {keys['cpu']} · GPU {keys['gpu']} · torch {keys['torch']} · CUDA {keys['cuda']} · "
                f"TF32 {keys['tf32']} · bf16-reduced {keys['bf16']} · threads {keys['threads']} · "
                f"host {host} · {self.datetime or 'date unknown'}")


def is_benchmark_json(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file holding pytest-benchmark JSON (an object with a ``benchmarks``
    list and a ``machine_info`` object); False for anything else, never raises."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return False
    return (isinstance(data, Mapping) and isinstance(data.get("benchmarks"), list)
            and isinstance(data.get("machine_info"), Mapping))


def _rounds(bench: Mapping[str, Any]) -> tuple[tuple[float, ...], str] | None:
    extra = bench.get("extra_info") or {}
    own = extra.get("seconds_all") if isinstance(extra, Mapping) else None
    if isinstance(own, list) and own and all(isinstance(x, (int, float)) and x > 0 for x in own):
        return tuple(float(x) for x in own), "extra_info.seconds_all (volbench's synchronised clock)"
    stats = bench.get("stats")
    data = stats.get("data") if isinstance(stats, Mapping) else None
    if isinstance(data, list) and data and all(isinstance(x, (int, float)) and x > 0 for x in data):
        return tuple(float(x) for x in data), "stats.data (pytest-benchmark's timer)"
    return None


def load_bench_file(path: str | os.PathLike, label: str) -> BenchFile:
    """Read one pytest-benchmark JSON file; :class:`BenchInputError` (one line) if it is not one
    or holds a benchmark without rounds."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BenchInputError([f"{path}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchInputError([f"{path}: cannot be read ({exc})"]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchInputError([f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                               "expected a pytest-benchmark --benchmark-json file"]) from None
    if not (isinstance(data, Mapping) and isinstance(data.get("benchmarks"), list)
            and isinstance(data.get("machine_info"), Mapping)):
        what = ("a volbench results.json (compare runs with `volbench compare RUN_A RUN_B`)"
                if isinstance(data, Mapping) and "schema_version" in data else
                "it has no 'benchmarks' list and 'machine_info' object")
        raise BenchInputError([f"{path}: not pytest-benchmark JSON ({what}); write one with "
                               "`python -m pytest benchmarks -p no:xdist --benchmark-json=FILE`"])
    if not data["benchmarks"]:
        raise BenchInputError([f"{path}: holds no benchmarks (did every benchmark skip or fail?)"])
    records: dict[str, BenchRecord] = {}
    missing = []
    for i, bench in enumerate(data["benchmarks"]):
        if not isinstance(bench, Mapping):
            raise BenchInputError([f"{path}: benchmarks[{i}] is not an object; not pytest-benchmark JSON"])
        name = str(bench.get("fullname") or bench.get("name") or f"benchmark {i}")
        found = _rounds(bench)
        if found is None:
            missing.append(name)
            continue
        extra = bench.get("extra_info") if isinstance(bench.get("extra_info"), Mapping) else {}
        records[name] = BenchRecord(name, found[0], found[1], MappingProxyType(dict(extra)))
    if missing:
        raise BenchInputError([
            f"{path}: {len(missing)} of {len(data['benchmarks'])} benchmarks have no rounds (no stats.data, "
            f"no extra_info.seconds_all), e.g. {missing[0]}; it was saved with --benchmark-save without "
            "--benchmark-save-data: write it with --benchmark-json=FILE instead"])
    volbench = data.get("volbench") if isinstance(data.get("volbench"), Mapping) else {}
    commit = data.get("commit_info") if isinstance(data.get("commit_info"), Mapping) else {}
    return BenchFile(path=path, label=label, machine_info=MappingProxyType(dict(data["machine_info"])),
                     commit_info=MappingProxyType(dict(commit)), datetime=str(data.get("datetime") or ""),
                     benchmark_version=volbench.get("benchmark_version"),
                     volbench=MappingProxyType(dict(volbench)), benchmarks=MappingProxyType(records))


def _label(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"M{i + 1}"


def load_bench_files(paths: Sequence[str | os.PathLike]) -> list[BenchFile]:
    """Load several files (labels A, B, …); every problem of every file, and any difference in
    benchmark version, is collected into one :class:`BenchInputError`."""
    if len(paths) < 2:
        raise BenchInputError([f"bench compare needs at least two benchmark JSON files, got {len(paths)}"])
    loaded: list[BenchFile] = []
    problems: list[str] = []
    for i, path in enumerate(paths):
        try:
            loaded.append(load_bench_file(path, _label(i)))
        except BenchInputError as exc:
            problems.extend(exc.problems)
    if loaded:
        first = loaded[0]
        for other in loaded[1:]:
            if other.benchmark_version != first.benchmark_version:
                problems.append(
                    f"{other.path}: benchmark version {text_of(other.benchmark_version)} differs from "
                    f"{first.path}'s {text_of(first.benchmark_version)} ('none': the file does not record one); "
                    "timings of different benchmark versions are not comparable: re-measure with the same "
                    "benchmarks/")
    if problems:
        raise BenchInputError(problems)
    return loaded


def synthetic_bench_file(label: str, rounds: Sequence[float], *, threads: int | None = 1,
                         name: str = "benchmarks/test_speed.py::test_volume_speed[paper_batched-swiss-800]",
                         cost_evals: int = 1000, version: Any = 1, path: str | None = None,
                         extra: Mapping[str, Any] | None = None) -> BenchFile:
    """A :class:`BenchFile` with one benchmark of the given rounds (for tests and examples)."""
    info = {"cost_evals": cost_evals, "example_vectors": cost_evals * 800, "flop_count": cost_evals * 800 * 8.7e3,
            "peak_flops_per_s": 5e10, "device_name": "cpu", "dtype": "float32", "tf32": False,
            "torch": "2.13.0+cpu", "scale": "ci", "n_directions": 16, "seconds_all": list(rounds)}
    if threads is not None:
        info["torch_threads"] = threads
    info.update(extra or {})
    record = BenchRecord(name, tuple(float(x) for x in rounds), "extra_info.seconds_all", MappingProxyType(info))
    machine = {"node": "host", "cpu": {"brand_raw": "AMD EPYC 7B13"}, "volbench_gpu": None, "volbench_cuda": None,
               "volbench_torch": "2.13.0+cpu", "volbench_tf32_matmul": False,
               "volbench_bf16_reduced_precision_reduction": True}
    return BenchFile(path=Path(path or f"{label.lower()}.json"), label=label, machine_info=MappingProxyType(machine),
                     commit_info=MappingProxyType({}), datetime="2026-01-01T00:00:00+00:00",
                     benchmark_version=version, volbench=MappingProxyType({"benchmark_version": version}),
                     benchmarks=MappingProxyType({name: record}))
