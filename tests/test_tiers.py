"""The claim table across tiers (volbench.report.tiers, `volbench claims`): which statements were
judged where, joined from runs of different tiers and settings."""
from __future__ import annotations

from volbench.cli import main
from volbench.report.files import save_run
from volbench.report.tiers import statement_rows, statement_table
from volbench.results import CaseResult, RunReport, Statement, Statistic


def _result(case_id, estimator, tier, verdicts, *, quick=False):
    statements = []
    for sid, verdict in verdicts.items():
        if verdict in ("pass", "fail"):
            statements.append(Statement(sid, "text", verdict, Statistic("d", 1.0, low=0.5, high=1.5, level=0.95),
                                        rule="r"))
        else:
            statements.append(Statement(sid, "text", verdict, reason="why"))
    verdict = "fail" if "fail" in verdicts.values() else "pass"
    return CaseResult(claim="F5", case_id=case_id, estimator=estimator, verdict=verdict, rule="r",
                      statistic=Statistic("d", 1.0, low=0.5, high=1.5, level=0.95), statements=statements,
                      tier=tier, quick=quick)


SMOKE = [_result("F5-power-law[mnist-mlp]", "reference", "smoke", {"a": "pass", "b.cnn-shallower": "not-judged"}),
         _result("F5-power-law[mnist-mlp]", "principled", "smoke", {"a": "fail", "b.cnn-shallower": "not-judged"})]
NIGHTLY = [_result("F5-power-law[mnist-cnn]", "principled", "nightly", {"a": "pass", "b.cnn-shallower": "pass"})]
QUICK = [_result("F5-power-law[mnist-cnn]", "principled", "nightly", {"a": "pass", "b.cnn-shallower": "pass",
                                                                      "b.never": "not-judged"}, quick=True)]


def test_a_statement_left_to_the_nightly_tier_shows_where_it_was_judged():
    rows = {row.statement: row for row in statement_rows(SMOKE + NIGHTLY + QUICK)}
    assert rows["a"].judged_in() == ("smoke", "nightly", "nightly --quick")
    assert rows["b.cnn-shallower"].judged_in() == ("nightly", "nightly --quick")  # not-judged in smoke
    assert rows["b.never"].judged_in() == ()
    assert rows["a"].cell("smoke") == "mnist-mlp: ref pass, pri fail"
    assert rows["b.cnn-shallower"].cell("smoke") == "mnist-mlp: ref not-judged, pri not-judged"
    assert rows["b.cnn-shallower"].cell("nightly") == "mnist-cnn: pri pass"
    table = statement_table(list(rows.values()))
    assert table[0] == "| claim | statement | smoke | nightly | nightly --quick | judged in |"
    assert "| F5 | b.never | - | - | mnist-cnn: pri not-judged | nowhere |" in table


def test_volbench_claims_joins_runs(tmp_path, capsys):
    paths = []
    for name, results in (("smoke", SMOKE), ("nightly", NIGHTLY)):
        path = tmp_path / name / "results.json"
        path.parent.mkdir()
        save_run(RunReport(run_id=name, started="2026-12-06T00:00:00", results=results), path)
        paths.append(str(path.parent))
    assert main(["claims", *paths, "--claim", "F5"]) == 0
    out = capsys.readouterr().out
    assert "| F5 | b.cnn-shallower | mnist-mlp: ref not-judged, pri not-judged | mnist-cnn: pri pass | nightly |" in out
    assert main(["claims", *paths, "--claim", "F9"]) == 2  # names what is missing
