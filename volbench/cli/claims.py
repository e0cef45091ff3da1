"""``volbench claims``: which statements of each claim were judged where, across runs of any tiers."""
from __future__ import annotations

import argparse

from volbench.cli._common import CliError, load_run_or_baseline, report_root


def add_parser(sub, report_dir) -> None:
    """Register ``volbench claims`` on the subparsers ``sub``."""
    p = sub.add_parser(
        "claims", help="which statements of each claim were judged where, joining runs of any tiers",
        description="Joins the runs given (a smoke run, a nightly run, a --quick run, the baseline) into one "
                    "Markdown table: a row per claim and statement, a column per tier, each cell naming the "
                    "settings and estimators that judged the statement and their verdicts.")
    p.add_argument("runs", metavar="RUN", nargs="+", help="runs to join (run directory, results.json, run id, "
                   "'latest' or 'baseline')")
    p.add_argument("--claim", metavar="ID", action="append", default=None,
                   help="only this claim (repeatable)")
    report_dir(p)
    p.set_defaults(handler=lambda args, extra, parser: _cmd_claims(args))


def _cmd_claims(args: argparse.Namespace) -> int:
    from volbench.report.tiers import statement_rows, statement_table

    root = report_root(args)
    results = [r for run in args.runs for r in load_run_or_baseline(run, root)[1].results]
    rows = statement_rows(results)
    if args.claim:
        wanted = set(args.claim)
        rows = [row for row in rows if row.claim in wanted]
        if not rows:
            raise CliError(f"no statements of {', '.join(sorted(wanted))} in the runs given", code=2)
    print("\n".join(statement_table(rows)))
    return 0
