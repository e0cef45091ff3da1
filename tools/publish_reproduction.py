"""Publish a reproduction run (tools/reproduce.sh) into ``docs/reproduction/``: its results.json,
report.md and figures, and a README.md stating the command, the machine, the wall time
and every result beside the paper's number.

    python tools/publish_reproduction.py reports/reproduction/latest docs/reproduction --wall-seconds 3600

The folder is replaced as a whole (written beside it, then renamed), so a failed publish leaves the
previous one intact."""
from __future__ import annotations

import argparse
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from volbench.claims.registry import claim_info
from volbench.report.files import load_run, resolve_run
from volbench.report.formatting import claim_sort_key
from volbench.report.machine import describe_machine

COMMAND = "tools/reproduce.sh"
JUDGED = ("pass", "fail", "inconclusive")


def _seconds(a: str, b: str) -> float:
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(b) - parse(a)).total_seconds()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def readme(run, wall_seconds: float | None, note: str = "") -> str:
    results = [r for r in run.results if r.verdict != "skip"]
    decided = sum(r.verdict in ("pass", "fail") for r in results)
    judged = sum(r.verdict in JUDGED for r in results)
    env = run.environment
    span = _seconds(run.started, run.finished) if run.finished else None
    machine = describe_machine(results[0].machine) if results and results[0].machine else env.get("cpu", "?")
    lines = [
        "# Reproduction report",
        "",
        "Every F and E claim the offline data allow, at the reproduction scale of the smoke settings: twice the "
        "smoke's seeds (at least the paper's ten, at most 20) wherever the smoke runs four or more, 128 directions "
        "instead of 64 (100 for the swiss roll), "
        "MNIST to 6,000 examples of the MNIST-10k pool (the paper's rungs 60, 600, 6,000), Fashion-MNIST (Debian's "
        "`dataset-fashion-mnist`) to 2,000, the generated swiss roll and modular data. Cases that study something "
        "else (E4, E5, F10, F12, F14) run at their smoke scale. Verdicts are each procedure's ordering at this "
        "scale, not the paper's full scale (docs/STATISTICS.md).",
        "",
        f"- **Command:** `{COMMAND}` (resumable: run it again after a kill; the store serves what was done)",
        f"- **Machine:** {machine}; CPU {env.get('cpu', '?')}",
        f"- **Run:** {run.run_id}, started {run.started}, finished {run.finished or '(running)'}"
        + (f" ({span / 60:.1f} min)" if span is not None else ""),
    ]
    if wall_seconds is not None:
        lines.append(f"- **Wall time:** {wall_seconds / 60:.1f} min on 2 workers")
    if note:
        lines.append(f"- **Note:** {note}")
    lines += [
        f"- **Decided:** {decided} of {judged} judged results "
        f"({100 * decided / max(judged, 1):.0f}%; per case and estimator, skips excluded)",
        "- **Compare your run:** `VOLBENCH_REPRODUCE=1 python -m pytest cases/test_fan.py cases/test_crosscheck.py "
        "-n 2`, then `volbench compare docs/reproduction reports/latest`",
        "",
        "[report.md](report.md) holds every statement, its rule and the figures (figures/); `volbench report "
        "docs/reproduction` renders the same as index.html.",
        "",
        "| claim | case | estimator | verdict | our statistic (deciding statement) | the paper's number |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: (claim_sort_key(r.claim), r.case_id, r.estimator or "")):
        info = claim_info(r.claim)
        stat = r.statistic.format(3) if r.statistic is not None else (r.reason or "")[:120]
        paper = info.number if info else ""
        lines.append(f"| {r.claim} | {r.case_id} | {r.estimator or '-'} | **{r.verdict}** | {_cell(stat)} | "
                     f"{_cell(paper)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("dest")
    p.add_argument("--wall-seconds", type=float, default=None)
    p.add_argument("--note", default="", help="a line on how this run was made (e.g. what the store held)")
    args = p.parse_args()
    src = resolve_run(args.run)
    src_dir = src if src.is_dir() else src.parent
    run = load_run(src)
    if run.status != "complete":
        raise SystemExit(f"{args.run}: the run is {run.status!r}; finish it (tools/reproduce.sh resumes) first")
    dest = Path(args.dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".reproduction-", dir=dest.parent))
    for name in ("results.json", "report.md"):  # index.html (2-3 MB, figures inline): `volbench report`
        shutil.copy2(src_dir / name, staging / name)
    if (src_dir / "figures").is_dir():
        shutil.copytree(src_dir / "figures", staging / "figures")
    (staging / "README.md").write_text(readme(run, args.wall_seconds, args.note), encoding="utf-8")
    old = dest.with_name(dest.name + ".old")
    if dest.exists():
        dest.rename(old)
    staging.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    print(dest / "README.md")


if __name__ == "__main__":
    main()
