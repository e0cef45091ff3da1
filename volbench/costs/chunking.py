"""Memory planning of :class:`~volbench.costs.ModelCost`: chunk-size defaults, simulated and real
out-of-memory errors, rounding helpers.

The cost evaluates ``b`` parameter vectors (or rays) on ``c`` shared examples at a time. How big
``b`` and ``c`` may be is decided here, from a working-set budget in bytes; nothing in this module
touches the model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["ChunkingDefaults", "CostOutOfMemoryError", "is_oom", "round_up", "round_down",
           "same_device"]

# Recent torch exposes torch.OutOfMemoryError; older releases only torch.cuda.OutOfMemoryError.
_TorchOOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


class CostOutOfMemoryError(_TorchOOM):
    """Raised when a chunk does not fit: simulated (over ``memory_budget_bytes``) or when even a
    single parameter vector runs out of memory. A ``torch.OutOfMemoryError``, so callers that
    handle real OOMs handle this one too; its message contains "out of memory"."""


@dataclass(frozen=True)
class ChunkingDefaults:
    """How :class:`ModelCost` sizes its chunks when the caller does not.

    Attributes:
        cpu_memory_budget_bytes: working-set budget on a CPU (bytes). 2 GiB leaves room for the
            data, the estimator's direction matrices and other processes on a shared host.
        cuda_free_fraction: fraction of the free device memory (``torch.cuda.mem_get_info`` at
            construction) used as the budget on CUDA. 0.5 leaves the other half for allocator
            fragmentation, cuBLAS workspaces and the caller's tensors.
        early_exit_chunks: with early exit possible, the first data chunk (the *probe*) is about
            1/early_exit_chunks of the data set, so a vector far above the threshold costs about
            1/8 of a full pass; later chunks are sized adaptively (see ``exit_margin``).
        min_data_chunk: smallest automatic data chunk (examples); below a few hundred examples the
            per-call overhead (Python, kernel launches) dominates the matmuls.
        max_vectors: cap on the automatic vector chunk (parameter vectors evaluated together);
            beyond ~1,000 the per-call overhead is amortised and larger chunks only cost memory.
        activation_safety: multiplier on the estimated activation memory per (vector, example) to
            cover temporaries inside modules (GELU, im2col buffers, loss intermediates).
        exit_margin: after the probe, the next data chunk ends where the fastest-rising running
            vector is projected to reach ``stop_above`` (its partial mean extrapolated linearly over
            the data), times this factor (dimensionless). 1.1 lets a vector whose losses are spread
            a little unevenly still exit there instead of one chunk later. Where no running vector
            is projected to reach it before the end, the rest of the data is one chunk (memory
            permitting): splitting it would cost passes and save nothing.
        chunk_multiple: automatic chunk boundaries fall on multiples of this many examples (only
            the last chunk of the data set may be shorter). On one CPU thread a GEMM over 5,250
            examples ran 1.5x slower per example than over 5,248 (torch 2.13, MNIST MLP first
            layer); 64 is a multiple of every SIMD width and cache line in use.
        ray_block: examples per block of the ray interface (:meth:`ModelCost.open_rays`). Blocks
            are fixed (multiples of this, cut at the requested landscape sizes), never sized by
            the other rays in the call, so a ray's costs do not depend on what it is evaluated
            with (claim E3). 512 keeps the later layers' GEMMs wide enough to run near the
            machine's GEMM rate (>= 256 columns) while early exit is checked every 512 examples.
        ray_block_positions: the block's cap in output positions for models with several per
            example (a sequence model's T tokens): a block holds at most this many positions, so
            ``min(ray_block, ray_block_positions // T)`` examples. One parameter vector's forward over
            a block is the ray interface's smallest unit of work; for the 10.65M-parameter character
            GPT it holds about 13 MiB per window of 256 (``benchmarks/README.md``), so 512 windows
            would need 6.6 GiB and 32,768 positions (128 such windows) 1.7 GiB, while the matrix
            products stay 32,768 rows tall (efficient on a GPU). The block depends on the data's
            shape only, never on a memory budget or the other rays, so results stay deterministic.
            Models with one output position per example (every classifier) keep ``ray_block``.
        ray_cache_fraction: share of the memory budget the ray interface's first-layer caches
            (``X V0^T + c0``, one ``[units, N]`` block per ray) may take; the rest is the
            evaluation's working set. Examples beyond what fits are computed on the fly, with
            the same arithmetic.
    """

    cpu_memory_budget_bytes: int = 2 * 1024**3
    cuda_free_fraction: float = 0.5
    early_exit_chunks: int = 8
    min_data_chunk: int = 256
    max_vectors: int = 1024
    activation_safety: float = 2.0
    exit_margin: float = 1.1
    chunk_multiple: int = 64
    ray_block: int = 512
    ray_block_positions: int = 32_768
    ray_cache_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.cpu_memory_budget_bytes <= 0:
            raise ValueError(f"cpu_memory_budget_bytes must be positive, got {self.cpu_memory_budget_bytes}")
        if not 0.0 < self.cuda_free_fraction <= 1.0:
            raise ValueError(f"cuda_free_fraction must be in (0, 1], got {self.cuda_free_fraction}")
        for name in ("early_exit_chunks", "min_data_chunk", "max_vectors", "chunk_multiple", "ray_block",
                     "ray_block_positions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.activation_safety < 1.0:
            raise ValueError(f"activation_safety must be >= 1, got {self.activation_safety}")
        if not (math.isfinite(self.exit_margin) and self.exit_margin >= 1.0):
            raise ValueError(f"exit_margin must be a finite number >= 1, got {self.exit_margin}")
        if not 0.0 <= self.ray_cache_fraction < 1.0:
            raise ValueError(f"ray_cache_fraction must be in [0, 1), got {self.ray_cache_fraction}")


def is_oom(exc: BaseException) -> bool:
    """True for a real or simulated out-of-memory error (CUDA and CPU allocators word it alike)."""
    return isinstance(exc, _TorchOOM) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def round_down(value: int, multiple: int) -> int:
    """``value`` rounded down to a multiple, unless that is 0 (then ``value`` itself)."""
    return value // multiple * multiple if value >= multiple else value




def same_device(a: torch.device, b: torch.device) -> bool:
    """'cuda' and 'cuda:0' name the same device when 0 is the current one."""
    if a.type != b.type:
        return False
    if a.type == "cuda":
        current = torch.cuda.current_device()
        return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
    return a.index == b.index or a.type == "cpu"
