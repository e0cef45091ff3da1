"""One walk, many answers (issue Q3): the ray-interface walks against separate runs and the loop.

* The paper mode through the ray interface (first-layer cache) gives the sequential loop's grid
  crossings, for several thresholds and nested landscapes from one walk, up to rounding: the same
  grid point, or a disagreement at a point whose cost lies within the derived rounding bound of
  tau under every kernel (``volbench.estimator.agreement``; the loop evaluates one point per call,
  the walk batches of points: another arithmetic order). A threshold placed exactly on a grid cost
  is decided through the plain path in the very arithmetic of the loop, so there it is exact.
* The principled estimator's shared walk answers every (landscape, threshold) within the
  resolution bracket of a separate run: the two [inside, outside] brackets of every ray overlap,
  or their gap is explained by rounding in the same way.

Small MLPs in float32 on synthetic data keep it fast; the MNIST-scale check is the lab test.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from volbench import estimate_log_volume, reference_log_volume
from volbench.costs import ModelCost
from volbench.estimator.agreement import same_exits
from volbench.estimator.core import estimate_log_volume_many
from volbench.estimator.reference import paper_coefficients, paper_loop_radii, reference_log_volume_many

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/ for helpers
from helpers import assert_agree_up_to_rounding, loop_records  # noqa: E402


def _landscape(seed: int, n: int = 300, dtype=torch.float32) -> ModelCost:
    """An MLP trained a little on a teacher's labels, so that costs grow along rays from it."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    teacher = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    with torch.no_grad():
        y = teacher(x).argmax(1)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return ModelCost(model.to(dtype), x.to(dtype), y, loss="ce", dtype=dtype)


THRESHOLDS = (0.2, 0.35, 0.6)


def test_paper_mode_through_rays_equals_the_loop_for_every_threshold():
    cost = _landscape(0)
    assert cost.path == "matmul" and cost.first_layer_cache
    many = reference_log_volume_many(cost, cost.anchor, thresholds=THRESHOLDS, n_directions=6, seed=2, lookahead=3)
    for tau in THRESHOLDS:
        est = many[(None, tau)]
        loop = paper_loop_radii(cost, cost.anchor, threshold=tau, n_directions=6, seed=2)
        assert_agree_up_to_rounding(loop_records(est, loop, cost, tau), f"walk vs loop, tau {tau}")
        single = reference_log_volume(cost, cost.anchor, threshold=tau, n_directions=6, seed=2)
        assert_agree_up_to_rounding(same_exits(single, est, [cost], tau), "one walk must answer like one run per tau")
    walk = many[(None, THRESHOLDS[0])].config["walk"]
    assert walk["questions"] == 3 and walk["cost_evals"] < sum(
        reference_log_volume(cost, cost.anchor, threshold=t, n_directions=6, seed=2).n_cost_evals for t in THRESHOLDS)


def test_paper_mode_decides_a_tie_on_the_plain_path_like_the_loop():
    """tau set to the plain path's own cost at a grid point, computed as the loop computes it (one
    point per call): the loop's `cost > tau` is False there. The first-layer path's value lies
    within the derived rounding bound of tau, which the margin covers (test_costs), so the walk
    must re-decide through the plain path (n_verified > 0). One ray and lookahead 1: that
    re-decision evaluates the one point alone, the loop's very arithmetic, so it is exact here
    (on every machine) and the crossing lies past j; the rest agrees with the loop up to rounding."""
    cost = _landscape(1)
    coef = paper_coefficients()
    g = torch.randn(1, cost.n_params, generator=torch.Generator().manual_seed(5))
    scale = cost.filter_scale()
    delta = g * scale
    values = cost(torch.mul(coef.float()[:, None], delta).add_(cost.anchor))
    j = int((values > 0.3).nonzero()[0])  # the first grid point above 0.3
    # exactly the plain cost there, formed and evaluated as the loop does: not a crossing (> is strict)
    tau = float(cost((cost.anchor + coef.float()[j] * delta[0]).unsqueeze(0))[0])
    est = reference_log_volume(cost, cost.anchor, threshold=tau, directions=g, lookahead=1)
    loop = paper_loop_radii(cost, cost.anchor, threshold=tau, directions=g)
    assert int(est.crossing_index[0]) > j, "a cost equal to tau is not above it"
    assert_agree_up_to_rounding(loop_records(est, loop, cost, tau, directions=g), "tie vs loop")
    assert est.config["n_verified"] >= 1, "the tie had to be decided on the plain path"


def test_nested_landscapes_from_one_walk_equal_separate_landscape_costs():
    cost = _landscape(2, n=400)
    sizes = (60, 150, 400)
    many = reference_log_volume_many(cost, cost.anchor, thresholds=(0.3, 0.5), sizes=sizes, n_directions=5, seed=4)
    for size in sizes:
        sub = cost.prefix(size)
        for tau in (0.3, 0.5):
            got = many[(size, tau)]
            if float(sub(sub.anchor[None])[0]) >= tau:
                assert got is None, "an anchor outside its basin gives no estimate"
                continue
            loop = paper_loop_radii(sub, sub.anchor, threshold=tau, n_directions=5, seed=4)
            assert_agree_up_to_rounding(loop_records(got, loop, sub, tau), f"size {size}, tau {tau}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_principled_shared_walk_is_within_the_separate_runs_bracket(dtype):
    cost = _landscape(3, n=400, dtype=dtype)
    sizes = (100, 400)
    kw = dict(n_directions=8, seed=1, directions="filter", rtol=1e-3, dtype=dtype)
    many = estimate_log_volume_many(cost, cost.anchor, thresholds=(0.3, 0.5), sizes=sizes, **kw)
    for size in sizes:
        sub = cost.prefix(size)
        for tau in (0.3, 0.5):
            got = many[(size, tau)]
            if float(sub(sub.anchor[None])[0]) >= tau:
                assert got is None
                continue
            alone = estimate_log_volume(sub, sub.anchor, threshold=tau, **kw)
            # Both brackets hold the ray's first exit: they overlap, or the cost at both ends of their
            # gap lies within the derived rounding bound of tau (another batch: another order).
            assert_agree_up_to_rounding(same_exits(got, alone, [sub], tau), f"size {size}, tau {tau}")
            assert got.config["landscape_size"] == size and got.config["threshold"] == tau
    walk = many[(100, 0.3)].config["walk"]
    assert walk["questions"] == 4
