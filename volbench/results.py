"""The records a benchmark run writes: :class:`CaseResult` (one claim case, one estimator) and
:class:`RunReport` (one ``results.json``).

Only the standard library is used here, so the pytest plugin can import this module for every
pytest run at no cost.

A claim case (``cases/``) decides a verdict from a stated statistic and rule (see
``/work/shared/CLAIMS.md``) and hands a :class:`CaseResult` to the ``record_case`` fixture. The
record is read-only and JSON-able: mappings become ``MappingProxyType`` and sequences (lists,
numpy arrays, torch tensors) become tuples when it is built, so a later change to the caller's
arrays cannot change what was recorded.

JSON encoding. ``results.json`` is strict JSON (``allow_nan=False``) so any JSON reader can load
it. A non-finite float, e.g. ``log V = -inf`` for a minimum that has left the threshold (volume
zero, Fan et al. Sec. 5.4), is written as the string ``"-Infinity"`` (also ``"Infinity"``,
``"NaN"``) and read back as a float: a genuine string with one of these three spellings inside
``numbers`` or ``series`` is read back as a float too.

Example:
    >>> from volbench.results import CaseResult, Statistic
    >>> r = CaseResult(claim="F5", case_id="F5-power-law[mnist-mlp]", estimator="principled",
    ...                verdict="pass",
    ...                statistic=Statistic("alpha", -0.18, low=-0.21, high=-0.15, level=0.95),
    ...                rule="alpha < 0 and the 95% interval excludes 0", paper_value=-0.1835,
    ...                numbers={"log_volume": [-1.0e5, float("-inf")]})
    >>> CaseResult.from_dict(r.to_dict()) == r
    True
    >>> r.to_dict()["numbers"]["log_volume"]
    [-100000.0, '-Infinity']

Size: one concept, the result schema (statistics, statements, case results, run reports, their JSON
form and its validation), kept in one module so results.json has one definition.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

__all__ = [
    "SCHEMA_VERSION",
    "VERDICTS",
    "TIERS",
    "RUN_STATUSES",
    "SERIES_KINDS",
    "SchemaError",
    "Statistic",
    "Statement",
    "STATEMENT_VERDICTS",
    "combine_verdicts",
    "CaseResult",
    "RunReport",
]

#: Version of the ``results.json`` layout. Raise it when a field changes meaning or is removed;
#: readers refuse files with a newer version instead of misreading them. Version 2 added a
#: result's ``statements`` (sub-verdicts), ``quick`` and ``timing``; version 3 its ``machine`` and
#: ``baseline_moves``; version 4 a statement's ``margins`` (the lines its rule compares the
#: interval with: boundary, smallest effect of interest, equivalence bounds); older files still read.
SCHEMA_VERSION = 4

#: Verdicts a case may reach. "inconclusive": the statistic's interval straddles the rule's
#: boundary or the case could not be decided at this scale; "skip": not run (reason says why);
#: "error": the case broke before deciding.
VERDICTS = ("pass", "fail", "inconclusive", "skip", "error")
TIERS = ("smoke", "nightly")
#: Verdicts of one statement of a claim (a sub-verdict). "not-judged": the tier cannot afford
#: the measurement; its reason says why, measured, and it never counts as a pass.
STATEMENT_VERDICTS = ("pass", "fail", "inconclusive", "not-judged")
RUN_STATUSES = ("running", "complete", "interrupted")

#: Series kinds the renderers draw, with the keys each entry must have and the keys that must be
#: numeric arrays of one common length. Optional keys are listed in ``_SERIES_OPTIONAL``.
SERIES_KINDS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = MappingProxyType(
    {
        # log V of the minimum found at each training-set size D, with its power-law fit
        # (Fan et al. Sec. 5.3, eq. 4: log V = n*alpha*ln D + c).
        "volume_vs_data": (("x", "y"), ("x", "y", "y_low", "y_high")),
        # the K radii of one minimum (Fan et al. Fig. 9), natural log, parameter-space units.
        "radius_hist": (("minimum", "log_radii"), ()),
        # log V of one minimum across landscapes of growing size (Fan et al. Fig. 10 right).
        "volume_vs_landscape": (("minimum", "x", "y"), ("x", "y")),
        # log V across training checkpoints (Fan et al. Fig. 14; Scherlis & Belrose Sec. 5).
        "volume_vs_checkpoint": (
            ("x", "y"),
            ("x", "y", "test_accuracy", "train_accuracy", "train_loss"),
        ),
        # log V against the number of directions K (claim E1).
        "volume_vs_directions": (("x", "y"), ("x", "y", "y_low", "y_high")),
        # anything else: a labelled line (e.g. log V against log cutoff, claim S8).
        "xy": (("x", "y"), ("x", "y")),
    }
)

_SERIES_OPTIONAL: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "volume_vs_data": frozenset(
            {"y_low", "y_high", "points_x", "points_y", "fit", "n_params", "paper_alpha",
             "label", "x_label", "y_label", "title"}
        ),
        "radius_hist": frozenset({"landscape", "label", "title"}),
        "volume_vs_landscape": frozenset({"own_x", "label", "x_label", "y_label", "title"}),
        "volume_vs_checkpoint": frozenset(
            {"test_accuracy", "train_accuracy", "train_loss", "label", "x_label", "y_label",
             "title"}
        ),
        "volume_vs_directions": frozenset({"y_low", "y_high", "label", "x_label", "y_label",
                                           "title"}),
        "xy": frozenset({"label", "x_label", "y_label", "x_scale", "y_scale", "title"}),
    }
)
_FIT_KEYS = frozenset({"slope", "intercept", "slope_low", "slope_high", "r2", "level"})
_FIT_REQUIRED = ("slope", "intercept")

_NONFINITE_TO_JSON = MappingProxyType({"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"})
_NONFINITE_FROM_JSON = MappingProxyType(
    {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
)
_ID_RE = re.compile(r"^\S+$")


class SchemaError(ValueError):
    """A record or ``results.json`` does not follow the schema; the message names the field."""


# --------------------------------------------------------------------------- JSON-able values


def _freeze(value: Any, where: str) -> Any:
    """Return a read-only, JSON-able copy of ``value`` (mappings -> MappingProxyType, sequences
    and arrays -> tuples); raise TypeError naming ``where`` for anything else."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"{where} has a key {key!r} of type {type(key).__name__}; JSON object keys "
                    f"must be str (convert it, e.g. str(key))"
                )
            out[key] = _freeze(item, f"{where}[{key!r}]")
        return MappingProxyType(out)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(item, f"{where}[{i}]") for i, item in enumerate(value))
    # numpy scalars/arrays and torch tensors: tolist() gives plain Python numbers (and syncs a
    # device tensor), which is all a report needs.
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and hasattr(value, "dtype"):
        return _freeze(tolist(), where)
    raise TypeError(
        f"{where} holds a {type(value).__name__}, which is not JSON-able; record str, int, "
        f"float, bool, None, lists, dicts with str keys, numpy arrays or tensors (convert it, "
        f"e.g. float(x) or x.tolist())"
    )


def _thaw(value: Any) -> Any:
    """Plain dict/list copy of a frozen value, non-finite floats spelled as strings."""
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return _NONFINITE_TO_JSON[repr(value)]
    return value


def _unjson(value: Any) -> Any:
    """Inverse of :func:`_thaw` for values read back from JSON."""
    if isinstance(value, str):
        return _NONFINITE_FROM_JSON.get(value, value)
    if isinstance(value, Mapping):
        return {key: _unjson(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unjson(item) for item in value]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: Any, where: str, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, str) and value in _NONFINITE_FROM_JSON:
        return _NONFINITE_FROM_JSON[value]
    if hasattr(value, "item") and hasattr(value, "dtype"):  # 0-d numpy array or tensor
        value = value.item()
    if not _is_number(value):
        raise TypeError(f"{where} must be a real number{' or None' if optional else ''}, "
                        f"got {value!r} ({type(value).__name__})")
    return float(value)


def _text(value: Any, where: str, *, nonempty: bool = False) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{where} must be a str, got {value!r} ({type(value).__name__})")
    if nonempty and not value.strip():
        raise SchemaError(f"{where} must not be empty")
    return value


# --------------------------------------------------------------------------- Statistic


@dataclass(frozen=True)
class Statistic:
    """The number a verdict is decided from, with its interval.

    Attributes:
        name: what it is, e.g. ``"alpha"`` (Fan et al. eq. 4: slope of log V on ln D divided by n)
            or ``"spearman rho"``.
        value: point estimate (may be nan when it could not be computed; say why in ``reason``).
        low, high: interval bounds, both or neither (``low <= high``).
        level: the interval's coverage, e.g. 0.95, in (0, 1).
        unit: unit of ``value`` (empty for dimensionless numbers).

    Example:
        >>> Statistic("alpha", -0.1835, low=-0.2, high=-0.17, level=0.95).format()
        'alpha = -0.1835 [-0.2, -0.17] (95%)'
    """

    name: str
    value: float
    low: float | None = None
    high: float | None = None
    level: float | None = None
    unit: str = ""

    def __post_init__(self) -> None:
        _text(self.name, "Statistic.name", nonempty=True)
        _text(self.unit, "Statistic.unit")
        object.__setattr__(self, "value", _number(self.value, "Statistic.value"))
        low = _number(self.low, "Statistic.low", optional=True)
        high = _number(self.high, "Statistic.high", optional=True)
        if (low is None) != (high is None):
            raise SchemaError("Statistic needs both low and high (an interval) or neither")
        if low is not None and not low <= high:
            raise SchemaError(f"Statistic interval is reversed: low={low!r} > high={high!r}; "
                              f"pass the lower bound as low")
        level = _number(self.level, "Statistic.level", optional=True)
        if level is not None and not 0.0 < level < 1.0:
            raise SchemaError(f"Statistic.level is the interval's coverage in (0, 1), got "
                              f"{level!r} (write 0.95, not 95)")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "level", level)

    def format(self, digits: int = 4) -> str:
        """Short text such as ``alpha = -0.1835 [-0.2, -0.17] (95%)``."""
        unit = f" {self.unit}" if self.unit else ""
        text = f"{self.name} = {_fmt(self.value, digits)}{unit}"
        if self.low is not None:
            text += f" [{_fmt(self.low, digits)}, {_fmt(self.high, digits)}]"
            if self.level is not None:
                text += f" ({self.level * 100:g}%)"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _thaw(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Statistic:
        _check_keys(data, cls, "statistic")
        return cls(**{key: _unjson(value) for key, value in data.items()})


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}[repr(value)]
    return f"{value:.{digits}g}"


def _check_keys(data: Any, cls: type, where: str) -> None:
    if not isinstance(data, Mapping):
        raise SchemaError(f"{where} must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SchemaError(f"{where} has unknown field(s) {unknown}; known fields: "
                          f"{sorted(known)} (a file from a newer volbench?)")


# --------------------------------------------------------------------------- Statement


def combine_verdicts(verdicts: Sequence[str]) -> str:
    """A claim's verdict from its statements' verdicts: their conjunction, fail dominating, then
    inconclusive; "not-judged" statements are left out (never a pass), and a claim with no judged
    statement is "skip".

    >>> combine_verdicts(["pass", "not-judged", "pass"]), combine_verdicts(["pass", "inconclusive"])
    ('pass', 'inconclusive')
    >>> combine_verdicts(["inconclusive", "fail"]), combine_verdicts(["not-judged"])
    ('fail', 'skip')
    """
    for verdict in verdicts:
        if verdict not in STATEMENT_VERDICTS:
            raise SchemaError(f"statement verdict {verdict!r} is not one of {STATEMENT_VERDICTS}")
    judged = [v for v in verdicts if v != "not-judged"]
    if not judged:
        return "skip"
    if "fail" in judged:
        return "fail"
    if "inconclusive" in judged:
        return "inconclusive"
    return "pass"


@dataclass(frozen=True)
class Statement:
    """One statement of a claim (a row of CLAIMS.md's "statements each case judges"), judged on
    its own: a sub-verdict with its statistic, rule and interval.

    Attributes:
        id: short stable id within the claim, e.g. ``"a"``, ``"b"`` or ``"b.cnn-shallower"``.
        text: what the paper says, in one line.
        verdict: one of :data:`STATEMENT_VERDICTS`.
        statistic: the number it is decided from (needed for "pass" and "fail").
        rule: the decision rule in words (needed for "pass" and "fail").
        reason: why it is "inconclusive" (with what would decide it) or "not-judged" (the measured
            reason the tier cannot afford it); required for those two.
        paper: the paper's number or figure statement beside ours, e.g. ``"alpha = -0.1835 (Table 1)"``.
        numbers: named JSON-able values behind the decision.
        needs: the optional extra (``pip install -e '.[NAME]'``) whose absence left the statement
            "not-judged", e.g. ``"crosscheck"`` for devinterp; empty otherwise. Such a statement is
            not compared with the verdict baseline, which records it as judged with the extra.
        margins: the lines the rule compares the statistic's interval with, in its unit, for the
            report's forest plot: ``claimed`` ("above", "below" or "inside"), ``boundary`` and
            ``smallest_effect`` (the smallest effect of interest as a signed position) for a
            one-sided rule, ``low`` and ``high`` for an equivalence test; empty where the rule is
            not an interval against lines.

    Example:
        >>> st = Statement("a", "alpha < 0", "pass", Statistic("alpha", -0.18, low=-0.2, high=-0.1,
        ...                level=0.95), rule="pass if the interval is below 0")
        >>> Statement.from_dict(st.to_dict()) == st
        True
    """

    id: str
    text: str
    verdict: str
    statistic: Statistic | None = None
    rule: str = ""
    reason: str = ""
    paper: str = ""
    numbers: Mapping[str, Any] = field(default_factory=dict)
    needs: str = ""
    margins: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        value = _text(self.id, "Statement.id", nonempty=True)
        if not _ID_RE.match(value):
            raise SchemaError(f"Statement.id {value!r} must not contain whitespace")
        for name in ("text", "rule", "reason", "paper", "needs"):
            _text(getattr(self, name), f"Statement.{name}")
        if self.needs and self.verdict != "not-judged":
            raise SchemaError(f"statement {self.id!r} names a missing extra ({self.needs!r}) but has verdict "
                              f"{self.verdict!r}; only a not-judged statement can need an extra")
        if self.verdict not in STATEMENT_VERDICTS:
            raise SchemaError(f"Statement.verdict is {self.verdict!r}; use one of {STATEMENT_VERDICTS}")
        statistic = self.statistic
        if isinstance(statistic, Mapping):
            statistic = Statistic.from_dict(statistic)
        if statistic is not None and not isinstance(statistic, Statistic):
            raise TypeError(f"Statement.statistic must be a Statistic, a dict or None, got {type(statistic).__name__}")
        object.__setattr__(self, "statistic", statistic)
        if self.verdict in ("pass", "fail") and (statistic is None or not self.rule.strip()):
            raise SchemaError(f"statement {self.id!r} with verdict {self.verdict!r} needs its statistic and rule")
        if self.verdict in ("inconclusive", "not-judged") and not self.reason.strip():
            raise SchemaError(f"statement {self.id!r} with verdict {self.verdict!r} needs a reason")
        if not isinstance(self.numbers, Mapping):
            raise TypeError("Statement.numbers must be a dict with str keys")
        object.__setattr__(self, "numbers", _freeze(self.numbers, f"Statement[{self.id!r}].numbers"))
        if not isinstance(self.margins, Mapping):
            raise TypeError("Statement.margins must be a dict (claimed side, boundary, smallest_effect, low, high)")
        bad = set(self.margins) - {"claimed", "boundary", "smallest_effect", "low", "high"}
        if bad:
            raise SchemaError(f"Statement[{self.id!r}].margins has unknown key(s) {sorted(bad)}; use claimed, "
                              "boundary, smallest_effect (one-sided rules) or low, high (equivalence tests)")
        if self.margins and self.margins.get("claimed") not in ("above", "below", "inside"):
            raise SchemaError(f"Statement[{self.id!r}].margins['claimed'] is {self.margins.get('claimed')!r}; "
                              "use 'above', 'below' or 'inside'")
        object.__setattr__(self, "margins", _freeze(self.margins, f"Statement[{self.id!r}].margins"))

    def __reduce__(self):
        return (Statement.from_dict, (self.to_dict(),))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, Statistic) else _thaw(value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Statement:
        _check_keys(data, cls, "statement")
        kwargs = dict(data)
        if "numbers" in kwargs:
            kwargs["numbers"] = _unjson(kwargs["numbers"])
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise SchemaError(str(exc)) from exc

    def format(self, digits: int = 3) -> str:
        """``(a) pass: alpha = -0.18 [-0.2, -0.1] (95%)`` or the reason."""
        what = self.statistic.format(digits) if self.statistic is not None else self.reason
        if self.statistic is not None and self.verdict in ("inconclusive", "not-judged") and self.reason:
            what += f"; {self.reason}"
        return f"({self.id}) {self.verdict}: {what}"


# --------------------------------------------------------------------------- series


def _check_series(entry: Mapping[str, Any], where: str) -> None:
    kind = entry.get("kind")
    if kind not in SERIES_KINDS:
        raise SchemaError(f"{where}['kind'] is {kind!r}; use one of {sorted(SERIES_KINDS)} "
                          f"(\"xy\" draws any labelled line)")
    required, arrays = SERIES_KINDS[kind]
    allowed = {"kind", *required, *_SERIES_OPTIONAL[kind]}
    missing = [key for key in required if key not in entry]
    if missing:
        raise SchemaError(f"{where} (kind {kind!r}) is missing {missing}")
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise SchemaError(f"{where} (kind {kind!r}) has unknown key(s) {unknown}; allowed: "
                          f"{sorted(allowed)}")
    lengths = {}
    for key in (*arrays, "log_radii", "points_x", "points_y"):
        if key not in entry:
            continue
        values = entry[key]
        if not isinstance(values, tuple) or not all(_is_number(v) for v in values):
            raise SchemaError(f"{where}[{key!r}] must be a flat list of numbers")
        if key in arrays:
            lengths[key] = len(values)
    if len(set(lengths.values())) > 1:
        raise SchemaError(f"{where} arrays differ in length: {lengths}; they are paired "
                          f"point by point")
    if ("points_x" in entry) != ("points_y" in entry) or (
        "points_x" in entry and len(entry["points_x"]) != len(entry["points_y"])
    ):
        raise SchemaError(f"{where} needs points_x and points_y of equal length together")
    if ("y_low" in entry) != ("y_high" in entry):
        raise SchemaError(f"{where} needs y_low and y_high together (an interval per point)")
    for key in ("minimum", "label", "landscape", "x_label", "y_label", "title"):
        if key in entry and not isinstance(entry[key], str):
            raise SchemaError(f"{where}[{key!r}] must be a str")
    for key in ("x_scale", "y_scale"):
        if key in entry and entry[key] not in ("linear", "log", "symlog"):
            raise SchemaError(f"{where}[{key!r}] must be 'linear', 'log' or 'symlog'")
    for key in ("n_params", "paper_alpha", "own_x"):
        if key in entry and not _is_number(entry[key]):
            raise SchemaError(f"{where}[{key!r}] must be a number")
    if kind == "volume_vs_data":
        if any(not v > 0 for v in entry["x"]):
            raise SchemaError(f"{where}['x'] holds dataset sizes, which must be > 0 "
                              f"(the fit is in ln D)")
        if "n_params" in entry and not entry["n_params"] >= 1:
            raise SchemaError(f"{where}['n_params'] must be >= 1")
        if "paper_alpha" in entry and "n_params" not in entry:
            raise SchemaError(f"{where} has paper_alpha but no n_params; alpha = slope / n "
                              f"(Fan et al. eq. 4), so give n_params too")
        fit = entry.get("fit")
        if fit is not None:
            if not isinstance(fit, Mapping):
                raise SchemaError(f"{where}['fit'] must be a mapping")
            unknown = sorted(set(fit) - _FIT_KEYS)
            missing = [k for k in _FIT_REQUIRED if k not in fit]
            if unknown or missing:
                raise SchemaError(f"{where}['fit'] needs {list(_FIT_REQUIRED)} and may have "
                                  f"{sorted(_FIT_KEYS)}; missing {missing}, unknown {unknown}")
            if not all(_is_number(v) for v in fit.values()):
                raise SchemaError(f"{where}['fit'] values must be numbers")


# --------------------------------------------------------------------------- CaseResult


@dataclass(frozen=True)
class CaseResult:
    """What one claim case found with one estimator (one row of the report).

    Attributes:
        claim: claim id from CLAIMS.md, e.g. ``"F1"``.
        case_id: stable id, e.g. ``"F1-poison-smaller[mnist-mlp]"``; ``volbench compare`` matches
            runs on (case_id, estimator).
        verdict: one of :data:`VERDICTS`. "pass"/"fail" need ``statistic`` and ``rule``;
            "skip", "inconclusive" and "error" need ``reason``.
        estimator: ``"reference"`` (the main paper's fixed-grid procedure), ``"principled"``
            (volbench's estimator), or "" when the case uses none.
        title: one line for humans.
        tier: ``"smoke"`` or ``"nightly"``.
        nodeid: pytest node id (the ``record_case`` fixture fills it in).
        statistic: the number the verdict is decided from (a :class:`Statistic` or its dict).
        rule: the decision rule in words, e.g. ``"pass if the 95% interval of alpha is below 0"``.
        paper_value: the paper's figure for the statistic, e.g. alpha = -0.1835 (Fan et al.
            Table 1), or None.
        numbers: named JSON-able scalars/lists (volumes, radius summaries, accuracies).
        series: entries drawn as plots, each a mapping with a ``"kind"`` from
            :data:`SERIES_KINDS` (see ``reports/README.md`` for every kind's keys).
        seconds: wall-clock seconds the case took (None if not measured).
        device: where it ran, e.g. ``"cpu"`` or ``"cuda:0"``.
        seeds: every seed the case used, e.g. ``{"model": [0, 1], "data": [10, 11],
            "directions": 0}``.
        reason: why a case was skipped, inconclusive or broke.
        outcome: pytest's outcome of the test that recorded it ("passed", "failed", "skipped",
            "error", "xfailed", "xpassed"); filled in by the report plugin, "" otherwise.
        statements: the claim's statements judged one by one (:class:`Statement`); when given,
            ``verdict`` must be their conjunction (:func:`combine_verdicts`).
        quick: True for a quick run (nightly code paths at tiny scale, CI): its verdicts check
            that the code runs and are never mixed with real ones.
        timing: where the seconds went: computed in this run versus served from caches (minima
            trained or reused, measurements computed or reused) and cost evaluations performed.
        machine: the machine class of the process that judged it
            (:func:`volbench.report.machine.machine_class`: CPU vendor, ISA level, threads, device,
            dtype, TF32, torch), set by ``cases/_support.finish``; ``volbench baseline update``
            records it with the baseline. Empty when unknown.
        baseline_moves: ``{"recorded_on": <the baseline's machine class or None>, "lines": [...]}``:
            the verdicts that moved against a verdict baseline recorded on another machine class
            between pass or fail and inconclusive, reported and not failing
            (:func:`volbench.report.baseline.compare_with_baseline`); empty when none.

    Records compare equal field by field and pickle through their JSON form; they are not
    hashable (they hold mappings).

    Example:
        >>> CaseResult(claim="Z4", case_id="Z4-boolean-sampling", verdict="skip",
        ...            reason="needs 1e8 samples; nightly tier only").verdict
        'skip'
    """

    claim: str
    case_id: str
    verdict: str
    estimator: str = ""
    title: str = ""
    tier: str = "smoke"
    nodeid: str = ""
    statistic: Statistic | None = None
    rule: str = ""
    paper_value: float | None = None
    numbers: Mapping[str, Any] = field(default_factory=dict)
    series: tuple[Mapping[str, Any], ...] = ()
    seconds: float | None = None
    device: str = "cpu"
    seeds: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    outcome: str = ""
    statements: tuple[Statement, ...] = ()
    quick: bool = False
    timing: Mapping[str, Any] = field(default_factory=dict)
    machine: Mapping[str, Any] = field(default_factory=dict)
    baseline_moves: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("claim", "case_id"):
            value = _text(getattr(self, name), f"CaseResult.{name}", nonempty=True)
            if not _ID_RE.match(value):
                raise SchemaError(f"CaseResult.{name} {value!r} must not contain whitespace "
                                  f"(it is used in ids, file names and -k expressions)")
        for name in ("estimator", "title", "nodeid", "rule", "device", "reason", "outcome"):
            _text(getattr(self, name), f"CaseResult.{name}")
        if self.verdict not in VERDICTS:
            raise SchemaError(f"CaseResult.verdict is {self.verdict!r}; use one of {VERDICTS}")
        if self.tier not in TIERS:
            raise SchemaError(f"CaseResult.tier is {self.tier!r}; use one of {TIERS}")
        statistic = self.statistic
        if isinstance(statistic, Mapping):
            statistic = Statistic.from_dict(statistic)
        if statistic is not None and not isinstance(statistic, Statistic):
            raise TypeError(f"CaseResult.statistic must be a Statistic, a dict or None, got "
                            f"{type(statistic).__name__}")
        object.__setattr__(self, "statistic", statistic)
        if self.verdict in ("pass", "fail") and (statistic is None or not self.rule.strip()):
            raise SchemaError(f"verdict {self.verdict!r} of {self.case_id} needs the statistic "
                              f"and the rule it was decided by (set statistic= and rule=)")
        if self.verdict in ("skip", "inconclusive", "error") and not self.reason.strip():
            raise SchemaError(f"verdict {self.verdict!r} of {self.case_id} needs a reason "
                              f"(set reason= to say why)")
        object.__setattr__(self, "paper_value",
                           _number(self.paper_value, "CaseResult.paper_value", optional=True))
        seconds = _number(self.seconds, "CaseResult.seconds", optional=True)
        if seconds is not None and not seconds >= 0:
            raise SchemaError(f"CaseResult.seconds must be >= 0, got {seconds!r}")
        object.__setattr__(self, "seconds", seconds)
        for name in ("numbers", "seeds"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise TypeError(f"CaseResult.{name} must be a dict with str keys, got "
                                f"{type(value).__name__}"
                                + (" (e.g. seeds={'model': [0, 1], 'directions': 0})"
                                   if name == "seeds" else ""))
            object.__setattr__(self, name, _freeze(value, f"CaseResult.{name}"))
        statements = self.statements
        if isinstance(statements, Mapping) or not isinstance(statements, Sequence):
            raise TypeError("CaseResult.statements must be a list of Statement records")
        statements = tuple(Statement.from_dict(st) if isinstance(st, Mapping) else st for st in statements)
        for i, st in enumerate(statements):
            if not isinstance(st, Statement):
                raise TypeError(f"CaseResult.statements[{i}] must be a Statement, got {type(st).__name__}")
        ids = [st.id for st in statements]
        if len(set(ids)) != len(ids):
            raise SchemaError(f"{self.case_id}: statement ids repeat: {ids}")
        if statements and self.verdict in ("pass", "fail", "inconclusive", "skip"):
            combined = combine_verdicts([st.verdict for st in statements])
            if combined != self.verdict:
                raise SchemaError(f"verdict {self.verdict!r} of {self.case_id} is not the conjunction of its "
                                  f"statements ({', '.join(f'{st.id}: {st.verdict}' for st in statements)} "
                                  f"-> {combined!r})")
        object.__setattr__(self, "statements", statements)
        if not isinstance(self.quick, bool):
            raise TypeError(f"CaseResult.quick must be a bool, got {type(self.quick).__name__}")
        if not isinstance(self.timing, Mapping):
            raise TypeError("CaseResult.timing must be a dict with str keys")
        object.__setattr__(self, "timing", _freeze(self.timing, "CaseResult.timing"))
        for name in ("machine", "baseline_moves"):
            if not isinstance(getattr(self, name), Mapping):
                raise TypeError(f"CaseResult.{name} must be a dict with str keys")
            object.__setattr__(self, name, _freeze(getattr(self, name), f"CaseResult.{name}"))
        moves = self.baseline_moves
        if moves and (set(moves) != {"recorded_on", "lines"} or not isinstance(moves["lines"], tuple)
                      or not moves["lines"] or not all(isinstance(line, str) for line in moves["lines"])):
            raise SchemaError(f"CaseResult.baseline_moves of {self.case_id} must be empty or "
                              f"{{'recorded_on': <machine class or None>, 'lines': [<text>, ...]}}")
        series = self.series
        if isinstance(series, Mapping) or not isinstance(series, Sequence):
            raise TypeError("CaseResult.series must be a list of mappings, each with a 'kind'")
        frozen = []
        for i, entry in enumerate(series):
            if not isinstance(entry, Mapping):
                raise TypeError(f"CaseResult.series[{i}] must be a mapping with a 'kind', got "
                                f"{type(entry).__name__}")
            entry = _freeze(entry, f"CaseResult.series[{i}]")
            _check_series(entry, f"CaseResult.series[{i}]")
            frozen.append(entry)
        object.__setattr__(self, "series", tuple(frozen))

    def __reduce__(self):
        # MappingProxyType cannot be pickled; go through the JSON form (pytest-xdist, multiprocessing).
        return (CaseResult.from_dict, (self.to_dict(),))

    @property
    def key(self) -> tuple[str, str]:
        """(case_id, estimator): what ``volbench compare`` matches runs on."""
        return (self.case_id, self.estimator)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (strict JSON: non-finite floats spelled as strings)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "statements":
                out[f.name] = [st.to_dict() for st in value]
            else:
                out[f.name] = value.to_dict() if isinstance(value, Statistic) else _thaw(value)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseResult:
        """Build and validate a record from :meth:`to_dict`'s output (raises SchemaError)."""
        _check_keys(data, cls, "case result")
        missing = [name for name in ("claim", "case_id", "verdict") if name not in data]
        if missing:
            raise SchemaError(f"case result is missing {missing}")
        kwargs = dict(data)
        for name in ("numbers", "seeds", "series", "timing"):
            if name in kwargs:
                kwargs[name] = _unjson(kwargs[name])
        if "statements" in kwargs:
            if not isinstance(kwargs["statements"], list):
                raise SchemaError("case result 'statements' must be a list")
            kwargs["statements"] = tuple(Statement.from_dict(st) for st in kwargs["statements"])
        for name in ("paper_value", "seconds"):
            if name in kwargs:
                kwargs[name] = _unjson(kwargs[name])
        try:
            return cls(**kwargs)
        except TypeError as exc:  # wrong types inside a file are a schema problem, not a bug
            raise SchemaError(str(exc)) from exc

    @classmethod
    def from_json(cls, text: str) -> CaseResult:
        return cls.from_dict(json.loads(text))


# --------------------------------------------------------------------------- RunReport


@dataclass(frozen=True)
class RunReport:
    """One benchmark run: the content of ``reports/<run-id>/results.json``.

    Attributes:
        run_id: ``<UTC timestamp>-<6 hex>``, e.g. ``20250101T120000Z-1a2b3c``.
        started, finished: ISO 8601 UTC times (finished is None while running).
        status: ``"running"`` (written after every test; a killed run stays so),
            ``"complete"`` or ``"interrupted"``.
        exit_status: pytest's exit code once finished.
        environment: the block from :func:`volbench.report.envinfo.collect_environment`.
        results: every recorded :class:`CaseResult`, in recording order.
        schema_version: :data:`SCHEMA_VERSION` of the writer.

    Example:
        >>> run = RunReport(run_id="20250101T120000Z-1a2b3c", started="2025-01-01T12:00:00Z")
        >>> RunReport.from_dict(run.to_dict()) == run
        True
    """

    run_id: str
    started: str
    status: str = "running"
    finished: str | None = None
    exit_status: int | None = None
    environment: Mapping[str, Any] = field(default_factory=dict)
    results: tuple[CaseResult, ...] = ()
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        _text(self.run_id, "RunReport.run_id", nonempty=True)
        _text(self.started, "RunReport.started", nonempty=True)
        if self.finished is not None:
            _text(self.finished, "RunReport.finished")
        if self.status not in RUN_STATUSES:
            raise SchemaError(f"RunReport.status is {self.status!r}; use one of {RUN_STATUSES}")
        if self.exit_status is not None and (
            isinstance(self.exit_status, bool) or not isinstance(self.exit_status, int)
        ):
            raise TypeError("RunReport.exit_status must be an int or None")
        if not isinstance(self.schema_version, int) or isinstance(self.schema_version, bool):
            raise SchemaError("schema_version must be an int")
        if self.schema_version > SCHEMA_VERSION:
            raise SchemaError(f"results.json has schema version {self.schema_version}, newer "
                              f"than this volbench reads ({SCHEMA_VERSION}); upgrade volbench")
        if self.schema_version < 1:
            raise SchemaError(f"schema_version must be >= 1, got {self.schema_version}")
        if not isinstance(self.environment, Mapping):
            raise TypeError("RunReport.environment must be a mapping")
        object.__setattr__(self, "environment",
                           _freeze(self.environment, "RunReport.environment"))
        results = tuple(self.results)
        for i, result in enumerate(results):
            if not isinstance(result, CaseResult):
                raise TypeError(f"RunReport.results[{i}] must be a CaseResult, got "
                                f"{type(result).__name__}")
        object.__setattr__(self, "results", results)

    def __reduce__(self):
        return (RunReport.from_dict, (self.to_dict(),))

    def verdict_counts(self) -> dict[str, int]:
        """Number of results per verdict, in :data:`VERDICTS` order, zeros omitted."""
        counts = {verdict: 0 for verdict in VERDICTS}
        for result in self.results:
            counts[result.verdict] += 1
        return {verdict: n for verdict, n in counts.items() if n}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "run_id": self.run_id,
            "started": self.started,
            "finished": self.finished,
            "status": self.status,
            "exit_status": self.exit_status,
            "environment": _thaw(self.environment),
            "results": [result.to_dict() for result in self.results],
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, indent=indent) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunReport:
        """Validate and build a run from parsed ``results.json`` (raises SchemaError)."""
        if not isinstance(data, Mapping):
            raise SchemaError(f"results.json must hold a JSON object, got {type(data).__name__}")
        if "schema_version" not in data:
            raise SchemaError("results.json has no schema_version; it was not written by volbench")
        _check_keys(data, cls, "results.json")
        kwargs = dict(data)
        results = kwargs.get("results", [])
        if not isinstance(results, list):
            raise SchemaError("results.json 'results' must be a list")
        parsed = []
        for i, item in enumerate(results):
            try:
                parsed.append(CaseResult.from_dict(item))
            except SchemaError as exc:
                raise SchemaError(f"results[{i}]: {exc}") from exc
        kwargs["results"] = tuple(parsed)
        kwargs["environment"] = _unjson(kwargs.get("environment", {}))
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise SchemaError(str(exc)) from exc

    @classmethod
    def from_json(cls, text: str) -> RunReport:
        return cls.from_dict(json.loads(text))
