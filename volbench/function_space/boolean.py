"""Direct sampling of function volumes for the Boolean n = 7 system (Zhang et al. 2021, Sec. 5.1).

All 2^n = 128 binary inputs of n = 7 bits are fed to a fully connected ReLU network 7-40-40-1 with
Gaussian parameters; the signs of its 128 outputs form a Boolean function f, one of 2^128. The
volume of f is its prior probability

    V(f) = P_w[ sign(net_w(x_j)) = f_j for all j ],

estimated by drawing many networks and counting how often each function appears (the paper used
1e8 samples, sigma_w = 1.0, sigma_b = 0.1; Valle-Perez et al. 2018). Conventions used here:

* Inputs: row j of ``boolean_inputs(n)`` is the binary expansion of j, most significant bit first,
  with entries in {0, 1} (float).
* Parameters: weights W_l ~ N(0, sigma_w^2 / fan_in) (the NNGP scaling; the paper states only
  "standard deviation sigma_w = 1.0", read here as the per-weight scale before the 1/sqrt(fan_in)),
  biases b_l ~ N(0, sigma_b^2). Layer l computes x @ W_l + b_l, ReLU on hidden layers.
* A function is a Python int of 2^n bits: bit j is 1 where the output on input j is > 0.
  Functions 0 and 2^(2^n) - 1 are the two constant functions.

Reproducibility: networks are drawn in fixed *blocks* of ``block_size`` networks; block k uses its
own generator seeded from (seed, k) by ``numpy.random.SeedSequence``. The evaluation batch size
(a multiple of the block size) therefore does not change which networks are drawn, so counts are
identical for any ``batch_size``. Streams differ between CPU and CUDA generators: counts are
reproducible per device type.

Example (a tiny system: n = 2 inputs, so 2^4 = 16 possible functions):
    >>> res = sample_function_counts(2048, seed=0, n_inputs=2, widths=(8,), block_size=256, batch_size=512)
    >>> sum(res.counts.values()) == 2048 and all(0 <= f < 2 ** 4 for f in res.counts)
    True
    >>> iv = log_volume_of_function(0, res)           # the all-zero function
    >>> iv.log_lower <= iv.log_volume <= iv.log_upper < 0
    True

Size: direct sampling of Boolean functions (inputs, networks drawn in blocks, counts, the volume of
one function with its interval).
"""
from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from volbench._checks import check_dtype

__all__ = [
    "boolean_inputs",
    "block_generator_seed",
    "draw_network_block",
    "evaluate_networks",
    "encode_functions",
    "function_to_bits",
    "bits_to_function",
    "constant_functions",
    "FunctionCounts",
    "sample_function_counts",
    "VolumeInterval",
    "log_volume_of_function",
]

_MAX_INPUTS = 10  # 2^10 output bits = 16 int64 words; beyond that the table of inputs is the limit


def _check_n_inputs(n_inputs: Any) -> int:
    if isinstance(n_inputs, bool) or not isinstance(n_inputs, int) or not 1 <= n_inputs <= _MAX_INPUTS:
        raise ValueError(f"n_inputs must be an int in 1..{_MAX_INPUTS}, got {n_inputs!r}")
    return n_inputs


def boolean_inputs(n_inputs: int = 7, *, device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """All 2^n binary inputs as a [2^n, n] {0, 1} tensor; row j is j in binary, MSB first.

    Example:
        >>> boolean_inputs(2).tolist()
        [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    """
    n = _check_n_inputs(n_inputs)
    j = torch.arange(2**n, device=device)
    shifts = torch.arange(n - 1, -1, -1, device=device)
    return ((j[:, None] >> shifts[None, :]) & 1).to(dtype)


def block_generator_seed(seed: int, block_index: int) -> int:
    """The 63-bit seed of block ``block_index``'s generator: SeedSequence([seed, block_index]).

    SeedSequence hashes the pair, so neighbouring seeds and blocks get unrelated streams.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if isinstance(block_index, bool) or not isinstance(block_index, (int, np.integer)) or block_index < 0:
        raise ValueError(f"block_index must be a non-negative int, got {block_index!r}")
    words = np.random.SeedSequence([int(seed), int(block_index)]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])  # < 2^63, valid for torch.Generator.manual_seed


def _layer_sizes(n_inputs: int, widths: tuple[int, ...]) -> list[tuple[int, int]]:
    sizes = [n_inputs, *widths, 1]
    return list(zip(sizes[:-1], sizes[1:]))


def _check_arch(widths: Any, sigma_w: Any, sigma_b: Any) -> tuple[int, ...]:
    if not isinstance(widths, (tuple, list)) or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0
                                                          for w in widths):
        raise ValueError(f"widths must be a tuple of positive ints (hidden layer sizes), got {widths!r}")
    for name, value in (("sigma_w", sigma_w), ("sigma_b", sigma_b)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
    return tuple(widths)


def draw_network_block(
    block_index: int,
    *,
    seed: int,
    block_size: int,
    n_inputs: int = 7,
    widths: tuple[int, ...] = (40, 40),
    sigma_w: float = 1.0,
    sigma_b: float = 0.1,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Parameters of the ``block_size`` networks of block ``block_index``.

    One ``torch.randn([block_size, P])`` from a generator on ``device`` seeded with
    ``block_generator_seed(seed, block_index)``; row i holds network i's P parameters laid out layer
    by layer as W_l (fan_in x fan_out, row-major) then b_l, scaled by sigma_w / sqrt(fan_in) and
    sigma_b.

    Returns:
        [(W_l [block_size, fan_in, fan_out], b_l [block_size, fan_out]) for each layer].
    """
    n = _check_n_inputs(n_inputs)
    widths = _check_arch(widths, sigma_w, sigma_b)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 0:
        raise ValueError(f"block_size must be a non-negative int (networks in the block), got {block_size!r}")
    check_dtype(dtype)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    sizes = _layer_sizes(n, widths)
    n_params = sum(i * o + o for i, o in sizes)
    g = torch.Generator(device=dev).manual_seed(block_generator_seed(seed, block_index))
    flat = torch.randn(block_size, n_params, generator=g, device=dev, dtype=dtype)
    layers, k = [], 0
    for fan_in, fan_out in sizes:
        W = flat[:, k : k + fan_in * fan_out].reshape(block_size, fan_in, fan_out) * (sigma_w / math.sqrt(fan_in))
        k += fan_in * fan_out
        b = flat[:, k : k + fan_out] * sigma_b
        k += fan_out
        layers.append((W, b))
    return layers


def evaluate_networks(layers: list[tuple[torch.Tensor, torch.Tensor]], inputs: torch.Tensor) -> torch.Tensor:
    """Outputs [B, M] of B networks (batched parameters from ``draw_network_block``) on M inputs,
    with batched matrix products: h <- relu(h @ W_l + b_l), no ReLU after the last layer."""
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError("layers must be a non-empty list of (W [B, fan_in, fan_out], b [B, fan_out]) pairs, "
                         "as draw_network_block returns")
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 2 or inputs.shape[1] != layers[0][0].shape[1]:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ValueError(f"inputs must be [M, {layers[0][0].shape[1]}] (the first layer's fan-in), got {shape}")
    h = inputs.unsqueeze(0).expand(layers[0][0].shape[0], -1, -1)
    for i, (W, b) in enumerate(layers):
        h = torch.baddbmm(b.unsqueeze(1), h, W)
        if i < len(layers) - 1:
            h = torch.relu(h)
    return h[..., 0]


def encode_functions(bits: torch.Tensor) -> torch.Tensor:
    """Pack [B, M] booleans into [B, ceil(M / 64)] int64 words; bit j of the function is bit
    (j mod 64) of word j // 64 (two's complement, so bit 63 makes a word negative)."""
    B, M = bits.shape
    n_words = (M + 63) // 64
    if M < 64 * n_words:
        bits = torch.cat([bits, bits.new_zeros(B, 64 * n_words - M)], dim=1)
    weights = torch.ones(64, dtype=torch.int64, device=bits.device) << torch.arange(64, device=bits.device)
    return (bits.view(B, n_words, 64).to(torch.int64) * weights).sum(-1)


def _words_to_int(words: list[int]) -> int:
    return sum((w & 0xFFFFFFFFFFFFFFFF) << (64 * k) for k, w in enumerate(words))


def function_to_bits(f: int, n_inputs: int = 7) -> torch.Tensor:
    """[2^n] bool tensor of the function's outputs (bit j = output on input j).

    Example:
        >>> function_to_bits(0b0110, 2).tolist()
        [False, True, True, False]
    """
    n = _check_n_inputs(n_inputs)
    f = _as_function(f, n)
    return torch.tensor([(f >> j) & 1 == 1 for j in range(2**n)])


def bits_to_function(bits: torch.Tensor) -> int:
    """Inverse of ``function_to_bits``: a [2^n] bool (or {0, 1}) tensor to its int."""
    if not isinstance(bits, torch.Tensor) or bits.ndim != 1:
        raise ValueError("bits must be a 1-D tensor of 2^n outputs")
    return sum(1 << j for j, v in enumerate(bits.tolist()) if v)


def constant_functions(n_inputs: int = 7) -> tuple[int, int]:
    """The all-zeros and all-ones functions, (0, 2^(2^n) - 1)."""
    n = _check_n_inputs(n_inputs)
    return 0, (1 << (2**n)) - 1


def _as_function(f: Any, n_inputs: int) -> int:
    if isinstance(f, torch.Tensor):
        f = bits_to_function(f)
    elif isinstance(f, str):
        try:
            f = int(f, 16)
        except ValueError:
            raise ValueError(f"function {f!r} is not a hexadecimal string (as FunctionCounts writes them, "
                             "e.g. '0x6996'); pass an int, a hex string or a [2^n] bits tensor") from None
    if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or not 0 <= f < (1 << 2**n_inputs):
        raise ValueError(f"a function of {n_inputs} inputs is an int in [0, 2^{2 ** n_inputs}), a hex string or bits; "
                         f"got {repr(f)[:40]}")
    return int(f)


@dataclass(frozen=True)
class FunctionCounts:
    """How often each Boolean function appeared among ``n_samples`` random networks.

    Attributes:
        counts: {function (int, see module docstring): count}; treat as read-only.
        n_samples: networks drawn (= sum of counts).
        seed, block_size: with the device type, these fix which networks were drawn.
        n_inputs, widths, sigma_w, sigma_b: the architecture and prior.
        device, dtype: where and in which precision the networks were evaluated.
        seconds: wall clock of the sampling.
    """

    counts: dict[int, int]
    n_samples: int
    seed: int
    block_size: int
    n_inputs: int
    widths: tuple[int, ...]
    sigma_w: float
    sigma_b: float
    device: str
    dtype: str
    seconds: float = field(default=0.0, compare=False)

    def probability(self, f: int | str | torch.Tensor) -> float:
        """Empirical frequency count(f) / n_samples."""
        return self.counts.get(_as_function(f, self.n_inputs), 0) / self.n_samples

    def most_common(self, k: int | None = None) -> list[tuple[int, int]]:
        """The k most frequent (function, count) pairs, most frequent first (ties by function)."""
        ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return ranked if k is None else ranked[:k]

    def as_counter(self) -> Counter:
        return Counter(self.counts)

    @property
    def networks_per_second(self) -> float:
        return self.n_samples / self.seconds if self.seconds > 0 else math.inf


def _block_ranges(n_samples: int, block_size: int, batch_size: int) -> Iterator[tuple[int, int, int]]:
    """Yield (first_block, n_blocks, n_used) per evaluation batch."""
    blocks_per_batch = batch_size // block_size
    n_blocks_total = -(-n_samples // block_size)
    for first in range(0, n_blocks_total, blocks_per_batch):
        n_blocks = min(blocks_per_batch, n_blocks_total - first)
        used = min(n_blocks * block_size, n_samples - first * block_size)
        yield first, n_blocks, used


def sample_function_counts(
    n_samples: int,
    *,
    seed: int,
    device: torch.device | str | None = None,
    batch_size: int = 16384,
    widths: tuple[int, ...] = (40, 40),
    sigma_w: float = 1.0,
    sigma_b: float = 0.1,
    n_inputs: int = 7,
    block_size: int = 1024,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> FunctionCounts:
    """Count the Boolean functions expressed by ``n_samples`` random ReLU networks.

    Defaults are the paper's system: n = 7 inputs, hidden widths (40, 40), sigma_w = 1.0,
    sigma_b = 0.1 (Zhang et al. Sec. 5.1). Each evaluation batch draws ``batch_size // block_size``
    blocks of networks (see ``draw_network_block``), evaluates them on all 2^n inputs with batched
    matrix products, packs the output signs into int64 words (``encode_functions``) and counts
    them with ``torch.unique`` on the device; counts are merged on the device and converted to
    Python ints at the end.

    Args:
        n_samples: number of networks (the last block is truncated to hit it exactly).
        seed: base seed; block k uses ``block_generator_seed(seed, k)``.
        device: where to draw and evaluate (default CPU).
        batch_size: networks per evaluation batch; a positive multiple of ``block_size``. Memory is
            about batch_size x 2^n x max(width) x 4 bytes for the activations plus the parameters.
        widths, sigma_w, sigma_b, n_inputs: architecture and prior.
        block_size: networks per generator block. Part of the sample's identity: changing it
            changes which networks are drawn.
        dtype: float32 (default, fast) or float64.
        progress: show a tqdm progress bar.

    Returns:
        FunctionCounts (seed and settings recorded).
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    for name, value in (("block_size", block_size), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if batch_size % block_size:
        raise ValueError(
            f"batch_size ({batch_size}) must be a multiple of block_size ({block_size}) so that batching does not "
            f"change which networks are drawn; use e.g. batch_size={max(1, batch_size // block_size) * block_size}"
        )
    n = _check_n_inputs(n_inputs)
    widths = _check_arch(widths, sigma_w, sigma_b)
    block_generator_seed(seed, 0)  # validates seed
    check_dtype(dtype)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    t0 = time.perf_counter()
    X = boolean_inputs(n, device=dev, dtype=dtype)

    merged_codes: torch.Tensor | None = None
    merged_counts: torch.Tensor | None = None
    pending_codes: list[torch.Tensor] = []
    pending_counts: list[torch.Tensor] = []
    pending_rows = 0

    def consolidate() -> None:
        nonlocal merged_codes, merged_counts, pending_codes, pending_counts, pending_rows
        codes = torch.cat(([merged_codes] if merged_codes is not None else []) + pending_codes)
        counts = torch.cat(([merged_counts] if merged_counts is not None else []) + pending_counts)
        uniq, inverse = torch.unique(codes, dim=0, return_inverse=True)
        merged_codes = uniq
        merged_counts = torch.zeros(len(uniq), dtype=torch.int64, device=dev).scatter_add_(0, inverse, counts)
        pending_codes, pending_counts, pending_rows = [], [], 0

    batches = list(_block_ranges(n_samples, block_size, batch_size))
    iterator: Any = batches
    if progress:
        from tqdm.auto import tqdm  # optional UI, imported on use

        iterator = tqdm(batches, desc="sampling networks", unit="batch")
    kw = dict(seed=seed, block_size=block_size, n_inputs=n, widths=widths, sigma_w=sigma_w, sigma_b=sigma_b,
              device=dev, dtype=dtype)
    with torch.no_grad():
        for first, n_blocks, used in iterator:
            blocks = [draw_network_block(first + k, **kw) for k in range(n_blocks)]
            layers = [(torch.cat([blk[i][0] for blk in blocks])[:used], torch.cat([blk[i][1] for blk in blocks])[:used])
                      for i in range(len(blocks[0]))]
            codes = encode_functions(evaluate_networks(layers, X) > 0)
            uniq, counts = torch.unique(codes, dim=0, return_counts=True)
            pending_codes.append(uniq)
            pending_counts.append(counts)
            pending_rows += len(uniq)
            # Re-merge once the pending rows outgrow the merged table: amortised O(total log total).
            if pending_rows >= max(1 << 18, 0 if merged_codes is None else len(merged_codes)):
                consolidate()
        if pending_codes:
            consolidate()
    assert merged_codes is not None and merged_counts is not None
    result = {
        _words_to_int(words): int(c)
        for words, c in zip(merged_codes.cpu().tolist(), merged_counts.cpu().tolist())
    }
    return FunctionCounts(
        counts=result, n_samples=n_samples, seed=int(seed), block_size=block_size, n_inputs=n, widths=widths,
        sigma_w=float(sigma_w), sigma_b=float(sigma_b), device=dev.type, dtype=str(dtype).replace("torch.", ""),
        seconds=time.perf_counter() - t0,
    )


@dataclass(frozen=True)
class VolumeInterval:
    """Sampled log-volume of one function with a binomial confidence interval (nats).

    log_volume = log(count / n_samples) (-inf when the function was never seen); [log_lower,
    log_upper] is the log of the ``method`` interval for the binomial proportion at ``confidence``.
    """

    function: int
    count: int
    n_samples: int
    log_volume: float
    log_lower: float
    log_upper: float
    confidence: float
    method: str


def log_volume_of_function(
    f: int | str | torch.Tensor,
    counts: FunctionCounts | Mapping[int, int],
    n_samples: int | None = None,
    *,
    confidence: float = 0.95,
    method: Literal["wilson", "clopper-pearson"] = "wilson",
) -> VolumeInterval:
    """log V(f) from sampled counts, with a Wilson or Clopper-Pearson (exact) interval by
    ``scipy.stats.binomtest(...).proportion_ci``.

    Args:
        f: the function (int, hex string, or [2^n] bits).
        counts: a ``FunctionCounts`` or a plain {function: count} mapping.
        n_samples: total samples; required with a plain mapping, checked against a FunctionCounts.
        confidence: confidence level of the interval, in (0, 1).
        method: "wilson" or "clopper-pearson".

    Example:
        >>> iv = log_volume_of_function(5, {5: 30, 9: 70}, 100)
        >>> round(iv.log_volume, 4), iv.log_lower < iv.log_volume < iv.log_upper
        (-1.204, True)
    """
    from scipy.stats import binomtest  # scipy.stats is slow to import; load on use

    if method not in ("wilson", "clopper-pearson"):
        raise ValueError(f"method must be 'wilson' or 'clopper-pearson', got {method!r}")
    if not (isinstance(confidence, float) and 0 < confidence < 1):
        raise ValueError(f"confidence must be a float in (0, 1), got {confidence!r}")
    if isinstance(counts, FunctionCounts):
        if n_samples is not None and n_samples != counts.n_samples:
            raise ValueError(f"n_samples={n_samples} contradicts counts.n_samples={counts.n_samples}")
        n_samples, table, n_in = counts.n_samples, counts.counts, counts.n_inputs
    elif isinstance(counts, Mapping):
        if n_samples is None:
            raise ValueError("n_samples is required when counts is a plain mapping")
        table, n_in = counts, _MAX_INPUTS
    else:
        raise TypeError(f"counts must be a FunctionCounts or a mapping, got {type(counts).__name__}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    key = _as_function(f, n_in)
    k = int(table.get(key, 0))
    if k > n_samples:
        raise ValueError(f"count {k} exceeds n_samples {n_samples}")
    ci = binomtest(k, n_samples).proportion_ci(confidence_level=confidence,
                                                method="wilson" if method == "wilson" else "exact")
    log = lambda p: math.log(p) if p > 0 else -math.inf  # noqa: E731
    return VolumeInterval(
        function=key, count=k, n_samples=n_samples, log_volume=log(k / n_samples), log_lower=log(float(ci.low)),
        log_upper=log(float(ci.high)), confidence=confidence, method=method,
    )
