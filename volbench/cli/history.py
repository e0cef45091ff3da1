"""``volbench history``: A claim's statistics and timing across the runs of a reports folder."""
from __future__ import annotations

import argparse
import sys

from volbench.cli._common import _PROG, CliError, report_root


def add_parser(sub, report_dir) -> None:
    """Register ``volbench history`` on the subparsers ``sub``."""
    p = sub.add_parser(
        "history", help="a claim's statistics and timing across the runs of a reports folder",
        description="Lists each result's statistic and its statements' statistics across the runs under "
                    "the reports folder (oldest first), keyed by machine and commit, with computed seconds "
                    "and seconds per cost evaluation, and flags changes (see the printed rule).")
    p.add_argument("claims", metavar="CLAIM", nargs="*", help="claim ids (default: every claim)")
    p.add_argument("--case", metavar="TEXT", default=None, help="only case ids containing TEXT")
    p.add_argument("--estimator", metavar="NAME", default=None, help="only this estimator ('-' for none)")
    p.add_argument("--statistic", metavar="TEXT", default=None, help="only statistics whose label contains TEXT")
    p.add_argument("--plot", metavar="PNG", default=None, help="draw the statistics over runs into PNG")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--fail-on-change", action="store_true", help="exit 1 if any change is flagged")
    report_dir(p)
    p.set_defaults(handler=lambda args, extra, parser: _cmd_history(args))


def _cmd_history(args: argparse.Namespace) -> int:
    from volbench._io import atomic_write_bytes
    from volbench.report.history import build_history, format_history, history_plot, load_runs

    root = report_root(args)
    runs, problems = load_runs(root)
    for line in problems:
        print(f"{_PROG}: warning: {line}", file=sys.stderr)
    if not runs:
        raise CliError(f"no readable runs under {root} (looked for */results.json); run the cases first or "
                        "pass --report-dir", code=2)
    series = build_history(runs, claims=args.claims or None, case=args.case, estimator=args.estimator,
                           statistic=args.statistic)
    print(f"{len(runs)} runs under {root}\n")
    print(format_history(series, markdown=args.markdown))
    if args.plot:
        image = history_plot(series)
        if image is None:
            print(f"{_PROG}: warning: nothing to plot (no statistic recorded)", file=sys.stderr)
        else:
            try:
                atomic_write_bytes(args.plot, image.png)
            except OSError as exc:
                raise CliError(f"cannot write the plot to {args.plot}: {exc}") from None
            print(f"\n{args.plot}")
    flagged = any(s.flagged for s in series)
    return 1 if flagged and args.fail_on_change else 0
