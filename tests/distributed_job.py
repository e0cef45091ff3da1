"""The measurement that ``tests/test_distributed.py`` runs under ``torchrun`` (and launches by hand):
a small MLP ``ModelCost`` on random data, measured by the distributed estimator and the paper's
grid; each rank writes what it got to ``<out>/rank<r>.json``.

    torchrun --standalone --nproc-per-node 2 tests/distributed_job.py --out DIR [--store DIR]
        [--modes principled,reference] [--checks] [--fault RANK:raise|exit:PIECE]

``--fault 1:raise:2`` makes rank 1's cost raise when its second piece is opened (after its first
piece was finished and stored); ``1:exit:2`` makes that process exit at once (``os._exit(1)``),
as a killed rank would. ``--checks`` adds the bad-input runs (more ranks than directions, ranks
that disagree on the seed), each expected to raise on every rank.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from volbench.costs import ModelCost
from volbench.estimator.distributed import (
    DistributedMeasurementError,
    estimate_log_volume_distributed,
    init_distributed,
    reference_log_volume_distributed,
)

K = 16
BATCH = 4
#: Small enough that some rays of each rank's block are censored (principled: still inside at
#: MAX_RADIUS) or dropped (the paper's grid, cut at coefficient 0.36: never crossed).
MAX_RADIUS = 4.0
COEFFICIENTS = torch.linspace(0.0, 0.6, 100, dtype=torch.float64) ** 2
COST_KEY = "tests/distributed_job: mlp 6-12-3, 48 random examples, seed 0"


def build_cost(ray_interface: bool = True) -> tuple[ModelCost, torch.Tensor, float]:
    """The same cost, anchor and threshold in every process (seeded CPU generator); without the
    ray interface the estimators walk it through flat parameter vectors."""
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))
    inputs = torch.randn(48, 6, generator=gen)
    targets = torch.randint(0, 3, (48,), generator=gen)
    cost = ModelCost(model, inputs, targets, loss="ce", ray_interface=ray_interface)
    anchor = cost.anchor
    threshold = float(cost(anchor.unsqueeze(0))[0]) + 0.25
    return cost, anchor, threshold


def counting(cost: ModelCost, fault: tuple[int, str, int] | None, rank: int) -> dict[str, int]:
    """Count the pieces this process walks (one ``open_rays`` per piece) and inject the fault."""
    count = {"pieces_walked": 0}
    opened = cost.open_rays

    def open_rays(origin, directions, sizes=None):
        count["pieces_walked"] += 1
        if fault is not None and fault[0] == rank and count["pieces_walked"] == fault[2]:
            if fault[1] == "exit":
                os._exit(1)
            raise RuntimeError(f"injected fault on rank {rank} at its piece {fault[2]}")
        return opened(origin, directions, sizes=sizes)

    cost.open_rays = open_rays
    return count


def summary(est) -> dict:
    out = {"log_volume": est.log_volume, "log_radii": est.log_radii.tolist(), "n_directions": est.n_directions,
           "n_cost_evals": est.n_cost_evals, "distributed": est.config.get("distributed"),
           "evals_per_ray": None if est.evals_per_ray is None else est.evals_per_ray.tolist()}
    if hasattr(est, "censored"):
        out.update(log_radii_upper=est.log_radii_upper.tolist(), censored=est.censored.tolist(),
                   log_terms=est.log_terms.tolist(), log_terms_upper=est.log_terms_upper.tolist())
    else:
        out.update(crossing_index=est.crossing_index.tolist(), dropped=est.dropped.tolist())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--store", default=None)
    ap.add_argument("--modes", default="principled,reference")
    ap.add_argument("--checks", action="store_true")
    ap.add_argument("--fault", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    device = init_distributed("cpu")  # gloo on CPU processes, also on a machine with GPUs
    rank = torch.distributed.get_rank()
    fault = None
    if args.fault:
        r, action, piece = args.fault.split(":")
        fault = (int(r), action, int(piece))
    cost, anchor, tau = build_cost()
    count = counting(cost, fault, rank)
    common = dict(threshold=tau, n_directions=K, batch_size=BATCH, device=device, shard_store=args.store,
                  cost_key=COST_KEY if args.store else None)
    result: dict = {"rank": rank}
    for mode in args.modes.split(","):
        if mode == "principled":
            est = estimate_log_volume_distributed(cost, anchor, max_radius=MAX_RADIUS, **common)
        else:
            est = reference_log_volume_distributed(cost, anchor, coefficients=COEFFICIENTS, **common)
        result[mode] = summary(est)
    if args.checks:
        try:
            estimate_log_volume_distributed(cost, anchor, threshold=tau, n_directions=1, device=device)
        except ValueError as err:
            result["too_many_ranks"] = str(err)
        try:
            estimate_log_volume_distributed(cost, anchor, threshold=tau, n_directions=4, seed=rank, device=device)
        except DistributedMeasurementError as err:
            result["disagree"] = str(err)
    result["pieces_walked"] = count["pieces_walked"]
    Path(args.out, f"rank{rank}.json").write_text(json.dumps(result))
    torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
