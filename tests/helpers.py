"""Helpers shared by the unit tests (import as `from helpers import ...`).

Tolerances on floating-point results come from derived error bounds, never from ulp counts seen
on one machine (issue R1, ``docs/NUMERICS_AUDIT.md``): a cost's value from
``ModelCost.rounding_bound``, a network's outputs from ``output_rounding_bound``, a sum or inner
product of n terms from Higham's ``gamma(n)``; radii and crossings by brackets in the cost domain
(``volbench.estimator.agreement``).
"""
from __future__ import annotations

import pytest
import torch

from volbench.costs.rounding import gamma, output_rounding_bound, unit_roundoff

__all__ = ["CUDA", "requires_cuda", "devices", "gamma", "unit_roundoff", "output_rounding_bound",
           "assert_within_rounding", "assert_agree_up_to_rounding", "loop_records"]

CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device; none is visible to torch")


def devices():
    """CPU always; CUDA as a `gpu`-marked param that skips without a GPU."""
    return [
        pytest.param("cpu", id="cpu"),
        pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, requires_cuda]),
    ]


def assert_within_rounding(actual, expected, cost, points, what: str, *, origin=None, roundoff=None) -> None:
    """|actual - expected| within ``cost.rounding_bound(points)`` (the derived bound on two
    evaluations of ``cost`` at ``points`` in different arithmetic orders), NaN where both are NaN."""
    a, b = actual.detach().double().cpu(), expected.detach().double().cpu()
    tol = cost.rounding_bound(points, origin=origin, roundoff=roundoff).cpu()
    diff = (a - b).abs()
    ok = (diff <= tol) | (torch.isnan(a) & torch.isnan(b))
    worst = int(torch.nan_to_num(diff / tol, nan=float("inf")).argmax())
    assert bool(ok.all()), (f"{what}: |diff| {float(diff[worst]):.3g} exceeds the derived rounding bound "
                            f"{float(tol[worst]):.3g}\nactual   {a.tolist()}\nexpected {b.tolist()}")


def assert_agree_up_to_rounding(records, what: str) -> None:
    """Gap-end records (``volbench.estimator.agreement``): two runs' brackets overlap, or the cost at
    both ends of each gap lies within the derived rounding bound of tau under every kernel."""
    bad = [r for r in records if not r["ratio"] <= 1]
    assert not bad, f"{what}: brackets disagree beyond rounding: {bad[:2]}"


def loop_records(est, loop, cost, tau: float, *, directions=None, origin=None) -> list[dict]:
    """Gap-end records of a reference estimate against the paper's sequential loop
    (``paper_loop_radii``: radii ``coef[j] ||g_k||``, NaN never crossed) along the same rays: empty
    when every crossing is the same grid point (``volbench.estimator.agreement``)."""
    from volbench.estimator.agreement import grid_brackets, loop_crossings, same_exits
    from volbench.estimator.directions import raw_gaussian, row_norms
    from volbench.estimator.reference import paper_coefficients

    coef = paper_coefficients()
    raw = directions if directions is not None else raw_gaussian(torch.arange(est.n_directions), est.n_params,
                                                                 est.config["seed"])
    j = loop_crossings(loop, row_norms(raw.to(torch.float32)), coef)
    return same_exits(est, grid_brackets(j, coef), [cost], tau, origin=origin, directions=directions)
