"""The verdict baseline (``volbench.report.baseline``): a moved verdict is named, an update keeps
what a run could not judge, and a statement left "not-judged" because an optional extra is
missing (``Statement.needs``) is neither a move nor forgotten."""
from __future__ import annotations

import json

import pytest

from volbench.report.baseline import BaselineError, load_baseline, moved, unchecked, update_baseline
from volbench.report.schema import CaseResult, SchemaError, Statement, Statistic, combine_verdicts


def _stat(value: float) -> Statistic:
    return Statistic("log ratio", value, low=value - 0.1, high=value + 0.1, level=0.95)


def _judged(sid: str, verdict: str, value: float = 0.0) -> Statement:
    if verdict in ("pass", "fail"):
        return Statement(sid, f"statement {sid}", verdict, _stat(value), rule="inside +-log 1.25")
    return Statement(sid, f"statement {sid}", verdict, _stat(value), reason="needs 4x the draws")


def _missing(sid: str) -> Statement:
    return Statement(sid, f"statement {sid}", "not-judged", reason="devinterp is not installed",
                     needs="crosscheck")


def _result(*statements: Statement, case_id: str = "E5-x") -> CaseResult:
    verdict = combine_verdicts([st.verdict for st in statements])
    return CaseResult(claim=case_id.split("-")[0], case_id=case_id, estimator="principled", verdict=verdict,
                      statistic=next((st.statistic for st in statements if st.statistic is not None), None),
                      rule="conjunction of the statements",
                      reason="" if verdict in ("pass", "fail") else "see statements",
                      statements=list(statements))


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
