"""``volbench bench``: Speed benchmarks across machines (pytest-benchmark JSON): ``bench compare``."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from volbench.cli._common import _PROG, CliError


def add_parser(sub, report_dir) -> None:
    """Register ``volbench bench`` on the subparsers ``sub``."""
    p = sub.add_parser("bench", help="speed benchmarks (pytest-benchmark JSON)")
    bench_sub = p.add_subparsers(dest="bench_command", metavar="BENCH_COMMAND")
    q = bench_sub.add_parser(
        "compare", help="compare pytest-benchmark JSON files from several machines",
        description="Throughput (cost evaluations/s, (example, vector) pairs/s, FLOP/s, fraction of peak), "
                    "time ratio to the baseline with asv's significance mark (Mann-Whitney U at p < 0.002 "
                    "where the rounds allow, else non-overlap of 99%% intervals; ~ = not significant) and "
                    "the machine keys that differ. Bad input: one line per problem, exit 2.")
    q.add_argument("files", metavar="FILE", nargs="+", help="pytest-benchmark JSON files (--benchmark-json)")
    q.add_argument("--markdown", action="store_true", help="print Markdown tables")
    bench_compare_options(q)
    p.set_defaults(handler=lambda args, extra, parser: _cmd_bench(args, parser))


def _cmd_bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.bench_command != "compare":
        print(f"{_PROG}: error: bench needs a command: `volbench bench compare A.json B.json …`", file=sys.stderr)
        return 2
    return compare_benchmark_files(args.files, args)


def _baseline_index(which: str | None, files: Sequence) -> int:
    if which is None:
        return 0
    for i, f in enumerate(files):
        if which == f.label or which == str(i + 1) or Path(which) == f.path:
            return i
    raise CliError(f"--baseline {which!r} is none of the files (labels "
                    f"{', '.join(f.label for f in files)}, indices 1-{len(files)}, or a path given)", code=2)


def compare_benchmark_files(paths: Sequence[str], args: argparse.Namespace) -> int:
    from volbench.bench.compare import compare_files
    from volbench.bench.records import BenchInputError, load_bench_files
    from volbench.bench.render import environment_diff, format_table, write_bench_report

    try:
        files = load_bench_files(paths)
    except BenchInputError as exc:
        for line in exc.problems:
            print(f"{_PROG}: error: {line}", file=sys.stderr)
        return 2
    comparison = compare_files(files, _baseline_index(args.baseline, files))
    print(format_table(comparison, markdown=args.markdown))
    if args.env_diff:
        print("\nEnvironment difference (machine_info, commit_info, volbench):")
        print(environment_diff(comparison))
    if args.out:
        try:
            written = write_bench_report(comparison, args.out)
        except OSError as exc:
            raise CliError(f"cannot write the comparison into {args.out}: {exc}") from None
        print("\n" + "\n".join(str(p) for p in written))
    return 0


def bench_compare_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baseline", metavar="WHICH", default=None,
                   help="benchmark JSON only: the baseline machine, as a label (A, B, …), a 1-based index or "
                        "the file's path (default: the first file)")
    p.add_argument("--env-diff", action="store_true",
                   help="benchmark JSON only: also print every machine_info/commit_info entry that differs")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="benchmark JSON only: write bench-compare.md, bench-compare.png and a self-contained "
                        "bench-compare.html into DIR")
