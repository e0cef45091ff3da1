"""The smoke design's verdict table (issue R2): before (a run or the baseline), the design on its own
seeds, and the design on a disjoint seed set (``VOLBENCH_SEED_OFFSET=10``), one row per case and
estimator.

    python tools/r2_table.py BEFORE DESIGN DISJOINT [-k TEXT] > table.md

Each is a run, or runs joined by commas (a later run's result of a case replaces an earlier one's:
a case rerun after a design change); a run is what ``volbench compare`` takes (a run directory, a
results.json, ``latest``, ``baseline``). Columns: each run's verdict with its headline statistic
and statement verdicts; for a decided design verdict (pass or fail), whether the disjoint seeds
gave the same; for an undecided one, what its statements say would decide it. Counts of decided
verdicts (skips excluded) follow."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from volbench.cli._common import load_run_or_baseline

SHORT = {"pass": "P", "fail": "F", "inconclusive": "I", "not-judged": "-"}
DECIDED = ("pass", "fail")


def _load(runs: str, keep: str | None):
    """Results of RUN[,RUN...] by (case id, estimator); a later run's result replaces an earlier one's."""
    out = {}
    for run in runs.split(","):
        for r in load_run_or_baseline(run, Path("reports"))[1].results:
            if keep is None or keep in r.case_id:
                out[(r.case_id, r.estimator)] = r
    return out


def _stat(r) -> str:
    s = r.statistic
    if s is None or s.value is None:
        return ""
    return f" {s.value:.3g}" + (f" [{s.low:.3g}, {s.high:.3g}]" if s.low is not None and s.high is not None else "")


def _statements(r) -> str:
    return " ".join(f"{st.id}:{SHORT[st.verdict]}" for st in r.statements if st.verdict != "not-judged")


def _would_decide(r) -> str:
    out = []
    for st in r.statements:
        if st.verdict != "inconclusive":
            continue
        m = re.search(r"(about [^;]*?would decide it[^;]*|no number of seeds[^;]*|the interval \[[^\]]*\] is neither "
                      r"inside nor outside [^;]*|more replicates would decide it)", st.reason or "")
        out.append(f"({st.id}) " + (m.group(1) if m else (st.reason or "")[:100]))
    return "; ".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before")
    p.add_argument("design")
    p.add_argument("disjoint")
    p.add_argument("-k", dest="keep", default=None, help="only case ids containing TEXT")
    args = p.parse_args()
    runs = {name: _load(getattr(args, name), args.keep) for name in ("before", "design", "disjoint")}
    keys = sorted(set(runs["design"]) | set(runs["before"]))
    print("| case | estimator | before | design | disjoint seeds | held | what would decide it (design) |")
    print("|---|---|---|---|---|---|---|")
    counts = {name: [0, 0] for name in runs}
    held = 0
    for key in keys:
        cells = []
        for name, run in runs.items():
            r = run.get(key)
            if r is None:
                cells.append("—")
                continue
            if r.verdict != "skip":
                counts[name][1] += 1
                counts[name][0] += r.verdict in DECIDED
            cells.append(f"**{r.verdict}**{_stat(r)} ({_statements(r)})")
        d, j = runs["design"].get(key), runs["disjoint"].get(key)
        mark = ""
        if d is not None and d.verdict in DECIDED:
            ok = j is not None and j.verdict == d.verdict
            held += ok
            mark = "yes" if ok else f"**no** ({j.verdict if j else 'absent'})"
        print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + f" | {mark} | {_would_decide(d) if d else ''} |")
    print()
    for name, (d, t) in counts.items():
        print(f"- {name}: decided {d} of {t} ({100 * d / max(t, 1):.0f}%)")
    print(f"- design verdicts decided and held on the disjoint seeds: {held} of {counts['design'][0]}")


if __name__ == "__main__":
    main()
