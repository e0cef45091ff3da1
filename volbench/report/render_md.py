"""Markdown report of a run (``report.md``), with figures linked as PNG files beside it.

Example:
    >>> from volbench.report.schema import RunReport
    >>> md = render_markdown(RunReport(run_id="20250101T120000Z-1a2b3c",
    ...                                started="2025-01-01T12:00:00Z"))
    >>> md.splitlines()[0]
    '# volbench report 20250101T120000Z-1a2b3c'
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from .envinfo import environment_rows
from .formatting import (
    by_claim,
    format_seconds,
    format_value,
    group_cases,
    run_headline,
    seeds_text,
    statistic_text,
)
from .schema import CaseResult, RunReport

__all__ = ["render_markdown"]


def _cell(text: str) -> str:
    """Escape a Markdown table cell (pipes, line breaks)."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip() or "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    align = align or "l" * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _verdict(result: CaseResult) -> str:
    text = f"**{result.verdict.upper()}**" if result.verdict in ("fail", "error") else result.verdict
    if result.verdict == "pass" and result.outcome in ("failed", "error"):
        text += " (test " + result.outcome + ")"
    if result.quick:
        text += " (quick)"
    return text


QUICK_NOTE = ("Quick verdicts come from nightly cases run at tiny scale (`--quick`: a few directions, one "
              "seed, few epochs, small subsets, generated stand-ins for absent data sets): they show that "
              "each case's code runs, not whether its claim holds, and are never mixed with the verdicts above.")


def _anchor(index: int) -> str:
    return f"case-{index}"


def render_markdown(
    run: RunReport,
    figures: Mapping[int, Sequence[tuple[str, str]]] | None = None,
    timing_figure: str | None = None,
) -> str:
    """Render ``run`` as Markdown.

    Args:
        run: the run.
        figures: for each result's index in ``run.results``, (title, relative path) of its PNGs.
        timing_figure: relative path of the timing PNG, if any.
    """
    figures = figures or {}
    env = run.environment
    out = [f"# volbench report {run.run_id}", ""]
    if run.status != "complete":
        out += [f"> **This run did not finish** (status: {run.status}); the results below are "
                f"the ones recorded before it stopped.", ""]
    out += [
        f"- **Status:** {run_headline(run)}",
        f"- **Started:** {run.started} · **finished:** {run.finished or '-'}",
        f"- **Tier:** {env.get('tier') or '-'} · **torch** {env.get('torch', '-')} · "
        f"**device:** {_device_line(env)}",
        f"- **Command:** `{env.get('command', '-')}`",
        "",
        "## Verdicts",
        "",
    ]
    rows, quick_rows = [], []
    for index, r in by_claim(run.results):
        (quick_rows if r.quick else rows).append([
            r.claim, f"[{r.case_id}](#{_anchor(index)})", r.estimator or "-", _verdict(r),
            statistic_text(r) if r.statistic is not None else (r.reason or "-"),
            format_value(r.paper_value), format_seconds(r.seconds), r.device or "-",
        ])
    header = ["claim", "case", "estimator", "verdict", "statistic (or reason)", "paper", "seconds", "device"]
    if rows:
        out += _table(header, rows, align="llllllrl")
    elif not quick_rows:
        out.append("No results were recorded.")
    else:
        out.append("No full-scale results were recorded; see the quick verdicts below.")
    out.append("")
    if quick_rows:
        out += ["## Quick verdicts (code paths at tiny scale, not claims)", "", QUICK_NOTE, ""]
        out += _table(header, quick_rows, align="llllllrl")
        out.append("")
    for claim, cases in group_cases(run.results):
        out += [f"## {claim}", ""]
        for case_id, title, members in cases:
            out += [f"### {case_id}" + (f": {title}" if title else ""), ""]
            for index, r in members:
                out += _case_block(index, r, figures.get(index, ()))
    if timing_figure:
        out += ["## Timing", "", f"![Time per case and estimator]({timing_figure})", ""]
    out += ["## Environment", ""]
    out += _table(["key", "value"], [[k, v] for k, v in environment_rows(env)])
    out.append("")
    return "\n".join(out)


def _device_line(env: Mapping) -> str:
    devices = env.get("devices") or ()
    if devices:
        return ", ".join(str(d.get("name", "?")) for d in devices)
    return f"CPU ({env.get('cpu', '?')})"


def _case_block(index: int, r: CaseResult, figures: Sequence[tuple[str, str]]) -> list[str]:
    out = [f'<a id="{_anchor(index)}"></a>', "",
           f"#### {r.estimator or 'case'}: {_verdict(r)}", ""]
    if r.statistic is not None:
        out.append(f"- **Statistic:** {r.statistic.format()}")
    if r.rule:
        out.append(f"- **Rule:** {r.rule}")
    if r.paper_value is not None:
        out.append(f"- **Paper value:** {format_value(r.paper_value)}")
    if r.reason:
        out.append(f"- **Reason:** {r.reason}")
    out.append(f"- **Seeds:** {seeds_text(r.seeds)}")
    test = f"`{r.nodeid}`" if r.nodeid else "-"
    out.append(f"- **Test:** {test} ({r.outcome or 'outcome unknown'}) · "
               f"{format_seconds(r.seconds)} s on {r.device or '-'} · tier {r.tier}")
    out.append("")
    if r.numbers:
        out += _table(["number", "value"], [[k, format_value(v)] for k, v in r.numbers.items()])
        out.append("")
    for title, path in figures:
        out += [f"![{title}]({path})", ""]
    return out
