"""Tests of volbench.report: the result schema, report files, renderers and plots, the
environment block, the pytest-benchmark helpers, and the pytest plugin (run in subprocesses on
generated test files: incremental writes, SIGKILL, xdist, an unwritable report directory)."""
from __future__ import annotations

import importlib.metadata
import json
import math
import os
import pickle
import re
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import volbench
from volbench import _io
from volbench.bench import timer as bench
from volbench.report import envinfo, files, plots
from volbench.report.example import example_run
from volbench.report.render import render_run
from volbench.report.render_html import render_html
from volbench.report.render_md import render_markdown
from volbench.results import (
    SCHEMA_VERSION,
    SERIES_KINDS,
    VERDICTS,
    CaseResult,
    RunReport,
    SchemaError,
    Statistic,
)

pytest_plugins = ["pytester"]

REPO = Path(volbench.__file__).resolve().parents[1]
SUBPROCESS_TIMEOUT_S = 240  # generous: the shared CI machine may be busy; never hit normally


# --------------------------------------------------------------------------- helpers


def plugin_args() -> list[str]:
    """``-p volbench.report.plugin`` unless the pytest11 entry point already loads it (loading
    it twice under two names would be an error)."""
    eps = importlib.metadata.entry_points(group="pytest11")
    if any(ep.value == "volbench.report.plugin" for ep in eps):
        return []
    return ["-p", "volbench.report.plugin"]


def run_pytest(where: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run pytest in a fresh interpreter in ``where`` (which gets a pytest.ini as its rootdir)."""
    (where / "pytest.ini").write_text("[pytest]\n")
    # a clean slate: under an outer pytest-xdist run, PYTEST_XDIST_WORKER would make the inner
    # pytest-benchmark believe it runs in a worker and switch itself off
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("VOLBENCH_REPORT_DIR", "VOLBENCH_TIER", "PYTEST_ADDOPTS")
                and not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *plugin_args(), *args]
    return subprocess.run(cmd, cwd=where, env=full_env, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S)


def run_dirs(root: Path) -> list[Path]:
    if not root.exists():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", data[16:24])


def stat_(value=1.0, **kw) -> Statistic:
    return Statistic("slope", value, **kw)


def passing(**kw) -> CaseResult:
    base = dict(claim="F5", case_id="F5-power-law[mnist-mlp]", estimator="principled",
                verdict="pass", statistic=stat_(-0.18, low=-0.2, high=-0.16, level=0.95),
                rule="pass if the interval lies below 0")
    base.update(kw)
    return CaseResult(**base)


# --------------------------------------------------------------------------- schema


json_text = st.text(max_size=8).filter(lambda s: s not in ("NaN", "Infinity", "-Infinity"))
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
json_leaf = st.none() | st.booleans() | st.integers(-(2**62), 2**62) | finite | json_text
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def series_entry(draw):
    kind = draw(st.sampled_from(sorted(SERIES_KINDS)))
    n = draw(st.integers(1, 5))
    xs = draw(st.lists(st.floats(1.0, 1e6), min_size=n, max_size=n))
    ys = draw(st.lists(finite | st.just(-math.inf), min_size=n, max_size=n))
    if kind == "radius_hist":
        return {"kind": kind, "minimum": draw(json_text), "log_radii": ys}
    entry = {"kind": kind, "x": xs, "y": ys}
    if kind == "volume_vs_landscape":
        entry["minimum"] = draw(json_text)
    if kind == "volume_vs_data" and draw(st.booleans()):
        entry["fit"] = {"slope": draw(finite), "intercept": draw(finite)}
        entry["n_params"] = draw(st.integers(1, 10**6))
        entry["paper_alpha"] = draw(finite)
    return entry


@st.composite
def case_result(draw):
    verdict = draw(st.sampled_from(VERDICTS))
    statistic = draw(st.none() | st.builds(
        lambda v, lo, w: Statistic("s", v, low=lo, high=lo + w, level=0.9),
        finite, st.floats(-1e6, 1e6), st.floats(0, 1e6)))
    if verdict in ("pass", "fail") and statistic is None:
        statistic = Statistic("s", draw(finite))
    reason = draw(st.text(min_size=1, max_size=12).filter(str.strip))
    return CaseResult(
        claim=draw(st.sampled_from(["F1", "S10", "Z4", "E3"])),
        case_id=draw(st.from_regex(r"[A-Z][0-9]-[a-z]{1,6}(\[[a-z-]{1,6}\])?", fullmatch=True)),
        verdict=verdict, estimator=draw(st.sampled_from(["", "reference", "principled"])),
        title=draw(st.text(max_size=12)), tier=draw(st.sampled_from(["smoke", "nightly"])),
        statistic=statistic, rule="a rule", paper_value=draw(st.none() | finite),
        numbers=draw(st.dictionaries(json_text, json_value, max_size=4)),
        series=draw(st.lists(series_entry(), max_size=3)),
        seconds=draw(st.none() | st.floats(0, 1e5)), device=draw(st.sampled_from(["cpu", "cuda:0"])),
        seeds=draw(st.dictionaries(json_text, st.integers(0, 2**31) | st.lists(
            st.integers(0, 100), max_size=3), max_size=3)),
        reason=reason,
    )


@settings(max_examples=30, deadline=None)
@given(case_result())
def test_case_result_round_trips_through_strict_json(result):
    text = json.dumps(result.to_dict(), allow_nan=False)  # raises on NaN/Infinity tokens
    back = CaseResult.from_dict(json.loads(text))
    assert back == result, "from_dict(to_dict(r)) must equal r (exact)"
    assert CaseResult.from_json(result.to_json()) == result
    assert pickle.loads(pickle.dumps(result)) == result, "pickling goes through the JSON form"


@settings(max_examples=10, deadline=None)
@given(st.lists(case_result(), max_size=4), st.sampled_from(["running", "complete"]))
def test_run_report_round_trips(results, status):
    run = RunReport(run_id="20250101T000000Z-abcdef", started="2025-01-01T00:00:00Z",
                    status=status, environment={"torch": "2.13", "devices": []},
                    results=tuple(results))
    assert RunReport.from_json(run.to_json()) == run
    assert json.loads(run.to_json())["schema_version"] == SCHEMA_VERSION


def test_non_finite_numbers_are_spelled_as_strings_and_restored():
    r = passing(numbers={"log_v": [1.0, -math.inf, math.inf, math.nan]}, paper_value=math.inf,
                series=[{"kind": "xy", "x": [1, 2], "y": [0.5, -math.inf]}])
    d = r.to_dict()
    assert d["numbers"]["log_v"] == [1.0, "-Infinity", "Infinity", "NaN"]
    assert d["paper_value"] == "Infinity" and d["series"][0]["y"] == [0.5, "-Infinity"]
    back = CaseResult.from_dict(json.loads(json.dumps(d, allow_nan=False)))
    values = back.numbers["log_v"]
    assert values[:3] == (1.0, -math.inf, math.inf) and math.isnan(values[3])
    assert back.paper_value == math.inf and back.series[0]["y"] == (0.5, -math.inf)


def test_arrays_and_tensors_are_copied_into_read_only_tuples():
    arr = np.array([1.0, 2.0, 3.0])
    r = passing(numbers={"a": arr, "t": torch.tensor([4, 5]), "s": np.float32(0.5),
                         "i": np.int64(7)},
                series=[{"kind": "volume_vs_directions", "x": np.array([10, 20]),
                         "y": torch.tensor([-1.0, -0.5])}])
    arr[0] = 99.0  # a later change to the caller's array must not change the record
    assert r.numbers["a"] == (1.0, 2.0, 3.0) and r.numbers["t"] == (4, 5)
    assert r.numbers["s"] == 0.5 and r.numbers["i"] == 7 and type(r.numbers["i"]) is int
    assert r.series[0]["x"] == (10, 20) and r.series[0]["y"] == (-1.0, -0.5)
    with pytest.raises(TypeError):
        r.numbers["a"] = 1  # MappingProxyType: read-only


@pytest.mark.parametrize(
    "change, error, fragment",
    [
        ({"verdict": "passed"}, SchemaError, "use one of"),
        ({"tier": "weekly"}, SchemaError, "tier"),
        ({"claim": ""}, SchemaError, "must not be empty"),
        ({"case_id": "F5 power law"}, SchemaError, "whitespace"),
        ({"statistic": None}, SchemaError, "needs the statistic"),
        ({"rule": " "}, SchemaError, "needs the statistic and the rule"),
        ({"verdict": "skip", "reason": ""}, SchemaError, "needs a reason"),
        ({"verdict": "inconclusive"}, SchemaError, "needs a reason"),
        ({"seconds": -1.0}, SchemaError, ">= 0"),
        ({"seconds": "12"}, TypeError, "real number"),
        ({"paper_value": True}, TypeError, "real number"),
        ({"numbers": {"x": object()}}, TypeError, "numbers['x'] holds a object"),
        ({"numbers": {1: 2}}, TypeError, "must be str"),
        ({"numbers": [1, 2]}, TypeError, "numbers must be a dict"),
        ({"seeds": [0, 1]}, TypeError, "seeds={'model'"),
        ({"series": [{"kind": "radius_histogram", "minimum": "a", "log_radii": [1]}]},
         SchemaError, "use one of"),
        ({"series": [{"kind": "xy", "x": [1, 2], "y": [1]}]}, SchemaError, "differ in length"),
        ({"series": [{"kind": "xy", "x": [1], "y": [1], "colour": "red"}]}, SchemaError,
         "unknown key"),
        ({"series": [{"kind": "radius_hist", "log_radii": [1.0]}]}, SchemaError, "missing"),
        ({"series": [{"kind": "xy", "x": ["a"], "y": [1]}]}, SchemaError, "list of numbers"),
        ({"series": [{"kind": "volume_vs_data", "x": [0, 10], "y": [1, 2]}]}, SchemaError,
         "must be > 0"),
        ({"series": [{"kind": "volume_vs_data", "x": [1], "y": [1], "paper_alpha": -0.18}]},
         SchemaError, "give n_params"),
        ({"series": [{"kind": "volume_vs_data", "x": [1], "y": [1], "fit": {"slope": 1}}]},
         SchemaError, "missing ['intercept']"),
        ({"series": [{"kind": "volume_vs_directions", "x": [1], "y": [1], "y_low": [0]}]},
         SchemaError, "y_low and y_high together"),
        ({"series": {"kind": "xy", "x": [1], "y": [1]}}, TypeError, "list of mappings"),
    ],
)
def test_case_result_rejects_bad_input_with_a_clear_message(change, error, fragment):
    with pytest.raises(error) as info:
        passing(**change)
    assert fragment in str(info.value), f"message {str(info.value)!r} should name {fragment!r}"


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"low": 1.0}, "both low and high"),
        ({"low": 2.0, "high": 1.0}, "reversed"),
        ({"low": 0.0, "high": 1.0, "level": 95}, "write 0.95"),
        ({"name": ""}, "must not be empty"),
    ],
)
def test_statistic_rejects_bad_input(kwargs, fragment):
    base = {"name": "alpha", "value": 0.5}
    base.update(kwargs)
    with pytest.raises(SchemaError, match=re.escape(fragment)):
        Statistic(**base)


def test_statistic_format_is_exact():
    assert Statistic("alpha", -0.1835, low=-0.2, high=-0.17, level=0.95).format() == \
        "alpha = -0.1835 [-0.2, -0.17] (95%)"
    assert Statistic("gap", 2533.0, unit="nats").format() == "gap = 2533 nats"
    assert Statistic("rho", math.nan).format() == "rho = nan"


def test_from_dict_rejects_unknown_fields_missing_fields_and_newer_schema():
    d = passing().to_dict()
    with pytest.raises(SchemaError, match="unknown field"):
        CaseResult.from_dict({**d, "colour": "red"})
    with pytest.raises(SchemaError, match="missing"):
        CaseResult.from_dict({k: v for k, v in d.items() if k != "verdict"})
    with pytest.raises(SchemaError, match="real number"):
        CaseResult.from_dict({**d, "seconds": "fast"})
    run = RunReport(run_id="r", started="t").to_dict()
    with pytest.raises(SchemaError, match="upgrade volbench"):
        RunReport.from_dict({**run, "schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(SchemaError, match="no schema_version"):
        RunReport.from_dict({k: v for k, v in run.items() if k != "schema_version"})
    with pytest.raises(SchemaError, match=r"results\[0\]"):
        RunReport.from_dict({**run, "results": [{**d, "verdict": "maybe"}]})


# --------------------------------------------------------------------------- files


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    _io.atomic_write_text(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        _io.atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old", "a failed write must leave the previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"], "temp file left"


def test_atomic_write_gives_the_umask_mode_not_mkstemps_private_one(tmp_path):
    old = os.umask(0o022)
    try:
        _io.atomic_write_bytes(tmp_path / "a.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644


def test_latest_pointer_symlink_and_file_fallback(tmp_path, monkeypatch):
    run_id, run_dir = files.create_run_dir(tmp_path)
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", run_id), run_id
    files.save_run(RunReport(run_id=run_id, started="t"), run_dir / "results.json")
    assert files.point_latest(tmp_path, run_id) == "symlink"
    assert os.readlink(tmp_path / "latest") == run_id
    assert files.resolve_run("latest", tmp_path) == tmp_path / "latest" / "results.json"

    def no_symlinks(*args, **kwargs):
        raise OSError("symlinks not supported here")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    (tmp_path / "latest").unlink()
    assert files.point_latest(tmp_path, run_id) == "file"
    assert (tmp_path / "LATEST").read_text().strip() == run_id
    assert files.resolve_run("latest", tmp_path) == run_dir / "results.json"
    assert files.resolve_run(run_id, tmp_path) == run_dir / "results.json"
    assert files.load_run(files.resolve_run(str(run_dir))).run_id == run_id
    monkeypatch.undo()
    files.point_latest(tmp_path, run_id)
    assert not (tmp_path / "LATEST").exists(), "a stale LATEST file would contradict the link"


def test_resolve_and_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no latest run"):
        files.resolve_run("latest", tmp_path)
    with pytest.raises(FileNotFoundError, match="no results.json"):
        files.resolve_run(tmp_path / "nope", tmp_path)
    bad = tmp_path / "results.json"
    bad.write_text('{"schema_version": 1, "run_id": "r", "started')
    with pytest.raises(files.ReportFileError, match="not valid JSON .*truncated") as info:
        files.load_run(bad)
    assert str(bad) in str(info.value)
    bad.write_text('{"schema_version": 1, "run_id": "r", "started": "t", "status": "done"}')
    with pytest.raises(files.ReportFileError, match="status"):
        files.load_run(bad)


# --------------------------------------------------------------------------- rendering


@pytest.fixture(scope="module")
def example():
    return example_run(seed=0)


@pytest.fixture(scope="module")
def rendered(example, tmp_path_factory):
    out = tmp_path_factory.mktemp("rendered")
    return out, render_run(example, out)


def test_example_covers_every_series_kind(example):
    kinds = {s["kind"] for r in example.results for s in r.series}
    assert kinds == set(SERIES_KINDS), f"missing kinds {set(SERIES_KINDS) - kinds}"


def test_render_writes_markdown_html_and_one_png_per_kind(example, rendered):
    out, paths = rendered
    names = sorted(p.name for p in paths.figures)
    expected = sum(len({s["kind"] for s in r.series}) for r in example.results) + 1  # + timing
    assert len(names) == expected, names
    for kind in SERIES_KINDS:
        assert any(n.endswith(f"-{kind}.png") for n in names), f"no figure for {kind}"
    assert "timing.png" in names
    for path in paths.figures:
        width, height = png_size(path.read_bytes())
        assert width == round(7.2 * 110), f"{path.name}: width {width}px, expected 792"
        if path.name != "timing.png":
            assert height == round(4.2 * 110), f"{path.name}: height {height}px, expected 462"

    md = paths.markdown.read_text()
    for index, r in enumerate(example.results):
        assert f"[{r.case_id}](#case-{index})" in md, f"verdict row of result {index}"
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out / link).is_file(), f"report.md links a missing figure {link}"
    assert md.count("![") == expected

    html = paths.html.read_text()
    assert html.count('<img src="data:image/png;base64,') == expected
    assert not re.search(r'(src|href)="(https?:)?//', html), "index.html must be self-contained"
    assert "<script" not in html
    for verdict, n in example.verdict_counts().items():
        assert f'<span class="chip v-{verdict}">{n} {verdict}</span>' in html


def test_rerender_removes_stale_figures(tmp_path):
    run = RunReport(run_id="r", started="t", results=(passing(seconds=2.0, series=[
        {"kind": "xy", "x": [1, 2], "y": [3, 4]}]),))
    render_run(run, tmp_path)
    (tmp_path / "figures" / "999-old-xy.png").write_bytes(b"old")
    paths = render_run(replace(run, results=(passing(seconds=None),)), tmp_path)
    assert paths.figures == () and list((tmp_path / "figures").iterdir()) == []


def test_html_escapes_result_text_and_flags_unfinished_runs():
    evil = passing(title="<script>alert(1)</script>", reason="a & b", verdict="inconclusive",
                   nodeid="cases/t.py::test[<x>]")
    run = RunReport(run_id="r1", started="t", status="running", results=(evil,))
    html = render_html(run)
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a &amp; b" in html and "test[&lt;x&gt;]" in html
    assert "did not finish" in html and "did not finish" in render_markdown(run)


def test_markdown_escapes_table_cells():
    r = passing(case_id="F5-a|b", reason="line one\nline two", verdict="error", statistic=None)
    md = render_markdown(RunReport(run_id="r", started="t", results=(r,)))
    assert "F5-a\\|b" in md and "line one line two" in md


def _figure():
    from matplotlib.figure import Figure

    return Figure()


def test_volume_vs_data_plot_draws_the_fit_and_the_papers_alpha_per_parameter():
    n = 1000
    entry = {"kind": "volume_vs_data", "x": [60.0, 600.0, 6000.0],
             "y": [-900.0, -1300.0, -1720.0], "n_params": n, "paper_alpha": -0.25,
             "fit": {"slope": -178.0, "intercept": -170.0, "slope_low": -190.0,
                     "slope_high": -166.0}}
    r = passing(series=[entry])
    fig = _figure()
    plots._volume_vs_data(fig, r.series, r)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    fit = next(v for k, v in lines.items() if k.startswith("fit:"))
    x, y = fit.get_xdata(), fit.get_ydata()
    np.testing.assert_allclose(y, (-170.0 - 178.0 * np.log(x)) / n, rtol=1e-12,
                               err_msg="fit line must be (intercept + slope ln D) / n")
    assert "alpha = -0.178 [-0.19, -0.166]" in fit.get_label()
    paper = next(v for k, v in lines.items() if k.startswith("paper"))
    px, py = paper.get_xdata(), paper.get_ydata()
    slope = (py[-1] - py[0]) / (np.log(px[-1]) - np.log(px[0]))
    assert slope == pytest.approx(-0.25, rel=1e-12), "paper line slope must be alpha"
    centre = np.mean(np.log([60.0, 600.0, 6000.0]))
    assert np.interp(centre, np.log(px), py) == pytest.approx((-170 - 178 * centre) / n,
                                                              rel=1e-9)


def test_landscape_plot_draws_volume_zero_below_every_finite_point():
    entry = {"kind": "volume_vs_landscape", "minimum": "D=60", "x": [60.0, 600.0, 6000.0],
             "y": [-10.0, -20.0, -math.inf], "own_x": 60.0}
    r = passing(series=[entry])
    fig = _figure()
    plots._volume_vs_landscape(fig, r.series, r)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    zero = lines["volume 0 (left the threshold)"]
    assert list(zero.get_xdata()) == [6000.0] and zero.get_ydata()[0] < -20.0
    assert list(lines["minimum in its own landscape"].get_ydata()) == [-10.0]


def test_radius_hist_counts_non_finite_radii_in_the_legend():
    entry = {"kind": "radius_hist", "minimum": "D=60", "log_radii": [0.1, 0.2, math.inf]}
    r = passing(series=[entry])
    fig = _figure()
    plots._radius_hist(fig, r.series, r)
    cdf = fig.axes[1].get_lines()[0]
    assert list(cdf.get_ydata()) == [0.5, 1.0], "ECDF over the finite radii"
    assert cdf.get_label() == "D=60 (K = 3, 1 not finite)"


def test_timing_plot_none_without_times_and_lists_slowest_first():
    assert plots.timing_plot([passing(seconds=None)]) is None
    img = plots.timing_plot([passing(seconds=1.0), passing(case_id="F5-b", seconds=30.0,
                                                           device="cuda:0")])
    assert png_size(img.png)[0] == 792 and "slowest F5-b · principled at 30 s on cuda:0" in img.alt


# --------------------------------------------------------------------------- envinfo, bench


ENV_KEYS = {
    "volbench", "python", "platform", "torch", "numpy", "cuda_available", "cuda", "cudnn",
    "cuda_driver", "devices", "tf32_matmul", "tf32_cudnn", "float32_matmul_precision",
    "bf16_reduced_precision_reduction", "fp16_reduced_precision_reduction", "torch_threads",
    "cpu", "cpu_vendor", "cpu_capability", "cpu_count", "hostname", "git_commit", "git_dirty", "command",
    "cuda_visible_devices", "tier", "seeds",
}


def test_collect_environment_without_cuda(tmp_path):
    env = envinfo.collect_environment(tier="smoke", seeds={"model": [0, 1]},
                                      argv=["/x/pytest/__main__.py", "-k", "F1 and not slow"],
                                      repo_dir=tmp_path)
    assert set(env) == ENV_KEYS
    assert env["torch"] == torch.__version__ and env["volbench"] == volbench.__version__
    assert env["cuda_available"] is torch.cuda.is_available()
    if not torch.cuda.is_available():
        assert env["devices"] == [] and env["cuda_driver"] is None
    assert env["tf32_matmul"] is torch.backends.cuda.matmul.allow_tf32
    assert env["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    assert env["torch_threads"] == torch.get_num_threads()
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and env["cpu_vendor"]
    assert env["git_commit"] is None, "tmp_path is not a git repository"
    assert env["command"] == "python -m pytest -k 'F1 and not slow'"
    assert env["tier"] == "smoke" and env["seeds"] == {"model": [0, 1]}
    json.dumps(env, allow_nan=False)


def test_collect_environment_reads_cuda_devices(monkeypatch):
    props = types.SimpleNamespace(name="Fake H100", total_memory=80 * 2**30, major=9, minor=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(envinfo, "_run", lambda cmd, cwd=None:
                        "570.124.06\n570.124.06" if cmd[0] == "nvidia-smi" else None)
    env = envinfo.collect_environment(include_git=False)
    assert env["cuda_driver"] == "570.124.06"
    assert env["devices"] == [{"index": i, "name": "Fake H100", "memory_gib": 80.0,
                               "capability": "9.0"} for i in range(2)]
    text = envinfo.format_environment(env)
    assert "[0] Fake H100, 80.0 GiB, sm 9.0; [1] Fake H100" in text


def test_format_environment_aligns_keys():
    text = envinfo.format_environment({"python": "3.11", "cuda_available": False, "cuda": None})
    assert text.splitlines() == ["python          3.11", "cuda_available  no",
                                 "cuda            -"]


def test_synced_perf_counter_waits_for_the_gpu_only_when_cuda_is_initialised(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: calls.append(1))
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    t0 = bench.synced_perf_counter()
    assert calls == []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    t1 = bench.synced_perf_counter()
    assert calls == [1] and t1 >= t0


def test_benchmark_summary_is_none_for_disabled_benchmarks():
    assert bench.benchmark_summary(types.SimpleNamespace(stats=None)) is None
    stats = types.SimpleNamespace(min=1.0, median=2.0, mean=2.5, stddev=0.5, rounds=4)
    assert bench.benchmark_summary(types.SimpleNamespace(stats=types.SimpleNamespace(
        stats=stats))) == {"min": 1.0, "median": 2.0, "mean": 2.5, "stddev": 0.5, "rounds": 4}


def test_machine_info_keys():
    info = bench.machine_info()
    assert info["volbench_torch"] == torch.__version__
    assert info["volbench_gpu_count"] == (torch.cuda.device_count()
                                          if torch.cuda.is_available() else 0)
    assert {"volbench_tf32_matmul", "volbench_tf32_cudnn", "volbench_bf16_reduced_precision_reduction",
            "volbench_float32_matmul_precision", "volbench_cuda"} <= set(info)


# --------------------------------------------------------------------------- plugin (subprocess)


CASES_MAIN = '''
import json, os, pathlib
import pytest
from volbench.results import CaseResult, Statistic

ROOT = pathlib.Path(os.environ["VOLBENCH_REPORT_DIR"])

def saved():
    """(case_id, estimator) of every result in the run's results.json so far."""
    runs = [p for p in ROOT.iterdir() if p.is_dir() and not p.is_symlink()] if ROOT.exists() else []
    if not runs:
        return []
    assert len(runs) == 1, runs
    data = json.loads((runs[0] / "results.json").read_text())
    return [(r["case_id"], r["estimator"]) for r in data["results"]]

def result(claim, estimator, **kw):
    kw.setdefault("verdict", "pass")
    return CaseResult(claim=claim, case_id=f"{claim}-case", estimator=estimator,
                      statistic=Statistic("slope", -0.2, low=-0.3, high=-0.1, level=0.95),
                      rule="pass if the interval lies below 0", seconds=1.5, **kw)

def test_F1_first(record_case):
    assert saved() == []
    record_case(result("F1", "principled", seeds={"model": [0, 1]}))

def test_F2_second(record_case):
    assert saved() == [("F1-case", "principled")], "first result must be on disk already"
    record_case(result("F2", "reference"))
    record_case(result("F2", "principled",
                       series=[{"kind": "volume_vs_directions", "x": [10, 100], "y": [-5, -4]}]))

def test_F3_refuted():
    assert saved() == [("F1-case", "principled"), ("F2-case", "reference"),
                       ("F2-case", "principled")]
    assert 1 == 2, "claim F3 refuted"

@pytest.mark.skip(reason="needs a GPU")
def test_F4_gpu():
    pass

@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")

def test_F5_setup_error(broken):
    pass

def test_F6_recorded_then_failed(record_case):
    record_case(result("F6", "principled"))
    raise ValueError("after recording")

class Case:  # a case record as the parameter (duck-typed: claim, id, title, tier)
    def __init__(self, claim, id, tier):
        self.claim, self.id, self.tier, self.title = claim, id, tier, "Ellipsoid variance law"

@pytest.mark.parametrize("case", [pytest.param(Case("S9", "S9-variance-law[mc]", "nightly"),
                                               id="S9-variance-law[mc]",
                                               marks=pytest.mark.skip(reason="nightly only"))])
def test_variance_law(case, record_case):
    pass
'''

UNIT_MAIN = '''
import sys

def test_plugin_imports_no_plotting_during_tests():
    assert "matplotlib" not in sys.modules and "jinja2" not in sys.modules

def test_bench(benchmark):
    benchmark(sum, range(100))
'''


def test_plugin_writes_incrementally_records_outcomes_and_renders(tmp_path):
    (tmp_path / "cases").mkdir()
    (tmp_path / "unit").mkdir()
    (tmp_path / "cases" / "test_claims.py").write_text(CASES_MAIN)
    (tmp_path / "unit" / "test_unit.py").write_text(UNIT_MAIN)
    root = tmp_path / "rep"
    bench_json = tmp_path / "not" / "yet" / "bench.json"
    proc = run_pytest(tmp_path, "-p", "no:xdist", "cases", "unit",
                      f"--benchmark-json={bench_json}", "--benchmark-max-time=0.001",
                      "--benchmark-warmup=off",
                      "--benchmark-timer=volbench.bench.timer.synced_perf_counter",
                      env={"VOLBENCH_REPORT_DIR": str(root)})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out  # F3 fails, F5 errors, F6 fails
    assert "4 passed" in out and "2 failed" in out and "2 skipped" in out and "1 error" in out, out

    (run_dir,) = run_dirs(root)
    assert os.readlink(root / "latest") == run_dir.name
    data = json.loads((run_dir / "results.json").read_text())
    run = RunReport.from_dict(data)
    assert run.status == "complete" and run.exit_status == 1 and run.finished
    rows = [(r.claim, r.estimator, r.verdict, r.outcome) for r in run.results]
    assert rows == [
        ("F1", "principled", "pass", "passed"),
        ("F2", "reference", "pass", "passed"),
        ("F2", "principled", "pass", "passed"),
        ("F3", "", "error", "failed"),
        ("F4", "", "skip", "skipped"),
        ("F5", "", "error", "error"),
        ("F6", "principled", "pass", "failed"),
        ("S9", "", "skip", "skipped"),
    ], rows
    by_claim = {r.claim: r for r in run.results}
    assert "claim F3 refuted" in by_claim["F3"].reason
    assert by_claim["F4"].reason == "needs a GPU"
    assert "fixture broke" in by_claim["F5"].reason
    assert by_claim["F1"].nodeid == "cases/test_claims.py::test_F1_first"
    s9 = by_claim["S9"]
    assert (s9.case_id, s9.tier, s9.title, s9.reason) == (
        "S9-variance-law[mc]", "nightly", "Ellipsoid variance law", "nightly only")
    assert by_claim["F3"].case_id == "F3_refuted" and by_claim["F3"].tier == "smoke"
    assert run.environment["seeds"] == {"model": (0, 1)}
    assert run.environment["torch"] == torch.__version__
    assert not any(r.nodeid.startswith("unit/") for r in run.results), "unit tests are no cases"

    assert (run_dir / "report.md").is_file()
    html = (run_dir / "index.html").read_text()
    assert html.count("data:image/png;base64,") == 2, "directions plot + timing plot"

    summary = out[out.index("volbench: "):]
    assert re.search(r"^F3\s+F3_refuted\s+-\s+error\s+failed before recording", summary, re.M)
    assert re.search(r"^F2\s+F2-case\s+reference\s+pass\s+slope = -0.2 \[-0.3, -0.1\] \(95%\)"
                     r"\s+1.5$", summary, re.M), summary
    assert f"volbench report: {run_dir / 'index.html'}" in out

    machine = json.loads(bench_json.read_text())["machine_info"]
    assert machine["volbench_torch"] == torch.__version__, "machine_info hook not applied"
    assert "volbench_tf32_matmul" in machine


CASES_KILL = '''
import os, signal
from volbench.results import CaseResult

def rec(record_case, name):
    record_case(CaseResult(claim="E3", case_id=f"E3-{name}", verdict="skip", reason="demo"))

def test_a(record_case):
    rec(record_case, "a")

def test_b(record_case):
    rec(record_case, "b")

def test_c(record_case):
    rec(record_case, "c")
    os.kill(os.getpid(), signal.SIGKILL)

def test_d(record_case):
    rec(record_case, "d")
'''


def test_sigkill_mid_run_leaves_valid_json_with_the_finished_tests(tmp_path):
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "test_kill.py").write_text(CASES_KILL)
    root = tmp_path / "rep"
    proc = run_pytest(tmp_path, "-p", "no:xdist", "cases", f"--volbench-report-dir={root}")
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    (run_dir,) = run_dirs(root)
    run = files.load_run(run_dir / "results.json")  # strict, validated JSON
    assert [r.case_id for r in run.results] == ["E3-a", "E3-b"]
    assert run.status == "running" and run.finished is None
    assert sorted(p.name for p in run_dir.iterdir()) == ["results.json"], "no temp files"


CASES_XDIST = '''
import pytest
from volbench.results import CaseResult

@pytest.mark.parametrize("i", range(6))
def test_case(record_case, i):
    record_case(CaseResult(claim="E2", case_id=f"E2-n{i}", verdict="skip", reason="demo",
                           seconds=0.01 * i))
'''


def test_xdist_workers_send_every_result_to_one_file(tmp_path):
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "test_par.py").write_text(CASES_XDIST)
    root = tmp_path / "rep"
    proc = run_pytest(tmp_path, "-p", "xdist", "-n", "2", "cases",
                      f"--volbench-report-dir={root}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = run_dirs(root)
    run = files.load_run(run_dir / "results.json")
    assert sorted(r.case_id for r in run.results) == [f"E2-n{i}" for i in range(6)], proc.stdout
    assert run.status == "complete"
    assert proc.stdout.count("E2-n") == 6, f"one terminal summary row per result:\n{proc.stdout}"


def test_unwritable_report_dir_warns_once_and_the_run_passes(pytester):
    pytester.mkdir("cases")
    pytester.path.joinpath("cases", "test_par.py").write_text(CASES_XDIST)
    blocker = pytester.path / "blocker"
    blocker.write_text("a file where the report directory should go")
    result = pytester.runpytest_inprocess(*plugin_args(), "-p", "no:cacheprovider", "cases",
                                          f"--volbench-report-dir={blocker / 'reports'}")
    result.assert_outcomes(passed=6)
    out = result.stdout.str() + result.stderr.str()
    assert out.count("volbench: could not") == 1, out
    line = next(line for line in out.splitlines() if "volbench: could not" in line)
    assert str(blocker / "reports") in line and "--volbench-report-dir" in line, line


def test_no_report_option_and_plain_unit_runs_leave_no_trace(pytester, monkeypatch):
    root = pytester.path / "rep"
    monkeypatch.setenv("VOLBENCH_REPORT_DIR", str(root))
    pytester.mkdir("cases")
    pytester.path.joinpath("cases", "test_c.py").write_text(textwrap.dedent('''
        import pytest
        from volbench.results import CaseResult

        def test_F1(record_case):
            record_case(CaseResult(claim="F1", case_id="F1-x", verdict="skip", reason="r"))

        def test_F1_bad(record_case):
            with pytest.raises(TypeError, match="takes a volbench.results.CaseResult"):
                record_case({"claim": "F1"})
    '''))
    pytester.makepyfile(test_unit="def test_plain():\n    pass\n")
    result = pytester.runpytest_inprocess(*plugin_args(), "-p", "no:cacheprovider",
                                          "--volbench-no-report", "cases")
    result.assert_outcomes(passed=2)
    assert not root.exists(), "--volbench-no-report must not write"
    result = pytester.runpytest_inprocess(*plugin_args(), "-p", "no:cacheprovider",
                                          "test_unit.py")
    result.assert_outcomes(passed=1)
    assert not root.exists(), "a run without case tests must not create a report"
    result = pytester.runpytest_inprocess(*plugin_args(), "-p", "no:cacheprovider", "--collect-only", "cases")
    assert result.ret == 0
    assert not root.exists(), "--collect-only runs nothing, so it records no run (and leaves latest alone)"


def test_a_case_module_that_fails_to_import_gets_an_error_row(pytester):
    root = pytester.path / "rep"
    pytester.mkdir("cases")
    pytester.path.joinpath("cases", "test_f7_imbalance.py").write_text(
        "import no_such_module_for_volbench\n")
    result = pytester.runpytest_inprocess(*plugin_args(), "-p", "no:cacheprovider",
                                          f"--volbench-report-dir={root}", "cases")
    assert result.ret == pytest.ExitCode.INTERRUPTED, "pytest stops on collection errors"
    (run_dir,) = run_dirs(root)
    run = files.load_run(run_dir / "results.json")
    ((claim, case_id, verdict, reason),) = [(r.claim, r.case_id, r.verdict, r.reason)
                                            for r in run.results]
    assert (claim, case_id, verdict) == ("F7", "test_f7_imbalance", "error")
    assert reason.startswith("collection failed: ") and "no_such_module_for_volbench" in reason
    assert run.status == "interrupted" and (run_dir / "index.html").is_file()
