"""``volbench cache``: The store of minima and measurements: ``list``, ``du``, ``prune``."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from volbench.cli._common import CliError, render_table


def add_parser(sub, report_dir) -> None:
    """Register ``volbench cache`` on the subparsers ``sub``."""
    p = sub.add_parser("cache", help="list, size and prune the store of minima and measurements",
                       description="The store is $VOLBENCH_STORE (default ~/.cache/volbench/minima). An entry "
                                   "is current when the installed code would produce and reuse it; code changes "
                                   "to training, models, data loaders, estimator, reference or costs make "
                                   "older entries stale.")
    cache = p.add_subparsers(dest="cache_command", metavar="ACTION")
    for name, text in (("list", "every entry: kind, key, age, size, status"),
                       ("du", "disk use per kind, current versus stale"),
                       ("prune", "delete entries older than N days and/or stale ones (never one another "
                                 "process holds the lock of)")):
        q = cache.add_parser(name, help=text)
        q.add_argument("--store", metavar="DIR", default=None,
                       help="the store folder (default: $VOLBENCH_STORE or ~/.cache/volbench/minima)")
        if name == "list":
            q.add_argument("--stale", action="store_true", help="only entries the current code would not reuse")
        if name == "prune":
            q.add_argument("--older-than", metavar="DAYS", type=float, default=None,
                           help="delete entries written more than DAYS days ago")
            q.add_argument("--stale", action="store_true",
                           help="delete entries the current code would not reuse, and leftovers")
            q.add_argument("--dry-run", action="store_true", help="say what would be deleted; delete nothing")
    p.set_defaults(handler=lambda args, extra, parser: _cmd_cache(args))


def _bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"  # pragma: no cover


def _cmd_cache(args: argparse.Namespace) -> int:
    from volbench.store.inspect import entries, prune, summarise
    from volbench.store.minima import default_root

    if args.cache_command is None:
        raise CliError("say what to do: volbench cache list | du | prune", code=2)
    root = Path(args.store).expanduser() if args.store else default_root()
    if not root.exists():
        print(f"store {root}: empty (the folder does not exist)")
        return 0
    if not root.is_dir():
        raise CliError(f"store {root} is not a folder; pass --store DIR or set VOLBENCH_STORE")
    found = entries(root)
    if args.cache_command == "list":
        shown = [e for e in found if not (args.stale and e.current)]
        rows = [["kind", "key", "age", "size", "status", "what"]]
        for e in shown:
            rows.append([e.kind, e.key[:12], f"{e.age_days():.1f} d", _bytes(e.bytes),
                         "current" if e.current else f"stale: {e.why}", e.label])
        print(f"store {root}: {len(found)} entries, {_bytes(sum(e.bytes for e in found))}")
        if len(rows) > 1:
            print(render_table(rows[0], rows[1:], markdown=False))
        return 0
    if args.cache_command == "du":
        print(f"store {root}")
        rows = [[r["kind"], str(r["entries"]), _bytes(r["bytes"]), f"{r['current']} ({_bytes(r['current_bytes'])})",
                 f"{r['stale']} ({_bytes(r['stale_bytes'])})"] for r in summarise(found)]
        total = sum(e.bytes for e in found)
        stale = sum(e.bytes for e in found if not e.current)
        rows.append(["total", str(len(found)), _bytes(total), "", _bytes(stale)])
        print(render_table(["kind", "entries", "size", "current", "stale"], rows, markdown=False))
        if stale:
            print(f"reclaim {_bytes(stale)} with: volbench cache prune --stale"
                  + (f" --store {shlex.quote(str(root))}" if args.store else ""))
        return 0
    if args.older_than is None and not args.stale:
        raise CliError("say what to prune: --older-than DAYS and/or --stale (add --dry-run to look first)", code=2)
    try:
        report = prune(root, older_than_days=args.older_than, stale=args.stale, dry_run=args.dry_run, found=found)
    except ValueError as exc:
        raise CliError(str(exc), code=2) from None
    verb = "would delete" if report.dry_run else "deleted"
    for e in report.deleted:
        print(f"{verb} {e.kind} {e.key[:12]} ({_bytes(e.bytes)}): {e.label}")
    for e in report.locked:
        print(f"kept {e.kind} {e.key[:12]}: another process holds its lock (in use)")
    for e, why in report.failed:
        print(f"could not delete {e.kind} {e.key[:12]} at {e.path}: {why}", file=sys.stderr)
    print(f"{verb} {len(report.deleted)} entries, {_bytes(report.freed_bytes)}; kept {len(report.locked)} locked, "
          f"{len(found) - len(report.deleted) - len(report.locked) - len(report.failed)} not selected")
    return 1 if report.failed else 0
