"""The verdicts at a glance: one forest plot of every judged statement's interval against the
lines its rule decides by, coloured by verdict.

Statements measure different things (nats, log radii, alpha, accuracy), so each row is drawn in
units of its own decision margin (the lines in :attr:`~volbench.results.Statement.margins`):

- a one-sided rule with a smallest effect of interest e: x = s (value - boundary) / e, with
  s = +1 when the claim is "above" and -1 when "below", so the boundary sits at 0, the smallest
  effect at 1 and the claimed side is always to the right. Pass: the interval is right of 0;
  fail: its Bonferroni interval is left of 1 (the drawn interval is the level's; a fail by the
  wider Bonferroni interval can look closer than it is);
- an equivalence test with bounds (low, high): x = (value - centre) / half-width, so the bounds
  sit at -1 and 1 and pass is "inside";
- a one-sided rule without a smallest effect (the rule can only fail on the other side of its
  boundary): x = s (value - boundary) / w with w the interval's largest distance from the
  boundary, drawn hollow: only the side of 0 is meaningful there.

Rows beyond +-``CLIP`` are clipped and marked with an arrow. Statements without an interval (not
judged, counts, exact checks) are left out and counted in the caption.

Example:
    >>> from volbench.results import CaseResult, Statement, Statistic
    >>> st = Statement("a", "x > 0", "pass", Statistic("d", 30.0, low=12.0, high=48.0, level=0.95), rule="r",
    ...                margins={"claimed": "above", "boundary": 0.0, "smallest_effect": 10.0})
    >>> r = CaseResult(claim="F3", case_id="F3-own[mnist-mlp]", verdict="pass", statistic=st.statistic,
    ...                rule="r", statements=[st], estimator="principled")
    >>> [round(v, 2) for v in forest_rows([r])[0][2:5]]
    [3.0, 1.2, 4.8]
    >>> forest_plot([r]).png[:4]
    b'\\x89PNG'
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from volbench.report.plots import COLORS, RC, PlotImage, png_bytes
from volbench.results import CaseResult, Statement

__all__ = ["forest_rows", "forest_plot", "normalised", "CLIP"]

#: Rows are clipped to +-CLIP margins: wide enough to show an interval 5 smallest effects out,
#: narrow enough that one huge effect does not squeeze every other row to a point.
CLIP = 5.0
_VERDICT_COLORS = {"pass": COLORS[2], "fail": COLORS[1], "inconclusive": "#7f7f7f"}


def normalised(st: Statement) -> tuple[float, float, float, bool] | None:
    """(point, low, high, scaled_by_margin) of ``st``'s interval in units of its decision margin
    (module docstring); None when it has no finite interval or no margins."""
    stat, m = st.statistic, st.margins
    if stat is None or not m or stat.low is None or stat.high is None:
        return None
    value, low, high = float(stat.value), float(stat.low), float(stat.high)
    if not all(math.isfinite(x) for x in (value, low, high)):
        return None
    if m["claimed"] == "inside":
        centre, half = (m["low"] + m["high"]) / 2, (m["high"] - m["low"]) / 2
        if not half > 0:
            return None
        return (value - centre) / half, (low - centre) / half, (high - centre) / half, True
    sign = 1.0 if m["claimed"] == "above" else -1.0
    b = float(m["boundary"])
    e = abs(float(m["smallest_effect"]) - b) if "smallest_effect" in m else 0.0
    scaled = e > 0
    unit = e if scaled else max(abs(low - b), abs(high - b))
    if not unit > 0:
        return None
    xs = sorted(sign * (x - b) / unit for x in (low, high))
    return sign * (value - b) / unit, xs[0], xs[1], scaled


def forest_rows(results: Sequence[CaseResult]) -> list[tuple[str, str, float, float, float, bool]]:
    """(label, verdict, point, low, high, scaled_by_margin) per judged statement of the full-scale
    results, in claim order."""
    rows = []
    for r in sorted((r for r in results if not r.quick), key=lambda r: (r.claim, r.case_id, r.estimator or "")):
        for st in r.statements:
            if st.verdict not in _VERDICT_COLORS:
                continue
            got = normalised(st)
            if got is None:
                continue
            who = f"{r.case_id} · {r.estimator}" if r.estimator else r.case_id
            rows.append((f"{who} · ({st.id})", st.verdict, *got))
    return rows


def forest_plot(results: Sequence[CaseResult], *, dpi: int = 110) -> PlotImage | None:
    """The forest plot of :func:`forest_rows`; None when no statement has an interval and margins."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    rows = forest_rows(results)
    if not rows:
        return None
    judged = sum(1 for r in results if not r.quick for st in r.statements if st.verdict in _VERDICT_COLORS)
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(7.6, 1.6 + 0.2 * len(rows)), layout="constrained")
        ax = fig.add_subplot()
        ax.grid(axis="y", visible=False)
        for y, (_, verdict, point, low, high, scaled) in enumerate(rows):
            color = _VERDICT_COLORS[verdict]
            lo, hi = max(low, -CLIP), min(high, CLIP)
            ax.plot([lo, hi], [y, y], color=color, lw=2.2 if scaled else 1.2, solid_capstyle="butt")
            ax.plot([min(max(point, -CLIP), CLIP)], [y], marker="o", ms=4.5, color=color,
                    markerfacecolor=color if scaled else "white")
            if high > CLIP:
                ax.annotate("", (CLIP + 0.25, y), (CLIP, y), arrowprops={"arrowstyle": "->", "color": color})
            if low < -CLIP:
                ax.annotate("", (-CLIP - 0.25, y), (-CLIP, y), arrowprops={"arrowstyle": "->", "color": color})
        ax.axvline(0.0, color="k", lw=0.9)
        ax.axvline(1.0, color="k", lw=0.9, ls="--")
        ax.axvline(-1.0, color="k", lw=0.6, ls=":")
        ax.set_yticks(range(len(rows)), labels=[r[0] for r in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(-CLIP - 0.6, CLIP + 0.6)
        ax.set_xlabel("interval in units of the decision margin: boundary at 0, smallest effect of interest at 1 "
                      "(claimed side to the right); equivalence bounds at -1 and 1")
        handles = [Line2D([], [], color=c, lw=2.2, marker="o", label=v) for v, c in _VERDICT_COLORS.items()]
        handles.append(Line2D([], [], color="0.3", lw=1.2, marker="o", markerfacecolor="white",
                              label="no smallest effect: scaled by its interval"))
        fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=7.5)
        fig.suptitle("Verdicts at a glance: each judged statement's interval against its decision margin", fontsize=10)
        png = png_bytes(fig, dpi)
    counts = {v: sum(1 for r in rows if r[1] == v) for v in _VERDICT_COLORS}
    left_out = judged - len(rows)
    return PlotImage(
        key="forest", title="Verdicts at a glance",
        alt=(f"Forest plot of {len(rows)} judged statements: " + ", ".join(f"{n} {v}" for v, n in counts.items())
             + "."),
        png=png,
        caption=("Each row is one judged statement's interval (its level's, a dot at the estimate) in units of the "
                 "line its rule decides by: pass when the interval lies right of 0 (the boundary), fail when it lies "
                 "left of 1 (the smallest effect of interest: the paper's effect is absent at this scale) or, for an "
                 "equivalence test, when it lies outside -1..1. Hollow rows have no smallest effect and are scaled by "
                 "their own interval: only their side of 0 counts." + (
                     f" {left_out} judged statement(s) without an interval against lines (exact checks, counts) are "
                     "not drawn." if left_out else "")),
    )
