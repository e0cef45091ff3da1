"""Shared pieces of the claim cases: the ``Case`` record, settings, and turning measurements into
verdicts and ``CaseResult`` records (one per estimator)."""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

import pytest

from volbench.analysis import bootstrap_difference, bootstrap_log_volume, decide
from volbench.report.schema import CaseResult, Statistic

ESTIMATORS = ("reference", "principled")


@dataclass(frozen=True)
class Case:
    """One claim case as data: a stable id, its tier and its parameters."""

    claim: str  # "F1"
    slug: str  # "poison-smaller"
    setting: str  # "mnist-mlp"
    tier: str = "smoke"
    params: Mapping[str, Any] = field(default_factory=dict)
    skip: str = ""  # a measured reason why this tier cannot decide the claim
    title: str = ""
    quick: bool = False  # nightly code path at tiny scale (--quick): verdicts are marked, never mixed

    @property
    def id(self) -> str:
        return f"{self.claim}-{self.slug}[{self.setting}]"

    def __getitem__(self, key: str) -> Any:
        return self.params[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)

    def param(self):
        marks = [getattr(pytest.mark, self.tier)]
        if self.tier == "nightly":
            marks.append(pytest.mark.gpu)
        if self.skip:
            marks.append(pytest.mark.skip(reason=self.skip))
        return pytest.param(self, id=self.id, marks=marks)


def smoke_and_nightly(titles: Mapping[str, str], claim: str, slug: str, setting: str, smoke: Mapping[str, Any],
                      nightly: Mapping[str, Any], smoke_skip: str = "") -> list[Case]:
    """The smoke and the nightly ``Case`` of one claim in one setting (``titles[claim]`` is its title)."""
    return [Case(claim, slug, setting, "smoke", smoke, title=titles[claim], skip=smoke_skip),
            Case(claim, slug, setting, "nightly", nightly, title=titles[claim])]


@dataclass(frozen=True)
class Comparison:
    """log V_a - log V_b with a bootstrap interval over directions (or a sure sign when one of
    the two has left the basin: volume zero)."""

    a: str
    b: str
    point: float
    low: float
    high: float

    def as_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "diff": self.point, "low": self.low, "high": self.high}


def compare(ma, mb, *, seed: int = 0, n_boot: int = 1000) -> Comparison:
    """Compare two ``volbench.lab.Measurement`` records (a larger than b is positive)."""
    if ma.outside and mb.outside:
        return Comparison(ma.minimum, mb.minimum, math.nan, math.nan, math.nan)
    if mb.outside:
        return Comparison(ma.minimum, mb.minimum, math.inf, math.inf, math.inf)
    if ma.outside:
        return Comparison(ma.minimum, mb.minimum, -math.inf, -math.inf, -math.inf)
    p, lo, hi = bootstrap_difference(ma.log_terms, mb.log_terms, n_boot=n_boot, seed=seed)
    return Comparison(ma.minimum, mb.minimum, p, lo, hi)


def all_positive(comparisons: Sequence[Comparison]) -> tuple[str, Statistic]:
    """Verdict of "a is larger than b in every comparison": pass if every 95% interval is above
    0, fail if any lies below 0, else inconclusive. The statistic is the least favourable
    comparison (smallest lower bound)."""
    if not comparisons:
        raise ValueError("no comparisons to decide from")
    # Both minima outside the basin (both volumes zero) carries no ordering information.
    informative = [c for c in comparisons if not math.isnan(c.point)]
    if not informative:
        return "inconclusive", Statistic("min log V difference", math.nan, unit="nats")
    comparisons = informative
    verdicts = ["pass" if c.low == math.inf else "fail" if c.high == -math.inf
                else decide(c.low, c.high, above=0.0) for c in comparisons]
    verdict = "fail" if "fail" in verdicts else "inconclusive" if "inconclusive" in verdicts else "pass"
    worst = min(comparisons, key=lambda c: c.low if not math.isnan(c.low) else -math.inf)
    # +-inf: one of the two minima left the basin in this landscape (volume zero).
    stat = Statistic("min log V difference", worst.point, low=worst.low, high=worst.high, level=0.95,
                     unit="nats")
    return verdict, stat


def radius_summary(m) -> dict[str, float]:
    r = [x for x in m.log_radii if math.isfinite(x)]
    if not r:
        return {"log_r_min": math.nan, "log_r_mean": math.nan, "log_r_max": math.nan}
    return {"log_r_min": min(r), "log_r_mean": sum(r) / len(r), "log_r_max": max(r)}


def measurement_numbers(m) -> dict[str, Any]:
    lo, hi = bootstrap_log_volume(m.log_terms, n_boot=500) if not m.outside else (math.nan, math.nan)
    return {"minimum": m.minimum, "landscape": m.landscape_size, "log_volume": _json_num(m.log_volume),
            "log_volume_low": _json_num(lo), "log_volume_high": _json_num(hi), "anchor_cost": m.anchor_cost,
            "outside": m.outside, "n_cost_evals": m.n_cost_evals, "seconds": m.seconds,
            **{k: _json_num(v) for k, v in radius_summary(m).items()}}


def _json_num(x: float) -> float:
    return x  # the report schema keeps -inf (volume zero) and NaN as such


@dataclass(frozen=True)
class Clock:
    """When a case (or one estimator's part of it) started, and the lab ledger at that moment, so
    its result can say what it computed and what caches served."""

    t0: float
    ledger: Mapping[str, float]


def start() -> Clock:
    from volbench.lab import LEDGER

    return Clock(time.perf_counter(), LEDGER.snapshot())


def timing_since(clock: Clock | float) -> dict[str, float]:
    """Wall seconds since ``clock`` and, for a :class:`Clock`, the lab's computed/served figures."""
    if isinstance(clock, Clock):
        from volbench.lab import LEDGER

        return {"wall_seconds": time.perf_counter() - clock.t0, **LEDGER.since(dict(clock.ledger))}
    return {"wall_seconds": time.perf_counter() - clock}


def finish(record_case, case: Case, estimator: str, *, started: Clock | float, device, seeds: Mapping[str, Any],
           statements: Sequence = (), verdict: str | None = None, statistic: Statistic | None = None,
           rule: str = "", numbers: Mapping[str, Any] | None = None, series: Iterable[Mapping[str, Any]] = (),
           paper_value: float | None = None, reason: str = "", strict: bool = False) -> CaseResult:
    """Record one estimator's verdict for ``case`` and return the record. With ``statements`` the
    verdict is their conjunction (``verdict`` may then be omitted)."""
    from volbench.claims.core import claim_verdict

    statements = tuple(statements)
    if statements:
        combined = claim_verdict(list(statements))
        if verdict is not None and verdict != combined:
            raise ValueError(f"{case.id}: verdict {verdict!r} is not the conjunction {combined!r} of its statements")
        verdict = combined
        if statistic is None:  # the headline number: the first judged statement's
            judged = [st for st in statements if st.statistic is not None and st.verdict != "not-judged"]
            statistic = judged[0].statistic if judged else None
        if not rule:
            rule = "the conjunction of the statements' verdicts (fail dominates, then inconclusive)"
        if verdict in ("inconclusive", "skip") and not reason:
            reason = "; ".join(f"({st.id}) {st.reason}" for st in statements
                               if st.verdict in ("inconclusive", "not-judged") and st.reason)
    if verdict is None:
        raise ValueError(f"{case.id}: give statements or a verdict")
    if verdict in ("inconclusive", "skip", "error") and not reason:
        reason = "the interval of the statistic straddles the rule's boundary at this scale"
    timing = timing_since(started)
    result = CaseResult(
        claim=case.claim, case_id=case.id, verdict=verdict, estimator=estimator, title=case.title,
        tier=case.tier, statistic=statistic, rule=rule, paper_value=paper_value,
        numbers=dict(numbers or {}), series=tuple(series), seconds=timing["wall_seconds"],
        device=str(device), seeds=dict(seeds), reason=reason, statements=statements, quick=case.quick,
        timing=timing,
    )
    return record_case(result)


BASELINE = Path(__file__).resolve().parent / "baseline" / "smoke.json"


def baseline_problems(results: Sequence[CaseResult]) -> list[str]:
    """What moved against the checked-in verdict baseline (smoke tier, real runs only; skipped
    with ``VOLBENCH_BASELINE=off``, or pointed elsewhere with ``VOLBENCH_BASELINE=PATH``)."""
    from volbench.report.baseline import BASELINE_ENV, load_baseline, moved

    setting = os.environ.get(BASELINE_ENV, "").strip()
    results = [r for r in results if r.tier == "smoke" and not r.quick]
    if setting.lower() == "off" or not results:
        return []
    baseline = load_baseline(Path(setting) if setting else BASELINE)
    return [line for r in results for line in moved(r, baseline)]


def enforce(results: Sequence[CaseResult], strict: bool) -> None:
    """Fail the test when a verdict moved against the baseline (naming the case, the old and new
    verdict and both statistics), and, with --strict-claims, on a fail or inconclusive verdict."""
    problems = baseline_problems(results)
    if problems:
        pytest.fail("verdict moved against the checked-in baseline (cases/baseline/smoke.json):\n  "
                    + "\n  ".join(problems)
                    + "\nIf the change is intended, run `volbench baseline update` and commit the diff with the reason "
                      "in the commit message.", pytrace=False)
    if strict:
        bad = [f"{r.estimator}: {r.verdict}" for r in results if r.verdict in ("fail", "inconclusive")]
        if bad:
            pytest.fail("claim not reproduced: " + "; ".join(bad))
