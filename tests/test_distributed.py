"""One measurement, many processes (issue R4, item 3): ``volbench.estimator.distributed``.

The ``torchrun`` tests launch ``tests/distributed_job.py`` on two CPU processes (gloo) and compare
what every rank got with the single-process estimators in this process: radii equal in float64,
censored and dropped directions, evaluation counts, log-volume. A rank that raises or dies must
make the measurement fail naming that rank and its directions, and a rerun must load the finished
pieces from the shard store instead of walking them again. Select with ``-k distributed`` (or
``-m distributed``); each launch takes about 5-10 s (two torch processes starting).
"""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from distributed_job import BATCH, COEFFICIENTS, COST_KEY, MAX_RADIUS, K, build_cost

from volbench import estimate_log_volume, reference_log_volume
from volbench.costs import ModelCost
from volbench.estimator.distributed import (
    DistributedMeasurementError,
    backend_for,
    estimate_log_volume_distributed,
    reference_log_volume_distributed,
    shard_ranges,
)
from volbench.store import inspect as store_inspect
from volbench.store.shards import ShardStore

pytestmark = pytest.mark.distributed

ROOT = Path(__file__).resolve().parents[1]
JOB = ROOT / "tests" / "distributed_job.py"
F64 = torch.float64


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _torchrun(out: Path, *args: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 tests/distributed_job.py --out OUT ARGS``
    (``python -m torch.distributed.run`` is the torchrun entry point, from this interpreter)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(JOB),
           "--out", str(out), *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180)


def _ranks(out: Path) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def _same(got: list, want: torch.Tensor, what: str) -> None:
    """Equal bit for bit (float64 values compared exactly, NaN where both are NaN)."""
    got_t = torch.tensor(got, dtype=want.dtype)
    torch.testing.assert_close(got_t, want.cpu(), rtol=0, atol=0, equal_nan=True, msg=lambda m: f"{what}: {m}")


def _assert_matches_principled(got: dict, want) -> None:
    _same(got["log_radii"], want.log_radii, "log_radii")
    _same(got["log_radii_upper"], want.log_radii_upper, "log_radii_upper")
    _same(got["censored"], want.censored, "censored")
    _same(got["log_terms"], want.log_terms, "log_terms")
    _same(got["log_terms_upper"], want.log_terms_upper, "log_terms_upper")
    _same(got["evals_per_ray"], want.evals_per_ray, "evals_per_ray")
    assert got["n_cost_evals"] == want.n_cost_evals
    assert got["n_directions"] == want.n_directions == K
    assert got["log_volume"] == want.log_volume


def _assert_matches_reference(got: dict, want) -> None:
    _same(got["log_radii"], want.log_radii, "log_radii")
    _same(got["crossing_index"], want.crossing_index, "crossing_index")
    _same(got["dropped"], want.dropped, "dropped")
    _same(got["evals_per_ray"], want.evals_per_ray, "evals_per_ray")
    assert got["n_cost_evals"] == want.n_cost_evals
    assert got["n_directions"] == want.n_directions == K
    assert got["log_volume"] == want.log_volume or (math.isnan(got["log_volume"]) and math.isnan(want.log_volume))


def _single_process():
    """The single-process estimates, every direction in one batch (the ranks walk batches of 4)."""
    cost, anchor, tau = build_cost()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the censored rays
        principled = estimate_log_volume(cost, anchor, threshold=tau, n_directions=K, batch_size=K,
                                         max_radius=MAX_RADIUS)
    reference = reference_log_volume(cost, anchor, threshold=tau, n_directions=K, batch_size=K,
                                     coefficients=COEFFICIENTS)
    # Both ranks' blocks hold censored (principled) and dropped (paper) directions, so keeping them
    # is part of what the comparisons check.
    half = K // 2
    assert principled.censored[:half].any() and principled.censored[half:].any() and not principled.censored.all()
    assert reference.dropped[:half].any() and reference.dropped[half:].any() and not reference.dropped.all()
    return principled, reference


@pytest.mark.slow
def test_distributed_torchrun_two_ranks_equal_single_process(tmp_path):
    proc = _torchrun(tmp_path, "--checks")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    ranks = _ranks(tmp_path)
    principled, reference = _single_process()
    for got in ranks:
        _assert_matches_principled(got["principled"], principled)
        _assert_matches_reference(got["reference"], reference)
        info = got["principled"]["distributed"]
        assert info["world_size"] == 2 and info["backend"] == "gloo"
        assert [r["directions"] for r in info["ranks"]] == [[0, 8], [8, 16]]
        assert [r["pieces"] for r in info["ranks"]] == [2, 2]
        # Every ray's evaluations were made by one rank; each rank also costed the anchor once.
        assert sum(r["cost_evals"] for r in info["ranks"]) == principled.n_cost_evals + 1
        # Bad input: more ranks than directions is refused on every rank, before any collective.
        assert "world size 2 is larger than the number of directions 1" in got["too_many_ranks"]
        # Ranks that disagree (here on the seed) fail on every rank, naming the odd one out.
        assert "rank 1, directions [2, 4): its measurement differs from rank 0's in seed" in got["disagree"]
    assert ranks[0]["principled"] == {**ranks[1]["principled"]} and ranks[0]["reference"] == ranks[1]["reference"]


@pytest.mark.slow
def test_distributed_failed_rank_is_named_and_a_rerun_resumes(tmp_path):
    store = tmp_path / "shards"
    failed = _torchrun(tmp_path, "--store", str(store), "--modes", "principled", "--fault", "1:raise:2")
    text = failed.stdout + failed.stderr
    assert failed.returncode != 0, text[-4000:]
    assert "DistributedMeasurementError" in text, text[-4000:]
    assert "rank 1, directions [8, 16): raised RuntimeError: injected fault on rank 1 at its piece 2" in text, \
        text[-4000:]
    assert "it needs all 16 directions" in text and not list(tmp_path.glob("rank*.json"))
    # Rank 0 finished its two pieces and rank 1 its first before failing: three records.
    assert len(list((store / "shards").glob("*.json"))) == 3
    again = _torchrun(tmp_path, "--store", str(store), "--modes", "principled")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-6000:]
    ranks = _ranks(tmp_path)
    assert [r["pieces_walked"] for r in ranks] == [0, 1], "rank 0 walked its stored pieces again"
    principled, _ = _single_process()
    for got in ranks:
        _assert_matches_principled(got["principled"], principled)
        assert [r["cached"] for r in got["principled"]["distributed"]["ranks"]] == [2, 1]
        # Rank 0 only costed its anchor; the recorded total is still the whole measurement's.
        assert got["principled"]["distributed"]["ranks"][0]["cost_evals"] == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_distributed_killed_rank_is_named_and_its_pieces_are_reused(tmp_path):
    """A rank that dies outright (``os._exit``), launched by hand (a launcher that leaves the other
    ranks running, unlike torchrun, which stops them and names the dead rank in its summary):
    rank 0 names rank 1 and its directions; the single-process fallback then reuses the pieces."""
    store = tmp_path / "shards"
    env = {**_env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2"}
    cmd = [sys.executable, str(JOB), "--out", str(tmp_path), "--store", str(store), "--modes", "principled",
           "--fault", "1:exit:2"]
    procs = [subprocess.Popen(cmd, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert procs[1].returncode == 1
    assert procs[0].returncode != 0, outs[0][1][-4000:]
    assert "rank 1, directions [8, 16): stopped answering before it sent its pieces" in outs[0][1], outs[0][1][-4000:]
    assert "DistributedMeasurementError" in outs[0][1]
    cost, anchor, tau = build_cost()
    opened = []
    open_rays = cost.open_rays
    cost.open_rays = lambda origin, d, sizes=None: opened.append(d.shape[0]) or open_rays(origin, d, sizes=sizes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed = estimate_log_volume_distributed(cost, anchor, threshold=tau, n_directions=K, batch_size=BATCH,
                                                  max_radius=MAX_RADIUS, shard_store=store, cost_key=COST_KEY)
    principled, _ = _single_process()
    # Rank 0 stored [0, 4) and [4, 8) before its exchange, rank 1 stored [8, 12) before it died.
    assert resumed.config["distributed"]["ranks"][0]["cached"] == 3 and opened == [4]
    assert torch.equal(resumed.log_radii, principled.log_radii)
    assert torch.equal(resumed.evals_per_ray, principled.evals_per_ray)
    assert torch.equal(resumed.censored, principled.censored)
    assert resumed.log_volume == principled.log_volume and resumed.n_cost_evals == principled.n_cost_evals


# --- in one process: the fallback, the pieces, the store -----------------------------------------


class _Bumpy:
    """A plain callable (the flat path): a quadratic with ripples, so rays differ."""

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(n)
        self.a = torch.exp(torch.randn(n, generator=g, dtype=F64))

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        q = (self.a.to(p.dtype) * p * p).sum(dim=1)
        return q * (1.0 + 0.3 * torch.sin(4.0 * p[:, 0]) ** 2)


def _mlp_cost() -> ModelCost:
    cost, _, _ = build_cost()
    return cost


CASES = {
    "flat-isotropic": lambda: (_Bumpy(7), torch.zeros(7), 0.5, {}),
    "flat-gaussian": lambda: (_Bumpy(7), torch.zeros(7), 0.5, {"measure": "gaussian", "prior_std": 0.7}),
    "flat-bisect": lambda: (_Bumpy(7), torch.zeros(7), 0.5, {"search": "bisect"}),
    "mlp-filter": lambda: (_mlp_cost(), None, 0.25, {"directions": "filter"}),
    "mlp-gaussian": lambda: (_mlp_cost(), None, 0.25, {"measure": "gaussian", "prior_std": 1.0}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_distributed_fallback_in_pieces_equals_estimate_log_volume(case):
    """Walked in pieces of 3 (as a rank walks its block), every ray's bracket, term and count is
    the single batch's: a ray's search does not depend on the other rays of its batch."""
    cost, anchor, tau, extra = CASES[case]()
    if anchor is None:  # the MLP: threshold above its anchor's cost
        anchor = cost.anchor
        tau = float(cost(anchor.unsqueeze(0))[0]) + tau
    kw = dict(threshold=tau, n_directions=11, **extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = estimate_log_volume(cost, anchor, batch_size=11, **kw)
        got = estimate_log_volume_distributed(cost, anchor, batch_size=3, **kw)
    for name in ("log_radii", "log_radii_upper", "censored", "log_terms", "log_terms_upper"):
        torch.testing.assert_close(getattr(got, name).cpu(), getattr(want, name).cpu(), rtol=0, atol=0,
                                   msg=lambda m, name=name: f"{case} {name}: {m}")
    if want.evals_per_ray is not None:
        assert torch.equal(got.evals_per_ray, want.evals_per_ray)
    assert got.log_volume == want.log_volume and got.n_cost_evals == want.n_cost_evals and got.n_directions == 11
    assert got.config["distributed"]["ranks"] == [{**got.config["distributed"]["ranks"][0], "directions": [0, 11],
                                                   "pieces": 4, "cached": 0}]


@pytest.mark.parametrize("flat", [True, False], ids=["flat", "rays"])
def test_distributed_reference_fallback_in_pieces_equals_reference_log_volume(flat):
    cost, anchor, tau = build_cost(ray_interface=not flat)  # flat: the batched loop over parameter vectors
    want = reference_log_volume(cost, anchor, threshold=tau, n_directions=9, batch_size=9, lookahead=2)
    got = reference_log_volume_distributed(cost, anchor, threshold=tau, n_directions=9, batch_size=2, lookahead=2)
    for name in ("log_radii", "log_radii_lower", "crossing_index", "dropped"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=0, atol=0, equal_nan=True)
    assert (got.evals_per_ray is None) == flat == (want.evals_per_ray is None)
    if not flat:
        assert torch.equal(got.evals_per_ray, want.evals_per_ray)
    assert got.n_cost_evals == want.n_cost_evals and got.n_directions == 9
    assert got.log_volume == want.log_volume or (math.isnan(got.log_volume) and math.isnan(want.log_volume))


def test_distributed_shard_store_reuses_verified_pieces_only(tmp_path):
    cost = _Bumpy(6)
    calls = []

    def counted(p):
        calls.append(p.shape[0])
        return cost(p)

    kw = dict(threshold=0.5, n_directions=10, batch_size=4, dtype=F64)
    store = ShardStore(tmp_path)
    first = estimate_log_volume_distributed(counted, torch.zeros(6), shard_store=store, cost_key="bumpy-6", **kw)
    assert first.config["distributed"]["ranks"][0]["cached"] == 0 and len(list((tmp_path / "shards").iterdir())) == 3
    calls.clear()
    second = estimate_log_volume_distributed(counted, torch.zeros(6), shard_store=tmp_path, cost_key="bumpy-6", **kw)
    assert calls == [1], "only the anchor should have been evaluated"
    assert second.config["distributed"]["ranks"][0]["cached"] == 3
    assert torch.equal(second.log_radii, first.log_radii) and second.n_cost_evals == first.n_cost_evals
    # A damaged record is moved aside (warned) and its piece walked again.
    victim = sorted((tmp_path / "shards").glob("*.json"))[0]
    victim.write_text(victim.read_text().replace("[", "[1, ", 1))
    with pytest.warns(UserWarning, match="corrupt"):
        again = estimate_log_volume_distributed(counted, torch.zeros(6), shard_store=store, cost_key="bumpy-6", **kw)
    assert torch.equal(again.log_radii, first.log_radii) and again.config["distributed"]["ranks"][0]["cached"] == 2
    # Another cost name, threshold or code provenance is another measurement: nothing is reused.
    calls.clear()
    other = estimate_log_volume_distributed(counted, torch.zeros(6), shard_store=store, cost_key="bumpy-7", **kw)
    assert other.config["distributed"]["ranks"][0]["cached"] == 0 and len(calls) > 1
    with pytest.raises(ValueError, match="cost_key"):
        estimate_log_volume_distributed(cost, torch.zeros(6), shard_store=store, **kw)


def test_distributed_shards_are_listed_and_pruned_with_the_cache(tmp_path):
    store = ShardStore(tmp_path)
    config = {"mode": "principled", "threshold": 0.5, "cost": "demo"}
    store.save(config, 0, 4, {"x": 1})
    assert store.load(config, 0, 4) == {"x": 1} and store.load(config, 0, 5) is None
    stale = ShardStore(tmp_path)  # what older code would look up: another provenance, another key
    stale._provenance = {"code": {"digest": "older", "sources": {}}, "versions": {}}
    assert stale.load(config, 0, 4) is None
    found = store_inspect.entries(tmp_path)
    assert [(e.kind, e.current) for e in found] == [("shard", True)]
    assert "principled piece [0, 4) tau=0.5 of demo" in found[0].label
    older = store_inspect.entries(tmp_path, measurement={"code": {"digest": "new", "sources": {}},
                                                         "versions": store.full_config({}, 0, 1)["versions"]})
    assert not older[0].current and "code changed" in older[0].why
    assert store_inspect.prune(tmp_path, stale=True, found=older).deleted and not store_inspect.entries(tmp_path)


def test_distributed_shard_ranges_tile_the_directions():
    for n in (1, 2, 7, 16, 33):
        for world in range(1, n + 1):
            ranges = shard_ranges(n, world)
            assert len(ranges) == world and ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            assert max(b - a for a, b in ranges) - min(b - a for a, b in ranges) <= 1
    with pytest.raises(ValueError, match="world size 3 is larger than the number of directions 2"):
        shard_ranges(2, 3)


def test_distributed_backend_follows_the_device():
    assert backend_for("cpu") == "gloo"
    assert backend_for(torch.device("cuda", 0)) == "nccl"  # a name only: no CUDA device is touched


def test_distributed_refuses_prior_directed_rays():
    with pytest.raises(ValueError, match="prior"):
        estimate_log_volume_distributed(_Bumpy(3), torch.zeros(3), threshold=0.5, n_directions=4,
                                        directions="prior", measure="gaussian", prior_std=1.0)


def test_distributed_error_names_every_failed_rank():
    from volbench.estimator.distributed import RankFailure, _failed

    err = _failed([RankFailure(1, 8, 16, "raised RuntimeError: boom")], 16, 2, None)
    assert isinstance(err, DistributedMeasurementError) and isinstance(err, RuntimeError)
    assert "failed on 1 of 2 ranks" in str(err) and "rank 1, directions [8, 16): raised RuntimeError: boom" in str(err)
    assert err.failures == (RankFailure(1, 8, 16, "raised RuntimeError: boom"),)


@pytest.mark.slow
def test_distributed_lab_entry_measures_a_stored_minimum_and_resumes(tmp_path, capsys):
    """``python -m volbench.lab.distributed`` (here without torchrun: one process): trains the
    swiss-roll minimum on a miss, measures it, and a second run loads every piece."""
    from volbench.lab.distributed import main

    with pytest.raises(SystemExit) as help_exit:
        main(["--help"])
    assert help_exit.value.code == 0 and "torchrun" in capsys.readouterr().out
    # Two epochs leave the BCE near log 2, inside a basin at tau = 1 (the entry, not the science).
    argv = ["--dataset", "swiss_roll", "--model", "swiss_mlp", "--train-size", "40", "--base", "20", "--epochs", "2",
            "--loss", "bce", "--landscape-size", "20", "--threshold", "1.0", "--n-directions", "4", "--batch-size", "2",
            "--store", str(tmp_path), "--json", str(tmp_path / "a.json")]
    assert main(argv) == 0
    first = json.loads((tmp_path / "a.json").read_text())
    assert first["n_directions"] == 4 and first["distributed"]["ranks"][0]["cached"] == 0
    assert main(argv[:-1] + [str(tmp_path / "b.json")]) == 0
    second = json.loads((tmp_path / "b.json").read_text())
    assert second["distributed"]["ranks"][0]["cached"] == 2 and second["log_volume"] == first["log_volume"]
    kinds = sorted({e.kind for e in store_inspect.entries(tmp_path)})
    assert kinds == ["minimum", "shard"]
