"""Rendering a benchmark comparison: text and Markdown tables, the machines and their
differences, a chart, and a Markdown + self-contained HTML report."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from volbench.bench.compare import BenchComparison
from volbench.bench.records import MACHINE_KEYS, UNKNOWN, BenchFile, text_of
from volbench.report.formatting import render_table

__all__ = ["TABLE_HEADER", "table_rows", "format_machines", "format_table", "environment_diff", "bench_chart",
           "render_bench_html", "render_bench_markdown", "write_bench_report"]


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
                        render_table(TABLE_HEADER, table_rows(comparison), markdown)])


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        return {prefix: json.dumps(value)}
    return {prefix: text_of(value)}


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


def bench_chart(comparison: BenchComparison, *, dpi: int = 110):
    """A grouped bar chart: cost evaluations per second (median round) of every benchmark on
    every machine, log scale; hatched bars are not significantly different from the baseline (or
    not comparable), and each bar carries its time ratio. Returns a :class:`~volbench.report.plots.PlotImage`
    or None when no benchmark records cost evaluations."""
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from volbench.report.plots import COLORS, RC, PlotImage, png_bytes

    names = [n for n in dict.fromkeys(r.benchmark for r in comparison.rows)
             if any(r.record is not None and r.record.rate("cost_evals") for r in comparison.rows
                    if r.benchmark == n)]
    if not names:
        return None
    labels = [f.label for f in comparison.files]
    by_key = {(r.benchmark, r.machine): r for r in comparison.rows}
    height = 0.8 / len(labels)
    with matplotlib.rc_context(RC):
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
            bars = ax.barh(ys, xs, height=height * 0.92, color=COLORS[j % len(COLORS)])
            for bar, hatch in zip(bars, hatches):
                if hatch:
                    bar.set_hatch("///")
                    bar.set_edgecolor("white")
        ax.set_xscale("log")
        ax.set_yticks(np.arange(len(names)), labels=[_short_name(n) for n in names], fontsize=7.5)
        ax.invert_yaxis()
        ax.set_xlabel("cost evaluations per second at the median round (log scale)")
        ax.margins(x=0.15)
        handles = [Patch(color=COLORS[j % len(COLORS)], label=f"{f.label}: {f.path.name}")
                   for j, f in enumerate(comparison.files)]
        handles.append(Patch(facecolor="0.6", hatch="///", edgecolor="white",
                             label="not significant vs baseline (~) or not comparable (x)"))
        fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=7)
        fig.suptitle("Benchmark throughput across machines", fontsize=10)
        png = png_bytes(fig, dpi)
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
