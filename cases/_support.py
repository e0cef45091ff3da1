"""Shared pieces of the claim cases: the ``Case`` record, settings, and turning measurements into
verdicts and ``CaseResult`` records (one per estimator)."""
from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from volbench.report.baseline import (
    BASELINE_ENV,
    BaselineComparison,
    BaselineError,
    compare_with_baseline,
    load_baseline,
)
from volbench.report.machine import describe_machine, machine_class
from volbench.results import CaseResult, Statistic

ESTIMATORS = ("reference", "principled")

#: Study knob (docs/R2_DESIGN.md): ``VOLBENCH_SEED_OFFSET=10`` shifts every seed of the MNIST and
#: Fashion-MNIST smoke settings by 10, so that a design's decided verdicts can be checked once on
#: seeds it does not use. Results record their seeds; such a run is never compared with the verdict
#: baseline (recorded with offset 0).
SEED_OFFSET_ENV = "VOLBENCH_SEED_OFFSET"


def seed_offset() -> int:
    """The study's seed offset (0 unless ``VOLBENCH_SEED_OFFSET`` is set)."""
    return int(os.environ.get(SEED_OFFSET_ENV, "0") or 0)


def shifted(seeds):
    """``seeds`` (an int or a tuple of ints) plus :func:`seed_offset`."""
    k = seed_offset()
    return seeds + k if isinstance(seeds, int) else tuple(s + k for s in seeds)


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
    quick_changes: Mapping[str, Any] = field(default_factory=dict)  # {param: [nightly value, quick value]}
    scale_changes: Mapping[str, Any] = field(default_factory=dict)  # reproduction scale: {param: [smoke, used]}

    @property
    def id(self) -> str:
        return f"{self.claim}-{self.slug}[{self.setting}]"

    def __getitem__(self, key: str) -> Any:
        return self.params[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)

    def param(self):
        # Nightly cases carry no gpu mark: a GPU makes them fast, not possible (they run on a CPU
        # given time, and at tiny scale with --quick).
        marks = [getattr(pytest.mark, self.tier)]
        if self.quick:
            marks.append(pytest.mark.quick)
        if self.skip:
            marks.append(pytest.mark.skip(reason=self.skip))
        return pytest.param(self, id=self.id, marks=marks)


# ----------------------------------------------------------------------------- quick mode
# ``--quick`` (or VOLBENCH_QUICK=1) runs every nightly case's own code path at tiny scale on the
# CPU: its parameters go through :func:`quick_params` (generic rules by parameter name, below),
# then through the case module's optional ``QUICK = {test_name: {param: value}}`` table. The
# numbers say "runs", never "reproduces": quick verdicts are marked quick and reported apart.
QUICK_DIRECTIONS = 4        # directions per measurement (K, K_inv, sweep_K): a measurement of the 1.7M-parameter
                            # CIFAR MLP costs ~100 grid evaluations per direction, so this sets the quick tier's time
QUICK_DIRECTIONS_SMALL = 2  # K_small (E2 compares orderings at few vs many directions)
QUICK_DIRECTIONS_E3 = 8     # K_e3: E3 compares direction batches of 5 against all, so it needs more than 5
QUICK_EPOCHS = 60           # full-batch AdamW epochs: the MLPs fit a few hundred synthetic examples below tau
QUICK_SIZES = 3             # landscape sizes kept: the smallest and two doublings (capped by the nightly sizes)
QUICK_SWEEP = 3             # other swept values kept: first, middle, last
QUICK_REPEATS = 20          # Monte Carlo repeats (S1, S3): a t-interval needs a handful
QUICK_SAMPLES = 10_000      # Monte Carlo samples (S9) and sampled networks (Z4: n_samples)
QUICK_N = 20                # dimension of the quadratic toy basins (S1, S3, S4, S8)
QUICK_NS = 100              # largest dimension kept in a dimension sweep (S2, S9: ns)
QUICK_S_SIZE, QUICK_E_SIZE = 50, 100  # Zhang's S (n_train) and E (n_test)
QUICK_MIN_BATCH = 8         # smallest minibatch kept when batch sizes are scaled down (F9)
QUICK_SHARP_EPOCHS, QUICK_SHARP_ITER = 2, 5  # sharpness ascent (SGD epochs; L-BFGS-B iterations)
QUICK_RESTARTS, QUICK_FUNCTIONS, QUICK_MIN_COUNT = 2, 4, 2


def _sweep(values: Sequence, keep: int = QUICK_SWEEP) -> tuple:
    """First, middle and last of a sweep (order kept)."""
    values = tuple(values)
    if len(values) <= keep:
        return values
    idx = sorted({round(i * (len(values) - 1) / (keep - 1)) for i in range(keep)})
    return tuple(values[i] for i in idx)


def _scale_counts(values: Sequence[int], factor: float, minimum: int = 1) -> tuple[int, ...]:
    """Each count times ``factor`` (0 stays 0, others at least ``minimum``), duplicates dropped."""
    out: list[int] = []
    for v in values:
        w = 0 if v == 0 else max(minimum, round(v * factor))
        if w not in out:
            out.append(w)
    return tuple(out)


def quick_params(params: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> tuple[dict, dict]:
    """``(quick params, {param: [nightly value, quick value]})`` for a nightly case's params.

    Rules by name (values not named here are kept; ``overrides`` are applied last):

    * ``seeds`` -> the first; ``K``/``K_inv``/``sweep_K`` <= 4, ``K_e3`` <= 8, ``K_small`` <= 2,
      ``Ks`` scaled so the largest is 4; ``epochs`` <= 60; ``repeats`` <= 20; ``samples``,
      ``n_samples`` <= 10,000; ``n`` <= 20; ``ns`` <= 100 (at least the first two);
      ``n_functions`` <= 4, ``min_count`` <= 2, ``restarts`` <= 2; ``sharp`` ascent: ``epochs`` <= 2,
      ``max_iter`` <= 5;
    * ``sizes`` -> the smallest and two doublings (capped by the nightly sizes); ``size`` and
      ``base_size`` capped by the largest of those; counts drawn relative to them scale with them:
      ``poison`` and ``n_extra`` with ``base_size``, ``batches`` with ``size`` (at least 8);
    * Zhang's ``n_train`` <= 50 and ``n_test`` <= 100, ``attack`` scaled with ``n_train``;
    * ``checkpoints`` -> first, middle, last, scaled with ``epochs`` (or so the last is <= 60
      epochs where the case has no ``epochs``); other sweeps (``poison``, ``batches``, ``attack``,
      ``cutoffs``, ``eps``, ``eps_sweep``, ``s_values``, ``b_values``) keep first, middle, last.

    Example:
        >>> p, changed = quick_params({"sizes": (60, 600, 6000, 60000), "base": 60, "seeds": (0, 1),
        ...                            "base_size": 6000, "poison": (0, 180, 600, 2000, 6000), "tau": 0.1})
        >>> p["sizes"], p["seeds"], p["base_size"], p["poison"], "tau" in changed
        ((60, 120, 240), (0,), 240, (0, 24, 240), False)
    """
    p = dict(params)

    def cap(key: str, limit: int) -> None:
        if isinstance(p.get(key), int) and not isinstance(p[key], bool):
            p[key] = min(p[key], limit)

    if isinstance(p.get("seeds"), (tuple, list)) and p["seeds"]:
        p["seeds"] = tuple(p["seeds"][:1])
    for key in ("K", "K_inv", "sweep_K"):
        cap(key, QUICK_DIRECTIONS)
    cap("K_e3", QUICK_DIRECTIONS_E3)
    cap("K_small", QUICK_DIRECTIONS_SMALL)
    if isinstance(p.get("Ks"), (tuple, list)) and p["Ks"]:
        p["Ks"] = _sweep(_scale_counts(sorted(p["Ks"]), QUICK_DIRECTIONS / max(p["Ks"]), minimum=2))
    epoch_factor = None
    if isinstance(p.get("epochs"), int) and p["epochs"] > QUICK_EPOCHS:
        epoch_factor = QUICK_EPOCHS / p["epochs"]
        p["epochs"] = QUICK_EPOCHS
    for key, limit in (("repeats", QUICK_REPEATS), ("samples", QUICK_SAMPLES), ("n_samples", QUICK_SAMPLES),
                       ("n", QUICK_N), ("n_functions", QUICK_FUNCTIONS), ("min_count", QUICK_MIN_COUNT),
                       ("restarts", QUICK_RESTARTS)):
        cap(key, limit)
    if isinstance(p.get("ns"), (tuple, list)) and p["ns"]:
        small = tuple(v for v in p["ns"] if v <= QUICK_NS)
        p["ns"] = small if len(small) >= 2 else tuple(p["ns"][:2])
    if isinstance(p.get("sharp"), Mapping):
        sharp = dict(p["sharp"])
        for key, limit in (("epochs", QUICK_SHARP_EPOCHS), ("max_iter", QUICK_SHARP_ITER)):
            if isinstance(sharp.get(key), int):
                sharp[key] = min(sharp[key], limit)
        p["sharp"] = sharp
    # Data sizes and the counts drawn relative to them.
    largest = None
    if isinstance(p.get("sizes"), (tuple, list)) and p["sizes"]:
        old = tuple(p["sizes"])
        new = [old[0]] + [min(old[i], old[0] * 2 ** i) for i in range(1, min(len(old), QUICK_SIZES))]
        p["sizes"] = tuple(new)
        largest = new[-1]
    factors = {}
    for key in ("size", "base_size"):
        if isinstance(p.get(key), int) and largest is not None and p[key] > largest:
            factors[key] = largest / p[key]
            p[key] = largest
    if isinstance(p.get("poison"), (tuple, list)):
        p["poison"] = _sweep(_scale_counts(p["poison"], factors.get("base_size", 1.0)))
    if isinstance(p.get("n_extra"), int):
        p["n_extra"] = max(1, round(p["n_extra"] * factors.get("base_size", 1.0)))
    if isinstance(p.get("batches"), (tuple, list)):
        p["batches"] = _sweep(_scale_counts(p["batches"], factors.get("size", 1.0), minimum=QUICK_MIN_BATCH))
    if isinstance(p.get("n_train"), int) and p["n_train"] > QUICK_S_SIZE:
        factors["n_train"] = QUICK_S_SIZE / p["n_train"]
        p["n_train"] = QUICK_S_SIZE
    cap("n_test", QUICK_E_SIZE)
    if isinstance(p.get("attack"), (tuple, list)):
        p["attack"] = _sweep(_scale_counts(p["attack"], factors.get("n_train", 1.0)))
    if isinstance(p.get("checkpoints"), (tuple, list)) and p["checkpoints"]:
        ck = _sweep(p["checkpoints"])
        factor = epoch_factor if epoch_factor is not None else (
            QUICK_EPOCHS / max(ck) if "epochs" not in p and max(ck) > QUICK_EPOCHS else 1.0)
        p["checkpoints"] = _scale_counts(ck, factor) if factor != 1.0 else ck
    for key in ("cutoffs", "eps", "eps_sweep", "s_values", "b_values"):
        if isinstance(p.get(key), (tuple, list)):
            p[key] = _sweep(p[key])
    if isinstance(p.get("control"), Mapping):  # a positive control runs the same rule on another setting (F4)
        p["control"] = quick_params(p["control"])[0]
    p.update(overrides or {})
    changes = {k: [params.get(k), v] for k, v in p.items() if k not in params or params[k] != v}
    return p, changes


# ----------------------------------------------------------------------------- reproduction scale
# ``VOLBENCH_REPRODUCE=1`` runs the smoke cases at the largest scale a 2-core CPU affords in about
# 90 minutes (docs/reproduction/README.md): the same settings, data and code paths, with twice the
# smoke's seeds (at least the paper's ten, at most 20: the MNIST backbone's principled orderings
# passed on seeds 0-9 but were undecided on 10-19, docs/R2_DESIGN.md) wherever the smoke runs four
# or more, and twice the smoke's directions, in the settings that opt in (``"reproduce": True``:
# the volume studies of MNIST, Fashion-MNIST and the swiss roll; the others run at their smoke
# scale). Ids stay the same (they are names); each
# result records what was scaled (numbers.reproduction_scale) and is never compared with the
# smoke verdict baseline.
REPRODUCE_ENV = "VOLBENCH_REPRODUCE"
REPRODUCTION_SEEDS = 10       # at least the paper's seeds per setting (Fan et al.: ten)
REPRODUCTION_MAX_SEEDS = 20   # twice the smoke's ten: what the pooled disjoint-seed check pointed to
REPRODUCTION_MIN_SEEDS = 4    # settings with fewer seeds (E1's two, F10's three) study something else
REPRODUCTION_DIRECTIONS = 128  # K: twice the MNIST smoke's 64 (the paper's 500 at ~4x less measuring)


def reproducing() -> bool:
    """True under ``VOLBENCH_REPRODUCE=1`` (the reproduction scale of the smoke cases)."""
    return os.environ.get(REPRODUCE_ENV, "") not in ("", "0")


def reproduction_params(params: Mapping[str, Any]) -> tuple[dict, dict]:
    """``(params, {param: [smoke value, reproduction value]})`` at the reproduction scale.

    * ``seeds`` of four or more -> twice as many consecutive seeds from the first, at least
      :data:`REPRODUCTION_SEEDS` and at most :data:`REPRODUCTION_MAX_SEEDS`;
    * ``K`` (the main measurements' directions) -> at least :data:`REPRODUCTION_DIRECTIONS`;
      a direction sweep ``Ks`` gains it as its last point; ``K_small`` (E2, F5, F11: "few
      directions") and E3's ``K_e3`` are kept;
    * a ``control`` setting (F4) is scaled the same way.

    Parameters of a setting without ``"reproduce": True`` are kept.

    Example:
        >>> p, changed = reproduction_params({"seeds": (0, 1, 2, 3, 4), "K": 64, "K_small": 10, "Ks": (5, 64),
        ...                                   "reproduce": True})
        >>> p["seeds"], p["K"], p["K_small"], p["Ks"], sorted(changed)
        ((0, 1, 2, 3, 4, 5, 6, 7, 8, 9), 128, 10, (5, 64, 128), ['K', 'Ks', 'seeds'])
        >>> len(reproduction_params({"seeds": tuple(range(10)), "reproduce": True})[0]["seeds"])
        20
        >>> reproduction_params({"seeds": (0, 1), "K": 500, "reproduce": True})[1], reproduction_params({"K": 16})[1]
        ({}, {})
    """
    p = dict(params)
    if not p.get("reproduce"):
        return p, {}
    seeds = p.get("seeds")
    if isinstance(seeds, (tuple, list)) and len(seeds) >= REPRODUCTION_MIN_SEEDS:
        n = min(REPRODUCTION_MAX_SEEDS, max(REPRODUCTION_SEEDS, 2 * len(seeds)))
        p["seeds"] = tuple(range(seeds[0], seeds[0] + n))
    if isinstance(p.get("K"), int) and p["K"] < REPRODUCTION_DIRECTIONS:
        p["K"] = REPRODUCTION_DIRECTIONS
    if isinstance(p.get("Ks"), (tuple, list)) and max(p["Ks"]) < REPRODUCTION_DIRECTIONS:
        p["Ks"] = (*p["Ks"], REPRODUCTION_DIRECTIONS)
    if isinstance(p.get("control"), Mapping):
        p["control"] = reproduction_params(p["control"])[0]
    changes = {k: [params[k], p[k]] for k in p if k in params and p[k] != params[k] and k != "control"}
    return p, changes


def reproduction_case(case: Case) -> Case:
    """A smoke ``case`` at the reproduction scale: same id and code path, :func:`reproduction_params`."""
    if case.tier != "smoke":
        raise ValueError(f"{case.id}: the reproduction scale scales smoke cases (this one is {case.tier})")
    params, changes = reproduction_params(case.params)
    return replace(case, params=params, scale_changes=changes)


def quick_case(case: Case, overrides: Mapping[str, Any] | None = None) -> Case:
    """The quick twin of a nightly ``case``: same id and code path, tiny parameters, ``quick=True``."""
    if case.tier != "nightly":
        raise ValueError(f"{case.id}: only nightly cases have a quick twin (this one is {case.tier})")
    params, changes = quick_params(case.params, overrides)
    return replace(case, params=params, quick=True, quick_changes=changes)


def cases(claim: str, slug: str, *, smoke: Mapping[str, Any] | Sequence[Mapping[str, Any]] = (),
          nightly: Mapping[str, Any] | Sequence[Mapping[str, Any]] = (), setting: str | None = None,
          smoke_skip: str = "", **shared: Any) -> list[Case]:
    """The one table builder: the smoke and nightly ``Case`` rows of one claim (its title from
    ``volbench.claims.registry``). ``smoke`` / ``nightly``: a parameter dict or a list of them, each
    naming its setting (``"name"``) unless ``setting`` names them all; ``shared`` parameters go into
    every row. ``smoke_skip``: a smoke row for ``setting`` that skips with this measured reason (its
    tier cannot decide the claim)."""
    from volbench.claims.registry import claim_info

    info = claim_info(claim)
    if info is None:
        raise ValueError(f"claim {claim!r} is not in volbench.claims.registry; add it there first")

    def rows(params, tier):
        for p in ([params] if isinstance(params, Mapping) else list(params)):
            name = setting or p.get("name")
            if not name:
                raise ValueError(f"{claim}-{slug}: a {tier} row names no setting (pass setting= or a 'name')")
            yield Case(claim, slug, name, tier, {**p, **shared}, title=info.title)

    out = list(rows(smoke, "smoke")) + list(rows(nightly, "nightly"))
    if smoke_skip:
        if not setting:
            raise ValueError(f"{claim}-{slug}: smoke_skip needs the setting it skips")
        out.append(Case(claim, slug, setting, "smoke", {}, skip=smoke_skip, title=info.title))
    return out


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
    verdict is their conjunction (``verdict`` may then be omitted). The record carries this
    process's machine class and the moves against the verdict baseline that another machine class
    reports without failing (:func:`verdicts_hold` fails on the others)."""
    from volbench.claims.core import claim_verdict, deciding_statement

    statements = tuple(statements)
    if statements:
        combined = claim_verdict(list(statements))
        if verdict is not None and verdict != combined:
            raise ValueError(f"{case.id}: verdict {verdict!r} is not the conjunction {combined!r} of its statements")
        verdict = combined
        if statistic is None:  # the headline number: the statement that decided the verdict
            decider = deciding_statement(list(statements))
            statistic = None if decider is None else replace(
                decider.statistic, name=f"({decider.id}) {decider.statistic.name}")
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
    if case.quick:  # what was shrunk, so a quick record says at which scale it ran
        numbers = {**dict(numbers or {}), "quick_scale": {k: list(v) for k, v in case.quick_changes.items()}}
    if case.scale_changes:  # what the reproduction scale changed
        numbers = {**dict(numbers or {}), "reproduction_scale": {k: list(v) for k, v in case.scale_changes.items()}}
    result = CaseResult(
        claim=case.claim, case_id=case.id, verdict=verdict, estimator=estimator, title=case.title,
        tier=case.tier, statistic=statistic, rule=rule, paper_value=paper_value,
        numbers=dict(numbers or {}), series=tuple(series), seconds=timing["wall_seconds"],
        device=str(device), seeds=dict(seeds), reason=reason, statements=statements, quick=case.quick,
        timing=timing, machine=machine_class().to_dict(),  # the run's class, not the case's own device
    )
    try:
        comparisons = baseline_comparisons([result])
    except BaselineError:  # a missing or broken baseline: verdicts_hold fails the test, after this records
        comparisons = []
    if comparisons and comparisons[0].reported:
        result = replace(result, baseline_moves=comparisons[0].moves_block())
    return record_case(result)


def judge_each(estimators: Sequence[str], case: Case, judge, *, record_case, strict: bool, device) -> bool:
    """The frame every case shares: for each estimator, start the clock, let ``judge(estimator)``
    measure and call the claim's rule (it returns :func:`finish`'s keyword arguments: statements,
    seeds, numbers, series, ...), record the result; then check every verdict against the
    checked-in baseline (failing the test, naming what moved). Returns True, so a case reads
    ``assert judge_each(...)``."""
    results = []
    for estimator in estimators:
        clock = start()
        # a case that runs on one device whatever the session's (F12 on the CPU) returns its own
        results.append(finish(record_case, case, estimator, started=clock, **{"device": device, **judge(estimator)}))
    return verdicts_hold(results, strict)


BASELINE = Path(__file__).resolve().parent / "baseline" / "smoke.json"


def baseline_comparisons(results: Sequence[CaseResult]) -> list[BaselineComparison]:
    """Each result against the checked-in verdict baseline, as its recorded machine class judges
    it (smoke tier, real runs only; none with ``VOLBENCH_BASELINE=off``; another file with
    ``VOLBENCH_BASELINE=PATH``; ``VOLBENCH_BASELINE_MATCH=strict`` fails every move)."""
    path = baseline_path()
    results = [r for r in results if r.tier == "smoke" and not r.quick]
    if path is None or not results:
        return []
    baseline = load_baseline(path)
    return [compare_with_baseline(r, baseline) for r in results]


def baseline_path() -> Path | None:
    """``VOLBENCH_BASELINE`` if set (None for "off"), else the checked-in baseline; None in a study
    run (the reproduction scale, or seeds shifted by ``VOLBENCH_SEED_OFFSET``), whose verdicts are
    not the smoke tier's."""
    setting = os.environ.get(BASELINE_ENV, "").strip()
    if setting.lower() == "off" or reproducing() or seed_offset():
        return None
    return Path(setting) if setting else BASELINE


def verdicts_hold(results: Sequence[CaseResult], strict: bool) -> bool:
    """True when no verdict of ``results`` moved against the checked-in baseline in a way that
    fails (any move on the baseline's machine class; on another, a flip between pass and fail or a
    changed set of statements) and, with --strict-claims, none is fail or inconclusive; otherwise
    the test fails here, naming the case, the old and new verdict and both statistics. Cases call
    it as ``assert verdicts_hold(...)``."""
    comparisons = baseline_comparisons(results)
    problems = [line for c in comparisons for line in c.failures]
    if problems:
        other = next((c for c in comparisons if c.failures and not c.one_class), None)
        where = (f" (recorded on {describe_machine(other.recorded_on)}; this run is on "
                 f"{describe_machine(other.machine)}, where only flips between pass and fail and changed "
                 f"statements fail)" if other else "")
        pytest.fail(f"verdict moved against the verdict baseline {baseline_path()}{where}:\n  "
                    + "\n  ".join(problems)
                    + "\nIf the change is intended, run `volbench baseline update` and commit the diff with the reason "
                      "in the commit message.", pytrace=False)
    if strict:
        bad = [f"{r.estimator}: {r.verdict}" for r in results if r.verdict in ("fail", "inconclusive")]
        if bad:
            pytest.fail("claim not reproduced: " + "; ".join(bad))
    return True
