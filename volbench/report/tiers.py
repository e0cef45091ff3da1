"""Which statements of each claim were judged where: a claim's cases joined across tiers and settings.

A claim lives in several cases: one per setting (model and data set, e.g.
``F5-power-law[mnist-mlp]`` and ``F5-power-law[mnist-cnn]``) and per tier (``smoke`` on a CPU,
``nightly`` at the paper's scale, and the nightly cases at tiny scale under ``--quick``, which
exercise code paths and decide nothing about the papers). A run holds one tier, so no single report
shows what the smoke tier leaves to the nightly one. This table joins any number of runs: one row
per (claim, statement id), one column per tier, each cell naming the settings and estimators that
judged the statement there and their verdicts. A statement judged nowhere says so.

Example:
    >>> from volbench.report.example import example_run
    >>> rows = statement_rows(example_run().results)
    >>> row = next(r for r in rows if r.claim == "F5")
    >>> row.statement, row.judged_in()
    ('a', ('smoke',))
    >>> print(statement_table(rows)[0])
    | claim | statement | smoke | judged in |
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from volbench.report.formatting import claim_sort_key
from volbench.results import CaseResult

__all__ = ["Judgement", "StatementRow", "statement_rows", "statement_table", "tier_label", "JUDGED"]

#: Statement verdicts that count as judged (a "not-judged" statement was left to another tier).
JUDGED = ("pass", "fail", "inconclusive")
_SHORT = {"reference": "ref", "principled": "pri"}


def tier_label(result: CaseResult) -> str:
    """``smoke``, ``nightly``, or ``nightly --quick`` (tiny scale: code paths, not verdicts)."""
    return f"{result.tier} --quick" if result.quick else result.tier


def setting_of(case_id: str) -> str:
    """The setting in a case id's brackets (``F5-power-law[mnist-cnn]`` -> ``mnist-cnn``)."""
    return case_id[case_id.index("[") + 1:case_id.rindex("]")] if "[" in case_id and case_id.endswith("]") else "-"


@dataclass(frozen=True)
class Judgement:
    """One statement's verdict in one case (tier, setting) for one estimator."""

    tier: str
    setting: str
    estimator: str
    verdict: str


@dataclass(frozen=True)
class StatementRow:
    """Every judgement of one statement of one claim, over the runs joined."""

    claim: str
    statement: str
    text: str
    judgements: tuple[Judgement, ...]

    def judged_in(self) -> tuple[str, ...]:
        """The tiers where some setting and estimator judged it (pass, fail or inconclusive)."""
        return tuple(dict.fromkeys(j.tier for j in self.judgements if j.verdict in JUDGED))

    def cell(self, tier: str) -> str:
        """``mnist-mlp: ref pass, pri fail; mnist-cnn: ref not-judged`` for ``tier``, or ``-``."""
        by_setting: dict[str, list[str]] = {}
        for j in self.judgements:
            if j.tier == tier:
                by_setting.setdefault(j.setting, []).append(f"{_SHORT.get(j.estimator, j.estimator)} {j.verdict}")
        return "; ".join(f"{s}: {', '.join(v)}" for s, v in by_setting.items()) or "-"


def statement_rows(results: Iterable[CaseResult]) -> list[StatementRow]:
    """One :class:`StatementRow` per (claim, statement id) of ``results`` (from any number of runs),
    in claim order, statements in the order first recorded."""
    found: dict[tuple[str, str], tuple[str, list[Judgement]]] = {}
    for r in results:
        for st in r.statements:
            text, judgements = found.setdefault((r.claim, st.id), (st.text, []))
            judgements.append(Judgement(tier_label(r), setting_of(r.case_id), r.estimator or "-", st.verdict))
    order = sorted(found, key=lambda key: claim_sort_key(key[0]))  # stable: statements keep their order
    return [StatementRow(c, s, found[c, s][0], tuple(found[c, s][1])) for c, s in order]


def statement_table(rows: Sequence[StatementRow], tiers: Sequence[str] | None = None) -> list[str]:
    """Markdown lines: one row per statement, one column per tier (``tiers``, default: those
    present, smoke first), and a last column naming where it was judged (``nowhere`` if no tier
    judged it)."""
    present = list(dict.fromkeys(j.tier for row in rows for j in row.judgements))
    rank = {"smoke": 0, "nightly": 1, "nightly --quick": 2}
    tiers = list(tiers) if tiers is not None else sorted(present, key=lambda t: (rank.get(t, 3), t))
    head = "| claim | statement | " + " | ".join(tiers) + " | judged in |"
    lines = [head, "|" + "---|" * (len(tiers) + 3)]
    for row in rows:
        cells = [row.cell(t) for t in tiers] + [", ".join(row.judged_in()) or "nowhere"]
        lines.append(f"| {row.claim} | {row.statement} | " + " | ".join(cells) + " |")
    return lines
