"""End to end through the landscape lab: train -> store -> reload -> measure with both
estimators, and the batched paper procedure through a ModelCost equals the paper's sequential
loop (swiss roll and a small MNIST minimum)."""
from __future__ import annotations

import math

import pytest
import torch

from volbench.costs import ModelCost
from volbench.lab import MinimumSpec, landscape_batch, measure, train_minimum
from volbench.reference import paper_loop_radii, reference_log_volume
from volbench.store import MinimaStore
from volbench.train import TrainConfig

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
    assert torch.equal(torch.isnan(loop), est.dropped)
    assert torch.allclose(loop[~est.dropped].log(), est.log_radii[~est.dropped], rtol=0, atol=1e-12), (
        "batched grid radii must equal the sequential loop's")
