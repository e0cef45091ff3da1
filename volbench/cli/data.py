"""``volbench data``: Where the data sets are (``list``), and downloading them (``fetch``)."""
from __future__ import annotations

import argparse
import sys

from volbench.cli._common import _PROG, CliError, render_table


def add_parser(sub, report_dir) -> None:
    """Register ``volbench data`` on the subparsers ``sub``."""
    p = sub.add_parser("data", help="where the data sets are, and fetching them")
    data = p.add_subparsers(dest="data_command", metavar="ACTION")
    q = data.add_parser("list", help="each data set: where it was found and which variant, or how to get it")
    q.add_argument("--root", metavar="DIR", action="append", default=None,
                   help="a data root searched first (repeatable), as load(root=...)")
    q = data.add_parser("fetch", help="download data sets into the user cache, checking SHA-256")
    q.add_argument("names", metavar="NAME", nargs="+", help="data set names (volbench data list shows them)")
    q.add_argument("--root", metavar="DIR", default=None,
                   help="download into this data root instead of the user cache")
    p.set_defaults(handler=lambda args, extra, parser: _cmd_data(args))


def _cmd_data(args: argparse.Namespace) -> int:
    from volbench.data import fetch as vfetch

    if args.data_command is None:
        raise CliError("say what to do: volbench data list | fetch NAME", code=2)
    if args.data_command == "list":
        rows = []
        for status in vfetch.status_all(root=args.root):
            if status.folder is not None:
                where, note = str(status.folder), status.note
            elif status.variant is not None:  # generated, or shipped inside a dependency
                where, note = status.note, ""
            else:
                where, note = "missing", status.note
            rows.append([status.name, status.variant or "-", where, note])
        print(render_table(["data set", "variant", "found in", "note"], rows, markdown=False))
        return 0
    bad = 0
    for name in args.names:
        try:
            folder = vfetch.fetch(name, root=args.root, progress=sys.stderr.isatty())
        except vfetch.FetchError as exc:
            print(f"{_PROG}: error: {exc}", file=sys.stderr)
            bad += 1
            continue
        print(f"{name}: {folder}")
    return 1 if bad else 0
