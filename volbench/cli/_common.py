"""What every ``volbench`` subcommand shares: the error that prints one line, the report root,
loading a run (or the verdict baseline as a run)."""
from __future__ import annotations

import argparse
from pathlib import Path

from volbench.report.files import default_report_root, load_run, resolve_run
from volbench.report.formatting import render_table  # noqa: F401  (the subcommands import it from here)
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
