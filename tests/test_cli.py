"""Tests of the ``volbench`` command line (volbench.cli.main): report, compare, env, run."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from volbench.cli import compare_table, main
from volbench.report import files
from volbench.report.example import example_run
from volbench.results import SCHEMA_VERSION


@pytest.fixture
def saved_runs(tmp_path):
    """Two saved runs: A on a CPU; B on a (pretend) H100, 10x faster, one verdict flipped and
    one case missing."""
    a = example_run(seed=0)
    b = example_run(seed=1, device="cuda:0", time_scale=0.1, run_id="20250102T000000Z-bbbbbb")
    flipped = [replace(r, verdict="fail") if r.case_id == "E1-more-directions[mnist-mlp]" else r
               for r in b.results if r.case_id != "F12-toy-scale-invariance"]
    b = replace(b, results=tuple(flipped))
    paths = []
    for run in (a, b):
        run_dir = tmp_path / "reports" / run.run_id
        run_dir.mkdir(parents=True)
        files.save_run(run, run_dir / "results.json")
        paths.append(run_dir)
    return tmp_path / "reports", paths


def test_report_rerenders_from_json_alone(saved_runs, capsys):
    root, (run_a, _) = saved_runs
    assert main(["report", str(run_a / "results.json")]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(run_a / "report.md"), str(run_a / "index.html")]
    html = (run_a / "index.html").read_text()
    assert html.count("data:image/png;base64,") == 9, "8 case figures + timing"
    assert "F5-power-law[mnist-mlp]" in (run_a / "report.md").read_text()


def test_report_latest_and_run_id_resolution(saved_runs, tmp_path, capsys):
    root, (_, run_b) = saved_runs
    files.point_latest(root, run_b.name)
    out_dir = tmp_path / "elsewhere"
    assert main(["report", "latest", "--report-dir", str(root), "--out", str(out_dir)]) == 0
    assert (out_dir / "index.html").is_file() and not (run_b / "index.html").exists()
    capsys.readouterr()


@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "no results.json"),
        ('{"schema_version": 1, "run_id": ', "not valid JSON"),
        (json.dumps({"schema_version": SCHEMA_VERSION + 1, "run_id": "r", "started": "t"}),
         "upgrade volbench"),
        ("[1, 2]", "must hold a JSON object"),
    ],
)
def test_report_errors_are_one_line_without_traceback(tmp_path, capsys, content, fragment):
    target = tmp_path / "run"
    target.mkdir()
    if content is not None:
        (target / "results.json").write_text(content)
    assert main(["report", str(target)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("volbench: error: ") and fragment in err, err
    assert "Traceback" not in err and err.count("\n") == 1, err


def test_report_latest_without_runs_says_where_it_looked(tmp_path, capsys):
    assert main(["report", "latest", "--report-dir", str(tmp_path)]) == 1
    assert f"no latest run under {tmp_path}" in capsys.readouterr().err


def test_compare_tables_verdict_changes_timing_ratios_and_devices(saved_runs, capsys):
    root, (run_a, run_b) = saved_runs
    assert main(["compare", str(run_a), str(run_b), "--report-dir", str(root)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("A = 20250101T120000Z-5eed00 (complete, 11 results) on CPU AMD")
    assert lines[1].startswith("B = 20250102T000000Z-bbbbbb (complete, 10 results) on NVIDIA "
                               "H100 80GB HBM3; torch 2.13.0+cu128")
    row = next(line for line in lines if line.startswith("E1 "))
    # computed seconds (measurements + training: 0.9 of 9.8 s in the example), not wall seconds;
    # the ratio is of seconds per cost evaluation (B is 10x faster on the same evaluations)
    assert row.split() == ["E1", "E1-more-directions[mnist-mlp]", "principled", "pass", "fail",
                           "pass→fail", "8.82", "0.88", "0.10x"], row
    missing = next(line for line in lines if line.startswith("F12 "))
    assert missing.split() == ["F12", "F12-toy-scale-invariance", "principled", "pass", "-",
                               "0.36", "-", "-"], missing
    assert "1 regression(s) against A:" in out
    assert "E1-more-directions[mnist-mlp] · principled: pass→fail" in out
    assert main(["compare", str(run_a), str(run_b), "--fail-on-regression"]) == 1
    capsys.readouterr()
    assert main(["compare", str(run_a), str(run_a), "--fail-on-regression", "--markdown"]) == 0
    md = capsys.readouterr().out
    assert ("| claim | case | estimator | A verdict | B verdict | change | A computed s | B computed s | "
            "B/A s/eval |") in md


def _scaled_timing(r, factor):
    timing = dict(r.timing)
    for key in ("measured_seconds", "trained_seconds", "wall_seconds"):
        if key in timing:
            timing[key] *= factor
    return replace(r, seconds=r.seconds * factor, timing=timing)


def test_compare_table_exact_rows():
    run = example_run()
    slower = replace(run, results=tuple(_scaled_timing(r, 2.5) for r in run.results))
    header, rows, regressions = compare_table([run, slower])
    assert header[-1] == "B/A s/eval" and regressions == []
    ratios = {row[1] + "/" + row[2]: row[-1] for row in rows}
    assert ratios["F5-power-law[mnist-mlp]/reference"] == "2.50x"
    assert ratios["Z4-boolean-sampling/-"] == "-", "no timing record: no ratio"


def test_compare_uses_computed_figures_not_wall_seconds():
    """A case served from caches in run B has small wall seconds but no computed measurement: its
    ratio says 'cached', never a speed-up; a run whose computed work is slower shows > 1 even when its
    wall seconds are smaller."""
    run = example_run()
    e1 = next(r for r in run.results if r.case_id.startswith("E1"))
    served = replace(e1, seconds=0.01, timing={**e1.timing, "measured_seconds": 0.0, "measured_cost_evals": 0,
                                                 "measurements_computed": 0, "trained_seconds": 0.0,
                                                 "minima_trained": 0, "wall_seconds": 0.01})
    slower = replace(e1, seconds=e1.seconds / 2,
                     timing={**e1.timing, "measured_seconds": e1.timing["measured_seconds"] * 3})
    for other, expected in ((served, "cached"), (slower, "3.00x")):
        b = replace(run, results=(other,))
        _, rows, _ = compare_table([replace(run, results=(e1,)), b])
        assert rows[0][-1] == expected, rows[0]
    claims = [row[0] for row in rows]
    assert claims == sorted(claims, key=lambda c: (c[0], int(c[1:]))), "natural claim order"


def test_compare_needs_two_runs(saved_runs, capsys):
    _, (run_a, _) = saved_runs
    assert main(["compare", str(run_a)]) == 2
    assert "at least two runs" in capsys.readouterr().err


def test_env_prints_the_environment_block(capsys):
    assert main(["env"]) == 0
    text = capsys.readouterr().out
    assert any(line.split() == ["torch", torch.__version__] for line in text.splitlines()), text
    assert "float32_matmul_precision" in text and "git_commit" in text
    assert main(["env", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["torch"] == torch.__version__ and env["cuda_available"] is torch.cuda.is_available()


def test_usage_errors_return_2(capsys):
    assert main([]) == 2
    assert main(["report"]) == 2
    assert main(["report", "x", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "compare" in capsys.readouterr().out


CONFTEST = '''
def pytest_addoption(parser):
    parser.addoption("--tier", default="smoke")
'''
CASE = '''
import os, pathlib

def test_keep(request):
    pathlib.Path("seen.txt").write_text(
        os.environ["VOLBENCH_TIER"] + " " + request.config.getoption("tier"))

def test_drop():
    assert False, "fails: pytest's exit code must come back"

def test_other():
    pathlib.Path("other.txt").write_text("-k did not reach pytest")
'''


def test_run_passes_the_tier_both_ways_and_returns_pytests_exit_code(tmp_path, monkeypatch):
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "conftest.py").write_text(CONFTEST)
    (tmp_path / "cases" / "test_tiers.py").write_text(CASE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VOLBENCH_REPORT_DIR", str(tmp_path / "rep"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("VOLBENCH_TIER", raising=False)
    args = ["run", "--tier", "nightly", "-k", "keep or drop", "-q", "-p", "no:cacheprovider",
            "-p", "no:xdist"]
    assert main(args) == 1, "pytest's exit code for a failing test"
    assert (tmp_path / "seen.txt").read_text() == "nightly nightly", "tier: env var and option"
    assert not (tmp_path / "other.txt").exists(), "-k EXPR must reach pytest"


def test_run_without_a_case_directory_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "no case directory" in err and "--cases" in err


def test_run_rejects_a_bad_tier_from_the_environment(tmp_path, monkeypatch, capsys):
    (tmp_path / "cases").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VOLBENCH_TIER", "weekly")
    assert main(["run"]) == 2
    assert "VOLBENCH_TIER is 'weekly'" in capsys.readouterr().err
