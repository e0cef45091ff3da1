"""Speed benchmarks of issue Q3 beyond one landscape: a Table-1-style sweep, and direction drawing.

``test_table1_sweep[estimator-method]`` times the measurements of a Table-1-style experiment on
the MNIST-10k pool: nested training sets of ``sizes`` (base 60, data seed = model seed + 10),
one minimum per (seed, size), and every minimum's volume in every landscape no larger than its own
training set at every threshold, with K directions and both estimators. Training is not timed
(minima are cached in the benchmark store).

* ``baseline``: today's path, each (minimum, landscape, threshold) measured on its own: a
  ``ModelCost`` without the ray interface per landscape, ``reference_log_volume`` or
  ``estimate_log_volume(search="bisect")``;
* ``one_walk``: one walk per minimum through the ray interface answers every landscape and
  threshold (``reference_log_volume_many`` / ``estimate_log_volume_many`` on the cost of the
  minimum's largest landscape).

The paper's answers must be identical (crossing indices), the principled ones within the
baseline's resolution bracket (asserted when the baseline ran earlier in the session).

``test_direction_speed[method]`` draws K MNIST-MLP directions (235,146 parameters) and
normalises them: ``legacy`` is the former generator (a numpy-seeded CPU ``torch.randn`` stream
per direction, normalised in float64 on the CPU), ``device`` the counter-based one on the
benchmark device in the compute dtype (``volbench.estimator.directions``).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from test_speed import _run_benchmark  # benchmarks/ is on sys.path under pytest (rootdir-less import)

from volbench.bench.flops import tf32_enabled, tf32_mode

pytestmark = pytest.mark.benchmark_case


@dataclass(frozen=True)
class SweepConfig:
    """A Table-1-style sweep (see the module docstring).

    Attributes:
        sizes: training-set and landscape sizes (nested, base 60).
        seeds: model seeds (data seed + 10).
        thresholds: the paper's CE thresholds (its code saves curves for 0.1, 0.05, 0.02, 0.01).
        n_directions: K.
        stop_at_train_loss: AdamW (the paper's recipe) stops below this train loss: a fifth of the
            smallest threshold, so every minimum is inside its own basin at every threshold.
        principled_rtol: the lab's default rtol (1e-2), for both the baseline and the new walk.
    """

    name: str
    sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    thresholds: tuple[float, ...]
    n_directions: int
    stop_at_train_loss: float
    principled_rtol: float = 1e-2

    @property
    def n_measurements(self) -> int:
        m = len(self.sizes)
        return len(self.seeds) * m * (m + 1) // 2 * len(self.thresholds)


SWEEPS = {
    "ci": SweepConfig("ci", sizes=(60, 240), seeds=(0,), thresholds=(0.1, 0.05), n_directions=2,
                      stop_at_train_loss=0.01),
    "target": SweepConfig("target", sizes=(60, 240, 960, 3840), seeds=(0, 1, 2), thresholds=(0.1, 0.05, 0.02, 0.01),
                          n_directions=64, stop_at_train_loss=0.002),
}


def _sweep_for(bench) -> SweepConfig:
    return SWEEPS["target" if bench.scale.name in ("target", "paper") else "ci"]


@pytest.fixture(scope="session")
def sweep_minima(bench):
    """{seed: (indices of the nested order, [(train size, model, anchor)])} and the data set; the
    minima come from the lab (``lab.train_minimum``: keyed by the training code's provenance)."""
    from volbench import lab
    from volbench.data import DatasetNotFoundError, data_seed_for, nested_subsets
    from volbench.lab.train import paper_recipe
    from volbench.store.minima import MinimaStore

    config = _sweep_for(bench)
    try:
        ds = lab.load_dataset("mnist")
    except DatasetNotFoundError as err:
        pytest.skip(f"no MNIST data found ({err.reason}); set VOLBENCH_DATA")
    store = MinimaStore(bench.store_root)
    out = {}
    for seed in config.seeds:
        order = nested_subsets(ds, [config.sizes[-1]], base=60, seed=data_seed_for(seed))[0]
        minima = []
        for size in config.sizes:
            recipe = paper_recipe("mnist_mlp", stop_at_train_loss=config.stop_at_train_loss, history_every=50,
                                  seed=seed)
            spec = lab.MinimumSpec("mnist", "mnist_mlp", train_size=size, seed=seed, base=60, train=recipe)
            minimum = lab.train_minimum(spec, store, device=bench.device)
            minima.append((size, minimum.build_model(device=bench.device, dtype=bench.dtype),
                           minimum.params.to(bench.device, bench.dtype)))
        out[seed] = (order, minima)
    return ds, out


def _run_sweep(config: SweepConfig, ds, minima, *, estimator: str, method: str, device, dtype):
    """Every (seed, minimum, landscape <= its size, threshold): {key: estimate or None}, and the
    work counters summed over the costs."""
    from volbench import estimate_log_volume, reference_log_volume
    from volbench.costs import ModelCost
    from volbench.estimator.core import estimate_log_volume_many
    from volbench.estimator.reference import reference_log_volume_many

    x_all, y_all = ds.train_inputs.to(device=device, dtype=dtype), ds.train_targets.to(device)
    answers: dict[tuple, Any] = {}
    work = {"cost_evals": 0, "example_vectors": 0, "executed_flops": 0.0, "plain_flops": 0.0}
    kw = dict(n_directions=config.n_directions, seed=0, device=device, dtype=dtype)
    pkw = dict(directions="filter", rtol=config.principled_rtol)

    def account(cost):
        c = cost.counters()
        work["cost_evals"] += c["n_vectors_evaluated"]
        work["example_vectors"] += c["n_examples_evaluated"]
        work["executed_flops"] += cost.executed_flops()
        work["plain_flops"] += c["n_examples_evaluated"] * cost.flops_per_example()

    for seed, (order, nets) in minima.items():
        for train_size, net, anchor in nets:
            lands = [s for s in config.sizes if s <= train_size]
            if method == "one_walk":
                rows = order[:train_size].to(device)
                cost = ModelCost(net, x_all[rows], y_all[rows], loss="ce", anchor=anchor, dtype=dtype)
                many = (reference_log_volume_many(cost, anchor, thresholds=config.thresholds, sizes=lands, **kw)
                        if estimator == "reference" else
                        estimate_log_volume_many(cost, anchor, thresholds=config.thresholds, sizes=lands, **pkw, **kw))
                for (land, tau), est in many.items():
                    answers[(seed, train_size, land, tau)] = est
                account(cost)
                continue
            for land in lands:
                rows = order[:land].to(device)
                cost = ModelCost(net, x_all[rows], y_all[rows], loss="ce", anchor=anchor, dtype=dtype,
                                 ray_interface=False)
                c0 = float(cost(anchor.unsqueeze(0))[0])
                for tau in config.thresholds:
                    if not c0 < tau:
                        answers[(seed, train_size, land, tau)] = None
                    elif estimator == "reference":
                        answers[(seed, train_size, land, tau)] = reference_log_volume(cost, anchor, threshold=tau, **kw)
                    else:
                        answers[(seed, train_size, land, tau)] = estimate_log_volume(
                            cost, anchor, threshold=tau, search="bisect", **pkw, **kw)
                account(cost)
    return answers, work


@pytest.mark.parametrize("method", ["baseline", "one_walk"])
@pytest.mark.parametrize("estimator", ["reference", "principled"])
def test_table1_sweep(benchmark, estimator: str, method: str, sweep_minima, tf32: bool, bench, recorder,
                      peak_cache) -> None:
    import warnings

    from volbench.estimator.result import CensoredRaysWarning

    config = _sweep_for(bench)
    ds, minima = sweep_minima
    benchmark.group = f"sweep-{config.name} {estimator} tf32-{'on' if tf32 else 'off'}"
    with tf32_mode(tf32), warnings.catch_warnings():
        warnings.simplefilter("ignore", CensoredRaysWarning)
        peak = peak_cache(tf32)
        timed, measured, memory = _run_benchmark(
            benchmark, lambda: _run_sweep(config, ds, minima, estimator=estimator, method=method, device=bench.device,
                                          dtype=bench.dtype),
            rounds=1, warmup=bench.warmup_rounds, reset=lambda: None, device=bench.device)
        tf32_state = tf32_enabled()
    answers, work = timed.result
    best = min(measured)
    assert len(answers) == config.n_measurements, (len(answers), config.n_measurements)
    info: dict[str, Any] = {
        "sweep": config.name, "estimator": estimator, "method": method, "sizes": list(config.sizes),
        "seeds": list(config.seeds), "thresholds": list(config.thresholds), "n_directions": config.n_directions,
        "n_measurements": len(answers), "n_outside": sum(v is None for v in answers.values()),
        "data_variant": ds.variant, "device": str(bench.device), "tf32": tf32_state,
        "torch_threads": torch.get_num_threads(), "seconds_min": best, "seconds_all": measured,
        "peak_memory_bytes": memory.bytes, "peak_memory_kind": memory.kind, **work,
        "cost_evals_per_s": work["cost_evals"] / best,
        "executed_flops_per_s": work["executed_flops"] / best,
        "peak_flops_per_s": peak.flops, "peak_kind": peak.kind,
        "executed_fraction_of_peak": work["executed_flops"] / best / peak.flops if peak.flops else None,
    }
    key = ("sweep", config.name, estimator, tf32)
    recorder.put_result((*key, method), (answers, best))
    other = recorder.result((*key, "baseline"))
    if method == "one_walk" and other is not None:
        from volbench.costs import ModelCost
        from volbench.costs.rounding import unit_roundoff
        from volbench.estimator.agreement import same_exits

        base_answers, base_seconds = other
        info["speedup_vs_baseline"] = base_seconds / best
        x_all, y_all = ds.train_inputs.to(device=bench.device, dtype=bench.dtype), ds.train_targets.to(bench.device)
        nets = {(seed, size): (order, net, anchor) for seed, (order, ns) in minima.items() for size, net, anchor in ns}
        gap_ends = 0
        for k, est in answers.items():
            base = base_answers[k]
            assert (est is None) == (base is None), f"{k}: inside/outside differs from the separate run"
            if est is None:
                continue
            # The one walk and the separate run evaluate other batches (another arithmetic order):
            # every ray's bracket overlaps, or the cost at both ends of the gap lies within the derived
            # rounding bound of tau under every kernel of the landscape's cost (TF32's roundoff if used).
            seed, train_size, land, tau = k
            order, net, anchor = nets[(seed, train_size)]
            rows = order[:land].to(bench.device)
            cost = ModelCost(net, x_all[rows], y_all[rows], loss="ce", anchor=anchor, dtype=bench.dtype)
            roundoff = unit_roundoff(cost.dtype, tf32=cost.device.type == "cuda" and tf32_state)
            records = same_exits(est, base, [cost], tau, roundoff=roundoff)
            bad = [r for r in records if not r["ratio"] <= 1]
            assert not bad, f"{k}: answers disagree with the separate run beyond rounding: {bad[:2]}"
            gap_ends += len(records)
        info["answers_match_baseline"] = True
        info["baseline_gap_ends"] = gap_ends
    benchmark.extra_info.update(info)
    note = f"{len(answers)} answers" + (f", {info['speedup_vs_baseline']:.1f}x vs baseline"
                                        if "speedup_vs_baseline" in info else "")
    recorder.add_row({"landscape": f"sweep-{config.name}", "tf32": tf32, "method": f"sweep:{estimator}:{method}",
                      "n_directions": config.n_directions, "seconds": best, "speedup": None,
                      "evals_per_s": info["cost_evals_per_s"], "gflops_per_s": info["executed_flops_per_s"] / 1e9,
                      "note": note})


def legacy_directions(indices: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The estimator's former direction builder, kept here as the baseline: one numpy-seeded CPU
    ``torch.randn`` stream per direction (float32), normalised in float64 on the CPU."""
    from volbench.estimator.directions import direction_seed

    out = torch.empty(len(indices), n, dtype=torch.float32)
    gen = torch.Generator(device="cpu")
    for row, k in enumerate(indices.tolist()):
        gen.manual_seed(direction_seed(seed, k))
        torch.randn(n, generator=gen, out=out[row])
    g = out.to(torch.float64)
    norm = g.norm(dim=1)
    return (g / norm[:, None]).to(torch.float32), torch.log(norm)


@pytest.mark.parametrize("method", ["legacy", "device"])
def test_direction_speed(benchmark, method: str, bench, recorder, tf32: bool) -> None:
    from volbench.estimator.directions import DirectionSampler

    if tf32:
        pytest.skip("direction drawing does no matmuls; TF32 is irrelevant")
    n = 235_146  # the MNIST MLP
    k = 64 if bench.scale.name in ("target", "paper") else 8
    idx = torch.arange(k)
    sampler = DirectionSampler(n, seed=0)
    if method == "legacy":
        def fn():
            v, log_norm = legacy_directions(idx, n, 0)
            return v.to(bench.device)
    else:
        def fn():
            v, _ = sampler.batch(idx, device=bench.device, dtype=bench.dtype)
            return v
    benchmark.group = "directions"
    timed, measured, memory = _run_benchmark(benchmark, fn, rounds=bench.scale.rounds, warmup=bench.warmup_rounds,
                                             reset=lambda: None, device=bench.device)
    best = min(measured)
    v = timed.result
    assert v.shape == (k, n) and bool(torch.isfinite(v).all())
    assert float((v.double().norm(dim=1) - 1).abs().max()) < 1e-5
    benchmark.extra_info.update({"method": method, "n_directions": k, "n_params": n, "seconds_min": best,
                                 "seconds_median": statistics.median(measured), "device": str(bench.device),
                                 "dtype": str(bench.dtype), "peak_memory_bytes": memory.bytes,
                                 "peak_memory_kind": memory.kind, "draws_per_s": k * n / best})
    recorder.add_row({"landscape": "mnist-mlp", "tf32": False, "method": f"directions:{method}", "n_directions": k,
                      "seconds": best, "speedup": None, "evals_per_s": 0.0, "gflops_per_s": 0.0,
                      "note": f"{k * n / best / 1e6:.1f} M draws/s"})
