"""The main paper's procedure: batched ``reference_log_volume`` against a plain sequential loop
over directions and grid points (the oracle, written independently here in plain Python).

The loop evaluates one point per call, the batched procedure many: the same arithmetic per point
except where a kernel's order depends on the batch, so they must cross at the same grid point, or
disagree only at a point whose cost lies within the derived rounding bound of tau under both
(``volbench.estimator.agreement``; the toy costs' bounds are derived below)."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from volbench import reference_log_volume
from volbench.costs.rounding import gamma
from volbench.crosscheck.oracles import HyperbolicBand, QuadraticCost
from volbench.estimator.agreement import bracket_gaps, gap_end_costs, grid_brackets, loop_crossings, plain_kernel
from volbench.estimator.directions import raw_gaussian
from volbench.estimator.reference import paper_coefficients, paper_loop_radii


def sequential_oracle(cost, anchor, threshold, raw, scale, coefficients):
    """For each direction, for each grid point: one cost evaluation; the index of the first point
    above the threshold, -1 if it never crosses."""
    crossings = []
    for g in raw:
        delta = g.to(anchor.dtype) * scale.to(anchor.dtype)
        j_cross = -1
        for j, c in enumerate(coefficients.tolist()):
            c_t = torch.tensor(c, dtype=torch.float64).to(anchor.dtype)
            value = float(cost((anchor + c_t * delta).unsqueeze(0))[0])
            if value > threshold:
                j_cross = j
                break
        crossings.append(j_cross)
    return torch.tensor(crossings)


def quadratic_bound(A: torch.Tensor, dtype=torch.float64):
    """|cost_A - cost_B| for two evaluations in ``dtype`` of the diagonal QuadraticCost
    0.5 sum a_i p_i^2 at the same point: each within gamma_{n+1} of the (non-negative) sum (two
    products per term, n - 1 sums; the halving is exact)."""
    return lambda pts, origin: 2 * gamma(A.numel() + 1, dtype) * 0.5 * (pts * pts * A.double()).sum(1)


def band_bound(pts, origin):
    """|x y - 1| in float64: a product and a difference, gamma_2 (|x y| + 1) each evaluation."""
    return 2 * gamma(2) * ((pts[:, 0] * pts[:, 1]).abs() + 1.0)


def _batched_kernel(cost, origin, d):
    """Every gap end in one call, formed as the estimator forms its points (a product, then a sum)."""
    def evaluate(rows, t):
        return cost(torch.mul(t.to(origin.dtype).unsqueeze(1), d[rows]).add_(origin)).double()
    return evaluate


def _check_agree(est, oracle, cost, bound, anchor, raw, scale, tau):
    """The estimate's crossings against the loop's: the same grid point, or a disagreement at points
    whose cost lies within the derived bound of tau under both kernels; and every radius is its
    grid point times the raw direction's norm (float64: log c + log ||g||, a few roundings)."""
    coef = paper_coefficients()
    d = raw.to(anchor.dtype) * scale.to(anchor.dtype)
    gaps = bracket_gaps(*grid_brackets(est.crossing_index, coef), *grid_brackets(oracle, coef))
    kernels = {"one point": plain_kernel(cost, anchor, d), "batched": _batched_kernel(cost, anchor, d)}
    records = gap_end_costs(gaps, kernels, origin=anchor, directions=d, tau=tau, bound=bound)
    bad = [r for r in records if not r["ratio"] <= 1]
    assert not bad, f"batched vs loop crossings disagree beyond rounding: {bad[:2]}"
    assert torch.equal(est.dropped, est.crossing_index < 0)
    for k in torch.nonzero(~est.dropped).flatten().tolist():
        c, norm = float(coef[est.crossing_index[k]]), float(raw[k].double().norm())
        want = math.log(c) + math.log(norm)
        assert abs(float(est.log_radii[k]) - want) <= gamma(4) * (abs(math.log(c)) + abs(math.log(norm))), k


@given(seed=st.integers(0, 1000), n=st.integers(1, 12), tau=st.floats(0.05, 3.0),
       bs=st.integers(1, 9), lookahead=st.integers(1, 5))
def test_batched_reference_equals_sequential_loop(seed, n, tau, bs, lookahead):
    gen = torch.Generator().manual_seed(seed)
    cost = QuadraticCost(torch.exp(torch.randn(n, generator=gen, dtype=torch.float64)))
    anchor = torch.zeros(n, dtype=torch.float64)
    scale = torch.exp(0.5 * torch.randn(n, generator=gen, dtype=torch.float64))
    K = 9
    est = reference_log_volume(cost, anchor, threshold=tau, n_directions=K, scale=scale, seed=seed,
                               dtype=torch.float64, batch_size=bs, lookahead=lookahead)
    raw = raw_gaussian(torch.arange(K), n, seed)
    oracle = sequential_oracle(cost, anchor, tau, raw, scale, paper_coefficients())
    _check_agree(est, oracle, cost, quadratic_bound(cost.A), anchor, raw, scale, tau)


def test_reference_handles_non_monotone_rays_like_the_loop():
    band = HyperbolicBand(0.3)
    anchor = band.anchor(2.0)
    raw = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    est = reference_log_volume(band, anchor, threshold=0.3, directions=raw, dtype=torch.float64, lookahead=4)
    oracle = sequential_oracle(band, anchor, 0.3, raw, torch.ones(2), paper_coefficients())
    _check_agree(est, oracle, band, band_bound, anchor, raw, torch.ones(2), 0.3)


def test_dropped_directions_and_log_volume_semantics():
    # Cost bounded by 1 along parameter 0 only: directions mostly along it never cross 0.9... use a
    # cost that ignores parameter 1 so a pure e_1 direction never crosses.
    cost = lambda p: p[:, 0] ** 2
    raw = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]], dtype=torch.float64)
    est = reference_log_volume(cost, torch.zeros(2, dtype=torch.float64), threshold=0.25,
                               directions=raw, dtype=torch.float64)
    assert est.dropped.tolist() == [False, True, False]
    assert est.n_dropped == 1 and math.isnan(float(est.log_radii[1]))
    coef = paper_coefficients()
    r0 = float(coef[(coef * 1.0) ** 2 > 0.25][0]) * 1.0
    r2 = float(coef[(coef * 2.0) ** 2 > 0.25][0]) * math.sqrt(5.0)
    expected = math.log((r0**2 + r2**2) / 2)  # mean of r^n over kept, n = 2, no unit-ball constant
    # float64, both sides: logs of the radii, a two-term log-sum-exp: a few roundings of each magnitude
    slack = gamma(8) * (abs(expected) + 4 * (abs(math.log(r0)) + abs(math.log(r2))) + 1)
    assert est.log_volume == pytest.approx(expected, abs=slack)


def test_paper_loop_baseline_equals_batched():
    cost = QuadraticCost(torch.tensor([1.0, 2.0, 3.0, 0.5]))
    anchor = torch.zeros(4)
    est = reference_log_volume(cost, anchor, threshold=0.2, n_directions=6, seed=3)
    loop = paper_loop_radii(cost, anchor, threshold=0.2, n_directions=6, seed=3)
    raw = raw_gaussian(torch.arange(6), 4, 3)
    crossing = loop_crossings(loop, raw.double().norm(dim=1), paper_coefficients())
    _check_agree(est, crossing, cost, quadratic_bound(cost.A, torch.float32), anchor, raw, torch.ones(4), 0.2)


def test_reference_saves_evaluations_by_stopping_at_first_crossing():
    cost = QuadraticCost(torch.ones(10))
    est = reference_log_volume(cost, torch.zeros(10), threshold=0.05, n_directions=20)
    assert est.n_cost_evals == 1 + int(est.crossing_index.sum()), "one evaluation per grid point up to the crossing"
    assert est.n_cost_evals < 20 * 100


def test_reference_rejects_bad_grid_and_anchor():
    cost = lambda p: (p * p).sum(1)
    with pytest.raises(ValueError, match="non-decreasing"):
        reference_log_volume(cost, torch.zeros(3), threshold=1.0, coefficients=torch.tensor([0.0, 0.5, 0.2]))
    with pytest.raises(ValueError, match="not below the threshold"):
        reference_log_volume(cost, torch.ones(3), threshold=1.0)
    with pytest.raises(ValueError, match="raw Gaussian directions"):
        reference_log_volume(cost, torch.zeros(3), threshold=1.0, directions=torch.zeros(4, 2))


def test_paper_mode_compares_the_returned_value_in_float64_like_loss_item():
    """The paper's code tests ``loss.item() > tau``: the float32 loss promoted to float64. A
    float32 tensor compared with a Python float would round tau to float32 instead: at
    tau = 0.1 a cost of float32(0.1) = 0.10000000149... is above tau in float64 but equal in
    float32. Batched, loop and the paper's rule must all count it as a crossing."""
    tau = 0.1
    f32_tau = torch.tensor(tau, dtype=torch.float32)
    assert float(f32_tau) > tau  # the premise: float32 rounds 0.1 up

    def cost(p):  # float32 0.1 from radius 0.5 on, 0 before
        return torch.where(p[:, 0] >= 0.5, f32_tau, torch.zeros((), dtype=torch.float32))

    anchor, raw = torch.zeros(1), torch.ones(1, 1)
    est = reference_log_volume(cost, anchor, threshold=tau, directions=raw, scale=torch.ones(1))
    loop = paper_loop_radii(cost, anchor, threshold=tau, directions=raw, scale=torch.ones(1))
    coef = paper_coefficients()
    first = int((coef >= 0.5).nonzero()[0])
    assert not bool(est.dropped[0]) and int(est.crossing_index[0]) == first
    c = float(coef[first])  # the loop's radius c * ||g|| = c, the estimate's exp(log c + log 1)
    assert math.exp(float(est.log_radii[0])) == pytest.approx(float(loop[0]), rel=gamma(4) * (1 + abs(math.log(c))))
