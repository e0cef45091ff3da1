"""What every ``volbench`` subcommand shares: the error that prints one line, the report root,
loading a run (or the verdict baseline as a run)."""
from __future__ import annotations

import argparse
from pathlib import Path

from volbench.report.files import default_report_root, load_run, resolve_run
from volbench.results import RunReport

_PROG = "volbench"


class CliError(Exception):
    """A user-facing error: printed as one line, exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def report_root(args: argparse.Namespace) -> Path:
    return Path(args.report_dir) if args.report_dir else default_report_root()


def load_run_or_baseline(run: str, root: Path) -> tuple[Path, RunReport]:
    """A run by name; ``baseline`` (or a path to a baseline file) is the checked-in verdict baseline."""
    from volbench.report.baseline import BaselineError, baseline_as_run, default_baseline_path

    if run == "baseline" or run.endswith("baseline.json") or run.endswith("baseline/smoke.json"):
        path = default_baseline_path() if run == "baseline" else Path(run)
        try:
            return path, baseline_as_run(path)
        except BaselineError as exc:
            raise CliError(str(exc)) from None
    path = resolve_run(run, root)
    return path, load_run(path)


def render_table(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        esc = [[c.replace("|", "\\|") for c in row] for row in [header, *rows]]
        lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in esc[1:]])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in [header, *rows])
