"""Self-contained HTML report (``index.html``): one file, plots inlined as base64 PNG, no
scripts, no external resources, so it can be mailed, archived or opened from a CI artifact.

jinja2 renders the page with autoescaping on: titles, reasons and node ids from results cannot
inject markup.

Example:
    >>> from volbench.results import RunReport
    >>> html = render_html(RunReport(run_id="r1", started="2025-01-01T12:00:00Z"))
    >>> html.startswith("<!DOCTYPE html>") and "r1" in html
    True
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from volbench.report.baseline import REPORTED_NOTE, reported_moves
from volbench.report.claimtable import claim_rows, missing_claims
from volbench.report.envinfo import environment_rows
from volbench.report.formatting import (
    by_claim,
    computed_seconds,
    format_seconds,
    format_value,
    group_cases,
    run_headline,
    seeds_text,
    timing_text,
)
from volbench.report.plots import PlotImage
from volbench.report.render_md import QUICK_NOTE
from volbench.results import VERDICTS, RunReport, Statement

__all__ = ["render_html"]

_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>volbench {{ run.run_id }}</title>
<style>
  :root { --pass:#1a7f37; --fail:#cf222e; --error:#8250df; --inconclusive:#9a6700;
          --skip:#57606a; --line:#d0d7de; --muted:#57606a; --bg2:#f6f8fa; }
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         color:#1f2328; margin:0; }
  main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 60px; }
  h1 { font-size: 22px; margin: 0 0 4px; }
  h2 { font-size: 18px; margin: 34px 0 10px; padding-bottom: 4px;
       border-bottom: 1px solid var(--line); }
  h3 { font-size: 15px; margin: 22px 0 8px; }
  code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; background: var(--bg2);
         padding: 1px 4px; border-radius: 4px; word-break: break-all; }
  .meta { color: var(--muted); margin: 2px 0; }
  .banner { background:#fff8c5; border:1px solid #d4a72c; padding:8px 12px; border-radius:6px;
            margin: 12px 0; }
  .chips { margin: 12px 0 4px; }
  .chip { display:inline-block; padding: 2px 10px; border-radius: 12px; color:#fff;
          font-weight:600; margin-right:6px; font-size: 13px; }
  .v { display:inline-block; min-width: 74px; text-align:center; padding:1px 6px;
       border-radius: 4px; color:#fff; font-weight:600; font-size:12px; }
  .v-pass { background: var(--pass); } .v-fail { background: var(--fail); }
  .v-error { background: var(--error); } .v-inconclusive { background: var(--inconclusive); }
  .v-skip { background: var(--skip); }
  table { border-collapse: collapse; width: 100%; font-size: 13px; }
  th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left;
           vertical-align: top; }
  th { background: var(--bg2); position: sticky; top: 0; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  td.stat { font-variant-numeric: tabular-nums; }
  td.case { white-space: nowrap; }
  tr.r-fail td, tr.r-error td { background: #fff5f5; }
  .card { border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px;
          margin: 10px 0 18px; }
  .card h4 { margin: 0 0 8px; font-size: 14px; }
  dl { display: grid; grid-template-columns: 130px 1fr; gap: 3px 12px; margin: 0 0 10px; }
  dt { color: var(--muted); } dd { margin: 0; }
  .numbers { width: auto; min-width: 50%; margin: 6px 0 10px; }
  .numbers td:first-child { color: var(--muted); }
  figure { margin: 10px 0; }
  figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
  figcaption { color: var(--muted); font-size: 12px; }
  .env td:first-child { width: 220px; color: var(--muted); }
  .warn { color: var(--fail); font-weight: 600; }
  table.claims td { font-size: 12.5px; }
  table.claims { table-layout: fixed; }
  table.claims th:nth-child(1) { width: 44px; } table.claims th:nth-child(2) { width: 34%; }
  table.claims th:nth-child(3) { width: 20%; } table.claims th:nth-child(7) { width: 84px; }
  table.claims td.number { color: var(--muted); }
  table.claims td { overflow-wrap: anywhere; }
  .agree-agree { color: var(--pass); font-weight: 600; } .agree-disagree { color: var(--fail); font-weight: 600; }
  .agree-differ { color: var(--inconclusive); font-weight: 600; }
  tr.details td { border-bottom: 2px solid var(--line); padding-top: 0; }
  details summary { cursor: pointer; color: var(--muted); }
  details ul { margin: 4px 0 8px; padding-left: 20px; }
  .sv { font-weight: 600; } .sv-pass { color: var(--pass); } .sv-fail { color: var(--fail); }
  .sv-inconclusive { color: var(--inconclusive); } .sv-not-judged { color: var(--skip); }
  table.statements { margin: 6px 0 10px; }
  .quick { color: var(--muted); font-weight: 600; }
</style>
</head>
<body>
<main>
<h1>volbench report <code>{{ run.run_id }}</code></h1>
<p class="meta">{{ headline }}</p>
<p class="meta">started {{ run.started }} · finished {{ run.finished or "-" }} ·
  tier {{ env.get("tier") or "-" }} · torch {{ env.get("torch", "-") }} · {{ device_line }}</p>
{% if run.status != "complete" %}
<div class="banner">This run did not finish (status: <b>{{ run.status }}</b>); the results
  below are the ones recorded before it stopped.</div>
{% endif %}
<div class="chips">
{% for verdict, n in counts %}<span class="chip v-{{ verdict }}">{{ n }} {{ verdict }}</span>{% endfor %}
</div>

{% if claims %}
<h2 id="claims">Claims</h2>
<p class="meta">One row per claim: what the paper says, what the reference estimator (the main paper's
  fixed-grid procedure) and the principled estimator (volbench's) found, and whether they agree. A claim's
  verdict per estimator is the conjunction of its cases'; expand a claim for its statements.</p>
{% if any_quick %}<div class="banner"><b>Quick run</b>: these verdicts check that the code runs at tiny scale;
  they are not evidence about the claims.</div>{% endif %}
<table class="claims" id="claim-table">
<thead><tr><th>claim</th><th>the paper says</th><th>paper's number</th><th>reference</th><th>principled</th>
  <th>other estimators</th><th>estimators agree?</th></tr></thead>
<tbody>
{% for row in claims %}
<tr class="claim-row" data-claim="{{ row.claim }}">
  <td><a href="#claim-{{ row.claim }}">{{ row.claim }}</a></td>
  <td class="paper">
  {% if row.info %}<b>{{ row.info.title }}.</b> {{ row.info.statement }}
  {% else %}{{ row.title or "(not in the claim registry)" }}{% endif %}
  </td>
  <td class="number">
  {% if row.info %}{{ row.info.number }}{% if row.info.number %} · {% endif %}{{ row.info.source }}
  {% else %}-{% endif %}
  </td>
  {% for name in ("reference", "principled") %}
  {% set s = row.estimators.get(name) %}
  <td>{% if s %}<span class="v v-{{ s.verdict }}">{{ s.verdict }}</span> {{ s.key }}{% else %}-{% endif %}</td>
  {% endfor %}
  <td>
  {% for s in row.others %}
  {{ s.estimator }}: <span class="v v-{{ s.verdict }}">{{ s.verdict }}</span> {{ s.key }}
  {% if not loop.last %}<br>{% endif %}
  {% else %}-{% endfor %}
  </td>
  <td class="agree-{{ row.agreement.split()[0] }}">{{ row.agreement }}</td>
</tr>
<tr class="details"><td colspan="7"><details>
<summary>{{ row_summary[row.claim] }}</summary>
<ul>
{% for s in row.estimators.values() %}
{% for index, r in s.cases %}
<li><a href="#case-{{ index }}">{{ r.case_id }}</a> · {{ s.estimator }}:
  <span class="v v-{{ r.verdict }}">{{ r.verdict }}</span>
  {% if r.statistic is not none %}{{ r.statistic.format(3) }}{% elif r.reason %}{{ r.reason }}{% endif %}
  {% if r.statements %}
  <ul>
  {% for st in r.statements %}
  <li>({{ st.id }}) <span class="sv sv-{{ st.verdict }}">{{ st.verdict }}</span>: {{ statement_text(st) }}</li>
  {% endfor %}
  </ul>
  {% endif %}
</li>
{% endfor %}
{% endfor %}
</ul></details></td></tr>
{% endfor %}
</tbody>
</table>
{% if missing %}
<p class="meta">Claims of CLAIMS.md not run here ({{ missing | length }}): {{ missing | join(", ") }}.</p>
{% endif %}
{% endif %}

{% macro verdict_table(table_rows) %}
<table>
<thead><tr><th>claim</th><th>case</th><th>estimator</th><th>verdict</th>
  <th>statistic (or reason)</th><th>paper</th><th>computed s</th><th>wall s</th><th>device</th></tr></thead>
<tbody>
{% for row in table_rows %}
<tr class="r-{{ row.r.verdict }}">
  <td>{{ row.r.claim }}</td>
  <td class="case"><a href="#case-{{ row.index }}">{{ row.r.case_id }}</a></td>
  <td>{{ row.r.estimator or "-" }}</td>
  <td><span class="v v-{{ row.r.verdict }}">{{ row.r.verdict }}</span>{% if row.r.quick
      %} <span class="quick">quick</span>{% endif %}
      {% if row.test_failed %}<span class="warn" title="pytest outcome">test {{ row.r.outcome }}</span>{% endif %}</td>
  <td class="stat">{{ row.stat }}</td>
  <td class="num">{{ row.paper }}</td>
  <td class="num">{{ row.computed }}</td>
  <td class="num">{{ row.seconds }}</td>
  <td>{{ row.r.device or "-" }}</td>
</tr>
{% endfor %}
</tbody>
</table>
{% endmacro %}
{% if forest %}
<h2 id="at-a-glance">Verdicts at a glance</h2>
<figure><img src="{{ forest.data_uri() }}" alt="{{ forest.alt }}">
<figcaption><b>{{ forest.title }}.</b> {{ forest.caption }}</figcaption></figure>
{% endif %}
<h2 id="verdicts">Verdicts</h2>
{% if rows %}
{{ verdict_table(rows) }}
{% elif quick_rows %}
<p>No full-scale results were recorded; see the quick verdicts below.</p>
{% else %}
<p>No results were recorded.</p>
{% endif %}
{% if quick_rows %}
<h2>Quick verdicts (code paths at tiny scale, not claims)</h2>
<p class="meta">{{ quick_note }}</p>
{{ verdict_table(quick_rows) }}
{% endif %}
{% for group in baseline_moves %}
<h2 id="baseline-moves-{{ loop.index }}">{{ group.title }}</h2>
<p class="meta">This run: {{ group.machine }} (differs in {{ group.differs }}). {{ moves_note }}</p>
<ul>
{% for line in group.lines %}<li>{{ line }}</li>
{% endfor %}</ul>
{% endfor %}

{% for claim, cases in groups %}
<h2 id="claim-{{ claim }}">{{ claim }}</h2>
{% for case_id, title, members in cases %}
<h3>{{ case_id }}{% if title %}: {{ title }}{% endif %}</h3>
{% for index, r in members %}
<div class="card" id="case-{{ index }}">
<h4>{{ r.estimator or "case" }} <span class="v v-{{ r.verdict }}">{{ r.verdict }}</span>{% if r.quick
  %} <span class="quick">quick</span>{% endif %}</h4>
<dl>
{% if r.statistic is not none %}<dt>statistic</dt><dd>{{ r.statistic.format() }}</dd>{% endif %}
{% if r.rule %}<dt>rule</dt><dd>{{ r.rule }}</dd>{% endif %}
{% if r.paper_value is not none %}<dt>paper value</dt><dd>{{ fmt(r.paper_value) }}</dd>{% endif %}
{% if r.reason %}<dt>reason</dt><dd>{{ r.reason }}</dd>{% endif %}
<dt>seeds</dt><dd>{{ seeds(r.seeds) }}</dd>
<dt>test</dt><dd>{% if r.nodeid %}<code>{{ r.nodeid }}</code>{% else %}-{% endif %}
  ({{ r.outcome or "outcome unknown" }})</dd>
<dt>run</dt><dd>on {{ r.device or "-" }} · tier {{ r.tier }}{% if r.quick %} · quick run{% endif %}</dd>
<dt>time</dt><dd>{{ timing_text(r) }}</dd>
</dl>
{% if r.statements %}
<table class="statements"><thead><tr><th>statement</th><th>verdict</th><th>what it says</th><th>statistic</th>
  <th>rule or reason</th><th>paper</th></tr></thead><tbody>
{% for st in r.statements %}<tr><td>{{ st.id }}</td>
  <td><span class="sv sv-{{ st.verdict }}">{{ st.verdict }}</span></td>
  <td>{{ st.text }}</td><td>{% if st.statistic is not none %}{{ st.statistic.format(3) }}{% else %}-{% endif %}</td>
  <td>{{ st.reason or st.rule or "-" }}</td><td>{{ st.paper or "-" }}</td></tr>
{% endfor %}</tbody></table>
{% endif %}
{% if r.numbers %}
<table class="numbers"><tbody>
{% for key, value in r.numbers.items() %}<tr><td>{{ key }}</td><td>{{ fmt(value) }}</td></tr>
{% endfor %}</tbody></table>
{% endif %}
{% for plot in figures.get(index, ()) %}
<figure><img src="{{ plot.data_uri() }}" alt="{{ plot.alt }}">
<figcaption><b>{{ plot.title }}.</b> {{ plot.caption }}</figcaption></figure>
{% endfor %}
</div>
{% endfor %}
{% endfor %}
{% endfor %}

{% if timing %}
<h2 id="timing">Timing</h2>
<figure><img src="{{ timing.data_uri() }}" alt="{{ timing.alt }}">
<figcaption><b>{{ timing.title }}.</b> {{ timing.caption }}</figcaption></figure>
{% endif %}

<h2 id="environment">Environment</h2>
<table class="env"><tbody>
{% for key, value in env_rows %}<tr><td>{{ key }}</td><td>{{ value }}</td></tr>
{% endfor %}</tbody></table>
</main>
</body>
</html>
"""


def _statement_text(st: Statement) -> str:
    """A statement's line after its id and verdict: text; statistic (rule); reason; paper."""
    text = st.text
    if st.statistic is not None:
        text += f"; {st.statistic.format(3)}"
    if st.rule and st.verdict in ("pass", "fail"):
        text += f" ({st.rule})"
    if st.reason:
        text += f"; {st.reason}"
    if st.paper:
        text += f"; paper: {st.paper}"
    return text


def render_html(
    run: RunReport,
    figures: Mapping[int, Sequence[PlotImage]] | None = None,
    timing: PlotImage | None = None,
    forest: PlotImage | None = None,
) -> str:
    """Render ``run`` as one self-contained HTML page.

    Args:
        run: the run.
        figures: for each result's index in ``run.results``, its plots.
        timing: the timing plot, if any.
        forest: the verdicts-at-a-glance forest plot, if any.
    """
    import jinja2

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                                     trim_blocks=True, lstrip_blocks=True)
    template = environment.from_string(_TEMPLATE)
    env = run.environment
    rows = [
        {
            "index": index,
            "r": r,
            "stat": r.statistic.format() if r.statistic is not None else (r.reason or "-"),
            "paper": format_value(r.paper_value),
            "seconds": format_seconds(r.seconds),
            "computed": format_seconds(computed_seconds(r)),
            "test_failed": r.verdict == "pass" and r.outcome in ("failed", "error"),
        }
        for index, r in by_claim(run.results)
    ]
    quick_rows = [row for row in rows if row["r"].quick]
    rows = [row for row in rows if not row["r"].quick]
    counts = run.verdict_counts()
    devices = env.get("devices") or ()
    device_line = (", ".join(str(d.get("name", "?")) for d in devices) if devices
                   else f"CPU: {env.get('cpu', '?')}")
    claims = claim_rows(run)
    return template.render(
        run=run,
        claims=claims,
        row_summary={row.claim: row.summary() for row in claims},
        statement_text=_statement_text,
        any_quick=any(row.quick for row in claims),
        missing=missing_claims(claims) if claims else [],
        env=env,
        headline=run_headline(run),
        device_line=device_line,
        counts=[(v, counts[v]) for v in VERDICTS if v in counts],
        rows=rows,
        quick_rows=quick_rows,
        quick_note=QUICK_NOTE.replace("`", ""),
        baseline_moves=reported_moves(run.results),
        moves_note=REPORTED_NOTE,
        groups=group_cases(run.results),
        figures=figures or {},
        timing=timing,
        forest=forest,
        env_rows=environment_rows(env),
        fmt=format_value,
        secs=format_seconds,
        seeds=seeds_text,
        timing_text=timing_text,
    )
