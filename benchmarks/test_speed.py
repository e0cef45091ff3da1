"""Speed benchmarks (issue P7): the main paper's volume procedure three ways, and Table 1.

For every landscape of ``conftest.LANDSCAPES`` (MNIST MLP on 600 / 6,000 / 60,000 examples, the
two-spirals MLP on 800 points), in the same run, on the same device, with the same K directions:

* ``loop``: ``volbench.estimator.reference.paper_loop_radii``, the paper's code as it runs: for each
  direction, for each of the 100 grid points c_j = (j/99)^2, one forward pass of one parameter
  vector over the whole landscape (a cost without early exit, so each pass is one full-data
  evaluation as in the paper's code), all 100 points always;
* ``paper_batched``: ``volbench.reference_log_volume``, the same procedure with all directions
  advancing through the grid together, each stopping at its first crossing, and early exit over
  data chunks. Its radii must equal the loop's (asserted);
* ``principled``: ``volbench.estimate_log_volume`` with filter-normalised directions, bracketing
  and bisection to ``rtol``.

``benchmark.extra_info`` records, per method: the speed-up over the loop measured in this run,
cost evaluations (parameter vectors) per second, (example x vector) pairs per second, achieved
FLOP/s (pairs x ``ModelCost.flops_per_example()``) and its fraction of the device's peak for the
precision used (``volbench.bench.flops``), peak memory, the TF32 state, seeds, data variant and the
estimate itself.

``test_table1_experiment`` times the whole MNIST experiment behind the paper's Table 1 (train every
minimum, measure every minimum in every smaller landscape, fit alpha), at the H100 scale (6 sizes
x 10 seeds x 500 directions, target < 5 minutes) or at a tiny CPU scale through the same code.
"""
from __future__ import annotations

import functools
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from volbench import estimate_log_volume, reference_log_volume
from volbench.bench.flops import peak_memory, tf32_enabled, tf32_mode
from volbench.bench.timer import synced_perf_counter
from volbench.costs.rounding import unit_roundoff
from volbench.estimator.agreement import (
    bracket_gaps,
    gap_end_costs,
    grid_brackets,
    loop_crossings,
    plain_kernel,
    ray_kernel,
    rays_of,
    same_exits,
)
from volbench.estimator.directions import raw_gaussian, row_norms
from volbench.estimator.reference import paper_coefficients, paper_loop_radii

pytestmark = pytest.mark.benchmark_case

#: ``*_baseline``: today's path kept selectable (issue Q3): the flat-vector cost without the ray
#: interface (no first-layer cache), and for the principled estimator the bit-only bisection.
#: ``principled_default``: the new search at its default rtol (1-nat log V resolution).
METHODS: tuple[str, ...] = ("loop", "paper_batched_baseline", "paper_batched", "principled_baseline", "principled",
                            "principled_default")


# --------------------------------------------------------------------------- timing helpers
@dataclass
class _Timed:
    """What a benchmarked callable produced: per-call seconds (synchronised clock) and the last
    result."""

    seconds: list[float] = field(default_factory=list)
    result: Any = None


def _run_benchmark(benchmark, fn: Callable[[], Any], *, rounds: int, warmup: int, reset: Callable[[], None],
                   device: torch.device) -> tuple[_Timed, list[float], Any]:
    """``benchmark.pedantic(fn)`` with our own synchronised per-round clock and peak memory.

    Returns (all calls, the timed rounds' seconds, PeakMemory). With ``--benchmark-disable``
    pytest-benchmark calls ``fn`` once and keeps no statistics; our clock still has that call.
    """
    timed = _Timed()

    def target() -> None:
        t0 = synced_perf_counter()
        timed.result = fn()
        timed.seconds.append(synced_perf_counter() - t0)

    with peak_memory(device) as meter:
        benchmark.pedantic(target, setup=reset, rounds=rounds, warmup_rounds=warmup, iterations=1)
    if benchmark.disabled:
        measured = timed.seconds[:1]
    else:  # warm-up calls first, then the timed rounds (then any --benchmark-cprofile reruns)
        measured = timed.seconds[warmup:warmup + rounds]
    return timed, measured, meter.result


def _throughput(cost, seconds: float, peak) -> dict[str, Any]:
    """Work counters of ``cost`` (a ModelCost after one call of the method) turned into rates.

    ``achieved_flops_per_s``: the plain path's FLOPs for the pairs evaluated, per second (what
    the work is worth); ``executed_flops_per_s``: the FLOPs actually run (the first-layer cache
    replaces the first layer by an axpy, and adds its own GEMM once per ray), against the
    measured GEMM peak in ``executed_fraction_of_peak``."""
    counters = cost.counters()
    pairs = counters["n_examples_evaluated"]
    vectors = counters["n_vectors_evaluated"]
    per_example = cost.flops_per_example()
    flop_count = pairs * per_example
    achieved = flop_count / seconds
    executed = cost.executed_flops()
    return {
        "executed_flop_count": executed,
        "executed_flops_per_s": executed / seconds,
        "executed_fraction_of_peak": executed / seconds / peak.flops if peak.flops else None,
        "linear_examples": counters["n_linear_examples"],
        "first_layer_examples": counters["n_first_layer_examples"],
        "cost_calls": counters["n_calls"],
        "cost_evals": vectors,
        "cost_evals_per_s": vectors / seconds,
        "example_vectors": pairs,
        "example_vectors_per_s": pairs / seconds,
        # Fraction of the (vector, example) pairs that early exit skipped.
        "early_exit_saving": 1.0 - pairs / (vectors * cost.n_examples) if vectors else 0.0,
        "flops_per_example": per_example,
        "flop_count": flop_count,
        "achieved_flops_per_s": achieved,
        "peak_flops_per_s": peak.flops,
        "peak_kind": peak.kind,
        "peak_precision": peak.precision,
        "peak_source": peak.source,
        "fraction_of_peak": achieved / peak.flops if peak.flops else None,
        "fraction_of_peak_meaning": {
            "datasheet": "fraction of the GPU's dense datasheet peak for this precision",
            "measured_gemm": "fraction of a large GEMM's measured throughput on this machine and threads "
                             "(no hardware peak is tabulated for it)",
        }.get(peak.kind, "no peak known"),
    }


def _roundoff(cost) -> float:
    """The unit roundoff of the cost's matmuls: TF32's 2^-11 where CUDA float32 matmuls use it."""
    return unit_roundoff(cost.dtype, tf32=cost.device.type == "cuda" and tf32_enabled())


def _check_against_baseline(recorder, key: tuple, method: str, est, info: dict[str, Any], cost, tau: float) -> None:
    """The new path's answer against the baseline measured earlier in this run (same directions):
    every ray's bracket (the paper's grid points, the principled [inside, outside] radii) overlaps
    the baseline's, or the cost at both ends of the gap lies within the derived rounding bound of
    tau under every kernel (``same_exits``: the two paths evaluate in other orders)."""
    if method in ("paper_batched", "principled", "principled_default"):
        base = recorder.result((*key, "paper_batched_baseline" if method == "paper_batched" else "principled_baseline"))
        if base is None:
            return
        records = same_exits(est, base, [cost], tau, roundoff=_roundoff(cost))
        bad = [r for r in records if not r["ratio"] <= 1]
        assert not bad, f"{method}: brackets disagree with the baseline's beyond rounding: {bad[:2]}"
        info["baseline_gap_ends"] = len(records)
        if method == "paper_batched":
            info["crossings_match_baseline"] = bool(torch.equal(est.crossing_index, base.crossing_index))
        else:
            info["brackets_overlap_baseline"] = not records
            info["log_volume_bracket"] = list(est.log_volume_bracket)
            info["baseline_log_volume_bracket"] = list(base.log_volume_bracket)


def _check_same_radii(est, loop: torch.Tensor, cost, tau: float, name: str) -> bool:
    """The paper-compatible mode's crossings against the sequential loop's on the loop's first K
    rays: the same grid point (the loop's radius c_j ||g_k|| identifies j), or a disagreement at
    points whose cost lies within the derived rounding bound of tau under both the plain and the
    ray kernels (the loop evaluates one point per call, the batched mode batches). True when
    every crossing is the same."""
    k = loop.shape[0]
    coef = paper_coefficients()
    t_in, t_out, d = rays_of(est, cost, cost.anchor)
    raw = raw_gaussian(torch.arange(k), est.n_params, est.config["seed"])
    gaps = bracket_gaps(t_in[:k], t_out[:k], *grid_brackets(loop_crossings(loop, row_norms(raw), coef), coef))
    if not gaps:
        return True
    origin, dk = cost.anchor, d[:k].to(device=cost.device, dtype=cost.dtype)
    kernels = {"plain": plain_kernel(cost, origin, dk), "rays": ray_kernel(cost, origin, dk)}
    roundoff = _roundoff(cost)
    records = gap_end_costs(gaps, kernels, origin=origin.cpu(), directions=d[:k], tau=tau,
                            bound=lambda pts, o: cost.rounding_bound(pts.to(cost.device), origin=o.to(cost.device),
                                                                     roundoff=roundoff))
    bad = [r for r in records if not r["ratio"] <= 1]
    assert not bad, f"{name}: the paper-compatible mode's crossings differ from the loop's beyond rounding: {bad[:2]}"
    return False


# --------------------------------------------------------------------------- the three methods
@pytest.mark.parametrize("method", METHODS)
def test_volume_speed(benchmark, method: str, landscape, tf32: bool, bench, recorder, peak_cache) -> None:
    """Time one method on one landscape; the batched and principled rows carry the speed-up over
    the loop measured in this run (same directions, device, dtype, TF32 setting and threads)."""
    spec = landscape.spec
    k = bench.scale.directions(spec)
    tau = bench.scale.threshold
    seed = bench.direction_seed
    device, dtype = bench.device, bench.dtype
    anchor = landscape.anchor
    loop_key = (spec.case_id, str(device), tf32, k)
    benchmark.group = f"{spec.case_id} tf32-{'on' if tf32 else 'off'}"

    k_loop = min(k, bench.scale.loop_directions or k)

    def run_loop(cost) -> torch.Tensor:
        return paper_loop_radii(cost, anchor, threshold=tau, n_directions=k_loop, seed=seed, device=device,
                                dtype=dtype)

    def run_batched(cost):
        return reference_log_volume(cost, anchor, threshold=tau, n_directions=k, seed=seed, device=device, dtype=dtype)

    def run_principled(cost, rtol=bench.scale.principled_rtol, search="itp"):
        return estimate_log_volume(cost, anchor, threshold=tau, n_directions=k, directions="filter",
                                   rtol=rtol, seed=seed, device=device, dtype=dtype, search=search)

    with tf32_mode(tf32):
        peak = peak_cache(tf32)
        if method == "loop":
            # One full-data forward pass per evaluation, as the paper's code does (no early exit
            # over data chunks, which would make the baseline slower than the original).
            cost = landscape.cost(early_exit=False, dtype=dtype)
            rounds = bench.scale.loop_rounds
        else:
            baseline = recorder.loop(loop_key)
            if baseline is None:  # the loop's own test was deselected: measure it once, inline
                loop_cost = landscape.cost(early_exit=False, dtype=dtype)
                t0 = synced_perf_counter()
                radii = run_loop(loop_cost)
                baseline = recorder.put_loop(loop_key, seconds=(synced_perf_counter() - t0) * k / k_loop, radii=radii,
                                             source="inline")
            cost = landscape.cost(dtype=dtype, ray_interface=not method.endswith("_baseline"))
            rounds = bench.scale.rounds
        method_fn = {"loop": run_loop, "paper_batched": run_batched, "paper_batched_baseline": run_batched,
                     "principled": run_principled,
                     "principled_baseline": functools.partial(run_principled, search="bisect"),
                     "principled_default": functools.partial(run_principled, rtol=None)}[method]
        fn = functools.partial(method_fn, cost)
        timed, measured, memory = _run_benchmark(benchmark, fn, rounds=rounds, warmup=bench.warmup_rounds,
                                                 reset=cost.reset_counters, device=device)
        tf32_state = tf32_enabled()

    best = min(measured)
    info: dict[str, Any] = {
        "method": method,
        "scale": bench.scale.name,
        "device": str(device),
        "device_name": peak.device_name,
        "dtype": str(dtype).replace("torch.", ""),
        "tf32": tf32_state,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "n_directions": k,
        "direction_seed": seed,
        "threshold": tau,
        "grid_points": len(paper_coefficients()),
        **landscape.describe(),
        "rounds": len(measured),
        "seconds_min": best,
        "seconds_median": statistics.median(measured),
        "seconds_all": measured,
        "peak_memory_bytes": memory.bytes,
        "peak_memory_kind": memory.kind,
        **_throughput(cost, best, peak),
    }
    if method == "loop":
        radii = timed.result
        # Scaled to K directions when the loop ran on fewer (its cost is linear in K).
        baseline = recorder.put_loop(loop_key, seconds=best * k / k_loop, radii=radii, source="benchmark")
        info.update(speedup_vs_loop=1.0, loop_seconds=baseline.seconds, loop_directions=k_loop,
                    n_dropped=int(torch.isnan(radii).sum()))
    else:
        est = timed.result
        info.update(speedup_vs_loop=baseline.seconds / best, loop_seconds=baseline.seconds,
                    loop_source=baseline.source, log_volume=est.log_volume, n_cost_evals=est.n_cost_evals,
                    estimate=est.summary())
        if method.startswith("paper_batched"):
            info["radii_match_loop"] = _check_same_radii(est, baseline.radii, cost, tau, spec.case_id)
            info["radii_compared_with_loop"] = baseline.n_directions
            info["mean_crossing_index"] = est.summary()["mean_crossing_index"]
        recorder.put_result((spec.case_id, str(device), tf32, k, method), est)
        _check_against_baseline(recorder, (spec.case_id, str(device), tf32, k), method, est, info, cost, tau)
    benchmark.extra_info.update(info)
    recorder.add_row({"landscape": spec.case_id, "tf32": tf32, "method": method, "n_directions": k,
                      "seconds": best, "speedup": info["speedup_vs_loop"] if method != "loop" else None,
                      "evals_per_s": info["cost_evals_per_s"],
                      "gflops_per_s": info["executed_flops_per_s"] / 1e9,
                      "peak_mib": memory.bytes / 2**20 if memory.bytes else None})
    assert math.isfinite(best) and best > 0, f"{method}: no valid timing was measured ({measured})"


# --------------------------------------------------------------------------- Table 1 experiment
@dataclass(frozen=True)
class Table1Config:
    """The MNIST MLP experiment behind Fan et al.'s Table 1 (alpha = -0.1835) and Fig. 10.

    For every seed s: nested training sets of ``sizes`` (base ``base``, data seed s + 10), one
    minimum per size (model seed s, AdamW lr 1e-3 full batch, ``epochs``), and the paper's volume
    (``reference_log_volume``, the same K directions for every minimum and landscape) of every
    minimum in every landscape no larger than its own training set. Then log V of each size's own
    minimum is fitted against log D (alpha = slope / n).

    Attributes:
        name: parameter id.
        sizes: landscape sizes, increasing. The paper's text does not list its sizes (Fig. 10 spans
            0.1% to 100% of MNIST); (60, 200, 600, 2,000, 6,000, 60,000) covers the same three
            decades at half-decade steps up to 6,000.
        seeds: model seeds (data seed = model seed + 10).
        n_directions: K (the paper: 500).
        epochs: AdamW full-batch epochs (the paper: 500, no early stop).
        stop_at_train_loss: early stop for small-scale runs (None: the paper's fixed epochs).
        threshold: tau (the paper: CE 0.1).
        base: nested-subset base (the paper: 60).
        direction_seed: seed of the K raw Gaussian directions.
        target_seconds: the wall-clock target of the issue (recorded, not asserted), or None.
    """

    name: str
    sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    n_directions: int
    epochs: int = 500
    stop_at_train_loss: float | None = None
    threshold: float = 0.1
    base: int = 60
    direction_seed: int = 0
    target_seconds: float | None = None

    def __post_init__(self) -> None:
        if len(self.sizes) < 2 or list(self.sizes) != sorted(set(self.sizes)) or self.sizes[0] < self.base:
            raise ValueError(f"sizes must be >= 2 distinct increasing sizes, each >= base {self.base}, "
                             f"got {self.sizes}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and non-empty, got {self.seeds}")
        if self.n_directions < 1 or self.epochs < 1:
            raise ValueError(f"n_directions and epochs must be >= 1, got {self.n_directions}, {self.epochs}")

    @property
    def n_estimates(self) -> int:
        """Volume estimates: per seed, minimum j in landscapes 0..j."""
        m = len(self.sizes)
        return len(self.seeds) * m * (m + 1) // 2


TABLE1_H100 = Table1Config("h100", sizes=(60, 200, 600, 2_000, 6_000, 60_000), seeds=tuple(range(10)),
                           n_directions=500, target_seconds=300.0)
# Same code path, small enough for a 2-core CPU in well under a minute: 3 sizes, 2 seeds, 4
# directions, training stopped at train loss 0.05 (half the threshold).
TABLE1_TINY = Table1Config("tiny-cpu", sizes=(60, 120, 240), seeds=(0, 1), n_directions=4,
                           stop_at_train_loss=0.05)


@dataclass(frozen=True)
class Table1Result:
    """Outcome and cost of one Table 1 run (see :func:`run_table1`).

    ``log_volumes[(seed, train_size, landscape_size)]`` is the paper's log V (nats, no unit-ball
    constant), -inf where the minimum's cost on that landscape is not below tau (the paper's
    "volume zero").
    """

    config: Table1Config
    variant: str
    n_params: int
    log_volumes: dict[tuple[int, int, int], float]
    train_losses: dict[tuple[int, int], float]
    seconds_total: float
    seconds_train: float
    seconds_volume: float
    seconds_directions: float
    n_estimates: int
    n_outside: int
    cost_evals: int
    example_vectors: int
    flop_count: float
    fit: dict[str, Any] | None
    own_largest_fraction: float | None

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary for ``benchmark.extra_info``."""
        return {
            "table1": self.config.name,
            "sizes": list(self.config.sizes),
            "seeds": list(self.config.seeds),
            "n_directions": self.config.n_directions,
            "direction_seed": self.config.direction_seed,
            "epochs": self.config.epochs,
            "stop_at_train_loss": self.config.stop_at_train_loss,
            "threshold": self.config.threshold,
            "data_variant": self.variant,
            "n_params": self.n_params,
            "seconds_total": self.seconds_total,
            "seconds_train": self.seconds_train,
            "seconds_volume": self.seconds_volume,
            "seconds_directions": self.seconds_directions,
            "target_seconds": self.config.target_seconds,
            "meets_target": None if self.config.target_seconds is None
            else self.seconds_total < self.config.target_seconds,
            "n_minima": len(self.train_losses),
            "n_estimates": self.n_estimates,
            "n_outside_threshold": self.n_outside,
            "cost_evals": self.cost_evals,
            "example_vectors": self.example_vectors,
            "flop_count": self.flop_count,
            "max_train_loss": max(self.train_losses.values()),
            "alpha_fit": self.fit,
            "alpha_paper": -0.1835,  # Fan et al., Table 1, MNIST MLP
            "own_minimum_largest_fraction": self.own_largest_fraction,
            "log_volumes": [[s, d_train, d_land, v if math.isfinite(v) else None]
                            for (s, d_train, d_land), v in sorted(self.log_volumes.items())],
        }


def run_table1(config: Table1Config, dataset, *, device: torch.device,
               dtype: torch.dtype = torch.float32) -> Table1Result:
    """Run the Table 1 experiment ``config`` on ``dataset`` (a ``volbench.data`` MNIST Dataset),
    training included, and return what it found and what it cost.

    Work: ``len(seeds) * len(sizes)`` trainings and :attr:`Table1Config.n_estimates` volume
    estimates with K directions each. The K raw directions are drawn once (``raw_gaussian``, one
    seed per direction, exactly the draws ``seed=direction_seed`` would give) and passed to every
    estimate, so the CPU does not redraw 500 x 235,146 normals for each of the 210 estimates.
    """
    from volbench.claims.analysis import fit_power_law
    from volbench.costs import ModelCost
    from volbench.data import data_seed_for, nested_subsets
    from volbench.estimator.directions import raw_gaussian
    from volbench.lab import models
    from volbench.lab.train import paper_recipe, train

    if dataset.n_train < config.sizes[-1]:
        raise ValueError(f"{config.name}: the {dataset.variant} data set has {dataset.n_train} training examples, "
                         f"fewer than the largest size {config.sizes[-1]}")
    start = time.perf_counter()
    recipe = paper_recipe("mnist_mlp", epochs=config.epochs, stop_at_train_loss=config.stop_at_train_loss,
                          history_every=config.epochs)
    n_params = models.model_info(models.build("mnist_mlp", seed=0))["n_params"]
    t0 = time.perf_counter()
    directions = raw_gaussian(torch.arange(config.n_directions), n_params, config.direction_seed)
    seconds_directions = time.perf_counter() - t0
    x_all = dataset.train_inputs.to(device=device, dtype=dtype)
    y_all = dataset.train_targets.to(device)

    log_volumes: dict[tuple[int, int, int], float] = {}
    train_losses: dict[tuple[int, int], float] = {}
    seconds_train = seconds_volume = 0.0
    n_outside = cost_evals = pairs = 0
    flop_count = 0.0
    for seed in config.seeds:
        subsets = nested_subsets(dataset, list(config.sizes), base=config.base, seed=data_seed_for(seed))
        idx = [s.to(device) for s in subsets]
        minima = []
        t0 = synced_perf_counter()
        for size, rows in zip(config.sizes, idx):
            net = models.build("mnist_mlp", seed=seed, device=device, dtype=dtype)
            res = train(net, x_all[rows], y_all[rows], recipe, device=device)
            train_losses[(seed, size)] = res.train_loss
            minima.append((size, net, res.params.to(dtype)))
        seconds_train += synced_perf_counter() - t0
        t0 = synced_perf_counter()
        for i, (land_size, rows) in enumerate(zip(config.sizes, idx)):
            x, y = x_all[rows], y_all[rows]
            for train_size, net, anchor in minima[i:]:
                cost = ModelCost(net, x, y, loss="ce", anchor=anchor, dtype=dtype)
                if float(cost(anchor.to(device).unsqueeze(0))[0]) >= config.threshold:
                    log_volumes[(seed, train_size, land_size)] = -math.inf  # not a minimum of this landscape
                    n_outside += 1
                else:
                    est = reference_log_volume(cost, anchor, threshold=config.threshold, directions=directions,
                                               seed=config.direction_seed, device=device, dtype=dtype)
                    log_volumes[(seed, train_size, land_size)] = est.log_volume
                counters = cost.counters()
                cost_evals += counters["n_vectors_evaluated"]
                pairs += counters["n_examples_evaluated"]
                flop_count += counters["n_examples_evaluated"] * cost.flops_per_example()
        seconds_volume += synced_perf_counter() - t0

    own = [(d, log_volumes[(s, d, d)]) for s in config.seeds for d in config.sizes]
    try:
        fit = fit_power_law([d for d, _ in own], [v for _, v in own], n_params=n_params).as_dict()
    except ValueError:  # fewer than three finite points: nothing to fit
        fit = None
    wins = []
    for s in config.seeds:
        for i, land in enumerate(config.sizes[:-1]):
            others = [log_volumes[(s, d, land)] for d in config.sizes[i + 1:]]
            wins.append(log_volumes[(s, land, land)] > max(others))
    return Table1Result(
        config=config, variant=dataset.variant, n_params=n_params, log_volumes=log_volumes,
        train_losses=train_losses, seconds_total=time.perf_counter() - start, seconds_train=seconds_train,
        seconds_volume=seconds_volume, seconds_directions=seconds_directions,
        n_estimates=len(log_volumes), n_outside=n_outside, cost_evals=cost_evals, example_vectors=pairs,
        flop_count=flop_count, fit=fit, own_largest_fraction=sum(wins) / len(wins) if wins else None)


_NO_CUDA = not torch.cuda.is_available()


@pytest.mark.parametrize("config", [
    pytest.param(TABLE1_TINY, id="tiny-cpu"),
    pytest.param(TABLE1_H100, id="h100", marks=[
        pytest.mark.gpu, pytest.mark.nightly,
        pytest.mark.skipif(_NO_CUDA, reason="the Table 1 experiment at paper scale needs a CUDA device (target: "
                                            "< 5 minutes on one H100); the tiny-cpu parameter runs the same code")]),
])
def test_table1_experiment(benchmark, config: Table1Config, tf32: bool, bench) -> None:
    """Time the whole Table 1 experiment (training included) and record what it found."""
    from volbench import data

    if config.name == "h100" and bench.device.type != "cuda":
        pytest.skip("the h100 Table 1 run needs --bench-device cuda")
    if config.name == "tiny-cpu" and tf32:
        pytest.skip("the tiny run checks the code path; TF32 timing is the h100 run's job")
    try:
        ds = data.load("mnist", variant="auto", download=False)
    except FileNotFoundError as err:
        pytest.skip(f"no MNIST data found ({err}); set VOLBENCH_DATA")
    if ds.n_train < config.sizes[-1]:
        pytest.skip(f"Table 1 ({config.name}) needs {config.sizes[-1]:,} MNIST training examples; the "
                    f"{ds.variant!r} variant has {ds.n_train:,}: put the full MNIST IDX files in a VOLBENCH_DATA root")
    benchmark.group = f"table1 {config.name}"
    with tf32_mode(tf32):
        timed, measured, memory = _run_benchmark(
            benchmark, lambda: run_table1(config, ds, device=bench.device, dtype=bench.dtype),
            rounds=1, warmup=0, reset=lambda: None, device=bench.device)
        tf32_state = tf32_enabled()
    result: Table1Result = timed.result
    summary = result.summary()
    benchmark.extra_info.update(summary)
    benchmark.extra_info.update(
        device=str(bench.device), dtype=str(bench.dtype).replace("torch.", ""), tf32=tf32_state,
        torch_threads=torch.get_num_threads(), peak_memory_bytes=memory.bytes, peak_memory_kind=memory.kind,
        achieved_flops_per_s=result.flop_count / result.seconds_volume if result.seconds_volume > 0 else None)
    assert result.n_estimates == config.n_estimates, (
        f"expected {config.n_estimates} (seed, minimum, landscape) pairs, got {result.n_estimates}")
    assert summary["max_train_loss"] < config.threshold, (
        f"a minimum did not reach train loss < {config.threshold} (max {summary['max_train_loss']:.4g}); "
        "its own volume is undefined")
    own = [result.log_volumes[(s, d, d)] for s in config.seeds for d in config.sizes]
    assert all(math.isfinite(v) for v in own), f"every minimum must have a finite volume in its own landscape: {own}"
