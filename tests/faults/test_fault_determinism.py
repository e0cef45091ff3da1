"""Determinism (claim E3): the same seed gives the same radii and log-volumes.

On the CPU, with a real trained minimum (the two-spirals MLP, 4,353 parameters, BCE on 64
examples) in float32, the default precision:

* bit-identical radii and log-volumes (principled estimator and the paper's grid procedure) in
  two separate processes, each training the minimum from scratch, and in this process: the same
  arithmetic in the same order on the same machine and thread count (one thread here and in the
  children) is deterministic, so this holds on any machine.

Every other comparison runs the same arithmetic in another order (another direction batch size or
lookahead, another number of parameter vectors per forward pass, data chunks, the matmul against
the vmap path, CPU against GPU): GEMM kernels block, and so round, differently for different
shapes, thread counts and machines (MKL on Intel and AMD, AVX2 and AVX-512). Nothing there is
asserted bit for bit, and no tolerance is an ulp count observed on one machine:

* costs agree within the derived rounding bound ``ModelCost.rounding_bound``
  (``volbench.costs.rounding``, a probabilistic forward-error bound after Higham & Mary: a few
  hundred ulp of the cost in float32 for these vectors, ~1e-13 relative in float64; measured
  differences on an AMD EPYC: <= 1.8 ulp);
* radii agree up to rounding: every ray's [inside, outside] bracket overlaps the other run's, or
  the cost at both ends of the gap lies within that bound of tau under every kernel
  (``volbench.estimator.agreement.same_exits``, the rule of claim E3). A point clearly inside for
  one run and clearly outside for the other fails. (On the machines measured while writing this,
  the radii were identical everywhere.)

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
from volbench.estimator.agreement import same_exits
from volbench.lab.train import TrainConfig
from volbench.store.minima import MinimaStore

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


def assert_same_up_to_rounding(est, ref, base_est, base_ref, costs, tau: float, what: str) -> None:
    """Every ray's bracket overlaps the base run's, or the cost at both ends of the gap lies within
    the derived rounding bound of tau under every kernel of ``costs`` (``same_exits``): the two runs
    differ at most where a cost is within rounding of the threshold, for the principled search and
    for the paper's grid."""
    for name, a, b in (("principled", est, base_est), ("grid", ref, base_ref)):
        records = same_exits(a, b, costs, tau)
        bad = [r for r in records if not r["ratio"] <= 1]
        assert not bad, f"{what}: {name} brackets disagree beyond rounding: {bad[:2]}"


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
    assert_same_up_to_rounding(est, ref, s["est"], s["ref"], [s["cost"]], s["tau"],
                               f"batch_size={batch_size}, lookahead={lookahead}")
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
    tol = base.rounding_bound(params)
    assert ((cost(params).double() - base(params).double()).abs() <= tol).all(), f"{chunking}: costs differ"
    est, ref = both_estimators(cost, s["tau"])
    assert_same_up_to_rounding(est, ref, s["est"], s["ref"], [base, cost], s["tau"], str(chunking))
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
    tol = base.rounding_bound(params)
    assert ((a - b).abs() <= tol).all(), f"{chunking}: float32 costs differ by {(a - b).abs().max():.2e} > tolerance"
    base64 = ModelCost(s["model"], s["batch"].inputs, s["batch"].targets, loss="bce", dtype=torch.float64)
    cost64 = ModelCost(s["model"], s["batch"].inputs, s["batch"].targets, loss="bce", dtype=torch.float64, **kw)
    a, b = cost64(params.double()), base64(params.double())
    tol = base64.rounding_bound(params.double())
    assert ((a - b).abs() <= tol).all(), float((a - b).abs().max())
    if chunking == "budget-auto":
        # The budget allows one vector per pass: the radius searches would take ~20 s. The costs
        # above are what the radii are decided from; the chunk7 / chunk20 cases cover the rest.
        return
    est, ref = both_estimators(cost, s["tau"])
    assert_same_up_to_rounding(est, ref, s["est"], s["ref"], [base, cost], s["tau"], f"{chunking} in float32")
    tau = threshold_of(base64)
    assert_same_up_to_rounding(*both_estimators(cost64, tau, dtype=torch.float64),
                               *both_estimators(base64, tau, dtype=torch.float64), [base64, cost64], tau,
                               f"{chunking} in float64")


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
    tol = matmul.rounding_bound(params)
    assert ((a - b).abs() <= tol).all(), f"{dtype}: matmul and vmap costs differ by {(a - b).abs().max():.2e}"
    tau = threshold_of(matmul)
    est_m, ref_m = both_estimators(matmul, tau, dtype=dtype)
    est_v, ref_v = both_estimators(vmap, tau, dtype=dtype)
    assert_same_up_to_rounding(est_v, ref_v, est_m, ref_m, [matmul, vmap], tau, f"matmul vs vmap, {dtype}")


# --------------------------------------------------------------------------- GPU vs CPU


@pytest.mark.parametrize("device", devices())
def test_gpu_and_cpu_agree_within_the_documented_tolerance(minimum_and_cost, device):
    """float64, rtol 1e-4: every ray's bracket (principled radii, reference grid points) overlaps
    the CPU run's, or the cost at both ends of the gap lies within the derived rounding bound of tau
    under every kernel of both devices (``same_exits``). (The CPU parameter checks the CPU against
    itself through the same code path, bit for bit, so the test runs, and skips only the CUDA half,
    without a GPU.)"""
    s = minimum_and_cost
    rtol = 1e-4
    runs, costs = [], []
    for dev in ("cpu", device):
        cost = ModelCost(s["model"], s["batch"].inputs, s["batch"].targets, loss="bce", dtype=torch.float64,
                         device=dev)
        tau = float(s["tau"])
        est = estimate_log_volume(cost, cost.anchor, threshold=tau, n_directions=K, seed=SEED, directions="filter",
                                  rtol=rtol, dtype=torch.float64)
        ref = reference_log_volume(cost, cost.anchor, threshold=tau, n_directions=K, seed=SEED, dtype=torch.float64)
        assert est.config["device"].startswith(dev)
        runs.append((est, ref))
        costs.append(cost)
    (est_c, ref_c), (est_g, ref_g) = runs
    assert_same_up_to_rounding(est_g, ref_g, est_c, ref_c, costs, tau, f"{device} vs cpu")
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
from volbench.results import CaseResult, Statistic

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
