"""The main paper's procedure: batched ``reference_log_volume`` against a plain sequential loop
over directions and grid points (the oracle, written independently here in plain Python)."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from volbench import reference_log_volume
from volbench.crosscheck.oracles import HyperbolicBand, QuadraticCost
from volbench.estimator.directions import raw_gaussian
from volbench.estimator.reference import paper_coefficients, paper_loop_radii


def sequential_oracle(cost, anchor, threshold, raw, scale, coefficients):
    """For each direction, for each grid point: one cost evaluation; radius at the first point
    above the threshold times the raw direction's norm; None if it never crosses."""
    radii = []
    for g in raw:
        delta = g.to(anchor.dtype) * scale.to(anchor.dtype)
        r = None
        for c in coefficients.tolist():
            c_t = torch.tensor(c, dtype=torch.float64).to(anchor.dtype)
            value = float(cost((anchor + c_t * delta).unsqueeze(0))[0])
            if value > threshold:
                r = c * float(g.double().norm())
                break
        radii.append(r)
    return radii


def _check_equal(est, oracle):
    for k, r in enumerate(oracle):
        if r is None:
            assert bool(est.dropped[k]), f"direction {k} never crossed but was kept"
        else:
            assert not bool(est.dropped[k])
            assert math.exp(float(est.log_radii[k])) == pytest.approx(r, rel=1e-12), f"direction {k}"


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
    _check_equal(est, sequential_oracle(cost, anchor, tau, raw, scale, paper_coefficients()))


def test_reference_handles_non_monotone_rays_like_the_loop():
    band = HyperbolicBand(0.3)
    anchor = band.anchor(2.0)
    raw = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    est = reference_log_volume(band, anchor, threshold=0.3, directions=raw, dtype=torch.float64, lookahead=4)
    _check_equal(est, sequential_oracle(band, anchor, 0.3, raw, torch.ones(2), paper_coefficients()))


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
    assert est.log_volume == pytest.approx(expected, rel=1e-12)


def test_paper_loop_baseline_equals_batched():
    cost = QuadraticCost(torch.tensor([1.0, 2.0, 3.0, 0.5]))
    anchor = torch.zeros(4)
    est = reference_log_volume(cost, anchor, threshold=0.2, n_directions=6, seed=3)
    loop = paper_loop_radii(cost, anchor, threshold=0.2, n_directions=6, seed=3)
    assert torch.equal(torch.isnan(loop), est.dropped)
    assert torch.allclose(loop[~est.dropped].log(), est.log_radii[~est.dropped], rtol=0, atol=1e-12)


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
    assert math.exp(float(est.log_radii[0])) == pytest.approx(float(loop[0]), rel=1e-12)
