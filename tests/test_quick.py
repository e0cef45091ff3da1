"""Quick mode: every nightly case's own code path at tiny scale (cases/_support.quick_params), kept
apart from real verdicts in the report; data-driven skips with the one-line reason in full."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "cases"))

import _support  # noqa: E402
from _support import Case, quick_case, quick_params  # noqa: E402

from volbench.report.render_html import render_html  # noqa: E402
from volbench.report.render_md import render_markdown  # noqa: E402
from volbench.results import CaseResult, RunReport  # noqa: E402


def _nightly_cases():
    import importlib

    out = []
    for name in ("test_fan", "test_scherlis", "test_zhang"):
        module = importlib.import_module(name)
        for test, cases in module.CASES.items():
            out += [(module, test, c) for c in cases if c.tier == "nightly"]
    return out


def test_every_nightly_case_has_a_tiny_quick_twin():
    cases = _nightly_cases()
    assert len(cases) >= 40
    for module, test, case in cases:
        q = quick_case(case, getattr(module, "QUICK", {}).get(test))
        p = q.params
        assert q.quick and q.id == case.id and q.tier == "nightly", case.id
        assert set(p) == set(case.params) | set(getattr(module, "QUICK", {}).get(test, {})), "no parameter lost"
        assert len(p.get("seeds", (0,))) == 1, f"{case.id}: one seed"
        for key in ("K", "K_inv", "sweep_K"):
            assert p.get(key, 0) <= _support.QUICK_DIRECTIONS, f"{case.id}: {key} is a few directions"
        assert p.get("K_e3", 0) <= _support.QUICK_DIRECTIONS_E3
        assert p.get("epochs", 0) <= max(_support.QUICK_EPOCHS, 0) or "epochs" in q.quick_changes
        if "sizes" in p:
            assert len(p["sizes"]) <= 3 and list(p["sizes"]) == sorted(set(p["sizes"]))
            assert p["sizes"][0] == case.params["sizes"][0], "the smallest landscape is the paper's"
            assert max(p["sizes"]) <= 4 * p["sizes"][0]
        for key in ("size", "base_size"):
            if key in p and "sizes" in p:
                assert p[key] <= max(p["sizes"]), f"{case.id}: {key} within the quick sizes"
        if "checkpoints" in p:
            assert list(p["checkpoints"]) == sorted(set(p["checkpoints"]))
            if "epochs" in p:
                assert max(p["checkpoints"]) <= p["epochs"], f"{case.id}: checkpoints within training"
        if "poison" in p and "base_size" in p:
            assert p["poison"][0] == 0 and max(p["poison"]) <= p["base_size"]
        if "batches" in p:
            assert min(p["batches"]) >= _support.QUICK_MIN_BATCH and max(p["batches"]) <= p["size"]
        if "attack" in p:
            assert max(p["attack"]) <= p["n_train"]
        for key in ("repeats", "samples", "n_samples", "n"):
            assert p.get(key, 0) <= max(_support.QUICK_REPEATS, _support.QUICK_SAMPLES, _support.QUICK_N)
        for key, (old, new) in q.quick_changes.items():
            assert case.params.get(key) == old and p[key] == new


def test_overrides_and_the_shrink_record():
    base = Case("X1", "demo", "toy", "nightly", {"K": 500, "epochs": 1000, "checkpoints": (0, 10, 100, 1000),
                                                 "seeds": (3, 4), "eps": (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)})
    q = quick_case(base, {"K": 2, "extra": True})
    assert q.params["K"] == 2 and q.params["extra"] is True and q.quick_changes["extra"] == [None, True]
    assert q.params["checkpoints"] == (0, 6, 60), "first, middle, last, scaled with the epochs"
    assert q.params["eps"] == (1e-1, 1e-3, 1e-5) and q.params["seeds"] == (3,)
    with pytest.raises(ValueError, match="only nightly"):
        quick_case(Case("X1", "demo", "toy", "smoke", {}))
    p, changes = quick_params({"checkpoints": (0, 500, 1000)})  # no epochs: the last capped at QUICK_EPOCHS
    assert p["checkpoints"] == (0, 30, 60) and "checkpoints" in changes
    assert "gpu" not in {m.name for m in q.param().marks} and "quick" in {m.name for m in q.param().marks}
    nightly = Case("X1", "demo", "toy", "nightly", {})
    assert [m.name for m in nightly.param().marks] == ["nightly"], "nightly cases carry no gpu mark"


def _result(case_id, verdict, quick, reason=""):
    from volbench.results import Statistic

    judged = verdict in ("pass", "fail")
    return CaseResult(claim=case_id.split("-")[0], case_id=case_id, verdict=verdict, estimator="reference",
                      tier="nightly" if quick else "smoke", quick=quick, reason=reason, seconds=1.0,
                      statistic=Statistic("d", 1.0) if judged else None, rule="d > 0" if judged else "")


def test_report_keeps_quick_verdicts_apart():
    reason = ("fashion_mnist data set not found and not downloaded: VOLBENCH_OFFLINE=1 forbids downloads. Get it "
              "with `apt-get install dataset-fashion-mnist` (files in /usr/share/datasets/fashion-mnist), or put "
              "train-images-idx3-ubyte.gz ... in <data root>/fashion-mnist/")
    run = RunReport(run_id="20250101T120000Z-aaaaaa", started="2025-01-01T12:00:00Z", results=(
        _result("F1-poison-smaller[mnist-mlp]", "pass", False),
        _result("F3-own-largest-every-size[fashion-mnist-mlp]", "skip", False, reason),
        _result("F1-poison-smaller[cifar10-mlp]", "pass", True)))
    md = render_markdown(run)
    real, quick = md.split("## Verdicts", 1)[1].split("## Quick verdicts", 1)
    assert "F1-poison-smaller[mnist-mlp]" in real and "cifar10" not in real
    assert "pass (quick)" in quick.split("## F1")[0] and "not whether its claim holds" in quick
    assert reason in md, "a skip's reason is shown whole in the report"
    html = render_html(run)
    assert html.count('class="quick"') >= 2 and "Quick verdicts" in html
    assert "/usr/share/datasets/fashion-mnist), or put train-images-idx3-ubyte.gz" in html


@pytest.mark.slow
def test_main_job_without_the_data_skips_with_the_reason_and_exits_0(tmp_path):
    """`pytest cases/ -k ...` with Fashion-MNIST absent and no download allowed: the cases skip
    with the one-line reason, pytest exits 0, and all three report files name the reason whole."""
    env = {**os.environ, "VOLBENCH_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "VOLBENCH_STORE": str(tmp_path / "store"), "VOLBENCH_REPORT_DIR": str(tmp_path / "reports")}
    env.pop("VOLBENCH_DATA", None)
    # Hide Debian's package (CI installs it before the test command): point the system folder elsewhere.
    hide = tmp_path / "hide.py"
    hide.write_text("import dataclasses, volbench.data.images as i\n"
                    "i._FASHION = dataclasses.replace(i._FASHION, system_dirs=())\n"
                    "i.IDX_FAMILIES = {'mnist': i._MNIST, 'fashion_mnist': i._FASHION}\n")
    (tmp_path / "sitecustomize.py").write_text("import hide\n")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-m", "pytest", "cases/", "-p", "no:xdist", "-p", "no:cacheprovider",
                          "-k", "fashion and (F3 or F5)"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "2 skipped" in out.stdout
    runs = [p for p in (tmp_path / "reports").iterdir() if p.is_dir() and p.name != "latest"]
    assert len(runs) == 1
    results = json.loads((runs[0] / "results.json").read_text())["results"]
    reasons = {r["case_id"]: r["reason"] for r in results}
    assert set(reasons) == {"F3-own-largest-every-size[fashion-mnist-mlp]", "F5-power-law[fashion-mnist-mlp]"}
    for reason in reasons.values():
        assert "\n" not in reason and "VOLBENCH_OFFLINE=1 forbids downloads" in reason
        assert "apt-get install dataset-fashion-mnist" in reason and "fashion-mnist/" in reason
        for name in ("report.md", "index.html"):
            text = (runs[0] / name).read_text()
            assert reason in text or reason.replace("`", "") in text or _html_escaped(reason) in text, name
        assert reason in out.stdout.replace("\n", " ") or reason[:60] in out.stdout


def _html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_volbench_run_quick_selects_the_nightly_tier(monkeypatch, tmp_path):
    from volbench import cli

    seen = {}

    class FakePopen:
        def __init__(self, cmd, env):
            seen["cmd"], seen["env"] = cmd, env

        def wait(self):
            return 0

    monkeypatch.setattr(cli.run.subprocess, "Popen", FakePopen)
    monkeypatch.delenv("VOLBENCH_QUICK", raising=False)
    (tmp_path / "cases").mkdir()
    assert cli.main(["run", "--cases", str(tmp_path / "cases"), "--quick", "-k", "F3"]) == 0
    cmd = seen["cmd"]
    assert cmd[cmd.index("--tier") + 1] == "nightly" and "--quick" in cmd and seen["env"]["VOLBENCH_TIER"] == "nightly"


pytest_plugins = ["pytester"]


def test_data_missing_inside_a_case_skips_with_the_one_line_reason(pytester):
    import importlib.util

    spec = importlib.util.spec_from_file_location("volbench_cases_conftest", REPO / "cases" / "conftest.py")
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    pytester.makepyfile(test_missing='''
        from volbench.data import DatasetNotFoundError

        def test_reads_cifar():
            raise DatasetNotFoundError("could not find the cifar10 data set. Folders searched:\\n  - /x",
                                       dataset="cifar10", reason="cifar10 data set not found. Get it with ...")
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs", "--volbench-no-report", plugins=[plugin])
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*cifar10 data set not found. Get it with ...*"])


def test_a_quick_case_that_breaks_is_reported_as_quick(pytester, tmp_path):
    pytester.makepyfile(test_breaks='''
        import pytest

        class Rec:
            claim, id, title, tier, quick = "F9", "F9-demo[x]", "", "nightly", True

        @pytest.mark.parametrize("case", [pytest.param(Rec(), id="F9-demo[x]", marks=pytest.mark.quick)])
        def test_case(case, record_case):
            raise RuntimeError("rotted")
    ''')
    pytester.makeini("[pytest]\nmarkers =\n    quick: q\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--volbench-report-dir", str(tmp_path / "rep"))
    result.assert_outcomes(failed=1)
    run = next(p for p in (tmp_path / "rep").iterdir() if p.is_dir() and p.name != "latest")
    rows = json.loads((run / "results.json").read_text())["results"]
    assert [(r["case_id"], r["verdict"], r["quick"]) for r in rows] == [("F9-demo[x]", "error", True)]
    assert "Quick verdicts" in (run / "report.md").read_text()


def test_nightly_cases_show_progress(pytester, monkeypatch):
    cases = REPO / "cases"
    pytester.makeconftest(f'''
        import importlib.util, sys
        sys.path.insert(0, {str(cases)!r})
        spec = importlib.util.spec_from_file_location("cases_conftest_under_test", {str(cases / "conftest.py")!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _nightly_progress = module._nightly_progress
    ''')
    pytester.makepyfile(test_long='''
        import time
        import pytest
        from _support import Case

        @pytest.mark.parametrize("case", [Case("X1", "demo", "toy", "nightly", {}).param()])
        def test_long(case):
            time.sleep(1.5)
    ''')
    monkeypatch.setenv("VOLBENCH_PROGRESS", "stderr")
    monkeypatch.setenv("VOLBENCH_PROGRESS_SECONDS", "0.3")
    # Under xdist the outer worker's id is inherited and would tag the lines ("nightly gw1").
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", "--volbench-no-report")
    result.assert_outcomes(passed=1)
    err = result.stderr.str()
    assert "[volbench nightly] X1-demo[toy]: started" in err
    assert "trained 0 minima" in err and "computed 0 measurements" in err, "a line while it runs"
    assert "X1-demo[toy]: finished after" in err


def _smoke_cases():
    import importlib

    return [c for name in ("test_fan", "test_crosscheck", "test_scherlis", "test_zhang")
            for cases in importlib.import_module(name).CASES.values() for c in cases if c.tier == "smoke"]


def test_reproduction_scale_scales_the_volume_settings_only_and_keeps_ids():
    from _support import REPRODUCTION_DIRECTIONS, REPRODUCTION_MAX_SEEDS, REPRODUCTION_SEEDS, reproduction_case

    scaled = 0
    for case in _smoke_cases():
        r = reproduction_case(case)
        assert r.id == case.id and r.tier == "smoke" and not r.quick, case.id
        if not case.params.get("reproduce"):
            assert r.params == case.params and not r.scale_changes, f"{case.id} did not opt in"
            continue
        scaled += 1
        p = r.params
        assert p["K"] >= REPRODUCTION_DIRECTIONS, case.id
        n_seeds = len(case.params["seeds"])
        assert len(p["seeds"]) == (min(REPRODUCTION_MAX_SEEDS, max(REPRODUCTION_SEEDS, 2 * n_seeds)) if n_seeds >= 4
                                   else n_seeds), case.id
        assert p["seeds"][0] == case.params["seeds"][0], "the smoke's seeds stay a prefix"
        assert p.get("K_small") == case.params.get("K_small"), "few directions stay few"
        for key, (old, new) in r.scale_changes.items():
            assert case.params[key] == old and p[key] == new
    assert scaled >= 15


def test_study_runs_are_not_compared_with_the_baseline(monkeypatch):
    monkeypatch.delenv("VOLBENCH_BASELINE", raising=False)
    assert _support.baseline_path() == _support.BASELINE
    monkeypatch.setenv("VOLBENCH_REPRODUCE", "1")
    assert _support.baseline_path() is None
    monkeypatch.delenv("VOLBENCH_REPRODUCE")
    monkeypatch.setenv("VOLBENCH_SEED_OFFSET", "10")
    assert _support.baseline_path() is None
