"""``volbench compare``: Verdict changes and computed-time ratios across runs and hardware."""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from volbench.cli._common import CliError, load_run_or_baseline, render_table, report_root
from volbench.cli.bench import bench_compare_options, compare_benchmark_files
from volbench.report.formatting import claim_sort_key, computed_seconds, format_seconds, seconds_per_cost_eval
from volbench.results import CaseResult, RunReport


def add_parser(sub, report_dir) -> None:
    """Register ``volbench compare`` on the subparsers ``sub``."""
    p = sub.add_parser("compare", help="verdict changes and computed-time ratios across runs (or "
                       "pytest-benchmark JSON files: see `bench compare`)")
    p.add_argument("runs", metavar="RUN", nargs="+", help="two or more runs; the first is the "
                   "baseline of the timing ratios")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit 1 if a case that passed in the first run does not pass in a later one")
    bench_compare_options(p)
    report_dir(p)
    p.set_defaults(handler=lambda args, extra, parser: _cmd_compare(args))


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
        raise CliError("compare needs at least two runs", code=2)
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


def _cmd_compare(args: argparse.Namespace) -> int:
    from volbench.bench.records import is_benchmark_json

    root = report_root(args)
    bench = [is_benchmark_json(run) for run in args.runs]
    if any(bench):
        if not all(bench):
            others = [run for run, b in zip(args.runs, bench) if not b]
            raise CliError(f"{', '.join(others)}: not pytest-benchmark JSON, while the other arguments are; "
                            "compare benchmark files with benchmark files (`volbench bench compare`) and runs "
                            "with runs", code=2)
        return compare_benchmark_files(args.runs, args)
    if args.baseline or args.env_diff or args.out:
        raise CliError("--baseline, --env-diff and --out apply to pytest-benchmark JSON files only", code=2)
    if len(args.runs) < 2:
        raise CliError("compare needs at least two runs (RUN_A RUN_B …)", code=2)
    loaded = [load_run_or_baseline(run, root) for run in args.runs]
    runs = [run for _, run in loaded]
    for i, (path, run) in enumerate(loaded):
        print(f"{_label(i)} = {run.run_id} ({run.status}, {len(run.results)} results) on "
              f"{_device_summary(run)}  [{path}]")
    print()
    header, rows, regressions = compare_table(runs)
    print("computed s: seconds this run computed (measurements + training; cache hits excluded); "
          f"ratios: seconds per cost evaluation of the computed measurements against {_label(0)} "
          "(above 1 = slower; cached = a side computed none)\n")
    print(render_table(header, rows, args.markdown))
    if regressions:
        print(f"\n{len(regressions)} regression(s) against {_label(0)}:")
        for line in regressions:
            print(f"  {line}")
    return 1 if regressions and args.fail_on_regression else 0


_REGRESSIONS = frozenset({("pass", "fail"), ("pass", "error"), ("pass", "inconclusive")})
