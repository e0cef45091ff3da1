"""The ``volbench`` command: render, compare and run benchmark reports.

Commands::

    volbench report RUN            re-render report.md + index.html from RUN's results.json
    volbench compare RUN_A RUN_B…  verdict changes and computed-time ratios across runs / hardware
                                   (pytest-benchmark JSON files: as `volbench bench compare`)
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
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ._writes import write_fix
from .report.files import ReportFileError, default_report_root, load_run, resolve_run
from .report.formatting import claim_sort_key, computed_seconds, format_seconds, seconds_per_cost_eval
from .report.schema import TIERS, CaseResult, RunReport, SchemaError

__all__ = ["main", "build_parser", "compare_table"]

_PROG = "volbench"
_REGRESSIONS = frozenset({("pass", "fail"), ("pass", "error"), ("pass", "inconclusive")})


class _CliError(Exception):
    """A user-facing error: printed as one line, exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG, description="Benchmark reports for the volume of neural-network minima.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def report_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--report-dir", metavar="DIR", default=None,
                       help="report root holding the runs (default: $VOLBENCH_REPORT_DIR or "
                            "./reports)")

    p = sub.add_parser("report", help="re-render report.md and index.html from results.json")
    p.add_argument("run", metavar="RUN", help="run directory, results.json, run id or 'latest'")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="write the report here instead of the run's directory")
    report_dir(p)

    p = sub.add_parser("compare", help="verdict changes and computed-time ratios across runs (or "
                       "pytest-benchmark JSON files: see `bench compare`)")
    p.add_argument("runs", metavar="RUN", nargs="+", help="two or more runs; the first is the "
                   "baseline of the timing ratios")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit 1 if a case that passed in the first run does not pass in a later one")
    _bench_compare_options(p)
    report_dir(p)

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
    _bench_compare_options(q)

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

    p = sub.add_parser("env", help="print the environment block of a report")
    p.add_argument("--json", action="store_true", help="print JSON")

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

    p = sub.add_parser("data", help="where the data sets are, and fetching them")
    data = p.add_subparsers(dest="data_command", metavar="ACTION")
    q = data.add_parser("list", help="each data set: where it was found and which variant, or how to get it")
    q.add_argument("--root", metavar="DIR", action="append", default=None,
                   help="a data root searched first (repeatable), as load(root=...)")
    q = data.add_parser("fetch", help="download data sets into the user cache, checking SHA-256")
    q.add_argument("names", metavar="NAME", nargs="+", help="data set names (volbench data list shows them)")
    q.add_argument("--root", metavar="DIR", default=None,
                   help="download into this data root instead of the user cache")
    return parser


def _bench_compare_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baseline", metavar="WHICH", default=None,
                   help="benchmark JSON only: the baseline machine, as a label (A, B, …), a 1-based index or "
                        "the file's path (default: the first file)")
    p.add_argument("--env-diff", action="store_true",
                   help="benchmark JSON only: also print every machine_info/commit_info entry that differs")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="benchmark JSON only: write bench-compare.md, bench-compare.png and a self-contained "
                        "bench-compare.html into DIR")


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
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "compare":
            return _cmd_compare(args)
        if args.command == "bench":
            return _cmd_bench(args, parser)
        if args.command == "history":
            return _cmd_history(args)
        if args.command == "env":
            return _cmd_env(args)
        if args.command == "baseline":
            return _cmd_baseline(args)
        if args.command == "cache":
            return _cmd_cache(args)
        if args.command == "data":
            return _cmd_data(args)
        return _cmd_run(args, extra)
    except _CliError as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return exc.code
    except (FileNotFoundError, ReportFileError, SchemaError, OSError) as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 1


def _root(args: argparse.Namespace) -> Path:
    return Path(args.report_dir) if args.report_dir else default_report_root()


def _load(run: str, root: Path) -> tuple[Path, RunReport]:
    """A run by name; ``baseline`` (or a path to a baseline file) is the checked-in verdict baseline."""
    from .report.baseline import BaselineError, baseline_as_run, default_baseline_path

    if run == "baseline" or run.endswith("baseline.json") or run.endswith("baseline/smoke.json"):
        path = default_baseline_path() if run == "baseline" else Path(run)
        try:
            return path, baseline_as_run(path)
        except BaselineError as exc:
            raise _CliError(str(exc)) from None
    path = resolve_run(run, root)
    return path, load_run(path)


# --------------------------------------------------------------------------- report


def _cmd_report(args: argparse.Namespace) -> int:
    from .report.render import render_run

    path, run = _load(args.run, _root(args))
    out_dir = Path(args.out) if args.out else path.parent
    try:
        rendered = render_run(run, out_dir)
    except OSError as exc:
        fix = "" if "Fix:" in str(exc) else f" ({write_fix(exc)})" if write_fix(exc) else ""
        raise _CliError(f"cannot write the report into {out_dir}: {exc}{fix}; to write it elsewhere "
                        f"pass --out DIR (the previous report there is unchanged)") from None
    print(f"{rendered.markdown}\n{rendered.html}")
    return 0


# --------------------------------------------------------------------------- compare


def _device_summary(run: RunReport) -> str:
    env = run.environment
    devices = env.get("devices") or ()
    hardware = (", ".join(str(d.get("name", "?")) for d in devices) if devices
                else f"CPU {env.get('cpu', '?')}")
    return f"{hardware}; torch {env.get('torch', '?')}; host {env.get('hostname', '?')}"


def _label(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"R{i + 1}"


def _ratio_cell(later: CaseResult | None, base: CaseResult | None) -> str:
    """Time per cost evaluation of ``later`` over ``base``'s, e.g. ``0.10x``; ``cached`` where one
    side computed no measurement (its figures were served from caches); ``-`` where one is missing
    or has no timing record."""
    if later is None or base is None:
        return "-"
    a, b = seconds_per_cost_eval(base), seconds_per_cost_eval(later)
    if a is not None and b is not None:
        return f"{b / a:.2f}x"
    if any(r.timing and not seconds_per_cost_eval(r) and r.timing.get("measurements_served") for r in (base, later)):
        return "cached"
    return "-"


def compare_table(runs: Sequence[RunReport]) -> tuple[list[str], list[list[str]], list[str]]:
    """Compare runs by (case_id, estimator).

    Returns (header, rows, regressions): per run a verdict and a computed-seconds column (seconds
    this run computed: measurements plus training; cache hits excluded, so wall seconds of cached
    work never pass for speed), a ``change`` column ("" when every run agrees, else e.g.
    "pass→fail"), and per later run its ratio to the first run of seconds per cost evaluation of
    the measurements computed (``later / first``: above 1 means slower; ``cached`` where a side
    computed none). A result missing from a run shows "-". ``regressions`` lists "case_id ·
    estimator: pass→fail" for cases that passed in the first run and did not pass in a later one
    (skips are not regressions).
    """
    if len(runs) < 2:
        raise _CliError("compare needs at least two runs", code=2)
    tables: list[dict[tuple[str, str], CaseResult]] = []
    order: dict[tuple[str, str], str] = {}
    for run in runs:
        table = {}
        for result in run.results:
            table[result.key] = result  # a repeated key within one run: the last one counts
            order.setdefault(result.key, result.claim)
        tables.append(table)
    labels = [_label(i) for i in range(len(runs))]
    header = (["claim", "case", "estimator"] + [f"{x} verdict" for x in labels] + ["change"]
              + [f"{x} computed s" for x in labels] + [f"{x}/{labels[0]} s/eval" for x in labels[1:]])
    rows, regressions = [], []
    for key in sorted(order, key=lambda k: (claim_sort_key(order[k]), k)):
        found = [table.get(key) for table in tables]
        verdicts = [r.verdict if r else "-" for r in found]
        present = [v for v in verdicts if v != "-"]
        change = "" if len(set(present)) <= 1 else "→".join(verdicts)
        for later in verdicts[1:]:
            if (verdicts[0], later) in _REGRESSIONS:
                regressions.append(f"{key[0]} · {key[1] or '-'}: {verdicts[0]}→{later}")
                break
        computed = [format_seconds(computed_seconds(r)) if r else "-" for r in found]
        ratios = [_ratio_cell(r, found[0]) for r in found[1:]]
        rows.append([order[key], key[0], key[1] or "-", *verdicts, change, *computed, *ratios])
    return header, rows, regressions


def _render_table(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        esc = [[c.replace("|", "\\|") for c in row] for row in [header, *rows]]
        lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in esc[1:]])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in [header, *rows])


def _cmd_compare(args: argparse.Namespace) -> int:
    from .report.benchcompare import is_benchmark_json

    root = _root(args)
    bench = [is_benchmark_json(run) for run in args.runs]
    if any(bench):
        if not all(bench):
            others = [run for run, b in zip(args.runs, bench) if not b]
            raise _CliError(f"{', '.join(others)}: not pytest-benchmark JSON, while the other arguments are; "
                            "compare benchmark files with benchmark files (`volbench bench compare`) and runs "
                            "with runs", code=2)
        return _bench_compare(args.runs, args)
    if args.baseline or args.env_diff or args.out:
        raise _CliError("--baseline, --env-diff and --out apply to pytest-benchmark JSON files only", code=2)
    if len(args.runs) < 2:
        raise _CliError("compare needs at least two runs (RUN_A RUN_B …)", code=2)
    loaded = [_load(run, root) for run in args.runs]
    runs = [run for _, run in loaded]
    for i, (path, run) in enumerate(loaded):
        print(f"{_label(i)} = {run.run_id} ({run.status}, {len(run.results)} results) on "
              f"{_device_summary(run)}  [{path}]")
    print()
    header, rows, regressions = compare_table(runs)
    print("computed s: seconds this run computed (measurements + training; cache hits excluded); "
          f"ratios: seconds per cost evaluation of the computed measurements against {_label(0)} "
          "(above 1 = slower; cached = a side computed none)\n")
    print(_render_table(header, rows, args.markdown))
    if regressions:
        print(f"\n{len(regressions)} regression(s) against {_label(0)}:")
        for line in regressions:
            print(f"  {line}")
    return 1 if regressions and args.fail_on_regression else 0


# --------------------------------------------------------------------------- baseline


def _cmd_baseline(args: argparse.Namespace) -> int:
    from .report.baseline import (
        REPORTED_NOTE,
        compare_with_baseline,
        default_baseline_path,
        load_baseline,
        reported_moves,
        update_baseline,
    )
    from .report.machine import describe_machine

    path = Path(args.baseline) if args.baseline else default_baseline_path()
    run_path, run = _load(args.run, _root(args))
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
        raise _CliError(str(exc)) from None
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


# --------------------------------------------------------------------------- bench, history


def _cmd_bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.bench_command != "compare":
        print(f"{_PROG}: error: bench needs a command: `volbench bench compare A.json B.json …`", file=sys.stderr)
        return 2
    return _bench_compare(args.files, args)


def _baseline_index(which: str | None, files: Sequence) -> int:
    if which is None:
        return 0
    for i, f in enumerate(files):
        if which == f.label or which == str(i + 1) or Path(which) == f.path:
            return i
    raise _CliError(f"--baseline {which!r} is none of the files (labels "
                    f"{', '.join(f.label for f in files)}, indices 1-{len(files)}, or a path given)", code=2)


def _bench_compare(paths: Sequence[str], args: argparse.Namespace) -> int:
    from .report.benchcompare import (
        BenchInputError,
        compare_files,
        environment_diff,
        format_table,
        load_bench_files,
        write_bench_report,
    )

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
            raise _CliError(f"cannot write the comparison into {args.out}: {exc}") from None
        print("\n" + "\n".join(str(p) for p in written))
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from .report.files import atomic_write_bytes
    from .report.history import build_history, format_history, history_plot, load_runs

    root = _root(args)
    runs, problems = load_runs(root)
    for line in problems:
        print(f"{_PROG}: warning: {line}", file=sys.stderr)
    if not runs:
        raise _CliError(f"no readable runs under {root} (looked for */results.json); run the cases first or "
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
                raise _CliError(f"cannot write the plot to {args.plot}: {exc}") from None
            print(f"\n{args.plot}")
    flagged = any(s.flagged for s in series)
    return 1 if flagged and args.fail_on_change else 0


# --------------------------------------------------------------------------- env


def _cmd_env(args: argparse.Namespace) -> int:
    from .report.envinfo import collect_environment, format_environment

    tier = os.environ.get("VOLBENCH_TIER") or None
    env = collect_environment(tier=tier)
    print(json.dumps(env, indent=1) if args.json else format_environment(env))
    return 0


# --------------------------------------------------------------------------- cache


def _bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"  # pragma: no cover


def _cmd_cache(args: argparse.Namespace) -> int:
    from .cache import entries, prune, summarise
    from .store import default_root

    if args.cache_command is None:
        raise _CliError("say what to do: volbench cache list | du | prune", code=2)
    root = Path(args.store).expanduser() if args.store else default_root()
    if not root.exists():
        print(f"store {root}: empty (the folder does not exist)")
        return 0
    if not root.is_dir():
        raise _CliError(f"store {root} is not a folder; pass --store DIR or set VOLBENCH_STORE")
    found = entries(root)
    if args.cache_command == "list":
        shown = [e for e in found if not (args.stale and e.current)]
        rows = [["kind", "key", "age", "size", "status", "what"]]
        for e in shown:
            rows.append([e.kind, e.key[:12], f"{e.age_days():.1f} d", _bytes(e.bytes),
                         "current" if e.current else f"stale: {e.why}", e.label])
        print(f"store {root}: {len(found)} entries, {_bytes(sum(e.bytes for e in found))}")
        if len(rows) > 1:
            print(_render_table(rows[0], rows[1:], markdown=False))
        return 0
    if args.cache_command == "du":
        print(f"store {root}")
        rows = [[r["kind"], str(r["entries"]), _bytes(r["bytes"]), f"{r['current']} ({_bytes(r['current_bytes'])})",
                 f"{r['stale']} ({_bytes(r['stale_bytes'])})"] for r in summarise(found)]
        total = sum(e.bytes for e in found)
        stale = sum(e.bytes for e in found if not e.current)
        rows.append(["total", str(len(found)), _bytes(total), "", _bytes(stale)])
        print(_render_table(["kind", "entries", "size", "current", "stale"], rows, markdown=False))
        if stale:
            print(f"reclaim {_bytes(stale)} with: volbench cache prune --stale"
                  + (f" --store {shlex.quote(str(root))}" if args.store else ""))
        return 0
    if args.older_than is None and not args.stale:
        raise _CliError("say what to prune: --older-than DAYS and/or --stale (add --dry-run to look first)", code=2)
    try:
        report = prune(root, older_than_days=args.older_than, stale=args.stale, dry_run=args.dry_run, found=found)
    except ValueError as exc:
        raise _CliError(str(exc), code=2) from None
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


# --------------------------------------------------------------------------- data


def _cmd_data(args: argparse.Namespace) -> int:
    from .data import fetch as vfetch

    if args.data_command is None:
        raise _CliError("say what to do: volbench data list | fetch NAME", code=2)
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
        print(_render_table(["data set", "variant", "found in", "note"], rows, markdown=False))
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


# --------------------------------------------------------------------------- run


def _cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    cases = Path(args.cases)
    if not cases.exists():
        raise _CliError(f"no case directory {cases.absolute()}; run from the repository root "
                        f"or pass --cases PATH", code=2)
    quick = "--quick" in extra or os.environ.get("VOLBENCH_QUICK", "") not in ("", "0")
    tier = args.tier or ("nightly" if quick else os.environ.get("VOLBENCH_TIER") or "smoke")
    if tier not in TIERS:
        raise _CliError(f"VOLBENCH_TIER is {tier!r}; use one of {TIERS}", code=2)
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


if __name__ == "__main__":  # python -m volbench.cli …
    sys.exit(main())
