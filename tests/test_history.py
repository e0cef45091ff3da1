"""Tests of results tracked across runs (volbench.report.history, ``volbench history``)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from volbench.cli import main
from volbench.report import files
from volbench.report.example import example_environment, example_run
from volbench.report.history import TIMING_FACTOR, build_history, load_runs, machine_key
from volbench.results import CaseResult, RunReport, Statement, Statistic


def result(value, low, high, *, verdict="pass", measured=10.0, evals=1000, quick=False, statements=()):
    stat = Statistic("alpha", value, low=low, high=high, level=0.95)
    return CaseResult(claim="F5", case_id="F5-power-law[mnist-mlp]", estimator="principled", verdict=verdict,
                      statistic=stat, rule="pass if the interval lies below 0", paper_value=-0.1835, seconds=12.0,
                      reason="" if verdict == "pass" else "straddles 0", quick=quick, statements=statements,
                      timing={"wall_seconds": 12.0, "measured_seconds": measured, "measured_cost_evals": evals,
                              "measurements_computed": 2, "trained_seconds": 1.0, "minima_trained": 1})


def run(day: int, results, *, host="laptop", commit="a" * 40) -> RunReport:
    env = {**example_environment(), "hostname": host, "git_commit": commit}
    return RunReport(run_id=f"202501{day:02d}T000000Z-{day:06x}", started=f"2025-01-{day:02d}T00:00:00Z",
                     status="complete", environment=env, results=tuple(results))


def series_of(runs, **kw):
    [s] = [s for s in build_history([(None, r) for r in runs], claims=["F5"], **kw) if s.label == "alpha"]
    return s


def test_a_change_is_flagged_when_intervals_do_not_overlap_and_only_then():
    runs = [run(1, [result(-0.18, -0.20, -0.16)]),
            run(2, [result(-0.17, -0.19, -0.15)]),  # overlaps: no flag
            run(3, [result(-0.10, -0.12, -0.08)]),  # [-0.12, -0.08] vs [-0.19, -0.15]: apart
            run(4, [result(-0.11, -0.13, -0.09)])]
    s = series_of(runs)
    assert [p.run.run_id[:8] for p in s.points] == ["20250101", "20250102", "20250103", "20250104"]
    assert [bool(p.changes) for p in s.points] == [False, False, True, False]
    assert "do not overlap" in s.points[2].changes[0]


def test_verdict_changes_are_flagged_and_values_without_interval_are_not_judged():
    no_interval = replace(result(-0.5, -0.6, -0.4), statistic=Statistic("alpha", -0.5))
    runs = [run(1, [result(-0.18, -0.20, -0.16)]), run(2, [no_interval]),
            run(3, [result(0.01, -0.02, 0.04, verdict="inconclusive")])]
    s = series_of(runs)
    assert s.points[1].changes == (), "no interval: nothing claimed"
    assert s.points[2].changes == ("verdict pass→inconclusive",)


def test_timing_is_compared_on_the_same_machine_only():
    slow = 2 * TIMING_FACTOR
    runs = [run(1, [result(-0.18, -0.2, -0.16)]),
            run(2, [result(-0.18, -0.2, -0.16, measured=10.0 * slow)]),  # same machine, 3x slower
            run(3, [result(-0.18, -0.2, -0.16, measured=1.0)], host="h200-box"),  # other machine: not compared
            run(4, [result(-0.18, -0.2, -0.16, measured=1.1)], host="h200-box")]
    s = series_of(runs)
    assert s.points[1].changes == (f"timing {slow:.2f}x s/eval",)
    assert s.points[2].changes == () and s.points[3].changes == ()
    assert s.points[1].s_per_eval == pytest.approx(10.0 * slow / 1000, rel=1e-12)
    assert s.points[2].run.machine == "h200-box (CPU AMD EPYC 7B13)"


def test_statements_are_series_of_their_own_and_quick_runs_are_kept_apart():
    st = Statement("a", "alpha < 0", "pass", Statistic("alpha", -0.2, low=-0.3, high=-0.1, level=0.95),
                   rule="below 0")
    runs = [run(1, [result(-0.18, -0.2, -0.16, statements=[st])]),
            run(2, [result(-0.18, -0.2, -0.16, statements=[st]), result(0.5, 0.4, 0.6, quick=True)])]
    series = build_history([(None, r) for r in runs], claims=["F5"])
    labels = sorted((s.label, s.quick, len(s.points)) for s in series)
    assert labels == [("(a) alpha", False, 2), ("alpha", False, 2), ("alpha", True, 1)]
    assert not any(s.flagged for s in series), "the quick run's 0.5 is not compared with real runs"


def test_machine_key_names_unknowns():
    assert machine_key({}) == "unknown host (unknown hardware)"
    assert machine_key({"hostname": "b", "devices": [{"name": "NVIDIA H200"}]}) == "b (NVIDIA H200)"


def save(root, runs):
    for r in runs:
        (root / r.run_id).mkdir(parents=True)
        files.save_run(r, root / r.run_id / "results.json")


def test_cli_history_lists_flags_and_plots(tmp_path, capsys):
    root = tmp_path / "reports"
    save(root, [run(1, [result(-0.18, -0.20, -0.16)]), run(2, [result(-0.10, -0.12, -0.08)], commit="b" * 40)])
    (root / "broken").mkdir()
    (root / "broken" / "results.json").write_text("{")
    plot = tmp_path / "history.png"
    code = main(["history", "F5", "--report-dir", str(root), "--plot", str(plot)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "skipped" in err and "broken" in err and "Traceback" not in err
    assert "change rule:" in out and "2 runs under" in out
    rows = [line for line in out.splitlines() if "20250102T000000Z" in line and "alpha" not in line.split()[:1]]
    assert any("bbbbbbbbbb" in line and "do not overlap" in line for line in rows), out
    assert "laptop (CPU AMD EPYC 7B13)" in out and "aaaaaaaaaa" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert main(["history", "F5", "--report-dir", str(root), "--fail-on-change"]) == 1
    capsys.readouterr()
    assert main(["history", "Z6", "--report-dir", str(root)]) == 0
    assert "no matching results" in capsys.readouterr().out


def test_cli_history_without_runs_is_a_clear_error(tmp_path, capsys):
    assert main(["history", "--report-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no readable runs" in err
    assert main(["history", "--report-dir", str(tmp_path / "nope")]) == 1
    assert "no reports folder" in capsys.readouterr().err


def test_history_of_the_example_runs_reads_every_claim(tmp_path):
    a = example_run(seed=0)
    b = replace(example_run(seed=1, time_scale=0.5), run_id="20250102T000000Z-bbbbbb", started="2025-01-02T00:00:00Z")
    root = tmp_path / "r"
    save(root, [a, b])
    runs, problems = load_runs(root)
    assert problems == [] and len(runs) == 2
    series = build_history(runs)
    assert {s.claim for s in series} == {r.claim for r in a.results}
    f5 = [s for s in series if s.claim == "F5" and s.label == "(a) alpha"]
    assert len(f5) == 2 and all(len(s.points) == 2 for s in f5)
