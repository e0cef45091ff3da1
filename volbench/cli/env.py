"""``volbench env``: The environment block of a report (versions, devices, TF32, threads, git)."""
from __future__ import annotations

import argparse
import json
import os


def add_parser(sub, report_dir) -> None:
    """Register ``volbench env`` on the subparsers ``sub``."""
    p = sub.add_parser("env", help="print the environment block of a report")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=lambda args, extra, parser: _cmd_env(args))


def _cmd_env(args: argparse.Namespace) -> int:
    from volbench.report.envinfo import collect_environment, format_environment

    tier = os.environ.get("VOLBENCH_TIER") or None
    env = collect_environment(tier=tier)
    print(json.dumps(env, indent=1) if args.json else format_environment(env))
    return 0
