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

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from volbench.bench.significance import Significance, compare_rounds

__all__ = [
    "BenchInputError",
    "BenchRecord",
    "BenchFile",
    "CompareRow",
    "BenchComparison",
    "MACHINE_KEYS",
    "WORKLOAD_KEYS",
    "is_benchmark_json",
    "load_bench_file",
    "load_bench_files",
    "compare_files",
    "format_table",
    "format_machines",
    "environment_diff",
    "bench_chart",
    "render_bench_html",
    "render_bench_markdown",
    "write_bench_report",
    "synthetic_bench_file",
]

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


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _looked_up(mapping: Mapping[str, Any], key: str) -> str | None:
    """The value as text if the key is recorded (None recorded = "none"), else None."""
    if key not in mapping:
        return None
    return _text(mapping[key])


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
            "cpu": _text(cpu_name) if cpu_name else None,
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
                    f"{other.path}: benchmark version {_text(other.benchmark_version)} differs from "
                    f"{first.path}'s {_text(first.benchmark_version)} ('none': the file does not record one); "
                    "timings of different benchmark versions are not comparable: re-measure with the same "
                    "benchmarks/")
    if problems:
        raise BenchInputError(problems)
    return loaded


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
            workload = [f"{k} {_text(base.extra.get(k))}→{_text(record.extra.get(k))}" for k in WORKLOAD_KEYS
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


# --------------------------------------------------------------------------- text


def _rate(value: float | None, scale: float = 1.0, digits: int = 4) -> str:
    return "-" if value is None else f"{value / scale:.{digits}g}"


def _short_name(name: str) -> str:
    return name.split("::")[-1]


TABLE_HEADER = ("benchmark", "machine", "rounds", "median s", "evals/s", "pairs/s", "GFLOP/s", "% peak",
                "ratio", "mark", "test", "differs from baseline")


def table_rows(comparison: BenchComparison) -> list[list[str]]:
    out, previous = [], None
    for row in comparison.rows:
        r = row.record
        name = _short_name(row.benchmark) if row.benchmark != previous else ""
        previous = row.benchmark
        peak = r.fraction_of_peak() if r is not None else None
        out.append([
            name, row.machine, str(len(r.rounds)) if r else "-", f"{r.median:.4g}" if r else "-",
            _rate(r.rate("cost_evals")) if r else "-", _rate(r.rate("example_vectors")) if r else "-",
            _rate(r.rate("flop_count"), 1e9) if r else "-", "-" if peak is None else f"{100 * peak:.3g}",
            row.ratio_text, row.mark, row.note if not row.is_baseline else "", row.differs,
        ])
    return out


def _render(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        esc = [[c.replace("|", "\\|") or " " for c in row] for row in [list(header), *rows]]
        lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in esc[1:]])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows])


def format_machines(comparison: BenchComparison) -> str:
    lines = []
    for i, f in enumerate(comparison.files):
        tag = " (baseline)" if i == comparison.baseline else ""
        lines.append(f"{f.label} = {f.path}{tag}: {f.describe()}")
        diff = comparison.machine_differences.get(f.label)
        if diff:
            lines.append(f"    differs from {comparison.files[comparison.baseline].label} in: {diff}")
    return "\n".join(lines)


def format_table(comparison: BenchComparison, *, markdown: bool = False) -> str:
    """The comparison as text: machines, then one line per (benchmark, machine)."""
    base = comparison.files[comparison.baseline].label
    legend = (f"ratio = median time / {base}'s (below 1 = faster); rates at the median round; mark: "
              "faster/slower = significant (Mann-Whitney U p < 0.002, or 99% intervals apart), ~ = not "
              "significant, x = different workload (not compared); 'differs from baseline' lists machine "
              "keys that differ (never compared silently; --env-diff for all of machine_info)")
    return "\n\n".join([format_machines(comparison), legend,
                        _render(TABLE_HEADER, table_rows(comparison), markdown)])


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        return {prefix: json.dumps(value)}
    return {prefix: _text(value)}


def environment_diff(comparison: BenchComparison) -> str:
    """Every machine_info / commit_info / volbench entry that differs from the baseline's."""
    base = comparison.files[comparison.baseline]

    def flat(f: BenchFile) -> dict[str, str]:
        return _flatten({"machine_info": dict(f.machine_info), "commit_info": dict(f.commit_info),
                         "volbench": dict(f.volbench)})

    base_flat = flat(base)
    lines = []
    for f in comparison.files:
        if f is base:
            continue
        other = flat(f)
        lines.append(f"{f.label} vs {base.label}:")
        keys = sorted(set(base_flat) | set(other))
        changed = [k for k in keys if base_flat.get(k, UNKNOWN) != other.get(k, UNKNOWN)]
        for key in changed:
            lines.append(f"  {key}: {base_flat.get(key, UNKNOWN)} → {other.get(key, UNKNOWN)}")
        if not changed:
            lines.append("  (no difference)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- chart and reports


def bench_chart(comparison: BenchComparison, *, dpi: int = 110):
    """A grouped bar chart: cost evaluations per second (median round) of every benchmark on
    every machine, log scale; hatched bars are not significantly different from the baseline (or
    not comparable), and each bar carries its time ratio. Returns a :class:`~volbench.report.plots.PlotImage`
    or None when no benchmark records cost evaluations."""
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from volbench.report.plots import _COLORS, _RC, PlotImage, _png

    names = [n for n in dict.fromkeys(r.benchmark for r in comparison.rows)
             if any(r.record is not None and r.record.rate("cost_evals") for r in comparison.rows
                    if r.benchmark == n)]
    if not names:
        return None
    labels = [f.label for f in comparison.files]
    by_key = {(r.benchmark, r.machine): r for r in comparison.rows}
    height = 0.8 / len(labels)
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(8.0, 1.4 + 0.32 * len(names) * len(labels)), layout="constrained")
        ax = fig.add_subplot()
        ax.grid(axis="y", visible=False)
        for j, label in enumerate(labels):
            ys, xs, hatches = [], [], []
            for i, name in enumerate(names):
                row = by_key.get((name, label))
                rate = row.record.rate("cost_evals") if row is not None and row.record is not None else None
                if rate is None:
                    continue
                ys.append(i + (j - (len(labels) - 1) / 2) * height)
                xs.append(rate)
                hatches.append(row.mark in ("~", "x"))
                ax.text(rate, ys[-1], f" {row.ratio_text}" if not row.is_baseline else " baseline",
                        va="center", fontsize=7)
            bars = ax.barh(ys, xs, height=height * 0.92, color=_COLORS[j % len(_COLORS)])
            for bar, hatch in zip(bars, hatches):
                if hatch:
                    bar.set_hatch("///")
                    bar.set_edgecolor("white")
        ax.set_xscale("log")
        ax.set_yticks(np.arange(len(names)), labels=[_short_name(n) for n in names], fontsize=7.5)
        ax.invert_yaxis()
        ax.set_xlabel("cost evaluations per second at the median round (log scale)")
        ax.margins(x=0.15)
        handles = [Patch(color=_COLORS[j % len(_COLORS)], label=f"{f.label}: {f.path.name}")
                   for j, f in enumerate(comparison.files)]
        handles.append(Patch(facecolor="0.6", hatch="///", edgecolor="white",
                             label="not significant vs baseline (~) or not comparable (x)"))
        fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=7)
        fig.suptitle("Benchmark throughput across machines", fontsize=10)
        png = _png(fig, dpi)
    base = comparison.files[comparison.baseline].label
    caption = (f"Cost evaluations (parameter vectors) per second at the median round, per benchmark and "
               f"machine; the label on each bar is its time ratio to {base} (below 1 = faster, ~ = not "
               f"significant by asv's rule). Hatched bars do not differ significantly from {base}, or "
               f"measured a different workload. A faster machine or build shows longer, solid bars.")
    return PlotImage(key="bench-compare", title="Benchmark throughput across machines",
                     alt=f"Grouped bars of cost evaluations per second for {len(names)} benchmarks on "
                         f"{len(labels)} machines.", png=png, caption=caption)


_HTML = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>volbench benchmark comparison</title>
<style>
  body { font: 14px/1.45 system-ui, sans-serif; color:#1f2328; margin:0; }
  main { max-width: 1280px; margin: 0 auto; padding: 24px 28px 60px; }
  h1 { font-size: 22px; } h2 { font-size: 18px; border-bottom: 1px solid #d0d7de; margin-top: 30px; }
  table { border-collapse: collapse; width: 100%; font-size: 12.5px; }
  th, td { border-bottom: 1px solid #d0d7de; padding: 4px 7px; text-align: left; vertical-align: top; }
  th { background: #f6f8fa; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  .faster { color: #1a7f37; font-weight: 600; } .slower { color: #cf222e; font-weight: 600; }
  .differs { color: #9a6700; }
  figure img { max-width: 100%; border: 1px solid #d0d7de; border-radius: 4px; }
  figcaption { color: #57606a; font-size: 12px; max-width: 900px; }
  pre { background: #f6f8fa; padding: 8px; font-size: 12px; overflow-x: auto; }
</style>
</head>
<body>
<main>
<h1>Benchmark comparison across machines</h1>
<p>{{ legend }}</p>
<h2 id="machines">Machines</h2>
<table><thead><tr><th>label</th><th>file</th>
{% for key in keys %}<th>{{ key }}</th>{% endfor %}
<th>host</th><th>date</th><th>differs from baseline</th></tr></thead>
<tbody>
{% for f in files %}
<tr><td>{{ f.label }}{% if loop.index0 == baseline %} (baseline){% endif %}</td><td><code>{{ f.path.name }}</code></td>
{% for key in keys %}<td>{{ f.machine_keys()[key] }}</td>{% endfor %}
<td>{{ f.machine_info.get("node", "unknown") }}</td><td>{{ f.datetime }}</td>
<td class="differs">{{ differences.get(f.label, "") }}</td></tr>
{% endfor %}
</tbody></table>
<h2 id="table">Per benchmark</h2>
<table><thead><tr>{% for h in header %}<th>{{ h }}</th>{% endfor %}</tr></thead><tbody>
{% for row in rows %}
<tr>{% for text, cls in row %}<td{% if cls %} class="{{ cls }}"{% endif %}>{{ text }}</td>{% endfor %}</tr>
{% endfor %}
</tbody></table>
{% if chart %}
<h2 id="chart">Chart</h2>
<figure><img src="{{ chart.data_uri() }}" alt="{{ chart.alt }}"><figcaption>{{ chart.caption }}</figcaption></figure>
{% endif %}
<h2 id="env-diff">Environment difference</h2>
<pre>{{ env_diff }}</pre>
</main>
</body>
</html>
"""


def render_bench_html(comparison: BenchComparison, chart=None) -> str:
    """Self-contained HTML page of the comparison with the chart inlined."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    base = comparison.files[comparison.baseline].label
    return env.from_string(_HTML).render(
        legend=f"Time ratio = median time / {base}'s (below 1 = faster). Significance follows asv: a "
               "Mann-Whitney U test at p < 0.002 where the rounds allow it, else non-overlap of 99% "
               "intervals of the median; ~ marks a ratio that is not significant, x a different workload.",
        keys=list(MACHINE_KEYS), files=comparison.files, baseline=comparison.baseline,
        differences=comparison.machine_differences, header=TABLE_HEADER,
        rows=[[(text, _cell_class(i, text)) for i, text in enumerate(row)] for row in table_rows(comparison)],
        chart=chart, env_diff=environment_diff(comparison))


def _cell_class(column: int, text: str) -> str:
    if 2 <= column <= 8:
        return "num"
    if column == 9 and text in ("faster", "slower"):
        return text
    if column == 11 and text:
        return "differs"
    return ""


def render_bench_markdown(comparison: BenchComparison, chart_path: str | None = None) -> str:
    out = ["# Benchmark comparison across machines", "", format_table(comparison, markdown=True), ""]
    if chart_path:
        out += [f"![Benchmark throughput across machines]({chart_path})", ""]
    out += ["## Environment difference", "", "```", environment_diff(comparison), "```", ""]
    return "\n".join(out)


def write_bench_report(comparison: BenchComparison, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``bench-compare.md``, ``bench-compare.png`` and a self-contained ``bench-compare.html``
    into ``out_dir`` as one atomic set; returns their paths."""
    from volbench._io import atomic_write_many

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chart = bench_chart(comparison)
    items: list[tuple[Path, bytes]] = []
    if chart is not None:
        items.append((out_dir / "bench-compare.png", chart.png))
    items.append((out_dir / "bench-compare.md",
                  render_bench_markdown(comparison, "bench-compare.png" if chart else None).encode()))
    items.append((out_dir / "bench-compare.html", render_bench_html(comparison, chart).encode()))
    atomic_write_many(items)
    return [path for path, _ in items]


# --------------------------------------------------------------------------- synthetic input


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
