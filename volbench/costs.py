"""Batched cost of a network at many flat parameter vectors (the *cost protocol*).

The volume estimators need the training loss ``L(theta)`` of one network at hundreds of perturbed
parameter vectors ``theta = theta_0 + t * u``, each over a whole data set. :class:`ModelCost` turns a
model and its data into such a cost::

    cost(params[B, n]) -> Tensor[B],   cost(params)[b] = (1/N) * sum_i  l(f(x_i; params[b]), y_i)

with the flat order of ``torch.nn.utils.parameters_to_vector(model.parameters())``. It implements
the "Cost protocol" of ``docs/CONTRACTS.md``: ``accepts_stop_above``, ``n_params``, ``anchor``,
``filter_scale`` and ``max_batch``.

Costs (all non-negative, which early exit relies on):

* ``"ce"``   mean cross-entropy, integer targets (Fan et al., "Sharp minima can generalize", images);
* ``"bce"``  binary cross-entropy with logits, targets in [0, 1] (their two-spirals MLP);
* ``"mse"``  ``torch.nn.MSELoss()`` default, mean over all N*k elements (their modular addition with
  one-hot targets, threshold 0.01);
* ``"kl"``   ``(1/N) sum_i KL(p(x_i; anchor) || p(x_i; theta))`` of the softmax predictions (Scherlis &
  Belrose, "Estimating the probability of sampling a trained neural network at random", sec. 3.4);
  zero at the anchor by construction, targets unused;
* ``"zero_one"`` error rate: argmax for several logits, sign of the logit for one.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from volbench.costs import ModelCost
    >>> g = torch.Generator().manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> x, y = torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)
    >>> cost = ModelCost(model, x, y, loss="ce")
    >>> params = cost.anchor + 0.1 * torch.randn(5, cost.n_params, generator=g)
    >>> cost(params).shape
    torch.Size([5])
    >>> cost.path
    'matmul'
"""

from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .estimator.core import as_device, check_dtype
from .models import check_accepts

__all__ = [
    "LOSSES",
    "PATHS",
    "ChunkingDefaults",
    "CostOutOfMemoryError",
    "ModelCost",
    "ParamInfo",
]

LOSSES: tuple[str, ...] = ("ce", "bce", "mse", "kl", "zero_one")
PATHS: tuple[str, ...] = ("auto", "matmul", "vmap")

# Parameter-free elementwise modules the batched-matmul path applies as they are. Exact types only:
# a subclass may override forward with something that is not elementwise. Dropout is the identity
# because the cost always evaluates the model in eval mode.
_ELEMENTWISE = (
    nn.ReLU, nn.GELU, nn.Tanh, nn.Identity, nn.Sigmoid, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Softplus,
    nn.Dropout,
)


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
    """

    cpu_memory_budget_bytes: int = 2 * 1024**3
    cuda_free_fraction: float = 0.5
    early_exit_chunks: int = 8
    min_data_chunk: int = 256
    max_vectors: int = 1024
    activation_safety: float = 2.0
    exit_margin: float = 1.1
    chunk_multiple: int = 64

    def __post_init__(self) -> None:
        if self.cpu_memory_budget_bytes <= 0:
            raise ValueError(f"cpu_memory_budget_bytes must be positive, got {self.cpu_memory_budget_bytes}")
        if not 0.0 < self.cuda_free_fraction <= 1.0:
            raise ValueError(f"cuda_free_fraction must be in (0, 1], got {self.cuda_free_fraction}")
        for name in ("early_exit_chunks", "min_data_chunk", "max_vectors", "chunk_multiple"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.activation_safety < 1.0:
            raise ValueError(f"activation_safety must be >= 1, got {self.activation_safety}")
        if not (math.isfinite(self.exit_margin) and self.exit_margin >= 1.0):
            raise ValueError(f"exit_margin must be a finite number >= 1, got {self.exit_margin}")


@dataclass(frozen=True)
class ParamInfo:
    """One parameter tensor of the model and where it lives in the flat vector.

    Attributes:
        name: full parameter name, e.g. ``"0.weight"`` (as in ``model.named_parameters()``).
        module: qualified name of the owning module, e.g. ``"0"`` (``""`` for the root).
        module_type: class name of the owning module, e.g. ``"Linear"``, ``"Conv2d"``.
        kind: ``"weight"`` (>= 2-D; one row per output unit), ``"bias"`` (a 1-D tensor named
            ``bias``) or ``"other"`` (any other parameter, e.g. a norm layer's 1-D gain).
        shape: the tensor's shape.
        slice: where it lies in the flat vector.
        n_out: output units: ``shape[0]`` (Linear rows, conv output filters, bias entries);
            ``shape[1] * groups`` for transposed convolutions.
    """

    name: str
    module: str
    module_type: str
    kind: str
    shape: tuple[int, ...]
    slice: slice
    n_out: int

    @property
    def numel(self) -> int:
        return self.slice.stop - self.slice.start


def _is_oom(exc: BaseException) -> bool:
    """True for a real or simulated out-of-memory error (CUDA and CPU allocators word it alike)."""
    return isinstance(exc, _TorchOOM) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


class ModelCost:
    """Mean loss of ``model`` over ``(inputs, targets)`` at a batch of flat parameter vectors.

    For parameter vectors ``theta_1..theta_B`` (rows of ``params``) it returns

        ``cost[b] = (1 / M) * sum_{i=1..N} l_i(f(x_i; theta_b))``

    with ``M = N`` for "ce", "kl", "zero_one" and ``M = N * k`` (all output elements) for "bce"
    and "mse", matching the torch losses with their default ``reduction="mean"``.

    Early exit (``__call__(params, stop_above=tau)``): the data are processed in chunks and every
    per-example loss is >= 0, so after chunk ``j`` the partial sum ``S_j / M`` is a lower bound of
    the full mean. A vector whose ``S_j / M``, rounded to the returned dtype, is strictly above
    ``tau`` is proven to lie above ``tau``; it is dropped from later chunks and that bound is
    returned. Every value ``<= tau`` is the exact full mean (a bound equal to ``tau`` would not
    prove ``cost > tau``, the main paper's test, so such a vector keeps running).
    This is the contract of ``cost.accepts_stop_above`` in ``docs/CONTRACTS.md``; the basin
    estimators only ask "is the cost below tau?", so the saved work is free.

    Splitting the data costs time (smaller GEMMs, more calls), so with automatic chunk sizes only
    the first chunk (the probe, about N / ``early_exit_chunks``) is fixed; after it a chunk ends
    where the fastest-rising running vector is projected to reach ``tau``
    (``lo * tau / (S_lo / M)`` examples, times ``exit_margin``), and the rest of the data is a
    single chunk when no running vector is projected to reach ``tau`` before the end. Vectors
    near the threshold (the main paper's grid walk: early exit saves nothing there) then cost two
    passes instead of eight. Which lower bound is returned above ``tau`` may therefore depend on
    the other vectors of the same vector chunk; values below ``tau`` never do. A ``data_chunk``
    given by the caller is used as it is (fixed chunks).

    Evaluation paths:

    * ``"matmul"`` (plain ``nn.Sequential`` of ``nn.Linear`` and parameter-free elementwise
      activations, optionally starting with ``nn.Flatten()``): the first layer of all ``b`` vectors
      is one GEMM ``X @ [W1_1; ...; W1_b]^T`` of the shared data ``X[c, in]`` with the stacked
      weights ``[b * out, in]``; later layers are ``torch.baddbmm`` over the ``b`` vectors.
    * ``"vmap"`` (any module): ``torch.func.vmap`` of ``torch.func.functional_call`` over the
      ``b`` parameter sets, the data shared.
    * ``"auto"`` picks "matmul" when the model qualifies (faster on CPU for MNIST-MLP sizes).

    The model is deep-copied, moved to ``device``/``dtype`` and put in eval mode (dropout off,
    batch-norm running statistics): the cost of a parameter vector is a deterministic function.

    Memory: a chunk of ``b`` vectors over ``c`` examples is estimated to need
    ``c * in_bytes + b * c * act_bytes + b * 2 * n * elem`` bytes, where ``act_bytes`` is the sum of
    the per-example outputs of every leaf module (measured once with forward hooks) times
    ``activation_safety``. Chunk sizes not given are chosen to fit ``memory_budget_bytes``
    (default: half the free CUDA memory, or 2 GiB on CPU). If an out-of-memory error still occurs,
    the vector chunk is halved and the failed vector chunk retried; finished vector chunks are
    kept. When
    ``memory_budget_bytes`` is given explicitly it is also *enforced*: a chunk estimated above it
    raises a simulated :class:`CostOutOfMemoryError` before allocating, which exercises the
    halving path on a CPU (``n_oom_retries`` counts retries).

    Args:
        model: the network; its parameters define the flat order. Not modified.
        inputs: ``[N, ...]`` inputs (the first dimension indexes examples).
        targets: ``[N]`` integer class labels ("ce", multi-logit "zero_one"); ``[N, k]`` or ``[N]``
            floats ("bce" in [0, 1], "mse"); ``[N]``/``[N, 1]`` in {0, 1} for one-logit
            "zero_one"; ignored (may be ``None``) for "kl".
        loss: one of :data:`LOSSES`.
        anchor: flat ``[n]`` reference parameters (default: the model's own). "kl" compares with
            the predictions at this point; ``filter_scale`` uses its weight rows.
        device, dtype: where and in what precision to compute (default: the model's).
        data_chunk: examples per chunk (default: all N, or adaptive chunks starting with about
            N/8 when early exit applies, capped by the memory budget).
        max_batch: parameter vectors per chunk (default: from the memory budget, at most 1,024).
        memory_budget_bytes: working-set budget in bytes; see "Memory" above.
        early_exit: honour ``stop_above`` (set False to always compute exact means).
        path: "auto", "matmul" or "vmap".
        chunking: defaults for the automatic chunk sizes.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
        >>> x, y = torch.randn(10, 1, 4, 4), torch.randint(0, 2, (10,))
        >>> cost = ModelCost(model, x, y, loss="ce", dtype=torch.float64)
        >>> cost.path, cost.n_params
        ('vmap', 38)
        >>> bool(torch.allclose(cost(cost.anchor[None])[0],
        ...      nn.functional.cross_entropy(model.double()(x.double()), y)))
        True
    """

    accepts_stop_above: bool = True

    def __init__(
        self,
        model: nn.Module,
        inputs: Tensor,
        targets: Tensor | None,
        loss: str = "ce",
        *,
        anchor: Tensor | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        data_chunk: int | None = None,
        max_batch: int | None = None,
        memory_budget_bytes: int | None = None,
        early_exit: bool = True,
        path: str = "auto",
        chunking: ChunkingDefaults = ChunkingDefaults(),
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if path not in PATHS:
            raise ValueError(f"unknown path {path!r}; choose one of {', '.join(PATHS)}")
        if not isinstance(chunking, ChunkingDefaults):
            raise TypeError(f"chunking must be a ChunkingDefaults, got {type(chunking).__name__}")
        self._data_chunk = _optional_positive_int("data_chunk", data_chunk)
        self._user_max_batch = _optional_positive_int("max_batch", max_batch)
        self._oom_max_batch: int | None = None  # learned after an out-of-memory retry
        self._chunking = chunking
        self.loss = loss
        self.early_exit = bool(early_exit)

        params = list(model.parameters())
        if not params:
            raise ValueError("model has no parameters; there is nothing to perturb")
        self.device = as_device(device) if device is not None else params[0].device
        self.dtype = check_dtype(dtype if dtype is not None else params[0].dtype)

        # A private copy: moving or re-parametrising it never touches the caller's model.
        self._model = copy.deepcopy(model).to(device=self.device, dtype=self.dtype).eval()
        self._model.requires_grad_(False)
        self._layers = _describe_parameters(self._model)
        self._param_names = tuple(p.name for p in self._layers)
        self.n_params = self._layers[-1].slice.stop

        if anchor is None:
            flat = nn.utils.parameters_to_vector(self._model.parameters())
        else:
            flat = self._check_flat(anchor, "anchor")
        self._anchor = flat.detach().to(device=self.device, dtype=self.dtype).clone()
        if not bool(torch.isfinite(self._anchor).all()):
            bad = int((~torch.isfinite(self._anchor)).sum())
            what = "the anchor given" if anchor is not None else "the model's parameters (the anchor)"
            raise ValueError(f"{what} has {bad} non-finite values (NaN/Inf): the minimum is corrupt or "
                             "its training diverged; pass finite parameters")
        nn.utils.vector_to_parameters(self._anchor, self._model.parameters())

        self._inputs, self.n_examples = self._check_inputs(inputs)
        self._ops, matmul_reason = self._matmul_plan()
        if path == "matmul" and self._ops is None:
            raise ValueError(f"path='matmul' does not apply to this model: {matmul_reason}; use path='vmap'")
        self.path = "matmul" if (path != "vmap" and self._ops is not None) else "vmap"
        # The matmul path reads the data flattened once here instead of per call.
        self._x = self._inputs.reshape(self.n_examples, -1) if self.path == "matmul" else self._inputs

        self.n_outputs, act_elems = self._probe()
        self._targets = self._check_targets(targets)
        self._normaliser = float(self.n_examples * (self.n_outputs if loss in ("bce", "mse") else 1))

        elem = torch.empty((), dtype=self.dtype).element_size()
        in_elems = self._inputs[0].numel() if self._inputs.is_floating_point() else 0
        self._bytes_input = in_elems * elem  # per example, shared by all vectors
        self._bytes_pair = int(math.ceil(chunking.activation_safety * act_elems * elem))
        self._bytes_vector = 2 * self.n_params * elem  # the gathered rows and their reshaped copies
        if memory_budget_bytes is not None:
            self.memory_budget_bytes = _optional_positive_int("memory_budget_bytes", memory_budget_bytes)
            self._enforce_budget = True
        else:
            self.memory_budget_bytes = self._default_budget()
            self._enforce_budget = False

        self._anchor_logp: Tensor | None = None
        self._anchor_negent: Tensor | None = None
        if loss == "kl":
            self._anchor_logp = self._anchor_log_probs()
            # sum_k p log p per example (0 log 0 = 0), so KL = negent - sum_k p_anchor log p_theta.
            self._anchor_negent = torch.special.xlogy(self._anchor_logp.exp(), self._anchor_logp.exp()).sum(-1)

        self._flops_cache: dict[int, float] = {}
        self.reset_counters()

    # ------------------------------------------------------------------ protocol attributes
    @property
    def anchor(self) -> Tensor:
        """Flat ``[n]`` reference parameters (a copy; the model's own unless ``anchor`` was given)."""
        return self._anchor.clone()

    @property
    def layers(self) -> list[ParamInfo]:
        """One :class:`ParamInfo` per parameter tensor, in flat order."""
        return list(self._layers)

    @property
    def max_batch(self) -> int:
        """Parameter vectors evaluated together (larger batches are chunked internally): the
        caller's ``max_batch``, else the largest chunk that fits the memory budget when the data
        are chunked for early exit (reduced if an out-of-memory error was met)."""
        return self._plan(n_vectors=None, early=self.early_exit)[1]

    def reset_counters(self) -> None:
        """Zero ``n_calls``, ``n_vectors_evaluated``, ``n_examples_evaluated``, ``n_oom_retries``."""
        self.n_calls = 0
        self.n_vectors_evaluated = 0
        self.n_examples_evaluated = 0  # (vector, example) pairs actually run through the model
        self.n_oom_retries = 0

    def counters(self) -> dict[str, int]:
        """Snapshot of the work counters, for benchmark reports (early-exit savings =
        ``1 - n_examples_evaluated / (n_vectors_evaluated * n_examples)``)."""
        return {
            "n_calls": self.n_calls,
            "n_vectors_evaluated": self.n_vectors_evaluated,
            "n_examples_evaluated": self.n_examples_evaluated,
            "n_oom_retries": self.n_oom_retries,
        }

    # ------------------------------------------------------------------ public helpers
    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """Split a flat ``[n]`` (or batched ``[B, n]``) vector into named tensors of the
        parameters' shapes (``[B, *shape]`` when batched); views where possible.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> cost = ModelCost(nn.Linear(3, 2), torch.randn(4, 3), torch.randn(4, 2), loss="mse")
            >>> {k: tuple(v.shape) for k, v in cost.unflatten(cost.anchor).items()}
            {'weight': (2, 3), 'bias': (2,)}
        """
        if not isinstance(flat, Tensor):
            raise TypeError(f"flat must be a torch.Tensor, got {type(flat).__name__}")
        if flat.ndim == 1 and flat.shape[0] == self.n_params:
            return {p.name: flat[p.slice].view(p.shape) for p in self._layers}
        if flat.ndim == 2 and flat.shape[1] == self.n_params:
            b = flat.shape[0]
            return {p.name: flat[:, p.slice].reshape(b, *p.shape) for p in self._layers}
        raise ValueError(
            f"flat must be [{self.n_params}] or [B, {self.n_params}], got shape {tuple(flat.shape)}"
        )

    def filter_scale(self, bias: str = "unscaled", anchor: Tensor | None = None) -> Tensor:
        """Per-parameter multiplier ``F`` for filter-normalised directions ``u ∘ F`` at ``anchor``
        (a flat ``[n]`` point; default: the cost's own anchor).

        Each weight entry ``W[j, ...]`` gets ``||W[j, ...]||_2``, the norm of its output row (Linear:
        ``W[j, :]``; Conv: the whole output filter ``W[j, :, :, :]``) — Fan et al., appendix A.2,
        eq. (8)-(9), after Li et al.'s filter normalisation. Biases get 1 (``bias="unscaled"``,
        what the main paper's code does) or the norm of their unit's weight row (``bias="row"``):
        then rescaling ``(W_i, b_i, W_{i+1}) -> (a W_i, a b_i, W_{i+1} / a)`` multiplies the scale of
        layer i by ``a`` and of layer i+1 by ``1/a``, so the perturbations are exactly covariant.
        Other parameters (1-D gains) and biases without a matching weight get 1.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> lin = nn.Linear(2, 1)
            >>> with torch.no_grad():
            ...     _ = lin.weight.copy_(torch.tensor([[3.0, 4.0]])); _ = lin.bias.fill_(1.0)
            >>> cost = ModelCost(lin, torch.randn(4, 2), torch.rand(4, 1).round(), loss="bce")
            >>> cost.filter_scale().tolist(), cost.filter_scale(bias="row").tolist()
            ([5.0, 5.0, 1.0], [5.0, 5.0, 5.0])
        """
        if bias not in ("unscaled", "row"):
            raise ValueError(f"bias must be 'unscaled' or 'row', got {bias!r}")
        point = self._anchor if anchor is None else self._check_flat(anchor, "anchor").detach().to(
            device=self.device, dtype=self.dtype)
        scale = torch.ones_like(point)
        row_norms: dict[str, Tensor] = {}
        for p in self._layers:
            if p.kind != "weight":
                continue
            if p.module_type.startswith("ConvTranspose"):
                raise ValueError(
                    f"filter_scale does not support transposed convolutions ({p.name}): their output "
                    "filters lie along dimension 1; use isotropic directions for this model"
                )
            w = point[p.slice].view(p.shape)
            norms = w.reshape(p.shape[0], -1).norm(dim=1)
            scale[p.slice] = norms.repeat_interleave(p.numel // p.shape[0])
            row_norms[p.module] = norms
        if bias == "row":
            for p in self._layers:
                norms = row_norms.get(p.module)
                if p.kind == "bias" and norms is not None and norms.numel() == p.numel:
                    scale[p.slice] = norms
        return scale

    def flops_per_example(self, batch: int = 1) -> float:
        """FLOPs (2 x multiply-adds) of one forward pass per example and parameter vector.

        Counted by ``torch.utils.flop_counter.FlopCounterMode`` on a plain forward of the first
        ``batch`` examples, divided by ``batch``; it counts matmuls and convolutions (elementwise
        ops are not counted). Multiply by ``n_examples_evaluated`` for the work of the calls so far.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> m = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
            >>> ModelCost(m, torch.randn(8, 5), torch.randint(0, 3, (8,))).flops_per_example()
            64.0
        """
        batch = _optional_positive_int("batch", batch)
        if batch > self.n_examples:
            raise ValueError(f"batch={batch} exceeds the {self.n_examples} examples of the data set")
        if batch not in self._flops_cache:
            from torch.utils.flop_counter import FlopCounterMode  # only needed for reporting

            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                self._model(self._inputs[:batch])
            self._flops_cache[batch] = counter.get_total_flops() / batch
        return self._flops_cache[batch]

    # ------------------------------------------------------------------ evaluation
    def __call__(self, params: Tensor, stop_above: float | None = None) -> Tensor:
        """Mean loss at each row of ``params`` ``[B, n]``; returns ``[B]`` in ``params.dtype``.

        With ``stop_above`` (and ``early_exit`` on), returned values ``> stop_above`` are lower
        bounds whose full mean (in the returned dtype) is ``> stop_above`` too; values
        ``<= stop_above`` are exact. Non-finite costs (inf/nan)
        are returned as they are.
        """
        out_dtype = self._check_params(params)
        if stop_above is not None:
            if isinstance(stop_above, bool) or not isinstance(stop_above, numbers.Real) or math.isnan(stop_above):
                raise ValueError(f"stop_above must be a number (a loss level) or None, got {stop_above!r}")
        params = params.detach().to(self.dtype)
        n_vec = params.shape[0]
        self.n_calls += 1
        self.n_vectors_evaluated += n_vec
        sums = torch.zeros(n_vec, dtype=torch.float64, device=self.device)
        if n_vec == 0:
            return sums.to(out_dtype)
        early = stop_above is not None and self.early_exit
        chunk, batch = self._plan(n_vectors=n_vec, early=early)
        stop = float(stop_above) if early else None
        with torch.no_grad():
            start = 0
            while start < n_vec:
                b = min(batch, n_vec - start)
                part = self._try_vectors(params[start : start + b], chunk, stop, out_dtype)
                if part is None:  # out of memory: halve and retry this vector chunk, keep the rest
                    batch = max(1, b // 2)
                    self._oom_max_batch = batch
                    self.n_oom_retries += 1
                    continue
                sums[start : start + b] = part
                start += b
        return (sums / self._normaliser).to(out_dtype)

    def _try_vectors(self, params: Tensor, chunk: int, stop: float | None,
                     out_dtype: torch.dtype = torch.float64) -> Tensor | None:
        """Summed losses (float64 ``[b]``) of the ``b`` rows of ``params`` over the data, chunk by
        chunk with early exit above ``stop`` (None: none); None after an out-of-memory error that
        halving the vector chunk may cure.

        The per-layer weights are laid out once for all data chunks (the first Linear's stacked
        ``[b * out, in]`` matrix is a copy), and again only when vectors exit early.
        """
        b, n = params.shape[0], self.n_examples
        adaptive = stop is not None and self._data_chunk is None
        sums = torch.zeros(b, dtype=torch.float64, device=self.device)
        pairs = 0  # counted only once the whole vector chunk succeeded: a retry never counts twice
        lo = hi = 0
        try:
            batch = self._prepare_batch(params)
            active: Tensor | None = None  # rows still running; None: all (no index gathers)
            while lo < n:
                n_active = b if active is None else active.numel()
                running = sums if active is None else sums[active]
                hi = self._chunk_end(lo, chunk, n_active, running, stop) if adaptive else min(n, lo + chunk)
                if self._enforce_budget:
                    need = self.estimate_bytes(n_active, hi - lo)
                    if need > self.memory_budget_bytes:
                        raise CostOutOfMemoryError(
                            f"simulated out of memory: {n_active} vectors x {hi - lo} examples need about "
                            f"{need} bytes, over memory_budget_bytes={self.memory_budget_bytes}"
                        )
                out = self._forward(batch, self._x[lo:hi])
                part = self._example_losses(out, lo, hi).sum(dim=1, dtype=torch.float64)
                if active is None:
                    sums += part
                else:
                    sums[active] += part
                pairs += n_active * (hi - lo)
                lo = hi
                if stop is not None and lo < n:
                    # Losses are >= 0, so the partial mean is a lower bound of the full mean. A
                    # vector stops only when that bound, rounded to the dtype it is returned in,
                    # is strictly above stop: rounding is monotone, so the full mean rounds to a
                    # value >= the bound > stop, and a caller testing "value > tau" (the paper)
                    # or "value < tau" (the basin) decides as it would on the full mean. A bound
                    # equal to stop proves nothing for "> tau" (issue Q3: zero-one tie).
                    partial = (sums if active is None else sums[active]) / self._normaliser
                    crossed = partial.to(out_dtype).to(torch.float64) > stop
                    if bool(crossed.any()):
                        keep = ~crossed
                        active = (torch.arange(b, device=self.device) if active is None else active)[keep]
                        if active.numel() == 0:
                            break
                        batch = self._prepare_batch(batch.params[keep])
        except RuntimeError as exc:  # torch's OutOfMemoryError is a RuntimeError
            if not _is_oom(exc):
                raise
            if b == 1:
                raise CostOutOfMemoryError(
                    f"out of memory evaluating a single parameter vector on {hi - lo} examples "
                    f"({exc}); pass a smaller data_chunk or a larger memory_budget_bytes"
                ) from exc
            if self.device.type == "cuda":
                torch.cuda.empty_cache()  # return the failed chunk's blocks before retrying smaller
            return None
        self.n_examples_evaluated += pairs
        return sums

    def _chunk_end(self, lo: int, probe: int, n_active: int, running: Tensor, stop: float) -> int:
        """End of the next automatic data chunk under early exit (see the class docstring).

        ``running``: summed losses so far of the ``n_active`` running vectors over ``lo`` examples.
        Chunks are never shorter than the probe (at most ~``early_exit_chunks`` + 1 passes) and
        never longer than the memory budget allows for ``n_active`` vectors.
        """
        n = self.n_examples
        hi = lo + probe
        if lo > 0:
            # Projected full means, assuming the remaining examples' losses are like those seen.
            projected = running * (n / (lo * self._normaliser))
            rising = projected[projected > stop]  # NaN compares False: never a reason to split
            if rising.numel() == 0:
                hi = n  # nobody is expected to cross before the end: one pass for the rest
            else:
                reach = stop / float(rising.max()) * self._chunking.exit_margin  # fraction of the data
                hi = max(hi, _round_up(math.ceil(n * min(1.0, reach)), self._chunking.chunk_multiple))
        per_example = self._bytes_input + n_active * self._bytes_pair
        fits = (self.memory_budget_bytes - n_active * self._bytes_vector) // per_example
        return int(min(n, hi, lo + max(1, _round_down(fits, self._chunking.chunk_multiple))))

    def _prepare_batch(self, params: Tensor) -> _Batch:
        """Lay out the weights of the ``b`` rows of ``params`` for :meth:`_forward`, once per vector
        chunk rather than once per data chunk."""
        if self.path == "vmap":
            return _Batch(params, self.unflatten(params))
        b = params.shape[0]
        weights: list[tuple[Tensor, Tensor | None] | None] = []
        first = True
        for op in self._ops:
            if not isinstance(op, _LinearOp):
                weights.append(None)
                continue
            w = params[:, op.weight]
            bias = params[:, op.bias] if op.bias is not None else None
            if first:
                # One GEMM for all b vectors needs W_all[b * out, in]: the rows of params are
                # strided by n, so this reshape is a copy, made once here.
                w = w.reshape(b * op.n_out, op.n_in)
                bias = bias.reshape(b * op.n_out, 1) if bias is not None else None
                first = False
            else:  # views: each [out, in] block is contiguous inside its row
                w = w.reshape(b, op.n_out, op.n_in)
                bias = bias.unsqueeze(2) if bias is not None else None
            weights.append((w, bias))
        return _Batch(params, tuple(weights))

    def _forward(self, params: Tensor | _Batch, x: Tensor) -> Tensor:
        """Model outputs ``[b, c, k]`` for ``b`` parameter vectors (a ``[b, n]`` tensor, or one
        laid out by :meth:`_prepare_batch`) on ``c`` shared examples."""
        batch = params if isinstance(params, _Batch) else self._prepare_batch(params)
        out = self._forward_matmul(batch, x) if self.path == "matmul" else self._forward_vmap(batch, x)
        return out.unsqueeze(-1) if out.ndim == 2 else out

    def _forward_vmap(self, batch: _Batch, x: Tensor) -> Tensor:
        model = self._model

        def one(p: dict[str, Tensor], xs: Tensor) -> Tensor:
            return torch.func.functional_call(model, p, (xs,))

        return torch.func.vmap(one, in_dims=(0, None))(batch.weights, x)

    def _forward_matmul(self, batch: _Batch, x: Tensor) -> Tensor:
        # Hidden states are kept transposed, [b, units, c], so that every product is a plain
        # contiguous (batched) GEMM and no [b, c, units] transpose copy is ever made.
        b = batch.shape[0]
        h = x
        shared = True  # h is still the data [c, in], the same for every vector
        for op, weights in zip(self._ops, batch.weights):
            if weights is not None:
                w, bias = weights
                if shared:
                    # One GEMM for all b vectors: W_all[b * out, in] @ X^T[in, c].
                    h = torch.addmm(bias, w, h.t()) if bias is not None else w @ h.t()
                    h = h.view(b, op.n_out, -1)
                    shared = False
                else:
                    h = torch.baddbmm(bias, w, h) if bias is not None else torch.bmm(w, h)
            else:
                # In place on our own fresh activations (saves an allocation and a memory pass);
                # never on the shared data.
                h = op.module(h) if shared else op.inplace(h)
        if shared:
            raise RuntimeError("matmul path without a Linear layer")  # excluded by _matmul_plan
        return h.transpose(1, 2)

    def _example_losses(self, out: Tensor, lo: int, hi: int) -> Tensor:
        """Per-example non-negative losses ``[b, c]`` (summed over output elements for bce/mse)."""
        if self.loss == "ce":
            t = self._targets[lo:hi]
            picked = out.gather(-1, t.view(1, -1, 1).expand(out.shape[0], -1, 1)).squeeze(-1)
            return torch.logsumexp(out, dim=-1) - picked
        if self.loss == "bce":
            t = self._targets[lo:hi].expand_as(out)
            return F.binary_cross_entropy_with_logits(out, t, reduction="none").sum(-1)
        if self.loss == "mse":
            return (out - self._targets[lo:hi]).square().sum(-1)
        if self.loss == "kl":
            logp = torch.log_softmax(_as_multiclass(out), dim=-1)
            p_anchor = self._anchor_logp[lo:hi].exp()
            # where(): 0 * log p_theta is 0 even where log p_theta underflowed to -inf.
            cross = torch.where(p_anchor > 0, p_anchor * logp, torch.zeros((), dtype=out.dtype, device=out.device))
            # KL >= 0 exactly; clamp rounding noise so early exit's lower bound stays valid.
            return (self._anchor_negent[lo:hi] - cross.sum(-1)).clamp_min(0)
        # zero_one
        if self.n_outputs == 1:
            return ((out[..., 0] > 0) != self._targets[lo:hi]).to(out.dtype)
        return (out.argmax(dim=-1) != self._targets[lo:hi]).to(out.dtype)

    # ------------------------------------------------------------------ planning
    def _default_budget(self) -> int:
        if self.device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(self.device)
            return max(1, int(free * self._chunking.cuda_free_fraction))
        return self._chunking.cpu_memory_budget_bytes

    def estimate_bytes(self, n_vectors: int, n_examples: int) -> int:
        """Estimated working set (bytes) of evaluating ``n_vectors`` parameter vectors on
        ``n_examples`` examples in one chunk; see "Memory" in the class docstring."""
        return (
            n_examples * self._bytes_input
            + n_vectors * n_examples * self._bytes_pair
            + n_vectors * self._bytes_vector
        )

    def _plan(self, n_vectors: int | None, early: bool) -> tuple[int, int]:
        """(examples per chunk, vectors per chunk) for a call with ``n_vectors`` vectors."""
        d = self._chunking
        n = self.n_examples
        budget = self.memory_budget_bytes
        if self._data_chunk is not None:
            chunk = min(self._data_chunk, n)
        else:
            chunk = n
            if early:
                probe = _round_up(math.ceil(n / d.early_exit_chunks), d.chunk_multiple)
                chunk = min(n, max(d.min_data_chunk, probe))
            # Largest chunk for which a single vector fits the budget.
            per_example = self._bytes_input + self._bytes_pair
            fits = (budget - self._bytes_vector) // per_example
            chunk = max(1, min(chunk, _round_down(fits, d.chunk_multiple)))
        if self._user_max_batch is not None:
            batch = self._user_max_batch
        else:
            per_vector = chunk * self._bytes_pair + self._bytes_vector
            batch = max(1, min(d.max_vectors, (budget - chunk * self._bytes_input) // per_vector))
        if self._oom_max_batch is not None:
            batch = min(batch, self._oom_max_batch)
        if n_vectors is not None:
            batch = min(batch, n_vectors)
        return int(chunk), int(batch)

    # ------------------------------------------------------------------ construction helpers
    def _matmul_plan(self) -> tuple[list[Any] | None, str]:
        """The op list of the batched-matmul path, or (None, why the model does not qualify)."""
        model = self._model
        if type(model) is not nn.Sequential:
            return None, f"the model is a {type(model).__name__}, not a plain nn.Sequential"
        if not self._inputs.is_floating_point():
            return None, "the inputs are not floating point"
        offsets = {p.name: p.slice for p in self._layers}
        ops: list[Any] = []
        flatten_ok = True  # Flatten is allowed only before anything else
        n_linear = 0
        width = None
        for name, m in model.named_children():
            if type(m) is nn.Flatten:
                if not flatten_ok or m.start_dim != 1 or m.end_dim != -1:
                    return None, f"module {name} is a Flatten that is not Flatten() at the start"
                continue
            flatten_ok = False
            if type(m) is nn.Linear:
                n_linear += 1
                ops.append(
                    _LinearOp(
                        weight=offsets[f"{name}.weight"],
                        bias=offsets.get(f"{name}.bias") if m.bias is not None else None,
                        n_out=m.out_features,
                        n_in=m.in_features,
                    )
                )
                width = m.in_features if width is None else width
            elif type(m) in _ELEMENTWISE:
                if any(True for _ in m.parameters()):
                    return None, f"module {name} has parameters"
                if type(m) is not nn.Dropout:
                    ops.append(_ActOp(module=m, inplace=_inplace_version(m)))
            else:
                return None, f"module {name} is a {type(m).__name__}, not Linear or an elementwise activation"
        if n_linear == 0:
            return None, "the model has no nn.Linear layer"
        has_flatten = any(type(m) is nn.Flatten for m in model.children())
        x = self._inputs
        feat = x[0].numel() if has_flatten else (x.shape[1] if x.ndim == 2 else None)
        if feat != width:
            return None, (
                f"the inputs {tuple(x.shape)} do not enter the first Linear as [N, {width}] "
                "(add nn.Flatten() at the start for image inputs)"
            )
        return ops, ""

    def _probe(self) -> tuple[int, int]:
        """Run the model on one example: (output width k, activation elements per example)."""
        total = 0

        def hook(_module: nn.Module, _inp: Any, output: Any) -> None:
            nonlocal total
            if isinstance(output, Tensor):
                total += output.numel()

        # A model that cannot take the data (feature count, image vs flat, channels, dtype) gets a
        # ValueError naming both instead of torch's bare RuntimeError from deep inside forward.
        check_accepts(self._model, self._inputs, n_examples=1)
        leaves = [m for m in self._model.modules() if not any(True for _ in m.children())]
        handles = [m.register_forward_hook(hook) for m in leaves]
        try:
            with torch.no_grad():
                out = self._model(self._inputs[:1])
        finally:
            for h in handles:
                h.remove()
        if not isinstance(out, Tensor):
            raise TypeError(f"the model must return one Tensor of outputs, got {type(out).__name__}")
        if out.ndim not in (1, 2) or out.shape[0] != 1:
            raise ValueError(
                f"the model must map [N, ...] inputs to [N, k] (or [N]) outputs; for one example "
                f"it returned shape {tuple(out.shape)}"
            )
        k = 1 if out.ndim == 1 else out.shape[1]
        # Add the loss's temporaries (log-softmax, differences) of about a few outputs per example.
        return k, total + 3 * k

    def _check_flat(self, flat: Any, what: str) -> Tensor:
        if not isinstance(flat, Tensor):
            raise TypeError(f"{what} must be a flat torch.Tensor of parameters, got {type(flat).__name__}")
        if flat.ndim != 1 or flat.shape[0] != self.n_params:
            raise ValueError(
                f"{what} must have shape [{self.n_params}] (the model's parameter count), got "
                f"{tuple(flat.shape)}; build it with torch.nn.utils.parameters_to_vector"
            )
        if not flat.dtype.is_floating_point:
            raise TypeError(f"{what} must be floating point, got {flat.dtype}")
        return flat

    def _check_params(self, params: Any) -> torch.dtype:
        if not isinstance(params, Tensor):
            raise TypeError(f"params must be a torch.Tensor [B, n], got {type(params).__name__}")
        if params.ndim != 2 or params.shape[1] != self.n_params:
            raise ValueError(
                f"params must have shape [B, {self.n_params}] (one flat parameter vector per row), "
                f"got {tuple(params.shape)}; use params.unsqueeze(0) for a single vector"
            )
        if not params.dtype.is_floating_point:
            raise TypeError(f"params must be floating point, got {params.dtype}")
        if params.device != self.device and not _same_device(params.device, self.device):
            raise ValueError(
                f"params are on {params.device} but the cost evaluates on {self.device}; "
                f"move them with params.to({str(self.device)!r})"
            )
        return params.dtype

    def _check_inputs(self, inputs: Any) -> tuple[Tensor, int]:
        if not isinstance(inputs, Tensor):
            raise TypeError(f"inputs must be a torch.Tensor [N, ...], got {type(inputs).__name__}")
        if inputs.ndim == 0 or inputs.shape[0] == 0:
            raise ValueError(f"inputs must be [N, ...] with N >= 1 examples, got shape {tuple(inputs.shape)}")
        x = inputs.detach().to(self.device)
        if x.is_floating_point():
            x = x.to(self.dtype)
            if not bool(torch.isfinite(x).all()):
                bad = int((~torch.isfinite(x)).sum())
                raise ValueError(f"inputs have {bad} non-finite values (NaN/Inf) in {self.dtype}; every cost "
                                 "would be NaN: clean the data (or compute in float64 if they overflow)")
        return x, int(x.shape[0])

    def _check_targets(self, targets: Any) -> Tensor | None:
        n, k, loss = self.n_examples, self.n_outputs, self.loss
        if loss == "kl":
            return None  # the anchor's predictions are the reference
        if not isinstance(targets, Tensor):
            raise TypeError(f"targets must be a torch.Tensor for loss {loss!r}, got {type(targets).__name__}")
        if targets.shape[:1] != (n,):
            raise ValueError(f"targets must have {n} rows (one per input), got shape {tuple(targets.shape)}")
        t = targets.detach().to(self.device)
        if loss == "ce" or (loss == "zero_one" and k > 1):
            if k < 2:
                raise ValueError(f"loss {loss!r} needs >= 2 logits but the model has 1; use 'bce'")
            if t.ndim != 1 or t.dtype.is_floating_point or t.dtype == torch.bool:
                raise TypeError(
                    f"loss {loss!r} needs integer class labels of shape [{n}], got {t.dtype} "
                    f"{tuple(t.shape)}; convert one-hot targets with .argmax(1)"
                )
            if int(t.min()) < 0 or int(t.max()) >= k:
                raise ValueError(f"class labels must lie in [0, {k}), got range [{int(t.min())}, {int(t.max())}]")
            return t.long()
        if loss == "zero_one":  # one logit: the class is the logit's sign
            t = t.reshape(n, -1) if t.ndim == 2 else t
            if t.ndim == 2 and t.shape[1] != 1:
                raise ValueError(f"one-logit 'zero_one' needs targets [{n}] or [{n}, 1], got {tuple(targets.shape)}")
            t = t.reshape(n)
            if not bool(((t == 0) | (t == 1)).all()):
                raise ValueError("one-logit 'zero_one' needs targets in {0, 1}")
            return t.bool()
        # bce, mse: float targets shaped like the outputs
        if t.ndim == 1 and k == 1:
            t = t.unsqueeze(1)
        if t.shape != (n, k):
            raise ValueError(f"loss {loss!r} needs targets of shape [{n}, {k}] like the outputs, got {tuple(t.shape)}")
        t = t.to(self.dtype)
        if loss == "bce" and not bool(((t >= 0) & (t <= 1)).all()):
            raise ValueError("loss 'bce' needs targets in [0, 1] (probabilities of class 1)")
        return t

    def _anchor_log_probs(self) -> Tensor:
        """Log-softmax predictions ``[N, C]`` at the anchor, through the same path as the cost."""
        chunk, _ = self._plan(n_vectors=1, early=False)
        parts = []
        with torch.no_grad():
            for lo in range(0, self.n_examples, chunk):
                out = self._forward(self._anchor.unsqueeze(0), self._x[lo : lo + chunk])[0]
                parts.append(torch.log_softmax(_as_multiclass(out), dim=-1))
        return torch.cat(parts)


@dataclass(frozen=True)
class _Batch:
    """``b`` parameter vectors (``params``, ``[b, n]``) and their weights laid out for one path:
    per op of the matmul plan ``(weight, bias)`` or None (activations), or the vmap path's dict
    of ``[b, *shape]`` tensors."""

    params: Tensor
    weights: Any

    @property
    def shape(self) -> torch.Size:
        return self.params.shape


@dataclass(frozen=True)
class _LinearOp:
    """A Linear layer of the matmul path: where its weight and bias lie in the flat vector."""

    weight: slice
    bias: slice | None
    n_out: int
    n_in: int


@dataclass(frozen=True)
class _ActOp:
    """An elementwise activation of the matmul path, with an in-place version of it."""

    module: nn.Module
    inplace: Any  # Callable[[Tensor], Tensor]


def _inplace_version(module: nn.Module) -> Any:
    """The same elementwise map, overwriting its argument (for our own fresh activations)."""
    if type(module) is nn.Identity:
        return lambda h: h
    if type(module) is nn.Tanh:
        return torch.tanh_
    if type(module) is nn.Sigmoid:
        return torch.sigmoid_
    if hasattr(module, "inplace"):  # ReLU, SiLU, LeakyReLU, ELU take an inplace flag
        twin = copy.copy(module)
        twin.inplace = True
        return twin
    return module  # GELU, Softplus: no in-place kernel; out of place is still correct


def _as_multiclass(out: Tensor) -> Tensor:
    """One logit z is the two-class softmax over (0, z), i.e. Bernoulli(sigmoid(z))."""
    if out.shape[-1] != 1:
        return out
    return torch.cat([torch.zeros_like(out), out], dim=-1)


def _describe_parameters(model: nn.Module) -> tuple[ParamInfo, ...]:
    """ParamInfo for each parameter in ``model.parameters()`` order (shared ones once)."""
    modules = dict(model.named_modules())
    infos = []
    offset = 0
    for name, p in model.named_parameters():
        module_name, _, local = name.rpartition(".")
        module = modules[module_name]
        shape = tuple(p.shape)
        if p.ndim >= 2:
            kind = "weight"
        elif local == "bias":
            kind = "bias"
        else:
            kind = "other"
        n_out = shape[0] if shape else 1
        if kind == "weight" and isinstance(module, nn.modules.conv._ConvTransposeNd):
            n_out = shape[1] * module.groups
        infos.append(
            ParamInfo(
                name=name,
                module=module_name,
                module_type=type(module).__name__,
                kind=kind,
                shape=shape,
                slice=slice(offset, offset + p.numel()),
                n_out=n_out,
            )
        )
        offset += p.numel()
    return tuple(infos)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _round_down(value: int, multiple: int) -> int:
    """``value`` rounded down to a multiple, unless that is 0 (then ``value`` itself)."""
    return value // multiple * multiple if value >= multiple else value


def _optional_positive_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    return int(value)


def _same_device(a: torch.device, b: torch.device) -> bool:
    """'cuda' and 'cuda:0' name the same device when 0 is the current one."""
    if a.type != b.type:
        return False
    if a.type == "cuda":
        current = torch.cuda.current_device()
        return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
    return a.index == b.index or a.type == "cpu"
