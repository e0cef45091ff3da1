"""The derived rounding bound (``volbench.costs.rounding``) and the cost-domain agreement of two
searches (``volbench.estimator.agreement``), the tolerance behind claim E3 and every cross-kernel
comparison in the tests (issue R1)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from volbench.claims.estimator import e3_same_radii
from volbench.costs import ModelCost
from volbench.costs.rounding import cost_rounding_bound, unit_roundoff
from volbench.estimator.agreement import Gap, gap_end_costs, plain_kernel, ray_kernel

F32, F64 = torch.float32, torch.float64


def mlp_cost(loss: str, *, seed: int = 0, n: int = 96, act=nn.ReLU, dtype=F32, **kw) -> ModelCost:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    k = 1 if loss == "bce" else 4
    model = nn.Sequential(nn.Flatten(), nn.Linear(30, 24), act(), nn.Linear(24, 12), act(), nn.Linear(12, k))
    x = torch.randn(n, 3, 10, generator=g)
    if loss in ("ce", "kl"):
        y = torch.randint(0, k, (n,), generator=g)
    elif loss == "bce":
        y = torch.rand(n, 1, generator=g).round()
    else:
        y = torch.randn(n, k, generator=g)
    return ModelCost(model, x, y, loss=loss, dtype=dtype, **kw)


@pytest.mark.parametrize("loss", ["ce", "bce", "mse", "kl"])
@pytest.mark.parametrize("act", [nn.ReLU, nn.GELU], ids=["relu", "gelu"])
def test_every_kernel_is_within_half_the_pairwise_bound_of_the_exact_cost(loss, act):
    """A single evaluation is within e = bound / 2 of the exact cost (float64 stands in for it:
    its own error is ~1e-16 relative). Checked for the plain path, the ray interface and data
    chunks, at points far from the anchor (costs of order 1-100)."""
    cost = mlp_cost(loss, act=act)
    exact_cost = mlp_cost(loss, act=act, dtype=F64)
    g = torch.Generator().manual_seed(3)
    d = torch.randn(8, cost.n_params, generator=g)
    t = torch.linspace(0.05, 3.0, 8)
    points = cost.anchor + t[:, None] * d
    exact = exact_cost(points.double())
    half = cost.rounding_bound(points, origin=cost.anchor) / 2
    chunked = mlp_cost(loss, act=act, data_chunk=7)
    rays = cost.open_rays(cost.anchor, d)
    for name, values in (("plain", cost(points)), ("chunked", chunked(points)),
                         ("rays", rays(torch.arange(8), t.double()))):
        err = (values.double() - exact).abs()
        assert (err <= half).all(), f"{name}: error {err.max():.3g} above the bound {half[err.argmax()]:.3g}"
    # and the bound is no wild overestimate: below a thousandth of the cost here
    assert (half <= 1e-3 * exact.abs().clamp(min=1.0)).all()


def test_the_bound_scales_with_the_unit_roundoff_and_refuses_what_it_does_not_cover():
    cost = mlp_cost("ce")
    p = cost.anchor[None] + 0.1
    b32 = cost.rounding_bound(p)
    b64 = mlp_cost("ce", dtype=F64).rounding_bound(p.double())
    ratio = float(b32 / b64)
    assert abs(math.log2(ratio) - 29) < 0.5, "float32 and float64 bounds differ by u32 / u64 = 2^29"
    assert float(cost.rounding_bound(p, roundoff=unit_roundoff(F32, tf32=True)) / b32) > 1000
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    with pytest.raises(TypeError, match="LayerNorm"):
        cost_rounding_bound(model, torch.randn(5, 4), torch.randint(0, 2, (5,)), "ce",
                            torch.zeros(1, sum(q.numel() for q in model.parameters())), dtype=F32)
    with pytest.raises(ValueError, match="step function"):
        cost_rounding_bound(nn.Linear(4, 2), torch.randn(5, 4), torch.randint(0, 2, (5,)), "zero_one",
                            torch.zeros(1, 10), dtype=F32)


def _exit(cost64: ModelCost, d: torch.Tensor, tau: float) -> float:
    """The first exit along anchor + t d, by float64 bisection on a fine scan (the reference)."""
    ts = torch.linspace(0, 50, 2001, dtype=F64)[1:]
    c = cost64(cost64.anchor + ts[:, None] * d)
    j = int(torch.nonzero(c >= tau)[0])
    lo, hi = float(ts[j - 1]) if j else 0.0, float(ts[j])
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if float(cost64((cost64.anchor + mid * d)[None])[0]) < tau else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize("within, verdict", [(0.25, "pass"), (20.0, "fail")])
def test_disjoint_brackets_pass_within_the_bound_and_fail_beyond_it(within, verdict):
    """Two runs' brackets around one ray's exit t*, made disjoint by a gap whose ends lie where
    the cost is ``within`` times the derived rounding bound away from tau: a quarter of it is a
    rounding tie (E3 passes), twenty times it is a real disagreement (E3 fails)."""
    cost = mlp_cost("ce")
    cost64 = mlp_cost("ce", dtype=F64)
    g = torch.Generator().manual_seed(5)
    d = torch.randn(1, cost.n_params, generator=g)
    d = d / d.norm()
    tau = float(cost(cost.anchor[None])[0]) + 0.2
    t_star = _exit(cost64, d[0].double(), tau)
    at = cost64.anchor + t_star * d[0].double()
    tol = float(cost.rounding_bound(at[None].float(), origin=cost.anchor)[0])
    slope = float(cost64((at + 1e-6 * d[0].double())[None])[0] - cost64((at - 1e-6 * d[0].double())[None])[0]) / 2e-6
    rho = within * tol / slope  # the t-offset whose cost lies `within` bounds from tau
    gap = Gap(0, t_star - rho, t_star + rho)
    kernels = {"plain": plain_kernel(cost, cost.anchor, d), "rays": ray_kernel(cost, cost.anchor, d)}
    records = gap_end_costs([gap], kernels, origin=cost.anchor, directions=d, tau=tau,
                            bound=lambda pts, o: cost.rounding_bound(pts.float(), origin=o.float()))
    assert all(math.isclose(r["ratio"], within, rel_tol=0.5) for r in records), records
    statements = e3_same_radii(settings={"float32": []}, settings_spread={},
                               principled_vs_oracle={"float32": records})
    assert next(st.verdict for st in statements if st.id == "b") == verdict
