"""Configuration of the speed benchmarks (issue P7): scales, device, trained landscapes.

The benchmarks time three ways of computing the main paper's volume of one trained minimum on the
same device in the same run (see ``test_speed.py``); this file provides what they share:

* command-line options (each also an environment variable, so CI can set them once):

  ==========================  ==========================  =========================================
  option                      environment                 meaning
  ==========================  ==========================  =========================================
  ``--bench-scale ci|paper``  ``VOLBENCH_BENCH_SCALE``    directions and rounds (:data:`SCALES`)
  ``--bench-device DEV``      ``VOLBENCH_BENCH_DEVICE``   "cpu", "cuda", "cuda:1" (default: cuda if
                                                          available, else cpu)
  ``--bench-threads N``       ``VOLBENCH_BENCH_THREADS``  torch CPU threads (default: torch's)
  ``--bench-store DIR``       ``VOLBENCH_STORE``          minima cache (default <rootdir>/.volbench-store)
  ==========================  ==========================  =========================================

* ``landscape``: a session fixture, parametrized over :data:`LANDSCAPES`, holding a trained
  minimum and its data. Minima are cached in a :class:`volbench.store.minima.MinimaStore`, so a re-run
  does not retrain. The 60,000-example MNIST landscape skips unless the full MNIST training set
  is present (the repository ships only the 10k test split; ``volbench.data`` calls that variant
  "mnist-10k" and every result records the variant).
* ``tf32``: a parameter, ``False`` on a CPU and ``False``/``True`` on a CUDA device (TF32 changes
  float32 matmul speed and rounding on Ampere and newer GPUs).
* guards: benchmarks refuse to run under pytest-xdist (parallel workers share the cores and
  distort every timing), and ``--benchmark-json``'s parent folder is created.

Run (see README.md)::

    python -m pytest benchmarks -p no:xdist --benchmark-only --benchmark-json=reports/bench/cpu.json
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import torch

_HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- what is measured
@dataclass(frozen=True)
class LandscapeSpec:
    """One benchmark landscape: a data set, a model trained on it, the cost of that model.

    Attributes:
        case_id: the id in test names, e.g. ``"mnist-600"``.
        dataset: ``volbench.data`` name ("mnist" or "swiss_roll").
        model: ``volbench.lab.models`` name ("mnist_mlp": 784-256-128-10, 235,146 parameters;
            "swiss_mlp": 2-32x5-1, 4,353 parameters).
        loss: the paper's loss for the task ("ce" for MNIST, "bce" for the two spirals).
        n_examples: landscape size (examples in the cost).
        ci_directions: directions at the CI scale. Chosen so that the sequential loop (100 forward
            passes per direction over all ``n_examples``) stays at a few seconds to half a minute
            on one CPU core: swiss 16 (cheap: 4,353 parameters), MNIST 600 -> 8, 6,000 -> 2,
            60,000 -> 1. The speed-up ratio, not the absolute time, is what the benchmark is for.
    """

    case_id: str
    dataset: str
    model: str
    loss: str
    n_examples: int
    ci_directions: int


#: The landscapes of the issue: MNIST MLP on 600, 6,000 and 60,000 examples (nested subsets with
#: the paper's 60-example base) and the two spirals on 800 points (the paper's largest set).
LANDSCAPES: tuple[LandscapeSpec, ...] = (
    LandscapeSpec("swiss-800", "swiss_roll", "swiss_mlp", "bce", 800, 16),
    LandscapeSpec("mnist-600", "mnist", "mnist_mlp", "ce", 600, 8),
    LandscapeSpec("mnist-6000", "mnist", "mnist_mlp", "ce", 6_000, 2),
    LandscapeSpec("mnist-60000", "mnist", "mnist_mlp", "ce", 60_000, 1),
)

#: Base set of the nested MNIST subsets (Fan et al.: base 60, extras up to 59,940).
MNIST_BASE = 60
#: Seed of the benchmark minima (model seed 0, data seed 0 + 10 as in the paper's code) and of the
#: directions (the same directions for the loop and the batched mode: their radii must agree).
MODEL_SEED = 0
DIRECTION_SEED = 0


@dataclass(frozen=True)
class BenchScale:
    """How big a benchmark run is.

    Attributes:
        name: "ci" (a 2-core CPU, about two minutes when the minima are cached) or "paper" (a GPU).
        n_directions: directions for every landscape, or None for each landscape's
            ``ci_directions``. The paper uses 500 (Fan et al., Sec. 4).
        loop_rounds: timed rounds of the sequential loop (the slow side; 1 keeps CI short).
        rounds: timed rounds of the batched and principled estimators (the minimum is reported).
        threshold: loss threshold tau of the basin (the paper's 0.1 for CE and BCE).
        principled_rtol: relative precision of the principled estimator's radii. 1e-2 is ten
            times finer than the paper's grid at a typical crossing (coefficients (j/99)^2 are
            2/j apart relative to each other: 12% at j = 17).
        stop_at_train_loss: training stops at the first epoch whose train loss is below this
            (CI: 0.05, half the threshold, so the anchor sits well inside its basin and training
            a 6,000-example MLP on a CPU takes about a minute instead of 500 full epochs); None
            trains the paper's full 500 epochs.
        loop_directions: the sequential loop runs on this many of the K directions only (None:
            all); its time is scaled to K per direction and its radii are compared with the
            others' first ``loop_directions`` (the loop's cost is linear in K).
        landscapes: case ids run at this scale (None: all of :data:`LANDSCAPES`).
    """

    name: str
    n_directions: int | None
    loop_rounds: int
    rounds: int
    threshold: float = 0.1
    principled_rtol: float = 1e-2
    stop_at_train_loss: float | None = 0.05
    loop_directions: int | None = None
    landscapes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.n_directions is not None and self.n_directions < 1:
            raise ValueError(f"n_directions must be >= 1 or None, got {self.n_directions}")
        if self.loop_rounds < 1 or self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got loop_rounds={self.loop_rounds}, rounds={self.rounds}")
        if not 0 < self.threshold:
            raise ValueError(f"threshold must be positive, got {self.threshold}")

    def directions(self, spec: LandscapeSpec) -> int:
        """Directions used for ``spec`` at this scale (the same for all three methods)."""
        return spec.ci_directions if self.n_directions is None else self.n_directions


#: Rounds: 7 of each method at the CI scale, so ``volbench bench compare`` can decide a change across
#: machines by a Mann-Whitney U test at p < 0.002 (asv's rule; 7 vs 7 rounds is the smallest equal
#: count whose smallest two-sided p-value, 2 / C(14, 7) = 0.00058, is below it). CI itself runs each
#: benchmark once (``--benchmark-disable``). At the paper scale the loop (50,000 forward passes per
#: landscape) keeps one round; its comparisons across machines are then marked not significant.
SCALES: Mapping[str, BenchScale] = MappingProxyType({
    "ci": BenchScale("ci", n_directions=None, loop_rounds=7, rounds=7),
    "paper": BenchScale("paper", n_directions=500, loop_rounds=1, rounds=7, stop_at_train_loss=None),
    # Issue Q3's targets on a CPU: MNIST MLP on 6,000 examples, K = 64, the principled estimator
    # at rtol 1e-3 (the estimator's old default) for both the baseline and the new search.
    "target": BenchScale("target", n_directions=64, loop_rounds=1, rounds=2, principled_rtol=1e-3,
                         loop_directions=8, landscapes=("mnist-6000",)),
})

#: Version of what the benchmarks measure (landscapes, directions, methods, thresholds). Raise it
#: when a change makes timings incomparable with earlier files; ``volbench bench compare`` refuses to
#: compare files of different versions. Written into the JSON as ``volbench.benchmark_version``.
BENCHMARK_VERSION = 1


@dataclass(frozen=True)
class BenchSettings:
    """The run's settings, from the options above (see the module docstring)."""

    scale: BenchScale
    device: torch.device
    dtype: torch.dtype
    threads: int | None
    store_root: Path
    direction_seed: int = DIRECTION_SEED

    @property
    def warmup_rounds(self) -> int:
        """One untimed round on a GPU (CUDA context, cuBLAS handles and autotuning happen on first
        use); none on a CPU, where the first round is as fast as the others and CI time is short."""
        return 1 if self.device.type == "cuda" else 0


# --------------------------------------------------------------------------- options and guards
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("volbench-bench", "volbench speed benchmarks (benchmarks/)")
    group.addoption("--bench-scale", dest="bench_scale", choices=sorted(SCALES), default=None,
                    help="ci (default; 2-core CPU sized) or paper (500 directions, for a GPU); "
                         "env VOLBENCH_BENCH_SCALE")
    group.addoption("--bench-device", dest="bench_device", default=None,
                    help="cpu, cuda or cuda:N (default: cuda if available, else cpu); env VOLBENCH_BENCH_DEVICE")
    group.addoption("--bench-threads", dest="bench_threads", type=int, default=None,
                    help="torch CPU threads for the run (default: torch's choice); env VOLBENCH_BENCH_THREADS")
    group.addoption("--bench-store", dest="bench_store", default=None,
                    help="folder caching the trained minima (default: $VOLBENCH_STORE, else "
                         "<rootdir>/.volbench-store)")


def pytest_configure(config: pytest.Config) -> None:
    # pytest-benchmark opens --benchmark-json only at the end and does not create its folder.
    # (volbench's report plugin does this too; repeated here so `-p no:volbench` runs still work.)
    path = config.getoption("benchmark_json", default=None)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    config.stash[_RECORDER] = BenchRecorder()


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict) -> None:
    # What `volbench bench compare` needs besides pytest-benchmark's own fields: the benchmark
    # version, the scale, and the thread count the run used (machine_info's volbench_torch_threads
    # is read after the session restored torch's default, so it is not the benchmarks' count).
    settings = _settings(config)
    output_json["volbench"] = {
        "benchmark_version": BENCHMARK_VERSION,
        "scale": settings.scale.name,
        "device": str(settings.device),
        "threads": settings.threads if settings.threads is not None else torch.get_num_threads(),
    }


def _is_ours(item: pytest.Item) -> bool:
    try:
        return Path(str(item.path)).resolve().is_relative_to(_HERE)
    except (OSError, ValueError):
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    skip = pytest.mark.skip(
        reason=f"speed benchmarks never run under pytest-xdist (this is worker {worker}): parallel "
               "workers share the CPU cores and distort every timing; run `python -m pytest "
               "benchmarks -p no:xdist` (see benchmarks/README.md)")
    for item in items:
        if _is_ours(item):
            item.add_marker(skip)


def _option(config: pytest.Config, name: str, env: str) -> Any:
    value = config.getoption(name, default=None)
    if value is None:
        value = os.environ.get(env) or None
    return value


def _settings(config: pytest.Config) -> BenchSettings:
    scale_name = _option(config, "bench_scale", "VOLBENCH_BENCH_SCALE") or "ci"
    if scale_name not in SCALES:
        raise pytest.UsageError(f"VOLBENCH_BENCH_SCALE={scale_name!r} is not a scale; use one of {sorted(SCALES)}")
    device_name = _option(config, "bench_device", "VOLBENCH_BENCH_DEVICE")
    if device_name is None:
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device_name)
    except RuntimeError as err:
        raise pytest.UsageError(f"--bench-device {device_name!r} is not a torch device ({err}); "
                                "use cpu or cuda[:N]") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"--bench-device {device_name!r} asked for CUDA but torch sees no CUDA device; "
                                "use --bench-device cpu")
    if device.type not in ("cpu", "cuda"):
        raise pytest.UsageError(f"--bench-device must be cpu or cuda[:N], got {device_name!r}")
    threads = _option(config, "bench_threads", "VOLBENCH_BENCH_THREADS")
    if threads is not None:
        try:
            threads = int(threads)
        except ValueError:
            threads = 0
        if threads < 1:
            raise pytest.UsageError(f"--bench-threads / VOLBENCH_BENCH_THREADS must be a positive int, got {threads!r}")
    store = _option(config, "bench_store", "VOLBENCH_STORE")
    store_root = Path(store).expanduser() if store else Path(config.rootpath) / ".volbench-store"
    return BenchSettings(SCALES[scale_name], device, torch.float32, threads, store_root)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "tf32" in metafunc.fixturenames:
        settings = _settings(metafunc.config)
        values = [False, True] if settings.device.type == "cuda" else [False]
        metafunc.parametrize("tf32", values, ids=[f"tf32-{'on' if v else 'off'}" for v in values])


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def bench(pytestconfig: pytest.Config) -> BenchSettings:
    """The run's :class:`BenchSettings`."""
    return _settings(pytestconfig)


@pytest.fixture(scope="session", autouse=True)
def _bench_threads(bench: BenchSettings):
    """Apply ``--bench-threads`` for the session and restore torch's setting afterwards."""
    before = torch.get_num_threads()
    if bench.threads is not None:
        torch.set_num_threads(bench.threads)
    yield
    torch.set_num_threads(before)


@dataclass(frozen=True)
class Landscape:
    """A trained minimum and the data of its landscape, on the benchmark device.

    Attributes:
        spec: what it is.
        inputs, targets: the landscape's examples (on the device).
        model: the architecture with the minimum's parameters loaded (on the device).
        anchor: flat parameters of the minimum (CPU).
        train_loss: its loss on ``inputs`` when training stopped.
        variant: the data variant (e.g. "mnist-10k", "mnist-full", "two-spirals").
        model_seed, data_seed: the seeds of the minimum's initialisation and of the subset.
        store_key: its key in the minima store; trained: whether this session trained it.
    """

    spec: LandscapeSpec
    inputs: torch.Tensor
    targets: torch.Tensor
    model: torch.nn.Module
    anchor: torch.Tensor
    train_loss: float
    variant: str
    model_seed: int
    data_seed: int
    store_key: str
    trained: bool

    def cost(self, *, early_exit: bool = True, dtype: torch.dtype = torch.float32, **kw: Any):
        """A fresh ``ModelCost`` of this landscape (fresh counters). ``early_exit=False`` makes
        every evaluation one pass over all examples, as the paper's loop does;
        ``ray_interface=False`` gives the estimators today's flat-vector path (the baseline)."""
        from volbench.costs import ModelCost

        return ModelCost(self.model, self.inputs, self.targets, loss=self.spec.loss,
                         anchor=self.anchor, dtype=dtype, early_exit=early_exit, **kw)

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts for ``benchmark.extra_info``."""
        return {
            "landscape": self.spec.case_id,
            "dataset": self.spec.dataset,
            "data_variant": self.variant,
            "model": self.spec.model,
            "loss": self.spec.loss,
            "n_examples": int(self.inputs.shape[0]),
            "n_params": int(self.anchor.numel()),
            "model_seed": self.model_seed,
            "data_seed": self.data_seed,
            "train_loss": self.train_loss,
            "minimum_store_key": self.store_key,
        }


def _minimum_spec(spec: LandscapeSpec, settings: BenchSettings):
    """The lab's spec of a benchmark minimum: the landscape's examples are the minimum's own
    training set (nested MNIST subsets on the paper's base of 60; the whole swiss-roll split), the
    paper's recipe stopped at ``stop_at_train_loss``."""
    from volbench.lab import MinimumSpec
    from volbench.lab.train import paper_recipe

    recipe = paper_recipe(spec.model, stop_at_train_loss=settings.scale.stop_at_train_loss,
                          history_every=50, seed=MODEL_SEED)
    if spec.dataset == "swiss_roll":
        return MinimumSpec("swiss_roll", spec.model, train_size=spec.n_examples, seed=MODEL_SEED, train=recipe,
                           dataset_options=(("n_train", spec.n_examples),))
    return MinimumSpec(spec.dataset, spec.model, train_size=spec.n_examples, seed=MODEL_SEED, base=MNIST_BASE,
                       train=recipe)


def build_landscape(spec: LandscapeSpec, settings: BenchSettings) -> Landscape:
    """Train (or fetch from the store) the minimum of ``spec`` through the lab, so it is keyed by
    the training code's provenance like every other minimum, and return it with its data."""
    from volbench import lab
    from volbench.data import DatasetNotFoundError
    from volbench.store.minima import MinimaStore

    mspec = _minimum_spec(spec, settings)
    try:
        ds = lab.load_dataset(mspec.dataset, mspec.dataset_options)
    except DatasetNotFoundError as err:
        pytest.skip(f"{spec.case_id}: {err.reason}")
    if ds.n_train < spec.n_examples:
        pytest.skip(
            f"{spec.case_id} needs {spec.n_examples:,} training examples but the {ds.variant!r} "
            f"variant has {ds.n_train:,} (only the 10k MNIST test split is shipped); put the full "
            "MNIST IDX files in a VOLBENCH_DATA root to run it")
    minimum = lab.train_minimum(mspec, MinimaStore(settings.store_root), device=settings.device)
    train_loss = float(minimum.metrics.get("train_loss", float("nan")))
    if not train_loss < settings.scale.threshold:
        raise RuntimeError(
            f"{spec.case_id}: the trained minimum's train loss {train_loss:.4g} is not below the threshold "
            f"{settings.scale.threshold}; the recipe {mspec.train} did not reach a minimum")
    batch = lab.training_batch(mspec)
    model = minimum.build_model(device=settings.device, dtype=settings.dtype)
    return Landscape(spec=spec, inputs=batch.inputs.to(settings.device), targets=batch.targets.to(settings.device),
                     model=model, anchor=minimum.params.to(settings.dtype), train_loss=train_loss, variant=ds.variant,
                     model_seed=MODEL_SEED, data_seed=mspec.data_seed, store_key=minimum.key,
                     trained=minimum.trained_now)


@pytest.fixture(scope="session", params=LANDSCAPES, ids=[s.case_id for s in LANDSCAPES])
def landscape(request: pytest.FixtureRequest, bench: BenchSettings) -> Landscape:
    """A trained :class:`Landscape` per :data:`LANDSCAPES` entry (session-scoped: each is built once
    and the tests of one landscape run together)."""
    if bench.scale.landscapes is not None and request.param.case_id not in bench.scale.landscapes:
        pytest.skip(f"the {bench.scale.name} scale runs only {', '.join(bench.scale.landscapes)}")
    return build_landscape(request.param, bench)


@dataclass(frozen=True)
class LoopRun:
    """The sequential loop's timing and radii for one landscape, device and TF32 setting."""

    seconds: float  # fastest round (synchronised wall clock)
    radii: torch.Tensor  # [K] float64, NaN where a direction never crossed
    n_directions: int
    source: str  # "benchmark" (the loop's own test) or "inline" (measured by a later test)


class BenchRecorder:
    """What one benchmark session measured, kept in ``config.stash`` (no module globals):

    * the loop runs, so the batched and principled tests compare with the loop measured in the
      same run (the loop's own benchmark, or one inline run where it was deselected);
    * one summary row per (landscape, TF32, method), printed as a table at the end of the run.
    """

    def __init__(self) -> None:
        self._loops: dict[tuple[Any, ...], LoopRun] = {}
        self._rows: list[dict[str, Any]] = []
        self._results: dict[tuple[Any, ...], Any] = {}

    def put_result(self, key: tuple[Any, ...], result: Any) -> None:
        """Keep a method's estimate, so a later method compares its answer with it."""
        self._results[key] = result

    def result(self, key: tuple[Any, ...]) -> Any:
        return self._results.get(key)

    def loop(self, key: tuple[Any, ...]) -> LoopRun | None:
        """The loop run recorded under ``key``, or None."""
        return self._loops.get(key)

    def put_loop(self, key: tuple[Any, ...], *, seconds: float, radii: torch.Tensor, source: str) -> LoopRun:
        """Record the loop's fastest round ``seconds`` and its ``radii`` under ``key``."""
        run = LoopRun(seconds=float(seconds), radii=radii.detach().cpu().to(torch.float64),
                      n_directions=int(radii.numel()), source=source)
        self._loops[key] = run
        return run

    def add_row(self, row: dict[str, Any]) -> None:
        """Add a summary row (keys: landscape, tf32, method, n_directions, seconds, speedup,
        evals_per_s, flops_per_s)."""
        self._rows.append(dict(row))

    def versus_table(self) -> list[str]:
        """Issue Q3's comparisons, one line per landscape and TF32 setting: each new path against
        the baseline it replaces (today's path), measured side by side in this run."""
        groups: dict[tuple[str, bool], dict[str, dict[str, Any]]] = {}
        for row in self._rows:
            groups.setdefault((row["landscape"], row["tf32"]), {})[row["method"]] = row
        pairs = [("paper_batched_baseline", "paper_batched", "paper"), ("principled_baseline", "principled", "princ"),
                 ("principled_baseline", "principled_default", "princ-1nat")]
        fmt = "{:<12} {:>5} {:>4} {:<10} {:>9} {:>9} {:>7} {:>10} {:>10} {:>9} {:>9} {:>8}"
        lines = [fmt.format("landscape", "tf32", "K", "what", "base s", "new s", "x", "base ev/s", "new ev/s",
                            "base GF/s", "new GF/s", "new MiB")]
        for (name, tf32), group in groups.items():
            for base, new, label in pairs:
                if base not in group or new not in group:
                    continue
                b, n = group[base], group[new]
                lines.append(fmt.format(name, "on" if tf32 else "off", n["n_directions"], label,
                                        f"{b['seconds']:.2f}", f"{n['seconds']:.2f}",
                                        f"{b['seconds'] / n['seconds']:.1f}",
                                        f"{b['evals_per_s']:.1f}", f"{n['evals_per_s']:.1f}",
                                        f"{b['gflops_per_s']:.1f}", f"{n['gflops_per_s']:.1f}",
                                        "-" if n.get("peak_mib") is None else f"{n['peak_mib']:.0f}"))
        for row in self._rows:
            if row["method"].startswith("sweep:") or row["method"].startswith("directions:"):
                lines.append(f"{row['landscape']:<12} {'on' if row['tf32'] else 'off':>5} {row['n_directions']:>4} "
                             f"{row['method']:<24} {row['seconds']:9.2f} s  {row.get('note', '')}")
        return lines if len(lines) > 1 else []

    def table(self) -> list[str]:
        """The summary as text lines: one line per landscape and TF32 setting."""
        groups: dict[tuple[str, bool], dict[str, dict[str, Any]]] = {}
        for row in self._rows:
            groups.setdefault((row["landscape"], row["tf32"]), {})[row["method"]] = row
        if not groups:
            return []
        fmt = "{:<12} {:>5} {:>4} {:>9} {:>9} {:>9} {:>8} {:>8} {:>11} {:>11} {:>9}"
        lines = [fmt.format("landscape", "tf32", "K", "loop s", "batch s", "princ s", "batch x", "princ x",
                            "batch ev/s", "princ ev/s", "batch GF/s")]

        def cell(group: dict[str, dict[str, Any]], method: str, key: str, spec: str) -> str:
            value = group.get(method, {}).get(key)
            return "-" if value is None else format(value, spec)

        for (name, tf32), group in groups.items():
            k = next(iter(group.values()))["n_directions"]
            lines.append(fmt.format(
                name, "on" if tf32 else "off", k,
                cell(group, "loop", "seconds", ".2f"), cell(group, "paper_batched", "seconds", ".2f"),
                cell(group, "principled", "seconds", ".2f"),
                cell(group, "paper_batched", "speedup", ".1f"), cell(group, "principled", "speedup", ".1f"),
                cell(group, "paper_batched", "evals_per_s", ".1f"), cell(group, "principled", "evals_per_s", ".1f"),
                cell(group, "paper_batched", "gflops_per_s", ".1f")))
        return lines


_RECORDER = pytest.StashKey[BenchRecorder]()


@pytest.fixture(scope="session")
def recorder(pytestconfig: pytest.Config) -> BenchRecorder:
    """The session's :class:`BenchRecorder`."""
    return pytestconfig.stash[_RECORDER]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash[_RECORDER].table() if _RECORDER in config.stash else []
    if lines:
        terminalreporter.section("volbench speed benchmarks (fastest round; x = speed-up vs the loop)")
        for line in lines:
            terminalreporter.write_line(line)
    versus = config.stash[_RECORDER].versus_table() if _RECORDER in config.stash else []
    if versus:
        terminalreporter.section("issue Q3: new paths vs today's (fastest round, same run, same directions)")
        for line in versus:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def peak_cache(bench: BenchSettings):
    """``peak(tf32) -> volbench.bench.flops.DevicePeak`` for the benchmark device, each measured once
    (a CPU's is a large-GEMM measurement, about a second)."""
    from volbench.bench.flops import device_peak, tf32_mode

    cache: dict[bool, Any] = {}

    def peak(tf32: bool):
        if tf32 not in cache:
            with tf32_mode(tf32):
                cache[tf32] = device_peak(bench.device, bench.dtype, tf32=tf32, seed=bench.direction_seed)
        return cache[tf32]

    return peak


