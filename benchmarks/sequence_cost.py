"""Memory and time of the batched cost and the estimator on the authors' character GPT (issue R4, item 4).

At 10.65M parameters a parameter vector is 43 MB (float32): the estimator must draw its K directions
batch by batch and never hold a K x n matrix, and the cost must evaluate a batch of vectors within its
memory budget. This script measures, each in a fresh subprocess (so each peak is its own):

* ``cost``: one ``ModelCost`` call on ``--batch`` parameter vectors (the anchor plus small noise) over
  ``--windows`` windows of ``--window`` tokens: seconds per call and per vector evaluation, peak RSS,
  the cost's own working-set estimate (``ModelCost.estimate_bytes``) beside it;
* ``estimate``: ``estimate_log_volume`` (filter directions) with ``--directions`` K and, to show that
  memory does not grow with K, the same with 2K: seconds, cost evaluations, seconds per evaluation,
  peak RSS (and peak CUDA allocations on a GPU);
* ``reference``: the paper's grid procedure (``reference_log_volume``) the same way.

The windows are random token ids from a seeded generator and the model is the seeded initialisation
(untrained): the work per evaluation does not depend on the text or the weights. The threshold is the
anchor's cost plus ``--tau-gap`` nats, so every ray crosses at a finite radius.

The authors' workload (their logs, NOTES.md): 25 directions of the paper's grid on the 20,000-window
landscape took 4,122 s per model on one GPU. ``--project`` prints what this machine's measured rate
gives for it (evaluations x windows / rate), and ``--windows 20000 --directions 25 --what reference``
runs it.

    python benchmarks/sequence_cost.py                                  # CPU, 4 windows of 256, batch 4, K 4
    python benchmarks/sequence_cost.py --device cuda --windows 256 --directions 8 --project
    python benchmarks/sequence_cost.py --device cuda --windows 20000 --directions 25 --what reference
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this checkout's volbench, not another install's
    sys.path.insert(0, str(ROOT))
#: The authors' logs (NOTES.md): 25 directions x the paper's grid on 20,000 windows, one GPU.
AUTHORS = {"directions": 25, "windows": 20_000, "seconds": 4_122.0}


def _status_mib(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process from /proc, in MiB;
    elsewhere the lifetime peak from getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak() -> bool:
    """Reset the peak-RSS mark (Linux: ``5`` into /proc/self/clear_refs), so the phase's own peak is read."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _setup(args):
    import torch

    from volbench.costs import ModelCost
    from volbench.lab import models

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randint(0, 65, (args.windows, args.window), generator=gen)
    y = torch.randint(0, 65, (args.windows, args.window), generator=gen)
    model = models.build("char_gpt", seed=args.seed, block_size=max(256, args.window))
    t0 = time.perf_counter()
    cost = ModelCost(model, x, y, loss="ce", device=args.device)
    built = time.perf_counter() - t0
    del model
    return torch, cost, built


def _sync(torch, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def phase(args) -> dict:
    """One measurement in this process (``args.what``)."""
    torch, cost, built = _setup(args)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    out = {"what": args.what, "device": args.device, "n_params": cost.n_params, "windows": args.windows,
           "window": args.window, "threads": torch.get_num_threads(), "build_s": built,
           "peak_rss_setup_mib": _status_mib("VmHWM"), "rss_after_setup_mib": _status_mib("VmRSS"),
           "max_batch": cost.max_batch, "torch": torch.__version__, "peak_reset": _reset_peak()}
    anchor = cost.anchor
    if args.what == "cost":
        gen = torch.Generator().manual_seed(1)
        params = anchor.cpu() + 1e-3 * torch.randn(args.batch, cost.n_params, generator=gen)
        params = params.to(args.device)
        cost(params[:1])  # warm-up (first-call allocations), not timed
        _sync(torch, args.device)
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            cost(params)
        _sync(torch, args.device)
        dt = (time.perf_counter() - t0) / args.repeats
        out.update(batch=args.batch, seconds_per_call=dt, seconds_per_vector=dt / args.batch,
                   estimated_working_set_mib=cost.estimate_bytes(args.batch, args.windows) / 2**20)
    else:
        from volbench import estimate_log_volume, reference_log_volume

        tau = float(cost(anchor[None])[0]) + args.tau_gap
        t0 = time.perf_counter()
        if args.what == "estimate":
            est = estimate_log_volume(cost, anchor, threshold=tau, n_directions=args.directions, directions="filter",
                                      batch_size=args.ray_batch, seed=0)
        else:
            est = reference_log_volume(cost, anchor, threshold=tau, n_directions=args.directions,
                                       batch_size=args.ray_batch, seed=0)
        _sync(torch, args.device)
        dt = time.perf_counter() - t0
        out.update(directions=args.directions, ray_batch=args.ray_batch or cost.max_rays, threshold=tau,
                   seconds=dt, cost_evals=int(est.n_cost_evals), seconds_per_eval=dt / max(1, est.n_cost_evals),
                   log_volume=float(est.log_volume))
    out["peak_rss_mib"] = _status_mib("VmHWM")  # since the reset: this phase's own peak
    if cuda:
        out["peak_cuda_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--windows", type=int, default=4, help="examples (windows) in the landscape")
    p.add_argument("--window", type=int, default=256, help="tokens per window (the authors' 256)")
    p.add_argument("--batch", type=int, default=4, help="parameter vectors in the one cost call")
    p.add_argument("--repeats", type=int, default=3, help="timed cost calls (the mean is reported)")
    p.add_argument("--directions", type=int, default=4, help="K of the estimates (also run with 2K)")
    p.add_argument("--no-double", action="store_true", help="run the estimates with K only, not 2K as well")
    p.add_argument("--ray-batch", type=int, default=None, help="rays per batch (default: the cost's own)")
    p.add_argument("--tau-gap", type=float, default=0.5, help="threshold = anchor cost + this (nats)")
    p.add_argument("--what", default="cost,estimate", help="comma-separated: cost, estimate, reference")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--project", action="store_true", help="print the authors' workload at this rate")
    p.add_argument("--json", default=None, help="write the rows here")
    p.add_argument("--inline", action="store_true",
                   help="measure in this process (one Python and CUDA start-up: gpu_check.sh's short step); the "
                        "peak RSS is then reset between phases where Linux allows it, the CUDA peak always")
    p.add_argument("--phase", action="store_true", help=argparse.SUPPRESS)  # internal: one measurement
    args = p.parse_args(argv)
    if args.phase:
        print(json.dumps(phase(args)))
        return 0
    rows = []
    for what in args.what.split(","):
        ks = [args.directions] if what == "cost" or args.no_double else [args.directions, 2 * args.directions]
        for k in ks:
            if args.inline:
                row = phase(argparse.Namespace(**{**vars(args), "what": what, "directions": k}))
                rows.append(row)
                print(json.dumps(row))
                continue
            cmd = [sys.executable, __file__, "--phase", "--what", what, "--device", args.device, "--windows",
                   str(args.windows), "--window", str(args.window), "--batch", str(args.batch), "--repeats",
                   str(args.repeats), "--directions", str(k), "--tau-gap", str(args.tau_gap), "--seed", str(args.seed)]
            if args.ray_batch:
                cmd += ["--ray-batch", str(args.ray_batch)]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if res.returncode:
                print(res.stderr, file=sys.stderr)
                return res.returncode
            row = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row))
    if args.project:
        for row in rows:
            if row["what"] != "cost":
                per_window = row["seconds_per_eval"] / row["windows"]
                evals_per_dir = row["cost_evals"] / row["directions"]
                secs = per_window * AUTHORS["windows"] * evals_per_dir * AUTHORS["directions"]
                print(f"{row['what']}: {row['seconds_per_eval']:.3g} s per evaluation of {row['windows']} windows, "
                      f"{evals_per_dir:.0f} evaluations per direction: the authors' workload (25 directions, "
                      f"20,000 windows) at this rate ~{secs:,.0f} s (theirs: {AUTHORS['seconds']:,.0f} s on one GPU)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
