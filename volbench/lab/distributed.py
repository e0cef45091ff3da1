"""Measure one of the lab's minima on several processes: the runnable entry of
``volbench.estimator.distributed``.

    python -m volbench.lab.distributed --help
    torchrun --nproc-per-node 2 -m volbench.lab.distributed --dataset mnist --model mnist_mlp \\
        --train-size 600 --base 60 --threshold 0.1 --n-directions 500

Every rank gets (or, on a miss, trains: the store's lock lets one process train while the others
wait) the minimum of the given spec from the store, builds its cost on its landscape on this
rank's device (:func:`volbench.estimator.distributed.init_distributed`: rank = LOCAL_RANK's GPU
with NCCL, else the CPU with gloo), and measures it with the distributed estimator; finished
pieces go to the shard store (default: the minima store's folder), so rerunning the same command
after a failure computes only what is missing. Rank 0 prints the estimate's summary as JSON (and
writes it to ``--json``). Without ``torchrun`` it runs in one process.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from volbench.estimator.distributed import (
    DEFAULT_TIMEOUT_S,
    estimate_log_volume_distributed,
    init_distributed,
    reference_log_volume_distributed,
)
from volbench.lab.measure import _landscape_cost
from volbench.lab.minima import train_minimum
from volbench.lab.spec import MinimumSpec
from volbench.lab.train import TrainConfig
from volbench.store.minima import MinimaStore

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m volbench.lab.distributed",
        description="Measure the basin volume of a lab minimum, its directions shared out over the processes of "
                    "torchrun (one per GPU, or CPU processes with gloo); rank 0 prints the result as JSON.")
    spec = p.add_argument_group("the minimum (trained on a miss, as volbench.lab.train_minimum)")
    spec.add_argument("--dataset", required=True, help="data set name (volbench data list)")
    spec.add_argument("--model", required=True, help="architecture (volbench.lab.models.names())")
    spec.add_argument("--train-size", type=int, required=True, help="clean training examples")
    spec.add_argument("--base", type=int, default=0, help="base set of every nested subset (default 0)")
    spec.add_argument("--seed", type=int, default=0, help="model seed (default 0)")
    spec.add_argument("--epochs", type=int, default=TrainConfig.epochs, help="training epochs (default %(default)s)")
    spec.add_argument("--loss", default=TrainConfig.loss, help="training and landscape loss (default %(default)s)")
    m = p.add_argument_group("the measurement")
    m.add_argument("--landscape-size", type=int, default=None, help="landscape examples (default: --train-size)")
    m.add_argument("--threshold", type=float, required=True, help="the basin's loss level tau")
    m.add_argument("--estimator", choices=("principled", "reference"), default="principled",
                   help="volbench's estimator or the main paper's grid (default %(default)s)")
    m.add_argument("--directions", choices=("filter", "isotropic"), default="filter",
                   help="filter-normalised or isotropic directions (reference: 'isotropic' = unscaled; "
                        "default %(default)s)")
    m.add_argument("--n-directions", type=int, default=500, help="K (default %(default)s)")
    m.add_argument("--direction-seed", type=int, default=0, help="direction seed (default %(default)s)")
    m.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    m.add_argument("--batch-size", type=int, default=None, help="directions per piece (default: the cost's)")
    io = p.add_argument_group("storage and time")
    io.add_argument("--store", default=None, help="minima store folder (default: VOLBENCH_STORE or "
                                                  "~/.cache/volbench/minima)")
    io.add_argument("--shard-store", default=None, help="folder of finished pieces (default: --store's)")
    io.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S,
                    help="how long rank 0 waits for another rank's pieces (default %(default)s s)")
    io.add_argument("--json", default=None, help="rank 0 also writes the summary here")
    return p


def _device() -> torch.device:
    """This process's device: under torchrun the process group's (initialised here), else the
    accelerator torch sees, else the CPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return init_distributed()
    accel = torch.accelerator.current_accelerator() if hasattr(torch, "accelerator") else None
    return torch.device(accel.type, 0) if accel is not None else torch.device("cpu")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = _device()
    dtype = getattr(torch, args.dtype)
    store = MinimaStore(args.store)
    spec = MinimumSpec(args.dataset, args.model, train_size=args.train_size, seed=args.seed, base=args.base,
                       train=TrainConfig(epochs=args.epochs, loss=args.loss))
    minimum = train_minimum(spec, store, device=device)
    size = args.landscape_size or args.train_size
    cost = _landscape_cost(minimum, size, loss=args.loss, landscape_extras=0, device=device, dtype=dtype)
    # What the cost is, for the shard store's key: the minimum (its key carries the training code's
    # provenance) and its landscape.
    cost_key = json.dumps({"minimum_key": minimum.key, "landscape": {"dataset": spec.dataset, "size": size,
                                                                     "base": spec.base, "seed": spec.seed},
                           "loss": args.loss}, sort_keys=True)
    common: dict[str, Any] = dict(threshold=args.threshold, n_directions=args.n_directions, device=device,
                                  dtype=dtype, batch_size=args.batch_size, timeout_s=args.timeout_s,
                                  shard_store=args.shard_store or store.root, cost_key=cost_key)
    if args.estimator == "principled":
        est = estimate_log_volume_distributed(cost, cost.anchor, directions=args.directions, seed=args.direction_seed,
                                              **common)
    else:
        scale = None if args.directions == "filter" else torch.ones(cost.anchor.numel())
        est = reference_log_volume_distributed(cost, cost.anchor, scale=scale, seed=args.direction_seed, **common)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        out = {"minimum": spec.label(), "minimum_key": minimum.key, "landscape_size": size,
               "estimator": args.estimator, **est.summary(), "distributed": est.config["distributed"]}
        text = json.dumps(out, indent=2, allow_nan=True)
        print(text)
        if args.json:
            Path(args.json).write_text(text + "\n")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
