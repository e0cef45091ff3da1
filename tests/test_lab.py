"""End to end through the landscape lab: train -> store -> reload -> measure with both
estimators, and the batched paper procedure through a ModelCost equals the paper's sequential
loop (swiss roll and a small MNIST minimum) up to rounding: the same grid points, or a
disagreement at points whose cost lies within the derived rounding bound of tau under every
kernel (``volbench.estimator.agreement``; the loop and the walks evaluate other batch shapes)."""
from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from volbench.costs import ModelCost
from volbench.estimator.agreement import loop_crossings, same_exits
from volbench.estimator.directions import raw_gaussian, row_norms
from volbench.estimator.reference import paper_coefficients, paper_loop_radii, reference_log_volume
from volbench.lab import MinimumSpec, landscape_batch, measure, train_minimum
from volbench.lab.measure import _landscape_cost
from volbench.lab.train import TrainConfig
from volbench.store.minima import MinimaStore

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/ for helpers
from helpers import assert_agree_up_to_rounding, loop_records  # noqa: E402

SETTINGS = [
    pytest.param(MinimumSpec("swiss_roll", "swiss_mlp", train_size=40, seed=0, base=20,
                             train=TrainConfig(epochs=300, loss="bce", history_every=100)), 20, id="swiss"),
    pytest.param(MinimumSpec("mnist", "mnist_mlp", train_size=60, seed=0, base=60,
                             train=TrainConfig(epochs=60, loss="ce", history_every=30)), 60, id="mnist-60"),
]


@pytest.mark.parametrize("spec, landscape", SETTINGS)
def test_train_cache_reload_measure(tmp_path, spec, landscape):
    store = MinimaStore(tmp_path)
    first = train_minimum(spec, store)
    again = train_minimum(spec, store)
    assert first.trained_now and not again.trained_now, "the second call must reuse the stored minimum"
    assert torch.equal(first.params, again.params)
    results = {est: measure(again, landscape, estimator=est, n_directions=6, threshold=0.1, store=store)
               for est in ("reference", "principled")}
    for est, m in results.items():
        assert not m.outside and math.isfinite(m.log_volume), f"{est}: {m.summary}"
        assert len(m.log_terms) == 6
    cached = measure(again, landscape, estimator="reference", n_directions=6, threshold=0.1, store=store)
    assert cached == results["reference"], "a repeated measurement is read back from the cache unchanged"


@pytest.mark.parametrize("spec, landscape", SETTINGS)
def test_batched_reference_equals_paper_loop_through_model_cost(tmp_path, spec, landscape):
    m = train_minimum(spec, MinimaStore(tmp_path))
    batch = landscape_batch(spec.dataset, landscape, seed=spec.seed, base=spec.base)
    cost = ModelCost(m.build_model(), batch.inputs, batch.targets, loss=spec.train.loss)
    est = reference_log_volume(cost, cost.anchor, threshold=0.1, n_directions=4, seed=3, batch_size=3, lookahead=2)
    loop = paper_loop_radii(cost, cost.anchor, threshold=0.1, n_directions=4, seed=3)
    assert_agree_up_to_rounding(loop_records(est, loop, cost, 0.1), "batched grid radii vs the sequential loop's")


def _as_estimate(m):
    """A Measurement's brackets as the estimate record ``volbench.estimator.agreement.rays_of``
    reads (its config holds the estimator's): the paper's crossing index from its radius
    c_j ||g_k|| (nearest grid point), the principled bracket's top from log_terms_high (n log r)."""
    n, K = m.n_params, m.n_directions
    log_r = torch.tensor(m.log_radii, dtype=torch.float64)
    if m.estimator == "reference":
        raw = raw_gaussian(torch.arange(K), n, m.direction_seed)
        j = loop_crossings(log_r.exp(), row_norms(raw), paper_coefficients())
        return SimpleNamespace(config=m.config, n_params=n, n_directions=K, crossing_index=j)
    width = (torch.tensor(m.log_terms_high, dtype=torch.float64) - torch.tensor(m.log_terms_low, dtype=torch.float64))
    return SimpleNamespace(config=m.config, n_params=n, n_directions=K, log_radii=log_r,
                           log_radii_upper=log_r + width / n)


def assert_same_measurement(a, b, minimum, size, tau, what, landscape_extras=0):
    """Two measurements of one (minimum, landscape, tau) agree ray by ray up to rounding."""
    assert a.outside == b.outside, what
    if a.outside:
        return
    cost = _landscape_cost(minimum, size, loss=minimum.spec.train.loss, landscape_extras=landscape_extras,
                           device=None, dtype=torch.float32)
    assert_agree_up_to_rounding(same_exits(_as_estimate(a), _as_estimate(b), [cost], tau), what)


def test_measure_many_is_one_walk_cached_per_entry_and_equals_separate_runs(tmp_path):
    """measure_many answers every (landscape, threshold) from one walk: the paper's answers equal
    separate measurements exactly, the principled ones lie in their resolution bracket; each
    entry is cached on its own (a later single measure() is served from the cache)."""
    from volbench.lab import LEDGER, measure_many

    spec = MinimumSpec("swiss_roll", "swiss_mlp", train_size=40, seed=0, base=20,
                       train=TrainConfig(epochs=300, loss="bce", history_every=100))
    store = MinimaStore(tmp_path)
    m = train_minimum(spec, store)
    sizes, taus = [20, 30, 40], [0.1, 0.3]
    kw = dict(n_directions=6, direction_seed=1)
    ref = measure_many(m, sizes, taus, estimator="reference", store=store, **kw)
    princ = measure_many(m, sizes, taus, estimator="principled", store=None, rtol=1e-3, **kw)
    assert list(ref) == [(s, t) for s in sizes for t in taus]
    walks = {r.config.get("walk", {}).get("questions") for r in ref.values() if not r.outside}
    assert walks <= {sum(not r.outside for r in ref.values()), None}
    for (size, tau), r in ref.items():
        alone = measure(m, size, estimator="reference", threshold=tau, store=None, **kw)
        assert_same_measurement(r, alone, m, size, tau, f"reference {(size, tau)}")
        if r.outside:
            continue
        p = princ[(size, tau)]
        p_alone = measure(m, size, estimator="principled", threshold=tau, store=None, rtol=1e-3, **kw)
        assert_same_measurement(p, p_alone, m, size, tau, f"principled {(size, tau)}")
    before = LEDGER.snapshot()
    again = measure(m, 30, estimator="reference", threshold=0.3, store=store, **kw)
    assert LEDGER.since(before)["measurements_served"] == 1 and again == ref[(30, 0.3)]


def test_measure_many_with_landscape_extras_walks_each_size(tmp_path):
    spec = MinimumSpec("swiss_roll", "swiss_mlp", train_size=40, seed=0, base=20, n_poison=6,
                       train=TrainConfig(epochs=300, loss="bce", history_every=100))
    from volbench.lab import measure_many

    m = train_minimum(spec, MinimaStore(tmp_path))
    got = measure_many(m, [30, 40], [0.5, 2.0], estimator="reference", n_directions=4, landscape_extras=6)
    assert not any(r.outside for r in got.values())
    for (size, tau), r in got.items():
        alone = measure(m, size, estimator="reference", threshold=tau, n_directions=4, landscape_extras=6)
        assert_same_measurement(r, alone, m, size, tau, f"extras {(size, tau)}", landscape_extras=6)


def test_reference_bracket_on_the_lab_ray_path_is_previous_grid_point_and_crossing(tmp_path):
    """The lab measures the paper's procedure through the ray interface (``measure`` ->
    ``reference_log_volume_many`` -> ``grid_walk``). For every direction its resolution bracket
    must be [the grid point before the first crossing, the crossing]: ``log_terms_high`` at the
    first grid point whose plain cost exceeds tau, ``log_terms_low`` at the one before it (inside).
    A low end at the crossing itself (a zero-width bracket) would put no grid step in the margin
    and pass every other test. The crossings are found here independently: the cost evaluated
    at all 100 grid points of every direction, as the paper's loop does."""
    from volbench.estimator.reference import reference_scale

    spec = MinimumSpec("swiss_roll", "swiss_mlp", train_size=40, seed=0, base=20,
                       train=TrainConfig(epochs=300, loss="bce", history_every=100))
    m = train_minimum(spec, MinimaStore(tmp_path))
    K, tau, dseed, size = 8, 0.1, 5, 40
    got = measure(m, size, estimator="reference", n_directions=K, threshold=tau, store=None, direction_seed=dseed)
    assert not got.outside and got.config["engine"].startswith("rays"), got.config.get("engine")
    batch = landscape_batch(spec.dataset, size, seed=spec.seed, base=spec.base)
    cost = ModelCost(m.build_model(), batch.inputs, batch.targets, loss=spec.train.loss)
    anchor, n = cost.anchor, cost.anchor.numel()
    g = raw_gaussian(torch.arange(K), n, dseed)
    delta = g * reference_scale(cost, n, anchor)
    coef = paper_coefficients()
    log_norm = row_norms(g).double().log()
    for k in range(K):
        params = torch.mul(coef.to(torch.float32).unsqueeze(1), delta[k].unsqueeze(0)).add_(anchor)
        losses = cost(params).double()
        above = (losses > tau).nonzero().flatten()
        if len(above) == 0:
            assert math.isnan(got.log_terms[k]), f"direction {k} never crosses and must be dropped"
            continue
        j = int(above[0])
        assert j >= 2, f"direction {k} crosses at grid point {j}: pick a setting with an interior crossing"
        assert float(losses[j - 1]) <= tau  # the point before is inside (first crossing)
        high = n * (math.log(float(coef[j])) + float(log_norm[k]))
        low = n * (math.log(float(coef[j - 1])) + float(log_norm[k]))
        assert got.log_terms_high[k] == pytest.approx(high, rel=1e-12), f"direction {k}: high end is the crossing"
        assert got.log_terms_low[k] == pytest.approx(low, rel=1e-12), (
            f"direction {k}: low end must be grid point {j - 1} (before the crossing), got "
            f"{got.log_terms_low[k]:.6g} vs {low:.6g} (crossing at {high:.6g})")
        assert got.log_terms[k] == got.log_terms_high[k]


def test_prefetch_trains_the_missing_minima_and_leaves_busy_ones(tmp_path, monkeypatch):
    """prefetch_minima trains what is missing (in order), skips what is stored, and returns what
    another process is training instead of waiting for it."""
    from volbench.lab import prefetch_minima

    store = MinimaStore(tmp_path)
    cfg = TrainConfig(epochs=5, loss="bce", history_every=5)
    specs = [MinimumSpec("swiss_roll", "swiss_mlp", train_size=40, seed=s, base=20, train=cfg) for s in range(3)]
    train_minimum(specs[0], store)
    busy_key = store.key(store._with_provenance(specs[2].config()))
    real = MinimaStore.status
    monkeypatch.setattr(MinimaStore, "status", lambda self, config: "busy" if self.key(
        self._with_provenance(config)) == busy_key else real(self, config))
    left = prefetch_minima(specs, store)
    assert left == [specs[2]]
    monkeypatch.setattr(MinimaStore, "status", real)
    assert [store.status(s.config()) for s in specs] == ["stored", "stored", "missing"]
