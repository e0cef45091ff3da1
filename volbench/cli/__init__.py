"""The ``volbench`` command: render, compare and run benchmark reports.

Commands::

    volbench report RUN            re-render report.md + index.html from RUN's results.json
    volbench compare RUN_A RUN_B…  verdict changes and computed-time ratios across runs / hardware
                                   (pytest-benchmark JSON files: as `volbench bench compare`)
    volbench claims RUN…           which statements of each claim were judged where: runs of any
                                   tiers joined, a column per tier, cells per setting and estimator
    volbench bench compare A.json B.json…
                                   speed across machines from pytest-benchmark JSON: throughput,
                                   time ratios with asv's significance marks, machine keys
    volbench history [CLAIM…]      a claim's statistics and timing across the runs of a reports
                                   folder, keyed by machine and commit; flags changes; --plot PNG
    volbench baseline update|check [RUN]
                                   write RUN's smoke verdicts and machine class into
                                   cases/baseline/smoke.json, or list those that moved against it
                                   (failing, and apart: reported, on another machine class)
    volbench env                   print the environment block (--json for JSON)
    volbench run [--tier T] [-k EXPR] [--quick] [pytest args…]
                                   python -m pytest cases/ --tier T (VOLBENCH_TIER=T too);
                                   --quick: the nightly cases at tiny scale
    volbench cache list|du|prune   the store's minima and measurements: which the current code
                                   would reuse, their size, and deleting old or stale ones
    volbench data list             where each data set was found (or how to get it)
    volbench data fetch NAME…      download data sets (SHA-256 checked) into the user cache

RUN is a run directory, its results.json, a run id under the report root, or ``latest``. The
report root is ``--report-dir``, else ``$VOLBENCH_REPORT_DIR``, else ``./reports``.

Errors (a missing run, a corrupt results.json, an unwritable directory) print one line on stderr
and return a non-zero exit code instead of a traceback.

Example:
    >>> main(["compare", "only-one-run"])  # the message goes to stderr
    2
"""
from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from volbench.cli import baseline, bench, cache, claims, compare, data, env, history, report, run
from volbench.cli._common import _PROG, CliError
from volbench.cli.compare import compare_table
from volbench.report.files import ReportFileError
from volbench.results import SchemaError

__all__ = ["main", "build_parser", "compare_table"]

#: One module per subcommand, in the order of ``volbench --help`` (each has ``add_parser``).
COMMANDS = (report, compare, claims, bench, history, baseline, env, run, cache, data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG, description="Benchmark reports for the volume of neural-network minima.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def report_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--report-dir", metavar="DIR", default=None,
                       help="report root holding the runs (default: $VOLBENCH_REPORT_DIR or "
                            "./reports)")

    for command in COMMANDS:
        command.add_parser(sub, report_dir)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``volbench`` console script; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if extra and extra[0] == "--":
        extra = extra[1:]
    if extra and args.command != "run":
        parser.print_usage(sys.stderr)
        print(f"{_PROG}: error: unrecognized arguments: {shlex.join(extra)}", file=sys.stderr)
        return 2
    try:
        return args.handler(args, extra, parser)
    except CliError as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return exc.code
    except (FileNotFoundError, ReportFileError, SchemaError, OSError) as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 1
