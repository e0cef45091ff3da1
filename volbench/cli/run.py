"""``volbench run``: Run the claim cases with pytest (a thin wrapper)."""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from volbench.cli._common import _PROG, CliError
from volbench.results import TIERS


def add_parser(sub, report_dir) -> None:
    """Register ``volbench run`` on the subparsers ``sub``."""
    p = sub.add_parser(
        "run", help="run the claim cases with pytest (other arguments go to pytest)",
        description="Runs `python -m pytest CASES --tier TIER [-k EXPR] [pytest args…]` with "
                    "VOLBENCH_TIER=TIER in the environment and returns pytest's exit code.")
    p.add_argument("--tier", choices=TIERS, default=None,
                   help="smoke (CPU, minutes) or nightly (paper scale, GPU); default: "
                        "$VOLBENCH_TIER or smoke")
    p.add_argument("-k", dest="keyword", metavar="EXPR", default=None,
                   help="only cases matching this pytest -k expression")
    p.add_argument("--cases", metavar="PATH", default="cases",
                   help="the case directory (default: ./cases)")
    p.set_defaults(handler=lambda args, extra, parser: _cmd_run(args, extra))


def _cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    cases = Path(args.cases)
    if not cases.exists():
        raise CliError(f"no case directory {cases.absolute()}; run from the repository root "
                        f"or pass --cases PATH", code=2)
    quick = "--quick" in extra or os.environ.get("VOLBENCH_QUICK", "") not in ("", "0")
    tier = args.tier or ("nightly" if quick else os.environ.get("VOLBENCH_TIER") or "smoke")
    if tier not in TIERS:
        raise CliError(f"VOLBENCH_TIER is {tier!r}; use one of {TIERS}", code=2)
    cmd = [sys.executable, "-m", "pytest", str(cases), "--tier", tier]
    if args.keyword:
        cmd += ["-k", args.keyword]
    cmd += extra
    print(f"{_PROG}: VOLBENCH_TIER={tier} {shlex.join(cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, env={**os.environ, "VOLBENCH_TIER": tier})
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        # pytest got the same Ctrl-C: give it time to write its report; a second Ctrl-C stops it
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            code = proc.wait()
    return 128 - code if code < 0 else code  # killed by signal N -> 128 + N, like a shell
