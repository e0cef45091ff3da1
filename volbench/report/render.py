"""Render a run's ``report.md`` (+ ``figures/*.png``) and self-contained ``index.html``.

Everything is derived from the :class:`RunReport` alone, so ``volbench report RUN`` can redo it
from ``results.json`` at any time. Every file is written atomically.

Example:
    >>> import tempfile
    >>> from volbench.results import RunReport
    >>> out = render_run(RunReport(run_id="r1", started="2025-01-01T12:00:00Z"), tempfile.mkdtemp())
    >>> out.html.name, out.markdown.name
    ('index.html', 'report.md')
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from volbench._io import atomic_write_many
from volbench.results import RunReport

__all__ = ["RenderedReport", "render_run", "FIGURES_DIR"]

FIGURES_DIR = "figures"


@dataclass(frozen=True)
class RenderedReport:
    """Paths written by :func:`render_run`."""

    markdown: Path
    html: Path
    figures: tuple[Path, ...]


def render_run(run: RunReport, out_dir: str | os.PathLike) -> RenderedReport:
    """Draw every plot once, then write ``report.md``, ``figures/*.png`` and ``index.html``
    into ``out_dir`` (created if needed). Stale PNGs of an earlier rendering are removed.

    All files are written as one set (:func:`~volbench._io.atomic_write_many`): if any
    of them cannot be written (full disk, file-size limit) the OSError names the file and the
    fix, and the previous rendering is left exactly as it was, with no partial files."""
    from volbench.report.forest import forest_plot
    from volbench.report.plots import case_plots, timing_plot
    from volbench.report.render_html import render_html
    from volbench.report.render_md import render_markdown

    out_dir = Path(out_dir)
    figures_dir = out_dir / FIGURES_DIR
    figures_dir.mkdir(parents=True, exist_ok=True)
    plots = {index: case_plots(result, index=index) for index, result in enumerate(run.results)}
    timing = timing_plot(run.results)
    forest = forest_plot(run.results)
    files: list[tuple[Path, bytes]] = []
    for image in [p for images in plots.values() for p in images] + [x for x in (timing, forest) if x]:
        files.append((figures_dir / f"{image.key}.png", image.png))
    written = [path for path, _ in files]
    links = {index: [(p.title, f"{FIGURES_DIR}/{p.key}.png", p.caption) for p in images]
             for index, images in plots.items()}
    markdown = render_markdown(run, links, (f"{FIGURES_DIR}/{timing.key}.png", timing.caption) if timing else None,
                               (f"{FIGURES_DIR}/{forest.key}.png", forest.caption) if forest else None)
    files.append((out_dir / "report.md", markdown.encode("utf-8")))
    files.append((out_dir / "index.html", render_html(run, plots, timing, forest).encode("utf-8")))
    atomic_write_many(files)
    keep = {path.name for path in written}
    for old in figures_dir.glob("*.png"):
        if old.name not in keep:
            old.unlink()
    return RenderedReport(out_dir / "report.md", out_dir / "index.html", tuple(written))
