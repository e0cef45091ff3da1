"""Plots of a report, one figure per (result, series kind), drawn with matplotlib's Agg canvas.

matplotlib is imported inside the functions (never at import time), and figures are built with
``matplotlib.figure.Figure`` rather than pyplot, so no global backend or figure registry is
touched. Each :class:`CaseResult` series entry's ``"kind"`` picks the drawing:

==========================  ===================================================================
``volume_vs_data``          log V of the found minimum against training-set size D (log axis)
                            with the fitted power law ``log V = slope * ln D + intercept``, the
                            slope's interval as a band pivoting at the data's centre, and the
                            paper's slope ``alpha * n`` through the same centre (Fan et al.
                            eq. 4, Table 1). With ``n_params`` the axis shows log V / n, so the
                            fitted slope reads directly as alpha.
``radius_hist``             histograms and ECDFs of each minimum's log radii (Fan et al. Fig. 9)
``volume_vs_landscape``     log V of each minimum across landscapes (Fan et al. Fig. 10 right);
                            volume 0 (log V = -inf) is drawn as a down triangle at the bottom
``volume_vs_checkpoint``    log V across checkpoints, accuracies and training loss below
``volume_vs_directions``    log V against the number of directions K (claim E1)
``xy``                      any labelled line
==========================  ===================================================================

Example:
    >>> from volbench.results import CaseResult
    >>> r = CaseResult(claim="E1", case_id="E1-directions", verdict="skip", reason="demo",
    ...                series=[{"kind": "volume_vs_directions", "x": [50, 500], "y": [-10., -8.]}])
    >>> [p.png[:4] for p in case_plots(r)]
    [b'\\x89PNG']

Size: one figure per series kind, with the shared style; a kind is found by its name.
"""
from __future__ import annotations

import base64
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from volbench.results import CaseResult

__all__ = ["PlotImage", "case_plots", "timing_plot", "KIND_TITLES", "KIND_CAPTIONS", "figure_caption", "COLORS", "RC",
           "png_bytes"]

#: Figure size in inches and resolution: 7.2 x 4.2 in at 110 dpi is about 790 x 460 px, legible
#: at the report's 900 px column width without scaling artefacts.
_SIZE = (7.2, 4.2)
_DPI = 110
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
RC = MappingProxyType({
    "font.size": 9.5,
    "axes.titlesize": 10.5,
    "axes.labelsize": 9.5,
    "legend.fontsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
})

KIND_TITLES = MappingProxyType({
    "volume_vs_data": "log-volume against dataset size",
    "radius_hist": "radius distributions",
    "volume_vs_landscape": "volume across landscapes",
    "volume_vs_checkpoint": "volume across training checkpoints",
    "volume_vs_directions": "log-volume against the number of directions",
    "xy": "series",
})


@dataclass(frozen=True)
class PlotImage:
    """A rendered figure: ``key`` (a file-name stem unique within a run), ``title``, ``alt``
    text describing it for screen readers, the ``png`` bytes, and a ``caption`` saying what the
    figure shows and what the claim predicts one would see in it."""

    key: str
    title: str
    alt: str
    png: bytes
    caption: str = ""

    def data_uri(self) -> str:
        """``data:image/png;base64,...`` for inlining into HTML."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "x"


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def png_bytes(fig: Any, dpi: int) -> bytes:
    buffer = io.BytesIO()
    # metadata Software=None: identical input gives identical bytes (no version stamp churn)
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def _arrays(entry: Mapping[str, Any], *keys: str):
    import numpy as np

    return [np.asarray(entry[key], dtype=float) for key in keys]


def _plain_y(ax: Any) -> None:
    """No '+1e5' offset on linear axes: log-volumes are read as they are."""
    if ax.get_yscale() == "linear":
        ax.ticklabel_format(axis="y", useOffset=False)


def _tick(value: float, _pos: Any = None) -> str:
    """Plain tick labels on log axes: 60, 600, 6,000 (not 10^3 in mathtext: it is harder to read
    as a dataset size and costs most of a figure's drawing time)."""
    if value >= 1000 and float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:g}"


def _log_axis(ax: Any, which: str = "x", values: Sequence[float] = ()) -> None:
    """Log scale with plain labels. With at most 10 distinct positive ``values`` (the dataset
    sizes or K of a study) the ticks sit exactly on them; otherwise on decades, with minor ticks
    labelled only when the axis spans < 1.5 decades (more would crowd it)."""
    import math as _math

    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_formatter(FuncFormatter(_tick))
    ticks = sorted({float(v) for v in values if v > 0 and _math.isfinite(v)})
    if 0 < len(ticks) <= 10:
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_minor_formatter(NullFormatter())
        return
    low, high = sorted(ax.get_xlim() if which == "x" else ax.get_ylim())
    few = low > 0 and _math.log10(high / low) < 1.5
    axis.set_minor_formatter(FuncFormatter(_tick) if few else NullFormatter())


def _fmt(value: float) -> str:
    return f"{value:.4g}"


# --------------------------------------------------------------------------- kinds


def _volume_vs_data(fig: Any, entries: Sequence[Mapping[str, Any]], result: CaseResult) -> str:
    import numpy as np

    ax = fig.add_subplot()
    per_param = all("n_params" in e for e in entries)
    alt = []
    for i, e in enumerate(entries):
        color = _color(i)
        n = float(e["n_params"]) if per_param else 1.0
        x, y = _arrays(e, "x", "y")
        y = y / n
        name = e.get("label") or result.estimator or f"series {i + 1}"
        if "points_x" in e:
            px, py = _arrays(e, "points_x", "points_y")
            ax.scatter(px, py / n, s=10, alpha=0.35, color=color, linewidths=0,
                       label=f"{name}: single runs")
        finite = np.isfinite(y)
        if "y_low" in e:
            lo, hi = _arrays(e, "y_low", "y_high")
            err = np.vstack([y - lo / n, hi / n - y])[:, finite]
            ax.errorbar(x[finite], y[finite], yerr=err, fmt="o", color=color, ms=5, capsize=3,
                        label=f"{name}: found minimum")
        else:
            ax.plot(x[finite], y[finite], "o", color=color, ms=5, label=f"{name}: found minimum")
        fit = e.get("fit")
        if fit is None or not finite.any():
            continue
        lx = np.linspace(np.log(x.min()), np.log(x.max()), 100)
        slope, intercept = fit["slope"] / n, fit["intercept"] / n
        what = "alpha" if per_param else "slope"
        text = f"fit: {what} = {_fmt(slope)}"
        if "slope_low" in fit and "slope_high" in fit:
            text += f" [{_fmt(fit['slope_low'] / n)}, {_fmt(fit['slope_high'] / n)}]"
        if "r2" in fit:
            text += f", R² = {fit['r2']:.3f}"
        ax.plot(np.exp(lx), intercept + slope * lx, "-", color=color, lw=1.6, label=text)
        # the slope's interval as a band through the centre of the data (where a least-squares
        # line is pinned), so its width shows the slope uncertainty, not the intercept's
        centre = float(np.mean(np.log(x[finite])))
        y_centre = intercept + slope * centre
        if "slope_low" in fit and "slope_high" in fit:
            a = y_centre + fit["slope_low"] / n * (lx - centre)
            b = y_centre + fit["slope_high"] / n * (lx - centre)
            level = f"{fit['level'] * 100:g}% " if "level" in fit else ""
            ax.fill_between(np.exp(lx), np.minimum(a, b), np.maximum(a, b), color=color,
                            alpha=0.15, linewidth=0, label=f"{level}interval of the {what}")
        if "paper_alpha" in e:
            paper = e["paper_alpha"] * (1.0 if per_param else e["n_params"])
            ax.plot(np.exp(lx), y_centre + paper * (lx - centre), "--", color="0.25", lw=1.2,
                    label=f"paper: alpha = {_fmt(e['paper_alpha'])} (through the same centre)")
        alt.append(f"{name}: fitted {what} {_fmt(slope)}"
                   + (f", paper alpha {_fmt(e['paper_alpha'])}" if "paper_alpha" in e else ""))
    _log_axis(ax, values=[v for e in entries for v in e["x"]])
    ax.set_xlabel(entries[0].get("x_label", "training-set size D (log scale)"))
    ax.set_ylabel(entries[0].get("y_label", "log V / n  (nats per parameter)" if per_param
                                 else "log V  (nats)"))
    _plain_y(ax)
    ax.legend(loc="best")
    return "; ".join(alt)


def _radius_hist(fig: Any, entries: Sequence[Mapping[str, Any]], result: CaseResult) -> str:
    import numpy as np

    ax_hist, ax_cdf = fig.subplots(1, 2)
    values = [np.asarray(e["log_radii"], dtype=float) for e in entries]
    finite_all = np.concatenate([v[np.isfinite(v)] for v in values] or [np.zeros(0)])
    bins = np.histogram_bin_edges(finite_all, bins=30) if finite_all.size else 10
    alt = []
    for i, (e, v) in enumerate(zip(entries, values)):
        color = _color(i)
        finite = np.sort(v[np.isfinite(v)])
        dropped = v.size - finite.size
        label = e.get("label") or e["minimum"]
        if e.get("landscape"):
            label += f" in {e['landscape']}"
        label += f" (K = {v.size}" + (f", {dropped} not finite" if dropped else "") + ")"
        if finite.size:
            ax_hist.hist(finite, bins=bins, histtype="step", lw=1.6, color=color, label=label)
            ax_cdf.plot(finite, np.arange(1, finite.size + 1) / finite.size, color=color,
                        drawstyle="steps-post", lw=1.6, label=label)
            alt.append(f"{e['minimum']}: median log radius {_fmt(float(np.median(finite)))}")
    ax_hist.set_xlabel("log radius")
    ax_hist.set_ylabel("directions")
    ax_cdf.set_xlabel("log radius")
    ax_cdf.set_ylabel("fraction of directions ≤ radius")
    ax_cdf.set_ylim(0, 1.02)
    # one legend for both panels, below them, so it hides no data
    handles, labels = ax_cdf.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(2, max(1, len(labels))))
    return "; ".join(alt)


def _volume_vs_landscape(fig: Any, entries: Sequence[Mapping[str, Any]],
                         result: CaseResult) -> str:
    import numpy as np

    ax = fig.add_subplot()
    finite_y = np.concatenate([_arrays(e, "y")[0] for e in entries])
    finite_y = finite_y[np.isfinite(finite_y)]
    span = float(np.ptp(finite_y)) if finite_y.size else 1.0
    floor = (float(finite_y.min()) if finite_y.size else 0.0) - 0.08 * (span or 1.0)
    own_labelled = zero_labelled = False
    alt = []
    for i, e in enumerate(entries):
        color = _color(i)
        x, y = _arrays(e, "x", "y")
        finite = np.isfinite(y)
        ax.plot(x[finite], y[finite], "o-", color=color, ms=4, lw=1.4,
                label=e.get("label") or e["minimum"])
        if (~finite).any():
            ax.plot(x[~finite], np.full((~finite).sum(), floor), "v", color=color, ms=8,
                    label=None if zero_labelled else "volume 0 (left the threshold)")
            zero_labelled = True
        if "own_x" in e:
            hit = np.isclose(x, e["own_x"]) & finite
            if hit.any():
                ax.plot(x[hit], y[hit], "^", color=color, ms=11, mec="black", mew=1.0,
                        label=None if own_labelled else "minimum in its own landscape")
                own_labelled = True
        alt.append(f"{e['minimum']}: log V from {_fmt(float(y[finite][0]))} to "
                   f"{_fmt(float(y[finite][-1]))}" if finite.any() else f"{e['minimum']}: none")
    _log_axis(ax, values=[v for e in entries for v in e["x"]])
    ax.set_xlabel(entries[0].get("x_label", "landscape dataset size (log scale)"))
    ax.set_ylabel(entries[0].get("y_label", "log V  (nats)"))
    _plain_y(ax)
    handles, labels = ax.get_legend_handles_labels()
    special = ("volume 0 (left the threshold)", "minimum in its own landscape")
    order = sorted(range(len(labels)), key=lambda i: labels[i] in special)  # minima first
    ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="best")
    return "; ".join(alt)


def _volume_vs_checkpoint(fig: Any, entries: Sequence[Mapping[str, Any]],
                          result: CaseResult) -> str:
    extra = any(k in e for e in entries for k in ("test_accuracy", "train_accuracy",
                                                   "train_loss"))
    if extra:
        ax, ax_low = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    else:
        ax, ax_low = fig.add_subplot(), None
    alt = []
    loss_ax = None
    for i, e in enumerate(entries):
        color = _color(i)
        x, y = _arrays(e, "x", "y")
        name = e.get("label") or result.estimator or f"series {i + 1}"
        ax.plot(x, y, "o-", color=color, ms=4, lw=1.4, label=name)
        alt.append(f"{name}: log V {_fmt(float(y[0]))} at {_fmt(float(x[0]))} to "
                   f"{_fmt(float(y[-1]))} at {_fmt(float(x[-1]))}")
        if ax_low is None:
            continue
        if "test_accuracy" in e:
            ax_low.plot(x, _arrays(e, "test_accuracy")[0], "o-", color=color, ms=3,
                        label=f"{name}: test accuracy")
        if "train_accuracy" in e:
            ax_low.plot(x, _arrays(e, "train_accuracy")[0], "s:", color=color, ms=3,
                        label=f"{name}: train accuracy")
        if "train_loss" in e:
            if loss_ax is None:
                loss_ax = ax_low.twinx()
                loss_ax.spines["right"].set_visible(True)
                loss_ax.grid(False)
            loss_ax.plot(x, _arrays(e, "train_loss")[0], "--", color="0.45", lw=1.2,
                         label=f"{name}: train loss (right axis)")
    ax.set_ylabel(entries[0].get("y_label", "log V  (nats)"))
    _plain_y(ax)
    ax.legend(loc="best")
    bottom = ax_low if ax_low is not None else ax
    bottom.set_xlabel(entries[0].get("x_label", "training epoch"))
    if ax_low is not None:
        ax_low.set_ylabel("accuracy")
        ax_low.set_ylim(-0.02, 1.02)
        handles, labels = ax_low.get_legend_handles_labels()
        if loss_ax is not None:
            _log_axis(loss_ax, "y")
            loss_ax.set_ylabel("train loss")
            more = loss_ax.get_legend_handles_labels()
            handles, labels = handles + more[0], labels + more[1]
        # below the panels: inside, it would cover the accuracy lines that sit at 0 and 1
        fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)))
    return "; ".join(alt)


def _volume_vs_directions(fig: Any, entries: Sequence[Mapping[str, Any]],
                          result: CaseResult) -> str:
    import numpy as np

    ax = fig.add_subplot()
    alt = []
    for i, e in enumerate(entries):
        color = _color(i)
        x, y = _arrays(e, "x", "y")
        name = e.get("label") or result.estimator or f"series {i + 1}"
        if "y_low" in e:
            lo, hi = _arrays(e, "y_low", "y_high")
            ax.errorbar(x, y, yerr=np.vstack([y - lo, hi - y]), fmt="o-", color=color, ms=4,
                        capsize=3, label=name)
        else:
            ax.plot(x, y, "o-", color=color, ms=4, label=name)
        alt.append(f"{name}: log V {_fmt(float(y[0]))} at K = {_fmt(float(x[0]))} to "
                   f"{_fmt(float(y[-1]))} at K = {_fmt(float(x[-1]))}")
    _log_axis(ax, values=[v for e in entries for v in e["x"]])
    ax.set_xlabel(entries[0].get("x_label", "number of directions K (log scale)"))
    ax.set_ylabel(entries[0].get("y_label", "log V  (nats)"))
    _plain_y(ax)
    ax.legend(loc="best")
    return "; ".join(alt)


def _xy(fig: Any, entries: Sequence[Mapping[str, Any]], result: CaseResult) -> str:
    ax = fig.add_subplot()
    alt = []
    for i, e in enumerate(entries):
        x, y = _arrays(e, "x", "y")
        name = e.get("label") or f"series {i + 1}"
        ax.plot(x, y, "o-", color=_color(i), ms=4, label=name)
        alt.append(f"{name}: {len(x)} points")
    for which in ("x", "y"):
        scale = entries[0].get(f"{which}_scale", "linear")
        if scale == "log":
            _log_axis(ax, which)
        else:
            (ax.set_xscale if which == "x" else ax.set_yscale)(scale)
    ax.set_xlabel(entries[0].get("x_label", "x"))
    ax.set_ylabel(entries[0].get("y_label", "y"))
    _plain_y(ax)
    if len(entries) > 1 or entries[0].get("label"):
        ax.legend(loc="best")
    return "; ".join(alt)


_DRAW = MappingProxyType({
    "volume_vs_data": _volume_vs_data,
    "radius_hist": _radius_hist,
    "volume_vs_landscape": _volume_vs_landscape,
    "volume_vs_checkpoint": _volume_vs_checkpoint,
    "volume_vs_directions": _volume_vs_directions,
    "xy": _xy,
})


#: What a figure of each kind shows (the first half of its caption; the claim's prediction from
#: :mod:`volbench.claims.registry` is the second).
KIND_CAPTIONS = MappingProxyType({
    "volume_vs_data": "Log-volume of the minimum found at each training-set size D (log axis; per "
                      "parameter where n is known, so the slope reads as alpha), with single runs, the "
                      "fitted power law, its slope interval as a band and the paper's alpha as a dashed "
                      "line through the same centre.",
    "radius_hist": "Distribution of the per-direction log radii (distance to the threshold along each "
                   "direction) of each minimum: histograms left, empirical CDFs right; a curve further "
                   "right is a wider basin.",
    "volume_vs_landscape": "Log-volume of each minimum measured in landscapes of growing size (log axis); "
                           "large triangles mark a minimum in its own training landscape, down triangles a "
                           "volume of zero (the minimum left the threshold).",
    "volume_vs_checkpoint": "Log-volume across training checkpoints, with train/test accuracy and the "
                            "training loss below where recorded.",
    "volume_vs_directions": "Log-volume estimate against the number of directions K (log axis), with "
                            "intervals over replicates where recorded.",
    "xy": "The case's measured series.",
})


def figure_caption(kind: str, result: CaseResult) -> str:
    """What the figure shows, and what the claim predicts one sees in it if it holds."""
    from volbench.claims.registry import claim_info

    caption = KIND_CAPTIONS[kind]
    info = claim_info(result.claim)
    if info is not None:
        caption += f" {info.id} predicts: {info.predicts}."
    if result.statistic is not None:
        caption += f" Verdict {result.verdict}: {result.statistic.format(3)}."
    elif result.reason:
        caption += f" Verdict {result.verdict}: {result.reason}"
    return caption


def _default_title(kind: str, entry: Mapping[str, Any]) -> str:
    if kind == "xy" and "x_label" in entry and "y_label" in entry:
        return f"{entry['y_label']} against {entry['x_label']}"
    return KIND_TITLES[kind]


# --------------------------------------------------------------------------- public


def case_plots(result: CaseResult, *, index: int = 0, dpi: int = _DPI) -> list[PlotImage]:
    """One PNG per series kind present in ``result`` (entries of a kind share a figure), in the
    order the kinds first appear. ``index`` (the result's position in its run) keeps file names
    unique when two results share a case id and estimator."""
    import matplotlib
    from matplotlib.figure import Figure

    groups: dict[str, list[Mapping[str, Any]]] = {}
    for entry in result.series:
        groups.setdefault(entry["kind"], []).append(entry)
    images = []
    for kind, entries in groups.items():
        with matplotlib.rc_context(RC):
            fig = Figure(figsize=_SIZE, layout="constrained")
            described = _DRAW[kind](fig, entries, result)
            title = entries[0].get("title") or _default_title(kind, entries[0])
            who = f"{result.case_id}" + (f" · {result.estimator}" if result.estimator else "")
            fig.suptitle(f"{who}\n{title}", fontsize=10)
            png = png_bytes(fig, dpi)
        images.append(PlotImage(
            key=f"{index:03d}-{_slug(result.case_id)}-{_slug(result.estimator or 'case')}-{kind}",
            title=f"{who}: {title}",
            alt=f"{title} for {who}. {described}".strip(),
            png=png,
            caption=figure_caption(kind, result),
        ))
    return images


def timing_plot(results: Sequence[CaseResult], *, dpi: int = _DPI,
                limit: int = 40) -> PlotImage | None:
    """Horizontal bars of wall-clock seconds per case and estimator (the ``limit`` slowest),
    split into what the run computed (measurements, training) and the rest (data loading, fits,
    overhead), with what caches served drawn as a hatched bar beside it (the seconds those
    measurements had cost when computed); None when no result has a time."""
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure

    timed = [r for r in results if r.seconds is not None and r.seconds > 0]
    if not timed:
        return None
    timed.sort(key=lambda r: r.seconds, reverse=True)
    shown = timed[:limit]
    labels = [f"{r.case_id} · {r.estimator}" if r.estimator else r.case_id for r in shown]

    def part(r: CaseResult, key: str) -> float:
        value = r.timing.get(key) if r.timing else None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0

    wall = np.array([r.seconds for r in shown])
    measured = np.array([min(part(r, "measured_seconds"), r.seconds) for r in shown])
    trained = np.array([min(part(r, "trained_seconds"), r.seconds - m) for r, m in zip(shown, measured)])
    other = np.maximum(wall - measured - trained, 0.0)
    served = np.array([part(r, "served_seconds") for r in shown])
    y = np.arange(len(shown))
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(_SIZE[0], 1.5 + 0.3 * len(shown)), layout="constrained")
        ax = fig.add_subplot()
        ax.grid(axis="y", visible=False)
        h = 0.62 if served.any() else 0.75
        ax.barh(y, measured, height=h, color=COLORS[0], label="computed: measurements")
        ax.barh(y, trained, left=measured, height=h, color=COLORS[2], label="computed: training minima")
        ax.barh(y, other, left=measured + trained, height=h, color="0.78",
                label="other wall time (data, fits, overhead; all of it without a timing record)")
        if served.any():
            ax.barh(y + 0.40, served, height=0.18, color="white", edgecolor=COLORS[3], hatch="////",
                    label="served from caches (what those measurements had cost)")
        ax.set_yticks(y, labels=labels, fontsize=8)
        ax.invert_yaxis()
        # a linear axis: stacked parts on a log axis would misstate their shares; every bar is
        # labelled with its seconds, so short ones stay readable
        for i, (value, comp) in enumerate(zip(wall, measured + trained)):
            ax.text(value, i, f" {value:.3g} s ({comp / value:.0%} computed)", va="center", fontsize=7.5)
        ax.set_xlabel("seconds")
        ax.margins(x=0.3)
        handles, names = ax.get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncols=2, fontsize=7.5)
        more = f" (the {limit} slowest of {len(timed)})" if len(timed) > limit else ""
        fig.suptitle(f"Time per case and estimator{more}", fontsize=10)
        png = png_bytes(fig, dpi)
    total = float(sum(r.seconds for r in timed))
    computed = float(measured.sum() + trained.sum())
    return PlotImage(
        key="timing", title="Timing by case: computed in this run and served from caches",
        alt=f"Wall-clock seconds of {len(timed)} timed results, {total:.1f} s in all, {computed:.1f} s of it "
            f"computed in this run; slowest {labels[0]} at {wall[0]:.3g} s on {shown[0].device or 'unknown'}.",
        png=png,
        caption="Wall-clock seconds of each case and estimator, split into the seconds this run computed "
                "(measurements, training of minima) and the rest; hatched bars are what the measurements "
                "served from caches had cost when they were computed. Compare hardware on computed seconds "
                "(volbench compare does): cached work makes wall seconds small without being fast.",
    )
