"""The verdicts-at-a-glance forest plot: every judged statement's interval in units of its rule's
lines, in every rendered report."""
from __future__ import annotations

import pytest

from volbench.report.forest import forest_rows, normalised
from volbench.report.render import render_run
from volbench.results import CaseResult, RunReport, Statement, Statistic


def _st(sid, verdict, value, low, high, margins):
    return Statement(sid, "text", verdict, Statistic("d", value, low=low, high=high, level=0.95), rule="r",
                     reason="" if verdict in ("pass", "fail") else "undecided", margins=margins)


def test_each_kind_of_rule_is_drawn_in_units_of_its_own_lines():
    above = _st("a", "pass", 30.0, 12.0, 48.0, {"claimed": "above", "boundary": 0.0, "smallest_effect": 10.0})
    assert normalised(above) == pytest.approx((3.0, 1.2, 4.8, True))
    # "below": the claimed side is drawn to the right, the smallest effect at 1
    below = _st("b", "fail", -0.01, -0.02, 0.005, {"claimed": "below", "boundary": 0.0, "smallest_effect": -0.02})
    assert normalised(below) == pytest.approx((0.5, -0.25, 1.0, True))
    inside = _st("c", "pass", 0.1, -0.2, 0.3, {"claimed": "inside", "low": -0.5, "high": 0.5})
    assert normalised(inside) == pytest.approx((0.2, -0.4, 0.6, True))
    plain = _st("d", "inconclusive", 1.0, -1.0, 3.0, {"claimed": "above", "boundary": 0.0})
    assert normalised(plain) == pytest.approx((1 / 3, -1 / 3, 1.0, False))
    assert normalised(_st("e", "pass", 1.0, 0.5, 2.0, {})) is None  # no lines: not drawn


def test_every_report_has_the_forest_plot(tmp_path):
    st = _st("a", "pass", 30.0, 12.0, 48.0, {"claimed": "above", "boundary": 0.0, "smallest_effect": 10.0})
    r = CaseResult(claim="F3", case_id="F3-own[mnist-mlp]", verdict="pass", statistic=st.statistic, rule="r",
                   statements=[st], estimator="principled")
    quick = CaseResult(claim="F3", case_id="F3-own[mnist-mlp]", verdict="pass", statistic=st.statistic, rule="r",
                       statements=[st], estimator="reference", quick=True)
    run = RunReport(run_id="r1", started="2026-12-06T00:00:00", results=[r, quick])
    assert [row[0] for row in forest_rows(run.results)] == ["F3-own[mnist-mlp] · principled · (a)"]  # quick left out
    out = render_run(run, tmp_path)
    assert (tmp_path / "figures" / "forest.png").read_bytes()[:4] == b"\x89PNG"
    assert "figures/forest.png" in out.markdown.read_text() and "Verdicts at a glance" in out.html.read_text()
