"""Markdown report of a run (``report.md``), with figures linked as PNG files beside it.

Example:
    >>> from volbench.results import RunReport
    >>> md = render_markdown(RunReport(run_id="20250101T120000Z-1a2b3c",
    ...                                started="2025-01-01T12:00:00Z"))
    >>> md.splitlines()[0]
    '# volbench report 20250101T120000Z-1a2b3c'
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from volbench.report.baseline import REPORTED_NOTE, reported_moves
from volbench.report.claimtable import ClaimRow, EstimatorSummary, claim_rows, missing_claims
from volbench.report.envinfo import environment_rows
from volbench.report.formatting import (
    by_claim,
    computed_seconds,
    format_seconds,
    format_value,
    group_cases,
    run_headline,
    seeds_text,
    statistic_text,
    timing_text,
)
from volbench.results import CaseResult, RunReport, Statement

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


def _summary_cell(summary: EstimatorSummary | None) -> str:
    if summary is None:
        return "-"
    verdict = f"**{summary.verdict.upper()}**" if summary.verdict in ("fail", "error") else summary.verdict
    return f"{verdict}: {summary.key}"


def _statement_line(st: Statement) -> str:
    line = f"({st.id}) **{st.verdict}**: {st.text}"
    if st.statistic is not None:
        line += f"; {st.statistic.format(3)}"
    if st.rule and st.verdict in ("pass", "fail"):
        line += f" ({st.rule})"
    if st.reason:
        line += f"; {st.reason}"
    if st.paper:
        line += f"; paper: {st.paper}"
    return line.replace("\n", " ")


def claim_table(run: RunReport) -> list[str]:
    """The claim-level table (one row per claim) and each claim's statements in a
    ``<details>`` block, as Markdown lines."""
    rows = claim_rows(run)
    if not rows:
        return []
    out = ["## Claims", "",
           "One row per claim: what the paper says, what the reference estimator (the main paper's "
           "fixed-grid procedure) and the principled estimator (volbench's) found, and whether they agree. "
           "A claim's verdict per estimator is the conjunction of its cases'; expand a claim for its "
           "statements.", ""]
    if any(row.quick for row in rows):
        out += ["> **Quick run**: these verdicts check that the code runs at tiny scale; they are not "
                "evidence about the claims.", ""]
    table = []
    for row in rows:
        info = row.info
        others = "; ".join(f"{s.estimator}: {_summary_cell(s)}" for s in row.others) or "-"
        table.append([
            f"[{row.claim}](#claim-{row.claim})",
            (f"{info.title}. {info.statement}" if info else row.title or "(not in the claim registry)"),
            (f"{info.number} ({info.source})" if info and info.number else (info.source if info else "-")),
            _summary_cell(row.estimators.get("reference")),
            _summary_cell(row.estimators.get("principled")),
            others, row.agreement,
        ])
    out += _table(["claim", "the paper says", "paper's number", "reference", "principled",
                   "other estimators", "estimators agree?"], table)
    out.append("")
    for row in rows:
        out += _claim_details(row)
    missing = missing_claims(rows)
    if missing:
        out += [f"Claims of CLAIMS.md not run here ({len(missing)}): {', '.join(missing)}.", ""]
    return out


def _claim_details(row: ClaimRow) -> list[str]:
    out = ["<details>", f"<summary>{row.summary()}</summary>", ""]
    for summary in row.estimators.values():
        for index, result in summary.cases:
            head = f"- [{result.case_id}](#{_anchor(index)}) · {summary.estimator}: {_verdict(result)}"
            if result.statistic is not None:
                head += f" ({result.statistic.format(3)})"
            elif result.reason:
                head += f" ({result.reason})"
            out.append(head)
            for st in result.statements:
                out.append(f"  - {_statement_line(st)}")
    out += ["", "</details>", ""]
    return out


def render_markdown(
    run: RunReport,
    figures: Mapping[int, Sequence[tuple[str, str]] | Sequence[tuple[str, str, str]]] | None = None,
    timing_figure: str | tuple[str, str] | None = None,
    forest_figure: tuple[str, str] | None = None,
) -> str:
    """Render ``run`` as Markdown: the claim table first, then every result.

    Args:
        run: the run.
        figures: for each result's index in ``run.results``, (title, relative path) or (title,
            relative path, caption) of its PNGs.
        timing_figure: relative path of the timing PNG (or (path, caption)), if any.
        forest_figure: (relative path, caption) of the verdicts-at-a-glance forest plot, if any.
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
    ]
    out += claim_table(run)
    if forest_figure:
        out += ["## Verdicts at a glance", "", f"![Each judged statement's interval against its decision margin]"
                f"({forest_figure[0]})", "", f"*{forest_figure[1]}*", ""]
    out += ["## Verdicts", ""]
    rows, quick_rows = [], []
    for index, r in by_claim(run.results):
        (quick_rows if r.quick else rows).append([
            r.claim, f"[{r.case_id}](#{_anchor(index)})", r.estimator or "-", _verdict(r),
            statistic_text(r) if r.statistic is not None else (r.reason or "-"),
            format_value(r.paper_value), format_seconds(computed_seconds(r)), format_seconds(r.seconds),
            r.device or "-",
        ])
    header = ["claim", "case", "estimator", "verdict", "statistic (or reason)", "paper", "computed s", "wall s",
              "device"]
    if rows:
        out += _table(header, rows, align="llllllrrl")
    elif not quick_rows:
        out.append("No results were recorded.")
    else:
        out.append("No full-scale results were recorded; see the quick verdicts below.")
    out.append("")
    if quick_rows:
        out += ["## Quick verdicts (code paths at tiny scale, not claims)", "", QUICK_NOTE, ""]
        out += _table(header, quick_rows, align="llllllrrl")
        out.append("")
    out += _baseline_moves_section(run)
    for claim, cases in group_cases(run.results):
        out += [f'<a id="claim-{claim}"></a>', "", f"## {claim}", ""]
        for case_id, title, members in cases:
            out += [f"### {case_id}" + (f": {title}" if title else ""), ""]
            for index, r in members:
                out += _case_block(index, r, figures.get(index, ()))
    if timing_figure:
        path, caption = (timing_figure, "") if isinstance(timing_figure, str) else timing_figure
        out += ["## Timing", "", f"![Time per case and estimator]({path})", ""]
        if caption:
            out += [f"*{caption}*", ""]
    out += ["## Environment", ""]
    out += _table(["key", "value"], [[k, v] for k, v in environment_rows(env)])
    out.append("")
    return "\n".join(out)


def _baseline_moves_section(run: RunReport) -> list[str]:
    """One section per baseline the run's verdicts moved against without failing (another machine
    class: ``CaseResult.baseline_moves``), as Markdown lines; none when nothing was reported."""
    out = []
    for group in reported_moves(run.results):
        out += [f"## {group.title}", "",
                f"This run: {group.machine} (differs in {group.differs}). {REPORTED_NOTE}", ""]
        out += [f"- {line}" for line in group.lines] + [""]
    return out


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
    out.append(f"- **Test:** {test} ({r.outcome or 'outcome unknown'}) on {r.device or '-'} · tier {r.tier}"
               + (" · quick run" if r.quick else ""))
    out.append(f"- **Time:** {timing_text(r)}")
    out.append("")
    if r.statements:
        out += _table(["statement", "verdict", "what it says", "statistic", "rule or reason", "paper"],
                      [[st.id, st.verdict, st.text, st.statistic.format(3) if st.statistic else "-",
                        st.reason or st.rule or "-", st.paper or "-"] for st in r.statements])
        out.append("")
    if r.numbers:
        out += _table(["number", "value"], [[k, format_value(v)] for k, v in r.numbers.items()])
        out.append("")
    for figure in figures:
        title, path = figure[0], figure[1]
        out += [f"![{title}]({path})", ""]
        if len(figure) > 2 and figure[2]:
            out += [f"*{figure[2]}*", ""]
    return out
