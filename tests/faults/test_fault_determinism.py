"""Determinism (claim E3): the same seed gives the same radii and log-volumes.

On the CPU, with a real trained minimum (the two-spirals MLP, 4,353 parameters, BCE on 64
examples) in float32, the default precision:

* bit-identical radii and log-volumes (principled estimator and the paper's grid procedure) in
  two separate processes, each training the minimum from scratch, and in this process;
* bit-identical across direction batch sizes and the grid's lookahead;
* bit-identical, costs included, across the number of parameter vectors per forward pass of
  ``volbench.costs.ModelCost`` (``max_batch``), including a memory budget that forces the
  out-of-memory halving path.

Within a tolerance only, and documented here:

* data chunk sizes (``data_chunk``, or a memory budget small enough that the planner splits the
  examples): the chunk changes the shape of every GEMM, and CPU GEMM kernels round differently
  for different shapes (and machines: MKL on Intel and AMD, AVX2 and AVX-512 kernels), so costs
  move in their last bits. The tolerance is ``rounding_tolerance`` below, derived from the
  network (a probabilistic forward-error bound): 65-150 ulp of the cost in float32 for these
  vectors, 3.4e-14 relative in float64. Measured: <= 1.8 ulp in float32 on an AMD EPYC under
  ATEN_CPU_CAPABILITY=default and avx2, MKL_CBWR=COMPATIBLE and AVX2, 1 and 2 threads. Radii:
  identical in float64 (a flip needs one of the ~500 costs evaluated to fall within ~3e-14
  relative of tau); in float32 per-ray |diff log r| <= 2 log(1 + rtol) and the reference's
  crossing index within one grid point (a cost within the tolerance of tau may flip one
  bisection step or grid decision). Measured while writing this: identical radii everywhere.
* the batched-matmul and the vmap paths of ``ModelCost`` run different kernels: costs differ in
  their last bits (measured up to 1.9e-6 absolute on costs ~0.6-20 in float32, torch 2.13 CPU);
  tolerance ``rounding_tolerance`` in both dtypes; radii as above (identical required in
  float64, within 2 log(1 + rtol) / one grid point in float32).
* GPU vs CPU (float64, rtol 1e-4): per-ray |diff log r| <= 2 log(1 + rtol) ~= 2e-4, hence
  |diff log V| <= n * 2 log(1 + rtol) (the volume is dominated by the largest ray's n-th power);
  reference crossing index |diff| <= 1. Skipped without CUDA.

Every result carries what reproduces it: seeds, estimator settings and the torch / numpy /
volbench versions (``VolumeEstimate.config``, ``ReferenceEstimate.config``, the lab's
``Measurement.config`` and the store entry's ``meta.json``), and a report's ``CaseResult``
carries its seeds while its run records the versions (``results.json`` environment block).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import volbench
from volbench import estimate_log_volume, lab, reference_log_volume
from volbench.costs import ModelCost
from volbench.store import MinimaStore
from volbench.train import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for helpers
from helpers import devices  # noqa: E402

pytestmark = pytest.mark.faults
pytest_plugins = ["pytester"]

REPO = Path(volbench.__file__).resolve().parents[1]
SPEC = lab.MinimumSpec("swiss_roll", "swiss_mlp", train_size=64, seed=0, base=20,
                       train=TrainConfig(epochs=60, loss="bce", history_every=60))
K, SEED, RTOL = 24, 3, 1e-3
VERSIONS = ("torch", "numpy", "volbench")


def sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def threshold_of(cost: ModelCost) -> float:
    return float(cost(cost.anchor.unsqueeze(0))[0]) + 0.05


def both_estimators(cost: ModelCost, tau: float, **kw):
    batch_size = kw.pop("batch_size", None)
    lookahead = kw.pop("lookahead", 1)
    est = estimate_log_volume(cost, cost.anchor, threshold=tau, n_directions=K, seed=SEED, directions="filter",
                              rtol=RTOL, batch_size=batch_size, **kw)
    ref = reference_log_volume(cost, cost.anchor, threshold=tau, n_directions=K, seed=SEED, batch_size=batch_size,
                               lookahead=lookahead, **kw)
    return est, ref


def fingerprint(store_root: str) -> dict:
    """Train the minimum (or read it), measure it with both estimators, return exact digests.
    Also what the child processes run (they import this module)."""
    minimum = lab.train_minimum(SPEC, MinimaStore(store_root))
    batch = lab.training_batch(SPEC)
    cost = ModelCost(minimum.build_model(), batch.inputs, batch.targets, loss="bce")
    tau = threshold_of(cost)
    est, ref = both_estimators(cost, tau)
    return {"params": sha(minimum.params), "threshold": tau.hex(),
            "est_log_volume": est.log_volume.hex(), "est_log_radii": sha(est.log_radii),
            "ref_log_volume": ref.log_volume.hex(), "ref_log_radii": sha(ref.log_radii.nan_to_num(-1.0)),
            "ref_crossing": ref.crossing_index.tolist()}


CHILD = r"""
import json, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[1])
from test_fault_determinism import fingerprint
print(json.dumps(fingerprint(sys.argv[2])))
"""


@pytest.fixture(autouse=True)
def one_thread():
    """Small models: extra threads only contend on a shared 2-core CI machine (and thread counts
    must not matter anyway: the children run with one thread too)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def minimum_and_cost(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        store = MinimaStore(tmp_path_factory.mktemp("store"))
        minimum = lab.train_minimum(SPEC, store)
        batch = lab.training_batch(SPEC)
        model = minimum.build_model()
        cost = ModelCost(model, batch.inputs, batch.targets, loss="bce")
        tau = threshold_of(cost)
        est, ref = both_estimators(cost, tau)
    finally:
        torch.set_num_threads(threads)
    assert ref.n_dropped < K and est.n_censored < K, "the basin must be bounded for the comparisons to mean anything"
    return {"store": store, "minimum": minimum, "batch": batch, "model": model, "cost": cost, "tau": tau,
            "est": est, "ref": ref}


def rounding_tolerance(model: torch.nn.Module, params: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor,
                       dtype: torch.dtype, *, lam: float = 8.0) -> torch.Tensor:
    """Tolerance on |cost_A - cost_B| for two ``ModelCost(loss="bce")`` evaluations in ``dtype`` of
    each row of ``params`` that run the same arithmetic in different orders (GEMM blocking, a
    vectorised or scalar loss kernel), for a Sequential of Flatten, Linear and ReLU.

    Probabilistic rounding-error analysis (Higham & Mary 2019, "A new approach to probabilistic
    rounding error analysis", SIAM J. Sci. Comput. 41(5)): each operation's rounding error is an
    independent mean-zero variable of size <= u (unit roundoff). To first order the cost's error is
    sum_f c_f e_f, with c_f = (d cost / d the result of f) x |that result|, and Hoeffding's
    inequality bounds it by lam u sqrt(sum_f c_f^2) with probability >= 1 - 2 exp(-lam^2 / 2)
    (lam = 8: 2.5e-14 per comparison). The terms, computed in float64 at the exact forward pass:
    * Linear z = W h + b over K inputs: K + 1 roundings per output j, each of a partial sum no
      larger than (|W||h| + |b|)_j, so sum_f c_f^2 <= sum_j (d cost / d z_j)^2 (K + 1) (|W||h| + |b|)_j^2
      (d cost / d z by autograd). ReLU and Flatten are exact.
    * The loss of one example: ATen's BCE with logits takes <= 6 operations, each within 1 ulp
      (2u) of a term no larger than 2|z| + 1, i.e. 12 (2|z| + 1) u, weighted 1/n by the mean.
    Two evaluations differ by at most twice one's error, and each rounds the float64 mean of the
    losses to ``dtype`` once: eps |cost| more (eps = 2u, one ulp). Worst-case (deterministic)
    bounds are 10-1,000x larger here: they add up every error with the same sign.
    """
    u = torch.finfo(dtype).eps / 2
    x = inputs.double()
    t = targets.double().reshape(len(x), -1)
    shapes = [q.shape for q in model.parameters()]
    out = []
    for row in params.double():
        pieces = iter(torch.split(row, [q.numel() for q in model.parameters()]))
        weights = [next(pieces).view(shape) for shape in shapes]
        h, pre, scales, k = x, [], [], 0
        for module in model:
            if isinstance(module, torch.nn.Flatten):
                h = h.reshape(len(h), -1)
            elif isinstance(module, torch.nn.Linear):
                W, b = weights[k], weights[k + 1]
                k += 2
                scales.append((W.shape[1] + 1) * (h.detach().abs() @ W.abs().T + b.abs()) ** 2)
                h = (h @ W.T + b).requires_grad_(True)
                pre.append(h)
            elif isinstance(module, torch.nn.ReLU):
                h = torch.relu(h)
            else:
                raise TypeError(f"rounding_tolerance handles Flatten, Linear and ReLU, not {type(module).__name__}")
        cost = torch.nn.functional.binary_cross_entropy_with_logits(h, t, reduction="sum") / len(x)
        grads = torch.autograd.grad(cost, pre)
        variance = sum(float((g * g * s).sum()) for g, s in zip(grads, scales))
        variance += float(((12 * (2 * h.detach().abs() + 1)).sum(-1) ** 2).sum()) / len(x) ** 2
        out.append(2 * lam * u * variance ** 0.5 + 2 * u * abs(float(cost.detach())))
    return torch.tensor(out, dtype=torch.float64)


def assert_identical(est, ref, base_est, base_ref, what: str) -> None:
    assert torch.equal(est.log_radii, base_est.log_radii), f"{what}: principled radii differ"
    assert est.log_volume == base_est.log_volume, f"{what}: log-volume {est.log_volume!r} != {base_est.log_volume!r}"
    assert torch.equal(ref.crossing_index, base_ref.crossing_index), f"{what}: grid crossings differ"
    assert torch.equal(ref.log_radii.nan_to_num(-1.0), base_ref.log_radii.nan_to_num(-1.0)), f"{what}: reference radii"
    assert ref.log_volume == base_ref.log_volume or (math.isnan(ref.log_volume) and math.isnan(base_ref.log_volume))


# --------------------------------------------------------------------------- (a) separate processes


def test_same_seed_same_bits_in_separate_processes(tmp_path, minimum_and_cost):
    """Two fresh interpreters train the minimum from its seed and measure it: every digest equal,
    and equal to this process's."""
    here = str(Path(__file__).resolve().parent)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    children = [subprocess.Popen([sys.executable, "-c", CHILD, here, str(tmp_path / f"store{i}")], cwd=REPO, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = []
    for child in children:
        out, err = child.communicate(timeout=240)
        assert child.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert outs[0] == outs[1], f"two runs with the same seeds differ:\n{outs[0]}\n{outs[1]}"
    mine = fingerprint(str(minimum_and_cost["store"].root))  # a store hit: the parent's trained minimum
    assert mine == outs[0], f"this process and a fresh one differ:\n{mine}\n{outs[0]}"


# --------------------------------------------------------------------------- (b) batch sizes


@pytest.mark.parametrize("batch_size, lookahead", [(1, 1), (5, 4), (7, 1), (K, 3)])
def test_direction_batch_size_and_lookahead_do_not_change_a_bit(minimum_and_cost, batch_size, lookahead):
    s = minimum_and_cost
    est, ref = both_estimators(s["cost"], s["tau"], batch_size=batch_size, lookahead=lookahead)
    assert_identical(est, ref, s["est"], s["ref"], f"batch_size={batch_size}, lookahead={lookahead}")
    assert est.config["batch_size"] == batch_size and ref.config["lookahead"] == lookahead


# --------------------------------------------------------------------------- (c) chunks and memory budgets


@pytest.mark.parametrize("chunking", [dict(max_batch=1), dict(max_batch=3), "oom-halving"])
def test_vector_chunks_and_oom_halving_do_not_change_a_bit(minimum_and_cost, chunking):
    """How many parameter vectors share a forward pass changes nothing, not even a cost's last
    bit: including when a memory budget forces the out-of-memory path to halve the chunk."""
    s = minimum_and_cost
    base = s["cost"]
    n = s["batch"].inputs.shape[0]
    if chunking == "oom-halving":  # 32 vectors do not fit the budget, 4 do: 32 -> 16 -> 8 -> 4
        kw = dict(max_batch=32, memory_budget_bytes=base.estimate_bytes(4, n))
    else:
        kw = chunking
    cost = ModelCost(s["model"], s["batch"].inputs, s["batch"].targets, loss="bce", **kw)
    g = torch.Generator().manual_seed(11)
    params = base.anchor + 0.2 * torch.randn(40, base.n_params, generator=g)
    assert torch.equal(cost(params), base(params)), f"{chunking}: costs differ in some bit"
    est, ref = both_estimators(cost, s["tau"])
    assert_identical(est, ref, s["est"], s["ref"], str(chunking))
    if chunking == "oom-halving":
        assert cost.n_oom_retries >= 3, f"32 -> 16 -> 8 -> 4 vectors needs >= 3 halvings, got {cost.n_oom_retries}"
        assert cost.max_batch <= 4


@pytest.mark.parametrize("chunking", [dict(data_chunk=7), dict(data_chunk=20, max_batch=3), "budget-auto"],
                         ids=["chunk7", "chunk20-batch3", "budget-auto"])
def test_data_chunks_and_memory_budgets_change_costs_only_in_the_last_bits(minimum_and_cost, chunking):
    """Splitting the examples into chunks changes the GEMM's shape, and CPU GEMM kernels block
    (and so round) differently for different shapes: costs move in their last bits, within
    ``rounding_tolerance`` (float32: measured <= 1.8 ulp against a derived 65-150 ulp; float64:
    ~1e-15 against 3.4e-14 relative). The radii are identical in float64 (required) and within
    the documented tolerance in float32 (identical on every configuration measured while writing
    this test)."""
    s = minimum_and_cost
    base = s["cost"]
    if chunking == "budget-auto":  # the planner picks chunk sizes that fit a small budget
        kw = dict(memory_budget_bytes=base.estimate_bytes(1, 16))
    else:
        kw = chunking
    cost = ModelCost(s["model"], s["batch"].inputs, s["batch"].targets, loss="bce", **kw)
    if chunking == "budget-auto":
        chunk, batch = cost._plan(n_vectors=None, early=True)
        assert chunk < s["batch"].inputs.shape[0], f"the budget did not force data chunks: {chunk}, {batch}"
    g = torch.Generator().manual_seed(11)
    params = base.anchor + 0.2 * torch.randn(40, base.n_params, generator=g)
    a, b = cost(params).double(), base(params).double()
    tol = rounding_tolerance(s["model"], params, s["batch"].inputs, s["batch"].targets, torch.float32)
    assert ((a - b).abs() <= tol).all(), f"{chunking}: float32 costs differ by {(a - b).abs().max():.2e} > tolerance"
    base64 = ModelCost(s["model"], s["batch"].inputs, s["batch"].targets, loss="bce", dtype=torch.float64)
    cost64 = ModelCost(s["model"], s["batch"].inputs, s["batch"].targets, loss="bce", dtype=torch.float64, **kw)
    a, b = cost64(params.double()), base64(params.double())
    tol = rounding_tolerance(s["model"], params, s["batch"].inputs, s["batch"].targets, torch.float64)
    assert ((a - b).abs() <= tol).all(), float((a - b).abs().max())
    if chunking == "budget-auto":
        # The budget allows one vector per pass: the radius searches would take ~20 s. The costs
        # above are what the radii are decided from; the chunk7 / chunk20 cases cover the rest.
        return
    est, ref = both_estimators(cost, s["tau"])
    assert float((est.log_radii - s["est"].log_radii).abs().max()) <= 2 * math.log1p(RTOL)
    assert int((ref.crossing_index - s["ref"].crossing_index).abs().max()) <= 1
    tau = threshold_of(base64)
    assert_identical(*both_estimators(cost64, tau, dtype=torch.float64),
                     *both_estimators(base64, tau, dtype=torch.float64), f"{chunking} in float64")


# --------------------------------------------------------------------------- (d) matmul vs vmap


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_matmul_and_vmap_paths_agree_within_the_documented_tolerance(minimum_and_cost, dtype):
    s = minimum_and_cost
    kw = dict(loss="bce", dtype=dtype)
    matmul = ModelCost(s["model"], s["batch"].inputs, s["batch"].targets, path="matmul", **kw)
    vmap = ModelCost(s["model"], s["batch"].inputs, s["batch"].targets, path="vmap", **kw)
    g = torch.Generator().manual_seed(12)
    params = (matmul.anchor.double()
              + 0.3 * torch.randn(64, matmul.n_params, generator=g, dtype=torch.float64)).to(dtype)
    a, b = matmul(params).double(), vmap(params).double()
    tol = rounding_tolerance(s["model"], params, s["batch"].inputs, s["batch"].targets, dtype)
    assert ((a - b).abs() <= tol).all(), f"{dtype}: matmul and vmap costs differ by {(a - b).abs().max():.2e}"
    tau = threshold_of(matmul)
    est_m, ref_m = both_estimators(matmul, tau, dtype=dtype)
    est_v, ref_v = both_estimators(vmap, tau, dtype=dtype)
    if dtype == torch.float64:
        # The grid decides on "cost > tau" only, which flips only for a cost within ~1e-15 of
        # tau: identical. The value-based search steers by the costs themselves, which differ by
        # ~1e-15 between the two kernels, so its radii agree to that rounding, not bit for bit.
        assert torch.equal(ref_v.crossing_index, ref_m.crossing_index), "grid crossings differ (float64)"
        assert float((est_v.log_radii - est_m.log_radii).abs().max()) <= 1e-12
        assert abs(est_v.log_volume - est_m.log_volume) <= est_m.n_params * 1e-12
    else:
        assert float((est_v.log_radii - est_m.log_radii).abs().max()) <= 2 * math.log1p(RTOL)
        assert int((ref_v.crossing_index - ref_m.crossing_index).abs().max()) <= 1


# --------------------------------------------------------------------------- GPU vs CPU


@pytest.mark.parametrize("device", devices())
def test_gpu_and_cpu_agree_within_the_documented_tolerance(minimum_and_cost, device):
    """float64, rtol 1e-4: per-ray |diff log r| <= 2 log(1 + rtol); |diff log V| <= n times that;
    reference crossings within one grid point. (The CPU parameter checks the CPU against itself
    through the same code path, so the test runs, and skips only the CUDA half, without a GPU.)"""
    s = minimum_and_cost
    rtol = 1e-4
    runs = []
    for dev in ("cpu", device):
        cost = ModelCost(s["model"], s["batch"].inputs, s["batch"].targets, loss="bce", dtype=torch.float64,
                         device=dev)
        tau = float(s["tau"])
        est = estimate_log_volume(cost, cost.anchor, threshold=tau, n_directions=K, seed=SEED, directions="filter",
                                  rtol=rtol, dtype=torch.float64)
        ref = reference_log_volume(cost, cost.anchor, threshold=tau, n_directions=K, seed=SEED, dtype=torch.float64)
        assert est.config["device"].startswith(dev)
        runs.append((est, ref))
    (est_c, ref_c), (est_g, ref_g) = runs
    tol = 2 * math.log1p(rtol)
    assert float((est_g.log_radii - est_c.log_radii).abs().max()) <= tol
    assert abs(est_g.log_volume - est_c.log_volume) <= est_c.n_params * tol
    assert int((ref_g.crossing_index - ref_c.crossing_index).abs().max()) <= 1
    if device == "cpu":
        assert_identical(est_g, ref_g, est_c, ref_c, "cpu vs cpu")


# --------------------------------------------------------------------------- provenance


def test_estimates_carry_seeds_settings_and_versions_and_reproduce_from_them(minimum_and_cost):
    s = minimum_and_cost
    est, ref = s["est"], s["ref"]
    for config in (est.config, ref.config):
        assert config["seed"] == SEED and config["threshold"] == s["tau"] and config["n_directions"] == K
        assert config["torch"] == torch.__version__ and config["volbench"] == volbench.__version__
        assert config["numpy"] == __import__("numpy").__version__
        assert {"device", "dtype", "batch_size"} <= set(config)
    c = est.config
    again = estimate_log_volume(s["cost"], s["cost"].anchor, threshold=c["threshold"], n_directions=c["n_directions"],
                                directions=c["directions"], rtol=c["rtol"], seed=c["seed"], growth=c["growth"],
                                initial_radius=c["initial_radius"], max_radius=c["max_radius"],
                                fine_scan=c["fine_scan"], dtype=getattr(torch, c["dtype"]), device=c["device"])
    assert torch.equal(again.log_radii, est.log_radii), "the recorded configuration must reproduce the radii"
    r = ref.config
    again = reference_log_volume(s["cost"], s["cost"].anchor, threshold=r["threshold"], n_directions=r["n_directions"],
                                 seed=r["seed"], dtype=getattr(torch, r["dtype"]), lookahead=r["lookahead"])
    assert torch.equal(again.crossing_index, ref.crossing_index)


def test_lab_measurement_and_store_entry_carry_seeds_and_versions(minimum_and_cost):
    s = minimum_and_cost
    m = lab.measure(s["minimum"], 40, estimator="principled", n_directions=8, threshold=s["tau"],
                    store=s["store"], direction_seed=SEED)
    for key in VERSIONS:
        assert key in m.config, f"Measurement.config lacks the {key} version"
    assert m.config["direction_seed"] == SEED and m.config["seed"] == SEED
    assert m.config["landscape"]["seed"] == SPEC.seed, "the landscape's data order seed"
    assert m.minimum_key == s["minimum"].key
    entry = s["store"].get(m.minimum_key)
    info = entry.info
    assert {"torch", "numpy", "volbench", "python", "safetensors"} <= set(info["versions"])
    config = info["config"]
    assert config["seed"] == SPEC.seed and config["data_seed"] == SPEC.data_seed
    assert config["train"]["seed"] == SPEC.train.seed, "the minibatch-order seed of the recipe"
    cached = lab.measure(s["minimum"], 40, estimator="principled", n_directions=8, threshold=s["tau"],
                         store=s["store"], direction_seed=SEED)
    assert cached == m, "the cached measurement carries the same record"


CASE_WITH_SEEDS = '''
from volbench.report.schema import CaseResult, Statistic

def test_E3_seeds(record_case):
    record_case(CaseResult(claim="E3", case_id="E3-provenance", estimator="principled", verdict="pass",
                           statistic=Statistic("max |diff|", 0.0), rule="pass if 0",
                           seeds={"model": [0, 1], "data": [10, 11], "directions": 3}))
'''


def test_report_results_carry_seeds_and_the_run_carries_versions(pytester):
    root = pytester.path / "reports"
    pytester.mkdir("cases")
    pytester.path.joinpath("cases", "test_e3.py").write_text(CASE_WITH_SEEDS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:xdist", "cases",
                                          f"--volbench-report-dir={root}")
    result.assert_outcomes(passed=1)
    (run_dir,) = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    path = run_dir / "results.json"
    data = json.loads(path.read_text())
    (case,) = data["results"]
    assert case["seeds"] == {"model": [0, 1], "data": [10, 11], "directions": 3}
    env = data["environment"]
    assert env["torch"] == torch.__version__ and env["volbench"] == volbench.__version__
    assert env["numpy"] and env["python"] and "git_commit" in env and "torch_threads" in env
    assert env["seeds"]["directions"] == [3] and env["seeds"]["model"] == [0, 1]
