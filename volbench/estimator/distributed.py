"""One measurement, many processes: ``estimate_log_volume`` and the paper's ``reference_log_volume``
under torch.distributed (launched with ``torchrun``), with finished pieces cached so that a rerun
computes only what is missing.

How the work is split. The K directions are cut into one contiguous block per rank, as even as
possible (:func:`shard_ranges`: rank r gets ``[r q + min(r, m), ...)`` for K = q W + m); every rank
walks its block in *pieces* of ``batch_size`` consecutive directions. Contiguous blocks rather than
round-robin: direction k's work does not depend on k (the directions are i.i.d.), so both balance
alike, and a block is one range, ``[a, b)``, that an error message, a log line and a cache key can
name, and whose pieces are the single-process batches when ``batch_size`` divides the block.

Why the result is the single-process one, bit for bit. Direction k is drawn by its global index
from its own counter-based stream (``DirectionSampler``: Threefry keyed by (seed, k), the same bits
on every rank and device), and a ray's search depends only on its own history: each round every
live ray proposes a point from its own evaluated points and state (``walk.search_walk``; the
paper's grid walk likewise), the cost of a point does not depend on the other points of its call
(the cost protocol; ``ModelCost`` evaluates examples in fixed blocks), and the evaluation count is
a sum over rays. So the per-ray brackets, censored flags, log-terms and evaluation counts are
the same whichever batch or rank a ray is walked in (``tests/test_distributed.py`` checks it
against ``estimate_log_volume``, in process and under ``torchrun``), and the assembled estimate,
built by the single-process code (``core._assemble`` / ``reference._grid_assemble``) from all K
rays, equals it. ``n_cost_evals`` counts the anchor once, as a single process does;
``config["distributed"]`` records per rank its block, pieces computed and loaded, the evaluations
it really made (its own anchor included) and its time. Every rank returns the same estimate (its
``config["device"]`` and ``["batch_size"]`` are the rank's own).

Failure. A rank that raises sends its error to the others instead of its pieces; a rank that dies
(its process killed, out of memory, a lost host) or hangs is detected by rank 0, which receives
every rank's pieces one rank at a time: a dead peer closes its connections at once, a hung one is
given up after ``timeout_s``. Then every rank that can still be reached raises
:class:`DistributedMeasurementError`, naming each failed rank, its directions ``[a, b)`` and why;
the estimate is never built from fewer than K directions. Under ``torchrun`` the launcher itself
stops the other ranks when one exits, and its summary names the failed rank as well. Ranks whose
configurations differ (another seed, threshold, cost name, anchor, dtype) fail the same way.

Resume. With ``shard_store`` (:class:`volbench.store.shards.ShardStore`, or a folder) each finished
piece is written at once, atomically and checksummed, keyed by the measurement's configuration (the
cost's name ``cost_key``, the anchor's SHA-256 and cost, the threshold, the search's settings, the
direction seed, dtype and device type), the code's provenance and its direction range; a piece that
is there and verifies is loaded instead of walked. So a rerun after a failure computes only the
missing pieces (with the same world size and batch size the pieces line up; another cut misses the
cache rather than mixing pieces). Without torch.distributed initialised the same functions run
every piece in this process (and use the store the same way): the single-process fallback.

The exchange uses a gloo process group made for it (point-to-point, CPU objects), so it works
under any default backend (NCCL on GPUs: :func:`init_distributed` picks the backend from the
device) and its timeout is this module's, not the default group's.

Size: one concept, a measurement shared out over processes, in its parts: the split, the pieces of
the two estimators, pieces as JSON (for the store and the exchange), the exchange and its failures,
and the two public entry points with their long argument lists.

Example (no process group: the single-process fallback, equal to ``estimate_log_volume``):
    >>> import torch
    >>> from volbench import estimate_log_volume
    >>> cost = lambda p: (p ** 2).sum(dim=1)
    >>> kw = dict(threshold=1.0, n_directions=6, batch_size=4, dtype=torch.float64)
    >>> a = estimate_log_volume_distributed(cost, torch.zeros(5), **kw)
    >>> b = estimate_log_volume(cost, torch.zeros(5), **kw)
    >>> torch.equal(a.log_radii, b.log_radii), a.log_volume == b.log_volume, a.n_cost_evals == b.n_cost_evals
    (True, True, True)
    >>> shard_ranges(10, 3)
    [(0, 4), (4, 7), (7, 10)]
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from volbench._checks import as_device, check_positive_int
from volbench.estimator.core import _assemble, _setup, _walk, _Walked
from volbench.estimator.directions import DIRECTION_GENERATOR
from volbench.estimator.reference import _grid_assemble, _grid_piece, _grid_setup
from volbench.estimator.result import ReferenceEstimate, VolumeEstimate
from volbench.estimator.settings import SearchSettings
from volbench.estimator.walk import Question
from volbench.store.shards import ShardStore

__all__ = ["estimate_log_volume_distributed", "reference_log_volume_distributed", "shard_ranges",
           "init_distributed", "backend_for", "DistributedMeasurementError", "RankFailure", "DEFAULT_TIMEOUT_S"]

log = logging.getLogger("volbench.distributed")

#: How long rank 0 waits for another rank's pieces (seconds). Ranks reach the exchange at
#: different times (one loads its pieces from the store in a second, another walks its block for
#: hours), so this must exceed the slowest rank's work; a rank whose process dies is detected at
#: once (its connections close), only a hung rank or a lost host waits this long.
DEFAULT_TIMEOUT_S = 24 * 3600.0


def shard_ranges(n_directions: int, world_size: int) -> list[tuple[int, int]]:
    """Rank r's directions ``[a_r, b_r)``: contiguous, in rank order, sizes differing by at most 1.

    Raises ValueError when there are more ranks than directions (a rank would have none).

    >>> shard_ranges(16, 2), shard_ranges(5, 5)
    ([(0, 8), (8, 16)], [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)])
    """
    K = check_positive_int(n_directions, "n_directions")
    W = check_positive_int(world_size, "world_size")
    if W > K:
        raise ValueError(f"the world size {W} is larger than the number of directions {K}: every rank needs at least "
                         f"one direction; run on at most {K} processes, or measure more directions")
    q, m = divmod(K, W)
    starts = [r * q + min(r, m) for r in range(W + 1)]
    return [(starts[r], starts[r + 1]) for r in range(W)]


def backend_for(device: torch.device | str) -> str:
    """The torch.distributed backend for ``device``'s type: torch's default (gloo for the CPU,
    NCCL for CUDA devices, ...)."""
    device = as_device(device) if not isinstance(device, torch.device) else device
    pick = getattr(dist, "get_default_backend_for_device", None)
    if pick is not None:
        return pick(device)
    return dist.Backend.default_device_backend_map.get(device.type, "gloo")


def init_distributed(device: torch.device | str | None = None, *,
                     timeout_s: float = DEFAULT_TIMEOUT_S) -> torch.device:
    """Initialise the default process group from ``torchrun``'s environment (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and return this rank's device.

    ``device`` None: the accelerator torch sees (CUDA, XPU, ...) at index LOCAL_RANK, made this
    process's current device, else the CPU. The backend comes from the device (:func:`backend_for`:
    NCCL on CUDA, gloo on the CPU). A group that is already initialised is kept.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        accel = torch.accelerator.current_accelerator() if hasattr(torch, "accelerator") else None
        device = torch.device(accel.type, local_rank) if accel is not None else torch.device("cpu")
    else:
        device = as_device(device)
    if device.type != "cpu" and device.index is not None:
        module = getattr(torch, device.type)  # torch.cuda, torch.xpu, ...: the device's own module
        module.set_device(device.index)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend_for(device), timeout=timedelta(seconds=float(timeout_s)))
    return device


@dataclass(frozen=True)
class RankFailure:
    """Why rank ``rank`` (directions ``[start, stop)``) gave no pieces."""

    rank: int
    start: int
    stop: int
    reason: str

    def describe(self) -> str:
        return f"rank {self.rank}, directions [{self.start}, {self.stop}): {self.reason}"


class DistributedMeasurementError(RuntimeError):
    """A distributed measurement failed on some rank; ``failures`` names each (rank, directions,
    why). The estimate was not assembled."""

    def __init__(self, message: str, failures: tuple[RankFailure, ...] = ()) -> None:
        super().__init__(message)
        self.failures = tuple(failures)


# --- what one measurement is, cut into pieces ---------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """One measurement as pieces: ``piece(start, stop)`` walks directions [start, stop) and returns
    CPU tensors and ints (``cost_evals``: points evaluated); ``assemble(pieces, seconds)`` builds
    the estimate from every piece in direction order; ``config`` (JSON) is what determines a
    piece's numbers besides its range: the shard store's key and the ranks' agreement check."""

    K: int
    batch_size: int
    config: dict[str, Any]
    piece: Callable[[int, int], dict[str, Any]]
    assemble: Callable[[list[dict[str, Any]], float], Any]


def _digest(t: torch.Tensor | None) -> str | None:
    """SHA-256 of a tensor's dtype, shape and bytes (on the CPU), or None."""
    if t is None:
        return None
    t = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _estimate_job(cost, anchor, *, threshold, n_directions, directions, preconditioner, measure, prior_std,
                  prior_mean, settings: SearchSettings, cost_key: str | None) -> _Job:
    run = _setup(cost, anchor, [threshold], None, True, n_directions, directions, preconditioner, measure,
                 prior_std, prior_mean, settings)
    tau = float(threshold)
    asked = [Question(0, tau)]
    quiet = settings.replace(progress=False)

    def piece(start: int, stop: int) -> dict[str, Any]:
        w = _walk(cost, run, asked, [tau], quiet, start=start, stop=stop)
        out = {"lo": torch.cat(w.lo), "hi": torch.cat(w.hi), "log_norm": torch.cat(w.log_norm),
               "evals": torch.cat(w.evals), "cost_evals": w.n_evals - 1, "rounds": w.rounds}
        if run.measure == "gaussian":
            out["terms"] = torch.cat(w.terms).cpu()
            out["terms_upper"] = torch.cat(w.terms_upper).cpu()
        return out

    def assemble(pieces: list[dict[str, Any]], seconds: float) -> VolumeEstimate:
        gaussian = run.measure == "gaussian"
        walked = _Walked(lo=[p["lo"] for p in pieces], hi=[p["hi"] for p in pieces],
                         log_norm=[p["log_norm"] for p in pieces], evals=[p["evals"] for p in pieces],
                         terms=[p["terms"] for p in pieces] if gaussian else [],
                         terms_upper=[p["terms_upper"] for p in pieces] if gaussian else [],
                         n_evals=1 + sum(int(p["cost_evals"]) for p in pieces),
                         rounds=sum(int(p["rounds"]) for p in pieces), n_questions=1)
        return _assemble(run, walked, [(None, tau)], asked, settings, seconds)[(None, tau)]

    config = {
        "kind": "volbench.estimator.shard",
        "mode": "principled",
        "cost": cost_key,
        "cost_type": f"{type(cost).__module__}.{type(cost).__qualname__}",
        "anchor": _digest(run.anchor),
        "anchor_costs": [float(c) for c in run.c0.tolist()],
        "threshold": tau,
        "measure": run.measure,
        "prior_std": _digest(run.std),
        "prior_mean": _digest(run.mean),
        "directions": run.label,
        "explicit_directions": _digest(run.sampler.explicit),
        "preconditioner": _digest(run.sampler.preconditioner),
        "direction_generator": DIRECTION_GENERATOR,
        "seed": run.seed,
        "search": settings.search,
        "search_config": dataclasses.asdict(run.cfg),
        "dtype": str(settings.dtype).replace("torch.", ""),
        "device_type": run.device.type,
    }
    return _Job(K=run.K, batch_size=run.batch_size, config=config, piece=piece, assemble=assemble)


def _reference_job(cost, anchor, *, threshold, n_directions, directions, scale, coefficients, seed, device, dtype,
                   batch_size, lookahead, cost_key: str | None) -> _Job:
    run = _grid_setup(cost, anchor, thresholds=[threshold], sizes=None, exact_costs=None, strict=True,
                      n_directions=n_directions, directions=directions, scale=scale, coefficients=coefficients,
                      seed=seed, device=device, dtype=dtype, batch_size=batch_size, lookahead=lookahead)

    def piece(start: int, stop: int) -> dict[str, Any]:
        p = _grid_piece(run, start, stop)
        out = {"crossing": p["crossing"], "raw_norm": p["raw_norm"], "n_evals": p["n_evals"],
               "n_verified": p["n_verified"], "cost_evals": p["n_evals"] + p["n_verified"]}
        if p["evals_per_ray"] is not None:
            out["evals_per_ray"] = p["evals_per_ray"]
        return out

    def assemble(pieces: list[dict[str, Any]], seconds: float) -> ReferenceEstimate:
        parts = [{**p, "evals_per_ray": p.get("evals_per_ray")} for p in pieces]
        return next(iter(_grid_assemble(run, parts, seconds).values()))

    config = {
        "kind": "volbench.estimator.shard",
        "mode": "reference",
        "cost": cost_key,
        "cost_type": f"{type(cost).__module__}.{type(cost).__qualname__}",
        "anchor": _digest(run.anchor),
        "anchor_costs": [float(c) for c in run.c0.tolist()],
        "threshold": float(threshold),
        "path": "rays" if run.rays else "flat",
        "engine": run.config.get("engine"),
        "explicit_directions": _digest(directions) if isinstance(directions, torch.Tensor) else None,
        "direction_generator": DIRECTION_GENERATOR,
        "scale": _digest(run.scale_d),
        "coefficients": _digest(run.coef),
        "seed": run.config["seed"],
        "lookahead": run.lookahead,
        "dtype": str(run.dtype).replace("torch.", ""),
        "device_type": run.device.type,
    }
    return _Job(K=run.K, batch_size=run.batch_size, config=config, piece=piece, assemble=assemble)


# --- pieces as JSON (the shard store and the exchange) -------------------------------------------

_DTYPES = {"float64": torch.float64, "float32": torch.float32, "int64": torch.int64, "bool": torch.bool}


def _encode(piece: dict[str, Any]) -> dict[str, Any]:
    """A piece as JSON-ready values: each tensor as dtype, shape and a flat list (floats written
    with repr read back to the same bits), ints as they are."""
    out: dict[str, Any] = {}
    for name, value in piece.items():
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu()
            out[name] = {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
                         "values": t.reshape(-1).tolist()}
        else:
            out[name] = int(value)
    return out


def _decode(data: dict[str, Any], rows: int) -> dict[str, Any]:
    """The inverse of :func:`_encode`; ValueError when a tensor's dtype, shape or length is off
    (a piece of ``rows`` directions)."""
    out: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, dict):
            dtype = _DTYPES.get(value.get("dtype"))
            shape = value.get("shape")
            values = value.get("values")
            if dtype is None or not isinstance(shape, list) or not shape or shape[0] != rows \
                    or not isinstance(values, list) or len(values) != math.prod(shape):
                raise ValueError(f"field {name!r} is not a [{rows}, ...] tensor record")
            out[name] = torch.tensor(values, dtype=dtype).reshape(shape)
        elif isinstance(value, int) and not isinstance(value, bool):
            out[name] = value
        else:
            raise ValueError(f"field {name!r} is neither a tensor record nor an int")
    return out


# --- the run -------------------------------------------------------------------------------------


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _as_store(shard_store: Any, cost_key: str | None) -> Any:
    if shard_store is None:
        return None
    if isinstance(shard_store, (str, os.PathLike)):
        shard_store = ShardStore(shard_store)
    if not (callable(getattr(shard_store, "load", None)) and callable(getattr(shard_store, "save", None))):
        raise TypeError(f"shard_store must be a folder or a volbench.store.shards.ShardStore, got "
                        f"{type(shard_store).__name__}")
    if not isinstance(cost_key, str) or not cost_key:
        raise ValueError("shard_store needs cost_key=: a name for the cost (its model, data and loss, e.g. the "
                         "minimum's store key and the landscape) that goes into the cache key; a cache cannot tell "
                         "two cost functions apart by themselves")
    return shard_store


def _failure_text(err: BaseException) -> str:
    """``Type: message`` and the innermost frames of the traceback, indented."""
    frames = traceback.format_exception(type(err), err, err.__traceback__)
    tail = [line for line in "".join(frames[-4:-1]).rstrip().splitlines() if line.strip(" ^~")] \
        if len(frames) > 1 else []  # without the lines of carets that mark the expression
    return f"{type(err).__name__}: {err}" + "".join("\n      " + line for line in tail)


def _own_pieces(job: _Job, start: int, stop: int, store: Any, rank: int, progress: bool
                ) -> tuple[list[tuple[int, int, dict[str, Any]]], dict[str, Any]]:
    """Walk (or load) this rank's pieces, saving each as it is finished."""
    info = {"pieces": 0, "cached": 0, "cost_evals": 1}  # this rank's anchor evaluation
    starts = range(start, stop, job.batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"rank {rank}: directions [{start}, {stop})", unit="piece")
    pieces = []
    for s in starts:
        e = min(stop, s + job.batch_size)
        data = None
        if store is not None:
            stored = store.load(job.config, s, e)
            if stored is not None:
                try:
                    _decode(stored, e - s)
                    data = stored
                except ValueError as err:
                    log.warning("rank %d: the stored piece [%d, %d) does not verify (%s); recomputing it",
                                rank, s, e, err)
        if data is None:
            piece = job.piece(s, e)
            info["cost_evals"] += int(piece["cost_evals"])
            data = _encode(piece)
            if store is not None:
                store.save(job.config, s, e, data)
        else:
            info["cached"] += 1
        info["pieces"] += 1
        pieces.append((s, e, data))
    log.info("rank %d: directions [%d, %d): %d pieces, %d loaded from the shard store, %d computed", rank, start,
             stop, info["pieces"], info["cached"], info["pieces"] - info["cached"])
    return pieces, info


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _exchange(payload: dict[str, Any], rank: int, world: int, ranges: list[tuple[int, int]],
              group: Any) -> dict[str, Any]:
    """Rank 0 receives every rank's payload, one rank at a time (a lost rank is named, not waited
    on beyond the group's timeout), judges them and sends the verdict to every rank it reached:
    ``{"payloads": [...]}`` or ``{"error": message, "failures": [...]}``."""
    if rank != 0:
        box: list[Any] = [None]
        try:
            dist.send_object_list([payload], dst=dist.get_global_rank(group, 0), group=group)
            dist.recv_object_list(box, src=dist.get_global_rank(group, 0), group=group)
        except Exception as err:  # DistBackendError, RuntimeError: rank 0 is gone or timed out
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DistributedMeasurementError(
                f"rank {rank} lost contact with rank 0, which collects the pieces (directions "
                f"[{ranges[0][0]}, {ranges[0][1]}) are rank 0's): rank 0 died, was killed or hung past the timeout "
                f"({first}); the estimate was not assembled") from err
        return box[0]
    payloads: list[Any] = [payload]
    for src in range(1, world):
        box = [None]
        try:
            dist.recv_object_list(box, src=dist.get_global_rank(group, src), group=group)
            payloads.append(box[0])
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            payloads.append({"rank": src, "ok": False, "lost": True,
                             "error": f"stopped answering before it sent its pieces: its process died, was killed "
                                      f"or hung past the timeout ({first})"})
    failures = []
    reference = next((p for p in payloads if p.get("ok")), None)
    for r, p in enumerate(payloads):
        start, stop = ranges[r]
        if not p.get("ok"):
            reason = p["error"] if p.get("lost") else f"raised {p['error']}"
            failures.append(RankFailure(r, start, stop, reason))
        elif p["config"] != reference["config"] or p["K"] != reference["K"]:
            keys = _differences(p["config"], reference["config"]) or ["n_directions"]
            failures.append(RankFailure(r, start, stop, f"its measurement differs from rank {reference['rank']}'s "
                                                        f"in {', '.join(keys)}"))
    verdict: dict[str, Any] = {"payloads": payloads}
    if failures:
        verdict = {"failures": [dataclasses.asdict(f) for f in failures]}
    lost = {f.rank for f in failures if payloads[f.rank].get("lost")}
    for dst in range(1, world):
        if dst in lost:
            continue
        try:
            dist.send_object_list([verdict], dst=dist.get_global_rank(group, dst), group=group)
        except Exception:  # noqa: BLE001 - that rank is gone too; rank 0 still raises below
            pass
    return verdict


def _failed(failures: list[RankFailure], K: int, world: int, store: Any) -> DistributedMeasurementError:
    lines = [f"the distributed measurement failed on {len(failures)} of {world} ranks; the estimate was not "
             f"assembled (it needs all {K} directions):"]
    lines += ["  " + f.describe() for f in failures]
    if store is not None:
        lines.append(f"Finished pieces are in the shard store {getattr(store, 'root', store)}: rerun the same command "
                     "and only the missing directions are computed.")
    else:
        lines.append("No shard store was given (shard_store=): a rerun computes every direction again.")
    return DistributedMeasurementError("\n".join(lines), tuple(failures))


def _measure(make_job: Callable[[], _Job], K: int, *, shard_store: Any, cost_key: str | None, timeout_s: float,
             progress: bool) -> Any:
    """Run ``make_job()``'s pieces of this rank's block (all of them without a process group),
    exchange them, and assemble the estimate on every rank."""
    started = time.perf_counter()
    store = _as_store(shard_store, cost_key)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    rank, world = _rank_world()
    ranges = shard_ranges(K, world)  # every rank raises the same ValueError before any collective
    start, stop = ranges[rank]
    backend = dist.get_backend() if world > 1 else None
    if world == 1:
        job = make_job()
        pieces, info = _own_pieces(job, start, stop, store, rank, progress)
        infos = [{**info, "rank": 0, "directions": [start, stop], "seconds": time.perf_counter() - started}]
        return _finish(job, [pieces], infos, world, backend, store, cost_key)
    group = dist.new_group(backend="gloo", timeout=timedelta(seconds=float(timeout_s)))
    try:
        job = None
        try:
            job = make_job()
            if job.K != K:
                raise RuntimeError(f"the measurement has {job.K} directions, not the {K} it was split for")
            pieces, info = _own_pieces(job, start, stop, store, rank, progress)
            payload = {"rank": rank, "ok": True, "K": job.K, "config": job.config, "pieces": pieces,
                       "info": {**info, "rank": rank, "directions": [start, stop],
                                "seconds": time.perf_counter() - started}}
        except Exception as err:  # noqa: BLE001 - shared with every rank, then raised there
            log.error("rank %d failed on directions [%d, %d): %s", rank, start, stop, err)
            payload = {"rank": rank, "ok": False, "error": _failure_text(err)}
        verdict = _exchange(payload, rank, world, ranges, group)
        if "failures" in verdict:
            raise _failed([RankFailure(**f) for f in verdict["failures"]], K, world, store)
        payloads = verdict["payloads"]
        return _finish(job, [p["pieces"] for p in payloads], [p["info"] for p in payloads], world, backend, store,
                       cost_key)
    finally:
        try:
            dist.destroy_process_group(group)
        except Exception:  # noqa: BLE001 - a broken group after a failure; the error above is what matters
            pass


def _finish(job: _Job, per_rank: list[list[tuple[int, int, dict[str, Any]]]], infos: list[dict[str, Any]],
            world: int, backend: str | None, store: Any, cost_key: str | None) -> Any:
    """Assemble every rank's pieces (in direction order, checked to cover [0, K) once)."""
    pieces = sorted((p for rank_pieces in per_rank for p in rank_pieces), key=lambda p: p[0])
    at = 0
    for s, e, _ in pieces:
        if s != at or e <= s:
            raise RuntimeError(f"the pieces do not tile the directions: [{s}, {e}) follows {at}")
        at = e
    if at != job.K:
        raise RuntimeError(f"the pieces end at direction {at}, not {job.K}")
    decoded = [_decode(data, e - s) for s, e, data in pieces]
    seconds = max(float(i["seconds"]) for i in infos)
    est = job.assemble(decoded, seconds)
    record = {"world_size": world, "backend": backend, "cost_key": cost_key,
              "shard_store": None if store is None else str(getattr(store, "root", store)),
              "ranks": [{k: i[k] for k in ("rank", "directions", "pieces", "cached", "cost_evals", "seconds")}
                        for i in infos]}
    return dataclasses.replace(est, config={**est.config, "distributed": record})


# --- the public functions ------------------------------------------------------------------------


def estimate_log_volume_distributed(cost, anchor: torch.Tensor, *, threshold: float, n_directions: int = 500,
                                    directions: str | torch.Tensor = "isotropic",
                                    preconditioner: torch.Tensor | None = None, measure: str = "lebesgue",
                                    prior_std: float | torch.Tensor | None = None,
                                    prior_mean: float | torch.Tensor | None = None,
                                    settings: SearchSettings | None = None, shard_store: Any = None,
                                    cost_key: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                                    **search: Any) -> VolumeEstimate:
    """``volbench.estimate_log_volume`` with its K directions shared out over the ranks of the
    initialised torch.distributed group (all of them in this process when there is none); see
    the module docstring for the split, the guarantees, failures and resuming.

    Every rank calls it with the same arguments (each with its own ``device``, e.g. from
    :func:`init_distributed`) and gets the same estimate: the single-process one, radii equal in
    float64, censored rays and evaluation counts included, ``n_directions`` = K, plus
    ``config["distributed"]``.

    Args:
        cost, anchor, threshold, n_directions, directions, preconditioner, measure, prior_std,
            prior_mean: as ``estimate_log_volume`` (``directions="prior"`` is not supported here).
        settings: the search's settings (``SearchSettings``), or its fields as keyword arguments
            (rtol, seed, device, dtype, batch_size, ...). ``batch_size`` is also the piece size.
        shard_store: a folder or a ``volbench.store.shards.ShardStore`` every rank can reach:
            finished pieces are written there and reused by a rerun. Needs ``cost_key``.
        cost_key: a name for the cost (its model, data and loss) for the store's key.
        timeout_s: how long rank 0 waits for another rank's pieces (see ``DEFAULT_TIMEOUT_S``).

    Raises:
        DistributedMeasurementError: on every reachable rank when some rank failed, died, hung or
            measured something else; it names each such rank and its directions.
        ValueError: bad arguments, including more ranks than directions (on every rank).
    """
    if settings is None:
        settings = SearchSettings(**search)
    elif search:
        raise TypeError(f"give the search's settings as settings= or as keywords, not both ({sorted(search)})")
    if isinstance(directions, str) and directions == "prior":
        raise ValueError("directions='prior' (prior-directed rays) is not supported by the distributed estimator; "
                         "use 'isotropic', 'filter', a preconditioner or explicit directions")
    K = directions.shape[0] if isinstance(directions, torch.Tensor) and directions.ndim == 2 else \
        check_positive_int(n_directions, "n_directions")

    def make_job() -> _Job:
        return _estimate_job(cost, anchor, threshold=threshold, n_directions=n_directions, directions=directions,
                             preconditioner=preconditioner, measure=measure, prior_std=prior_std,
                             prior_mean=prior_mean, settings=settings, cost_key=cost_key)

    return _measure(make_job, K, shard_store=shard_store, cost_key=cost_key, timeout_s=timeout_s,
                    progress=settings.progress)


def reference_log_volume_distributed(cost, anchor: torch.Tensor, *, threshold: float, n_directions: int = 500,
                                     directions: torch.Tensor | None = None, scale: torch.Tensor | None = None,
                                     coefficients: torch.Tensor | None = None, seed: int = 0,
                                     device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                                     batch_size: int | None = None, lookahead: int = 1, shard_store: Any = None,
                                     cost_key: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                                     progress: bool = False) -> ReferenceEstimate:
    """``volbench.reference_log_volume`` (the main paper's grid) with its K directions shared out
    over the ranks, as :func:`estimate_log_volume_distributed`: the same crossings, dropped
    directions, radii and evaluation counts as one process, on every rank.

    Arguments as ``reference_log_volume``, plus ``shard_store``, ``cost_key`` and ``timeout_s``
    (see :func:`estimate_log_volume_distributed`) and ``progress`` (a bar per rank's pieces).
    """
    K = directions.shape[0] if isinstance(directions, torch.Tensor) and directions.ndim == 2 else \
        check_positive_int(n_directions, "n_directions")

    def make_job() -> _Job:
        return _reference_job(cost, anchor, threshold=threshold, n_directions=n_directions, directions=directions,
                              scale=scale, coefficients=coefficients, seed=seed, device=device, dtype=dtype,
                              batch_size=batch_size, lookahead=lookahead, cost_key=cost_key)

    return _measure(make_job, K, shard_store=shard_store, cost_key=cost_key, timeout_s=timeout_s, progress=progress)
