"""The verdict baseline (``volbench.report.baseline``): a moved verdict is named, an update keeps
what a run could not judge, and a statement left "not-judged" because an optional extra is
missing (``Statement.needs``) is neither a move nor forgotten. The baseline records the machine
class that produced it: on that class every move fails; on another, a move between pass or fail
and inconclusive is reported and does not fail, while a flip between pass and fail or a changed
set of statements fails everywhere."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from volbench.cli import main
from volbench.report import files
from volbench.report.baseline import (
    MATCH_ENV,
    BaselineError,
    compare_with_baseline,
    load_baseline,
    machine_of,
    moved,
    reported_moves,
    unchecked,
    update_baseline,
)
from volbench.report.machine import MachineClass, machine_class
from volbench.report.render_html import render_html
from volbench.report.render_md import render_markdown
from volbench.report.session import baseline_move_lines
from volbench.results import CaseResult, RunReport, SchemaError, Statement, Statistic, combine_verdicts

#: the class the checked-in baseline was recorded on, and others it must tell apart
AMD = MachineClass("AuthenticAMD", "AVX512", 1, "cpu", "", "float32", False, "2.13.0")
INTEL = dataclasses.replace(AMD, cpu_vendor="GenuineIntel", cpu_capability="AVX2")
H100 = dataclasses.replace(AMD, device="cuda", gpu="NVIDIA H100 80GB HBM3", tf32=True)


@pytest.fixture(autouse=True)
def _class_aware(monkeypatch):
    """Every test starts from the default policy, whatever the shell running the suite set."""
    monkeypatch.delenv(MATCH_ENV, raising=False)


def _stat(value: float) -> Statistic:
    return Statistic("log ratio", value, low=value - 0.1, high=value + 0.1, level=0.95)


def _judged(sid: str, verdict: str, value: float = 0.0) -> Statement:
    if verdict in ("pass", "fail"):
        return Statement(sid, f"statement {sid}", verdict, _stat(value), rule="inside +-log 1.25")
    return Statement(sid, f"statement {sid}", verdict, _stat(value), reason="needs 4x the draws")


def _missing(sid: str) -> Statement:
    return Statement(sid, f"statement {sid}", "not-judged", reason="devinterp is not installed",
                     needs="crosscheck")


def _result(*statements: Statement, case_id: str = "E5-x", machine: MachineClass | None = AMD) -> CaseResult:
    verdict = combine_verdicts([st.verdict for st in statements])
    return CaseResult(claim=case_id.split("-")[0], case_id=case_id, estimator="principled", verdict=verdict,
                      statistic=next((st.statistic for st in statements if st.statistic is not None), None),
                      rule="conjunction of the statements",
                      reason="" if verdict in ("pass", "fail") else "see statements",
                      statements=list(statements), machine=machine.to_dict() if machine else {})


def _on(result: CaseResult, machine: MachineClass | None) -> CaseResult:
    return dataclasses.replace(result, machine=machine.to_dict() if machine else {})


def _baseline_of(tmp_path, *results: CaseResult):
    path = tmp_path / "smoke.json"
    update_baseline(list(results), path)
    return path, load_baseline(path)


def test_an_unchanged_result_has_not_moved_and_a_flipped_statement_is_named(tmp_path):
    full = _result(_judged("a", "pass", 0.01), _judged("b", "fail", 0.9))
    _, base = _baseline_of(tmp_path, full)
    assert moved(full, base) == []
    flipped = _result(_judged("a", "fail", 0.5), _judged("b", "fail", 0.9))
    lines = moved(flipped, base)
    assert any("statement (a): pass -> fail" in line for line in lines)
    # the case verdict is fail in both; only the statement moved
    assert not any(" verdict: " in line for line in lines)


def test_a_moved_case_verdict_names_old_and_new_with_both_statistics(tmp_path):
    _, base = _baseline_of(tmp_path, _result(_judged("a", "pass", 0.01)))
    lines = moved(_result(_judged("a", "fail", 0.7)), base)
    assert lines[0].startswith("E5-x [principled] verdict: pass -> fail")
    assert "baseline log ratio = 0.01" in lines[0] and "now log ratio = 0.7" in lines[0]


def test_a_case_missing_from_the_baseline_is_a_problem(tmp_path):
    _, base = _baseline_of(tmp_path, _result(_judged("a", "pass")))
    assert "not in the verdict baseline" in moved(_result(_judged("a", "pass"), case_id="E4-y"), base)[0]


def test_a_statement_that_needs_a_missing_extra_is_not_a_move(tmp_path):
    """Judged with devinterp in the baseline; the run without it leaves it unchecked, and checks
    the case verdict recomputed without it."""
    with_extra = _result(_judged("a", "pass"), _judged("c", "fail", 1.5))
    _, base = _baseline_of(tmp_path, with_extra)
    without = _result(_judged("a", "pass"), _missing("c"))
    assert unchecked(without) == {"c"}
    assert without.verdict == "pass"  # fail came from the statement that is now not judged
    assert moved(without, base) == []
    # ... but a statement the run could judge still counts
    worse = _result(_judged("a", "inconclusive"), _missing("c"))
    lines = moved(worse, base)
    assert any("statement (a): pass -> inconclusive" in line for line in lines)
    assert any("verdict: pass -> inconclusive" in line and "need a missing extra (c)" in line for line in lines)


def test_the_run_with_the_extra_is_checked_in_full(tmp_path):
    _, base = _baseline_of(tmp_path, _result(_judged("a", "pass"), _judged("c", "fail", 1.5)))
    lines = moved(_result(_judged("a", "pass"), _judged("c", "pass", 0.0)), base)
    assert any("statement (c): fail -> pass" in line for line in lines)
    assert any("verdict: fail -> pass" in line for line in lines)


def test_an_update_without_the_extra_keeps_its_judged_statements(tmp_path):
    path, _ = _baseline_of(tmp_path, _result(_judged("a", "pass"), _judged("c", "fail", 1.5)))
    written, changes = update_baseline([_result(_judged("a", "pass"), _missing("c"))], path)
    assert written == 1 and changes == []
    entry = json.loads(path.read_text())["cases"]["E5-x"]["principled"]
    assert entry["statements"]["c"]["verdict"] == "fail"
    assert entry["verdict"] == "fail"
    # a first recording without the extra records what it saw
    path2 = tmp_path / "fresh.json"
    update_baseline([_result(_judged("a", "pass"), _missing("c"))], path2)
    entry2 = json.loads(path2.read_text())["cases"]["E5-x"]["principled"]
    assert entry2["statements"]["c"]["verdict"] == "not-judged" and entry2["verdict"] == "pass"


def test_only_a_not_judged_statement_can_need_an_extra():
    with pytest.raises(SchemaError, match="only a not-judged statement"):
        Statement("c", "x", "pass", _stat(0.0), rule="r", needs="crosscheck")
    st = _missing("c")
    assert Statement.from_dict(st.to_dict()) == st


def test_a_missing_or_foreign_baseline_names_the_fix(tmp_path):
    with pytest.raises(BaselineError, match="volbench baseline update"):
        load_baseline(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": 99, "cases": {}}))
    with pytest.raises(BaselineError, match="restore it from git"):
        load_baseline(bad)


# --------------------------------------------------------------------------- machine classes


def _has(lines, text: str) -> bool:
    return any(text in line for line in lines)


@pytest.mark.parametrize("old, new", [("pass", "inconclusive"), ("inconclusive", "fail"),
                                      ("inconclusive", "pass"), ("fail", "inconclusive")])
def test_a_borderline_move_on_another_machine_class_is_reported_not_failed(tmp_path, old, new):
    _, base = _baseline_of(tmp_path, _result(_judged("a", old, 0.1), _judged("b", "pass")))
    assert base.machine == AMD
    comparison = compare_with_baseline(_result(_judged("a", new, 0.2), _judged("b", "pass"), machine=INTEL), base)
    assert comparison.failures == ()
    assert _has(comparison.reported, f"statement (a): {old} -> {new}")
    assert _has(comparison.reported, f"verdict: {old} -> {new}")  # the case's verdict moved with it
    assert not comparison.one_class and comparison.recorded_on == AMD and comparison.machine == INTEL


@pytest.mark.parametrize("old, new", [("pass", "inconclusive"), ("inconclusive", "fail")])
def test_the_same_borderline_move_on_the_baselines_class_fails(tmp_path, old, new):
    _, base = _baseline_of(tmp_path, _result(_judged("a", old, 0.1)))
    comparison = compare_with_baseline(_result(_judged("a", new, 0.2), machine=AMD), base)
    assert comparison.reported == () and comparison.one_class
    assert _has(comparison.failures, f"statement (a): {old} -> {new}")
    assert _has(comparison.failures, f"verdict: {old} -> {new}")


@pytest.mark.parametrize("other", [
    INTEL, H100,
    dataclasses.replace(AMD, threads=2), dataclasses.replace(AMD, cpu_capability="AVX2"),
    dataclasses.replace(AMD, torch="2.14.0"), dataclasses.replace(AMD, dtype="float64"),
    dataclasses.replace(AMD, tf32=True), dataclasses.replace(AMD, gpu="x"),
    dataclasses.replace(AMD, blas="MKL_CBWR=COMPATIBLE"),
], ids=lambda m: m.describe())
def test_every_field_of_the_machine_class_makes_another_class(tmp_path, other):
    _, base = _baseline_of(tmp_path, _result(_judged("a", "pass")))
    comparison = compare_with_baseline(_result(_judged("a", "inconclusive"), machine=other), base)
    assert comparison.failures == () and len(comparison.reported) == 2


@pytest.mark.parametrize("machine", [AMD, INTEL], ids=["same class", "another class"])
@pytest.mark.parametrize("old, new", [("pass", "fail"), ("fail", "pass")])
def test_a_flip_between_pass_and_fail_fails_on_every_class(tmp_path, machine, old, new):
    _, base = _baseline_of(tmp_path, _result(_judged("a", old, 0.1)))
    comparison = compare_with_baseline(_result(_judged("a", new, 0.9), machine=machine), base)
    assert comparison.reported == ()
    assert _has(comparison.failures, f"statement (a): {old} -> {new}")
    assert _has(comparison.failures, f"verdict: {old} -> {new}")


@pytest.mark.parametrize("machine", [AMD, INTEL], ids=["same class", "another class"])
def test_a_changed_set_of_statements_fails_on_every_class(tmp_path, machine):
    _, base = _baseline_of(tmp_path, _result(_judged("a", "pass"), _judged("b", "inconclusive"),
                                             _judged("c", "pass")))
    # b (inconclusive) is gone, d is new, c is no longer judged (no extra is missing: a changed set)
    run = _result(_judged("a", "pass"), _judged("d", "inconclusive"),
                  Statement("c", "statement c", "not-judged", reason="too costly at this tier"), machine=machine)
    comparison = compare_with_baseline(run, base)
    assert _has(comparison.failures, "statement (b): inconclusive -> missing")
    assert _has(comparison.failures, "statement (d): new, inconclusive")
    assert _has(comparison.failures, "statement (c): pass -> not-judged")
    assert comparison.reported == ()
    # and a case the baseline lacks fails on every class
    assert _has(compare_with_baseline(_result(_judged("a", "pass"), case_id="E4-y", machine=machine), base).failures,
                "not in the verdict baseline")


def test_a_missing_extra_is_left_out_on_another_class_too(tmp_path):
    _, base = _baseline_of(tmp_path, _result(_judged("a", "pass"), _judged("c", "fail", 1.5)))
    comparison = compare_with_baseline(_result(_judged("a", "inconclusive"), _missing("c"), machine=INTEL), base)
    assert comparison.failures == ()
    assert _has(comparison.reported, "statement (a): pass -> inconclusive")
    assert not _has(comparison.reported, "statement (c)")


def test_strict_matching_fails_every_move_on_any_class(tmp_path, monkeypatch):
    _, base = _baseline_of(tmp_path, _result(_judged("a", "pass")))
    run = _result(_judged("a", "inconclusive"), machine=INTEL)
    monkeypatch.setenv(MATCH_ENV, "strict")
    comparison = compare_with_baseline(run, base)
    assert comparison.one_class and comparison.reported == ()
    assert _has(comparison.failures, "statement (a): pass -> inconclusive")
    monkeypatch.setenv(MATCH_ENV, "class")
    assert compare_with_baseline(run, base).failures == ()
    assert compare_with_baseline(run, base, strict=True).failures != ()  # the argument overrides the variable
    monkeypatch.setenv(MATCH_ENV, "loose")
    with pytest.raises(BaselineError, match="'class'.*'strict'"):
        compare_with_baseline(run, base)


def test_an_unknown_run_class_is_compared_strictly(tmp_path):
    _, base = _baseline_of(tmp_path, _result(_judged("a", "pass")))
    comparison = compare_with_baseline(_result(_judged("a", "inconclusive"), machine=None), base)
    assert comparison.one_class and _has(comparison.failures, "pass -> inconclusive")


def _format_1(tmp_path, *results: CaseResult) -> Path:
    from volbench.report.baseline import entry_of

    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": 1, "tier": "smoke", "note": "expected smoke verdicts",
                                "cases": {r.case_id: {r.estimator: entry_of(r)} for r in results}}))
    return path


def test_a_format_1_baseline_loads_with_no_machine_and_is_compared_strictly(tmp_path):
    path = _format_1(tmp_path, _result(_judged("a", "pass")))
    base = load_baseline(path)
    assert base.machine is None and set(base.cases) == {"E5-x"}
    comparison = compare_with_baseline(_result(_judged("a", "inconclusive"), machine=INTEL), base)
    assert comparison.one_class and _has(comparison.failures, "pass -> inconclusive")
    # an update from a run covering it writes format 2 with the run's class
    update_baseline([_result(_judged("a", "inconclusive"), machine=INTEL)], path)
    data = json.loads(path.read_text())
    assert data["format"] == 2 and data["machine"] == INTEL.to_dict()


def test_a_baseline_with_a_malformed_machine_block_names_the_fix(tmp_path):
    path, _ = _baseline_of(tmp_path, _result(_judged("a", "pass")))
    data = json.loads(path.read_text())
    del data["machine"]["threads"]
    path.write_text(json.dumps(data))
    with pytest.raises(BaselineError, match="machine class.*missing \\['threads'\\]"):
        load_baseline(path)


def test_the_checked_in_baseline_records_its_machine_class():
    base = load_baseline(Path(__file__).resolve().parents[1] / "cases" / "baseline" / "smoke.json")
    assert base.machine == AMD, "recorded by the README's main job: -n 2 on 2 AMD cores, one thread per worker"
    assert base.cases


def test_this_process_machine_class_follows_the_thread_count():
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = machine_class("cpu")
        torch.set_num_threads(2)
        two = machine_class("cpu")
    finally:
        torch.set_num_threads(before)
    assert (one.threads, two.threads) == (1, 2) and one != two
    assert one.torch == torch.__version__.split("+")[0] and one.dtype == "float32"
    assert one.cpu_capability == torch.backends.cpu.get_cpu_capability()


# --------------------------------------------------------------------------- update


def test_an_update_writes_the_new_verdict_of_a_moved_statement(tmp_path):
    path, _ = _baseline_of(tmp_path, _result(_judged("a", "pass"), _judged("b", "fail", 0.9)))
    written, changes = update_baseline([_result(_judged("a", "inconclusive"), _judged("b", "pass", 0.0))], path)
    assert written == 1
    assert _has(changes, "statement (a): pass -> inconclusive") and _has(changes, "statement (b): fail -> pass")
    entry = load_baseline(path).cases["E5-x"]["principled"]
    assert entry["statements"]["a"]["verdict"] == "inconclusive"
    assert entry["statements"]["b"]["verdict"] == "pass"
    assert entry["verdict"] == "inconclusive"


def test_an_update_keeps_the_old_judgement_only_of_statements_that_need_a_missing_extra(tmp_path):
    path, _ = _baseline_of(tmp_path, _result(_judged("a", "pass"), _judged("b", "pass"), _judged("c", "fail", 1.5)))
    update_baseline([_result(_judged("a", "inconclusive"), _judged("b", "fail", 0.8), _missing("c"))], path)
    statements = load_baseline(path).cases["E5-x"]["principled"]["statements"]
    assert {sid: st["verdict"] for sid, st in statements.items()} == {"a": "inconclusive", "b": "fail", "c": "fail"}


def test_an_update_records_the_machine_class_of_the_run(tmp_path):
    path = tmp_path / "mine.json"
    update_baseline([_result(_judged("a", "pass"), machine=H100)], path)
    data = json.loads(path.read_text())
    assert data["format"] == 2 and data["machine"] == H100.to_dict()
    assert load_baseline(path).machine == H100
    # a run without a recorded class (an older results.json) records none: compared strictly
    update_baseline([_result(_judged("a", "pass"), machine=None)], path, prune=True)
    assert load_baseline(path).machine is None


def test_the_class_of_a_run_ignores_rows_without_one_and_refuses_two():
    synthesized = CaseResult(claim="E5", case_id="E5-y", verdict="skip", reason="no data")
    assert machine_of([_result(_judged("a", "pass"), machine=INTEL), synthesized]) == INTEL
    assert machine_of([synthesized]) is None
    with pytest.raises(BaselineError, match="several machine classes"):
        machine_of([_result(_judged("a", "pass"), machine=INTEL), _result(_judged("a", "pass"), machine=AMD)])


def test_prune_drops_removed_cases_and_a_partial_update_keeps_them(tmp_path):
    path, _ = _baseline_of(tmp_path, _result(_judged("a", "pass")), _result(_judged("a", "pass"), case_id="E4-y"))
    update_baseline([_result(_judged("a", "pass"))], path)
    assert set(load_baseline(path).cases) == {"E4-y", "E5-x"}
    update_baseline([_result(_judged("a", "pass"))], path, prune=True)
    assert set(load_baseline(path).cases) == {"E5-x"}


def test_a_partial_update_from_another_class_refuses_to_mix_classes(tmp_path):
    path, _ = _baseline_of(tmp_path, _result(_judged("a", "pass")), _result(_judged("a", "pass"), case_id="E4-y"))
    before = path.read_text()
    with pytest.raises(BaselineError, match="would mix machine classes.*--prune"):
        update_baseline([_result(_judged("a", "inconclusive"), machine=INTEL)], path)
    assert path.read_text() == before, "a refused update leaves the file alone"
    update_baseline([_result(_judged("a", "inconclusive"), machine=INTEL)], path, prune=True)
    base = load_baseline(path)
    assert base.machine == INTEL and set(base.cases) == {"E5-x"}


# --------------------------------------------------------------------------- where the moves show up


def _saved_run(tmp_path, *results: CaseResult) -> Path:
    run = RunReport(run_id="20250101T000000Z-aaaaaa", started="2025-01-01T00:00:00Z", status="complete",
                    results=tuple(results))
    run_dir = tmp_path / "reports" / run.run_id
    run_dir.mkdir(parents=True)
    files.save_run(run, run_dir / "results.json")
    return run_dir


def test_the_cli_records_the_class_from_results_json_and_checks_failures_apart_from_reported_moves(tmp_path, capsys):
    path = tmp_path / "my-baseline.json"
    recorded = _saved_run(tmp_path / "a", _result(_judged("a", "pass")), _result(_judged("a", "pass"), case_id="E4-y"))
    assert main(["baseline", "update", str(recorded), "--baseline", str(path)]) == 0
    assert "recorded on AuthenticAMD AVX512, 1 thread, cpu" in capsys.readouterr().out
    assert load_baseline(path).machine == AMD

    borderline = _saved_run(tmp_path / "b", _result(_judged("a", "inconclusive"), machine=INTEL),
                            _result(_judged("a", "pass"), case_id="E4-y", machine=INTEL))
    assert main(["baseline", "check", str(borderline), "--baseline", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Moved against the baseline recorded on AuthenticAMD AVX512, 1 thread, cpu" in out
    assert "differs in CPU vendor AuthenticAMD -> GenuineIntel; ISA AVX512 -> AVX2" in out
    assert "  E5-x [principled] statement (a): pass -> inconclusive" in out
    assert "no verdict of 20250101T000000Z-aaaaaa fails" in out

    flipped = _saved_run(tmp_path / "c", _result(_judged("a", "inconclusive"), machine=INTEL),
                         _result(_judged("a", "fail", 0.9), case_id="E4-y", machine=INTEL))
    assert main(["baseline", "check", str(flipped), "--baseline", str(path)]) == 1
    failing, _, reported = capsys.readouterr().out.partition("Moved against the baseline")
    assert "E4-y [principled] statement (a): pass -> fail" in failing and "E5-x" not in failing
    assert "E5-x [principled] statement (a): pass -> inconclusive" in reported and "E4-y" not in reported


def test_reported_moves_travel_in_results_json_to_the_summary_and_the_report(tmp_path):
    _, base = _baseline_of(tmp_path, _result(_judged("a", "pass")))
    run_result = _result(_judged("a", "inconclusive"), machine=INTEL)
    comparison = compare_with_baseline(run_result, base)
    result = dataclasses.replace(run_result, baseline_moves=comparison.moves_block())
    run = RunReport.from_json(RunReport(run_id="r1", started="2025-01-01T00:00:00Z", results=(result,)).to_json())
    assert run.results[0] == result, "results.json keeps the reported moves"
    [group] = reported_moves(run.results)
    assert group.recorded_on == AMD.describe() and group.machine == INTEL.describe()
    title = f"Moved against the baseline recorded on {AMD.describe()}"
    line = "E5-x [principled] statement (a): pass -> inconclusive"
    summary = [text for text, _ in baseline_move_lines(list(run.results))]
    assert summary[0].startswith(f"moved against the baseline recorded on {AMD.describe()} (not failing")
    assert any(line in text for text in summary)
    md = render_markdown(run)
    assert f"## {title}" in md and line in md
    html = render_html(run)
    assert f">{title}</h2>" in html and line.replace(">", "&gt;") in html
    # a run without reported moves has no such section
    plain = dataclasses.replace(run, results=(run_result,))
    assert baseline_move_lines(list(plain.results)) == [] and "Moved against" not in render_markdown(plain)


def test_baseline_moves_must_name_the_baseline_class_and_lines():
    with pytest.raises(SchemaError, match="baseline_moves"):
        CaseResult(claim="E5", case_id="E5-x", verdict="skip", reason="r", baseline_moves={"lines": ["x"]})
    with pytest.raises(SchemaError, match="baseline_moves"):
        CaseResult(claim="E5", case_id="E5-x", verdict="skip", reason="r",
                   baseline_moves={"recorded_on": None, "lines": "x"})


# --------------------------------------------------------------------------- the cases' wiring


@pytest.fixture
def support(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "cases"))
    import _support

    return _support


def test_a_case_records_its_class_and_its_reported_moves_and_fails_only_on_failures(tmp_path, monkeypatch, support):
    """``_support.finish`` stores this process's class and the reported moves in the record;
    ``verdicts_hold`` passes a borderline move on another class and fails it on this one."""
    case = support.Case("E5", "x", "toy")
    here = machine_class()
    elsewhere = dataclasses.replace(here, cpu_vendor="SomeOtherVendor")
    baseline = tmp_path / "b.json"
    monkeypatch.setenv("VOLBENCH_BASELINE", str(baseline))

    def judged(*statements):
        return support.finish(lambda r: r, case, "principled", started=time.perf_counter(), device="cpu",
                              seeds={}, statements=statements)

    update_baseline([_on(judged(_judged("a", "pass")), elsewhere)], baseline)
    result = judged(_judged("a", "inconclusive"))
    assert result.machine == here.to_dict()
    assert result.baseline_moves["recorded_on"] == elsewhere.to_dict()
    assert _has(result.baseline_moves["lines"], "statement (a): pass -> inconclusive")
    assert support.verdicts_hold([result], strict=False)

    update_baseline([_on(judged(_judged("a", "pass")), here)], baseline)
    result = judged(_judged("a", "inconclusive"))
    assert not result.baseline_moves
    with pytest.raises(pytest.fail.Exception, match="statement \\(a\\): pass -> inconclusive"):
        support.verdicts_hold([result], strict=False)


def test_this_process_machine_class_follows_mkls_branch_switches(monkeypatch):
    """MKL_CBWR (or MKL_ENABLE_INSTRUCTIONS) picks another MKL code path: another class, so a
    borderline move under it is reported, as on another CPU (F10 and F14 moved so under
    MKL_CBWR=COMPATIBLE); unset, the field is empty and old records (no field) read the same."""
    for name in ("MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS"):
        monkeypatch.delenv(name, raising=False)
    default = machine_class("cpu")
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    compatible = machine_class("cpu")
    assert default.blas == "" and compatible.blas == "MKL_CBWR=COMPATIBLE" and default != compatible
    old_record = {k: v for k, v in default.to_dict().items() if k != "blas"}
    assert type(default).from_dict(old_record) == default
