"""``volbench baseline``: The checked-in verdict baseline: ``update`` it from a run, or ``check`` a run against it."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from volbench.cli._common import CliError, load_run_or_baseline, report_root


def add_parser(sub, report_dir) -> None:
    """Register ``volbench baseline`` on the subparsers ``sub``."""
    p = sub.add_parser("baseline", help="the checked-in verdict baseline: update it from a run, or check a run",
                       description="update: write RUN's smoke verdicts, and the machine class they were judged "
                                   "on, into the baseline (commit the diff with the reason); check: list the "
                                   "verdicts of RUN that moved against it (exit 1), and apart from them the moves "
                                   "between pass or fail and inconclusive that another machine class reports "
                                   "without failing (VOLBENCH_BASELINE_MATCH=strict fails every move)")
    p.add_argument("action", choices=("update", "check"))
    p.add_argument("run", metavar="RUN", nargs="?", default="latest", help="run directory, run id or 'latest'")
    p.add_argument("--baseline", metavar="PATH", default=None,
                   help="the baseline file (default: $VOLBENCH_BASELINE or cases/baseline/smoke.json)")
    p.add_argument("--prune", action="store_true", help="update: drop cases the run does not have")
    report_dir(p)
    p.set_defaults(handler=lambda args, extra, parser: _cmd_baseline(args))


def _cmd_baseline(args: argparse.Namespace) -> int:
    from volbench.report.baseline import (
        REPORTED_NOTE,
        compare_with_baseline,
        default_baseline_path,
        load_baseline,
        reported_moves,
        update_baseline,
    )
    from volbench.report.machine import describe_machine

    path = Path(args.baseline) if args.baseline else default_baseline_path()
    run_path, run = load_run_or_baseline(args.run, report_root(args))
    try:
        if args.action == "update":
            written, changes = update_baseline(run.results, path, prune=args.prune)
            print(f"{path}: {written} entries from {run.run_id} ({run_path}), recorded on "
                  f"{describe_machine(load_baseline(path).machine)}")
            for line in changes:
                print(f"  moved: {line}")
            return 0
        baseline = load_baseline(path)
        judged = [r for r in run.results if r.tier == "smoke" and not r.quick]
        comparisons = [compare_with_baseline(r, baseline) for r in judged]
    except ValueError as exc:  # a BaselineError, or a result whose machine class is malformed
        raise CliError(str(exc)) from None
    failures = [line for c in comparisons for line in c.failures]
    for line in failures:
        print(line)
    groups = reported_moves(replace(r, baseline_moves=c.moves_block()) for r, c in zip(judged, comparisons))
    if failures and groups:
        print()
    for group in groups:
        print(f"{group.title} (this run: {group.machine}; differs in {group.differs}), not failing:")
        for line in group.lines:
            print(f"  {line}")
    if groups:
        print(REPORTED_NOTE)
    n_reported = sum(len(g.lines) for g in groups)
    if failures:
        print(f"{len(failures)} verdict(s) of {run.run_id} moved against {path}")
    elif n_reported:
        print(f"no verdict of {run.run_id} fails against {path}; {n_reported} move(s) reported")
    else:
        print(f"every verdict of {run.run_id} matches {path}")
    return 1 if failures else 0
