"""``volbench report``: Re-render a run's report.md and index.html from its results.json."""
from __future__ import annotations

import argparse
from pathlib import Path

from volbench._io import write_fix
from volbench.cli._common import CliError, load_run_or_baseline, report_root


def add_parser(sub, report_dir) -> None:
    """Register ``volbench report`` on the subparsers ``sub``."""
    p = sub.add_parser("report", help="re-render report.md and index.html from results.json")
    p.add_argument("run", metavar="RUN", help="run directory, results.json, run id or 'latest'")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="write the report here instead of the run's directory")
    report_dir(p)
    p.set_defaults(handler=lambda args, extra, parser: _cmd_report(args))


def _cmd_report(args: argparse.Namespace) -> int:
    from volbench.report.render import render_run

    path, run = load_run_or_baseline(args.run, report_root(args))
    out_dir = Path(args.out) if args.out else path.parent
    try:
        rendered = render_run(run, out_dir)
    except OSError as exc:
        fix = "" if "Fix:" in str(exc) else f" ({write_fix(exc)})" if write_fix(exc) else ""
        raise CliError(f"cannot write the report into {out_dir}: {exc}{fix}; to write it elsewhere "
                        f"pass --out DIR (the previous report there is unchanged)") from None
    print(f"{rendered.markdown}\n{rendered.html}")
    return 0
