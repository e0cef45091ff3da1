"""The :class:`ModelCost` class: validation, memory planning and the flat evaluation loop.

The forward engines live in ``engines``, the ray interface in ``rays``, per-example losses in
``losses``; see the package docstring (``volbench.costs``) for the cost protocol and the losses.

Size: one class, the batched cost (validation, memory planning, the evaluation loop with early
exit); its engines, ray interface, losses, rounding bound and chunking are modules of their own.
"""
from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from volbench._checks import as_device, check_accepts, check_dtype, optional_positive_int
from volbench.costs.chunking import (
    ChunkingDefaults,
    CostOutOfMemoryError,
    is_oom,
    round_down,
    round_up,
    same_device,
)
from volbench.costs.engines import (
    Batch,
    check_batchable,
    forward_matmul,
    forward_vmap,
    matmul_plan,
    prepare_batch,
)
from volbench.costs.layout import ParamInfo, describe_parameters, filter_scale
from volbench.costs.losses import LOSSES, ExampleLoss, anchor_log_probs, check_targets
from volbench.costs.rays import RayBatch

__all__ = ["PATHS", "ModelCost"]

PATHS: tuple[str, ...] = ("auto", "matmul", "vmap")

# The default ``chunking`` of ModelCost: one shared instance (the class is a frozen dataclass).
_DEFAULT_CHUNKING = ChunkingDefaults()


class ModelCost:
    """Mean loss of ``model`` over ``(inputs, targets)`` at a batch of flat parameter vectors.

    For parameter vectors ``theta_1..theta_B`` (rows of ``params``) it returns

        ``cost[b] = (1 / M) * sum_{i=1..N} l_i(f(x_i; theta_b))``

    with ``M = N`` for "ce", "kl", "zero_one" and ``M = N * k`` (all output elements) for "bce"
    and "mse", matching the torch losses with their default ``reduction="mean"``. A sequence model
    (outputs ``[N, T, V]``, integer targets ``[N, T]``: one example is a window of T tokens) has
    ``l_i`` = the mean of its T per-token losses, so the cost is the mean over all ``N * T`` tokens,
    ``F.cross_entropy`` over the flattened tokens (``volbench.costs.losses``).

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
    * ``"vmap"`` (any module whose forward ``torch.func.vmap`` can batch over parameters:
      embeddings, layer norm, attention and tied weights included): ``torch.func.vmap`` of
      ``torch.func.functional_call`` over the ``b`` parameter sets, the data shared. It is tried
      once at construction on two parameter sets; a forward it cannot batch (a Python branch on a
      tensor's value, ``.item()``, an in-place update of a buffer or a parameter, batch norm in
      training mode, random draws) raises a TypeError naming the module and the fix.
    * ``"auto"`` picks "matmul" when the model qualifies (faster on CPU for MNIST-MLP sizes).

    Ray interface (``accepts_rays``; ``docs/CONTRACTS.md``): :meth:`open_rays` gives a
    :class:`~volbench.costs.RayBatch` that evaluates ``origin + t * d_k`` for many t per
    direction. On the matmul path it caches the first layer, ``A = W0 X^T + b0`` once per origin
    and ``B_k = V0_k X^T + c0_k`` once per direction, so an evaluation costs the axpy
    ``A + t B_k`` plus the later layers (``volbench.costs.rays``); on the vmap path it forms each
    point and runs it through the forward pass. Either way it also returns the mean over several
    data prefixes (nested landscapes) from one pass.

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
        targets: ``[N]`` integer class labels ("ce", multi-logit "zero_one"); ``[N, T]`` integer
            tokens for a sequence model's outputs ``[N, T, V]`` ("ce", "zero_one"); ``[N, k]`` or
            ``[N]`` floats ("bce" in [0, 1], "mse"); ``[N]``/``[N, 1]`` in {0, 1} for one-logit
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
        first_layer_cache: let the ray interface use the first layer's linearity along a ray
            (matmul path); False forms every point in full (today's path, a benchmark baseline).
        ray_interface: offer the ray interface at all (``accepts_rays``); False makes the
            estimators walk this cost through flat parameter vectors only (the baseline).

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
        chunking: ChunkingDefaults = _DEFAULT_CHUNKING,
        first_layer_cache: bool = True,
        ray_interface: bool = True,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if path not in PATHS:
            raise ValueError(f"unknown path {path!r}; choose one of {', '.join(PATHS)}")
        if not isinstance(chunking, ChunkingDefaults):
            raise TypeError(f"chunking must be a ChunkingDefaults, got {type(chunking).__name__}")
        self._data_chunk = optional_positive_int("data_chunk", data_chunk)
        self._user_max_batch = optional_positive_int("max_batch", max_batch)
        self._oom_max_batch: int | None = None  # learned after an out-of-memory retry
        self._chunking = chunking
        self.loss = loss
        self.early_exit = bool(early_exit)
        self.first_layer_cache = bool(first_layer_cache)
        self.accepts_rays = bool(ray_interface)
        # What prefix() needs to rebuild this cost on fewer examples.
        self._rebuild = dict(loss=loss, data_chunk=data_chunk, max_batch=max_batch,
                             memory_budget_bytes=memory_budget_bytes, early_exit=early_exit, path=path,
                             chunking=chunking, first_layer_cache=first_layer_cache, ray_interface=ray_interface)
        self._given_targets = targets

        params = list(model.parameters())
        if not params:
            raise ValueError("model has no parameters; there is nothing to perturb")
        self.device = as_device(device) if device is not None else params[0].device
        self.dtype = check_dtype(dtype if dtype is not None else params[0].dtype)

        # A private copy: moving or re-parametrising it never touches the caller's model.
        self._model = copy.deepcopy(model).to(device=self.device, dtype=self.dtype).eval()
        self._model.requires_grad_(False)
        self._layers = describe_parameters(self._model)
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
        self._ops, matmul_reason = matmul_plan(self._model, self._inputs, self._layers)
        if path == "matmul" and self._ops is None:
            raise ValueError(f"path='matmul' does not apply to this model: {matmul_reason}; use path='vmap'")
        self.path = "matmul" if (path != "vmap" and self._ops is not None) else "vmap"
        # The matmul path reads the data flattened once here instead of per call.
        self._x = self._inputs.reshape(self.n_examples, -1) if self.path == "matmul" else self._inputs

        self.output_shape, act_elems = self._probe()
        self.n_outputs = self.output_shape[-1]
        if self.path == "vmap":  # one batched forward now, so a model vmap cannot batch fails here, named
            check_batchable(self._model, self._layers, self._anchor, self._inputs[:1])
        self._targets = check_targets(loss, targets, self.n_examples, self.output_shape, self.device, self.dtype)
        # Examples per block of the ray interface: ray_block, capped in positions for sequence outputs.
        positions = math.prod(self.output_shape[:-1]) if len(self.output_shape) > 1 else 1
        self.ray_block = int(min(chunking.ray_block, max(1, chunking.ray_block_positions // positions)))
        self._loss = ExampleLoss(loss, self._targets, self.n_outputs)
        self._normaliser = self._loss.normaliser(self.n_examples)

        elem = torch.empty((), dtype=self.dtype).element_size()
        self._bytes_input = self._inputs[0].numel() * self._inputs.element_size()  # per example, shared by all vectors
        self._bytes_pair = int(math.ceil(chunking.activation_safety * act_elems * elem))
        self._bytes_vector = 2 * self.n_params * elem  # the gathered rows and their reshaped copies
        if memory_budget_bytes is not None:
            self.memory_budget_bytes = optional_positive_int("memory_budget_bytes", memory_budget_bytes)
            self._enforce_budget = True
        else:
            self.memory_budget_bytes = self._default_budget()
            self._enforce_budget = False

        if loss == "kl":
            self._loss.set_anchor_predictions(self._anchor_log_probs())
        self._first_layer: tuple[Tensor, Tensor] | None = None  # (origin, X W0^T + b0) of the last rays

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
        """Zero the work counters (see :meth:`counters`)."""
        self.n_calls = 0
        self.n_vectors_evaluated = 0
        self.n_examples_evaluated = 0  # (vector, example) pairs actually run through the model
        self.n_oom_retries = 0
        self.n_linear_examples = 0  # of those, pairs whose first layer was the axpy A + t B
        self.n_first_layer_examples = 0  # (ray, example) first-layer products B computed (cache or on the fly)

    def counters(self) -> dict[str, int]:
        """Snapshot of the work counters, for benchmark reports (early-exit savings =
        ``1 - n_examples_evaluated / (n_vectors_evaluated * n_examples)``)."""
        return {
            "n_calls": self.n_calls,
            "n_vectors_evaluated": self.n_vectors_evaluated,
            "n_examples_evaluated": self.n_examples_evaluated,
            "n_oom_retries": self.n_oom_retries,
            "n_linear_examples": self.n_linear_examples,
            "n_first_layer_examples": self.n_first_layer_examples,
        }

    def first_layer_flops_per_example(self) -> float:
        """FLOPs of the first Linear layer per example and vector on the matmul path (2 x
        in x out), 0 on the vmap path: what the ray interface's first-layer cache saves per
        evaluation (it spends 2 x out on the axpy instead, and this once per ray for the cache)."""
        if self.path != "matmul":
            return 0.0
        op0 = next(op for op in self._ops if hasattr(op, "n_in"))
        return 2.0 * op0.n_in * op0.n_out

    def _matmul_flops(self) -> float:
        """2 x in x out summed over the Linear layers of the matmul path (what flops_per_example
        counts for such a model, without loading torch's flop counter)."""
        return float(sum(2 * op.n_in * op.n_out for op in self._ops if hasattr(op, "n_in"))) if self._ops else 0.0

    def executed_flops(self) -> float:
        """Matmul FLOPs actually executed by the calls so far (:meth:`flops_per_example` per plain
        pair; later layers plus the axpy per first-layer-cached pair; the first layer per cached
        (ray, example)). Compare with ``n_examples_evaluated * flops_per_example()``, the work the
        plain path would have done."""
        full = self.flops_per_example()
        first = self.first_layer_flops_per_example()
        units = first / (2.0 * next(op.n_in for op in self._ops if hasattr(op, "n_in"))) if first else 0.0
        plain = self.n_examples_evaluated - self.n_linear_examples
        return (plain * full + self.n_linear_examples * (full - first + 2.0 * units)
                + self.n_first_layer_examples * first)

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
        Embedding rows (one token's vector) are weight rows; a tied weight is in the flat vector
        once; normalisation gains get ``|g|`` elementwise with ``bias="row"`` (1 with "unscaled") and
        their biases ``|g|``; other 1-D parameters and biases without a matching weight get 1. The
        rule for each kind, with its reason: :func:`volbench.costs.layout.filter_scale`.

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
        point = self._anchor if anchor is None else self._check_flat(anchor, "anchor").detach().to(
            device=self.device, dtype=self.dtype)
        return filter_scale(self._layers, point, bias)

    def rounding_bound(self, points: Tensor, *, origin: Tensor | None = None, roundoff: float | None = None) -> Tensor:
        """Tolerance on ``|cost_A(p) - cost_B(p)|`` for two evaluations of this cost at each row of
        ``points`` ``[B, n]`` that differ only in the order of their arithmetic (data chunks, the ray
        interface against the plain path, thread counts, BLAS kernels, devices): the derived
        probabilistic bound of :func:`volbench.costs.rounding.cost_rounding_bound`, float64 ``[B]``.
        ``origin``: the points were formed as ``origin + t * d`` (a ray), so the formation's roundings
        count too. ``roundoff``: another unit roundoff (2^-11 for TF32 matmuls)."""
        from volbench.costs.rounding import cost_rounding_bound

        points = points[None] if isinstance(points, Tensor) and points.ndim == 1 else points
        return cost_rounding_bound(self._model, self._inputs, self._targets, self.loss, points.detach(),
                                   dtype=self.dtype, origin=origin, normaliser=self._normaliser,
                                   anchor_logp=self._loss.anchor_logp, roundoff=roundoff)

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
        batch = optional_positive_int("batch", batch)
        if batch > self.n_examples:
            raise ValueError(f"batch={batch} exceeds the {self.n_examples} examples of the data set")
        if batch not in self._flops_cache:
            from torch.utils.flop_counter import FlopCounterMode  # only needed for reporting

            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                self._model(self._inputs[:batch])
            self._flops_cache[batch] = counter.get_total_flops() / batch
        return self._flops_cache[batch]

    # ------------------------------------------------------------------ ray interface
    def open_rays(self, origin: Tensor, directions: Tensor, sizes: Sequence[int] | None = None) -> RayBatch:
        """A :class:`~volbench.costs.RayBatch` of the rays ``origin + t * directions[k]``.

        Args:
            origin: flat ``[n]`` start of every ray (the estimator's anchor).
            directions: ``[b, n]`` directions (unit or not; t multiplies them as given).
            sizes: data prefixes (landscape sizes, increasing, each in 1..N) whose mean losses
                :meth:`RayBatch.costs` returns; default ``(N,)``, the whole data set.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> g = torch.Generator().manual_seed(0)
            >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).double()
            >>> x, y = torch.randn(32, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (32,), generator=g)
            >>> cost = ModelCost(model, x, y)
            >>> d = torch.randn(2, cost.n_params, generator=g, dtype=torch.float64)
            >>> rays = cost.open_rays(cost.anchor, d)
            >>> t = torch.tensor([0.1, 0.3], dtype=torch.float64)
            >>> plain = cost(cost.anchor + t[:, None] * d)
            >>> bool(torch.allclose(rays(torch.arange(2), t), plain, rtol=1e-12, atol=0))
            True
        """
        if not self.accepts_rays:
            raise ValueError("this ModelCost was built with ray_interface=False; build it with ray_interface=True")
        return RayBatch(self, origin, directions, sizes)

    @property
    def max_rays(self) -> int:
        """Rays per :class:`RayBatch` whose first-layer caches fit ``ray_cache_fraction`` of the
        memory budget over all N examples (at least 1; more rays cache fewer examples)."""
        if self.path != "matmul" or not self.first_layer_cache:
            return self.max_batch
        units = next(op.n_out for op in self._ops if hasattr(op, "n_in"))
        elem = torch.empty((), dtype=self.dtype).element_size()
        room = int(self.memory_budget_bytes * self._chunking.ray_cache_fraction) - self._first_layer_bytes()
        return int(max(1, min(self._chunking.max_vectors, room // max(1, units * self.n_examples * elem))))

    def prefix(self, size: int) -> ModelCost:
        """This cost on its first ``size`` examples (same model, anchor, loss, device, dtype and
        settings): landscape ``size`` when the data are in a nested order. It computes what a
        cost built on those examples computes, bit for bit."""
        size = int(self.check_sizes([size])[0])
        targets = None if self._given_targets is None else self._given_targets[:size]
        return ModelCost(self._model, self._inputs[:size], targets, anchor=self._anchor, device=self.device,
                         dtype=self.dtype, **self._rebuild)

    def prefix_costs(self, point: Tensor, sizes: Sequence[int] | None = None) -> Tensor:
        """Exact mean costs (float64 ``[S]``, rounded to the cost's dtype) at the flat ``point``
        over each data prefix in ``sizes`` (default: all N), in one pass on the ray interface's
        block grid: what ``open_rays(...).costs`` gives at t = 0, without building a ray."""
        sizes_t = self.check_sizes(sizes)
        point = self._check_flat(point, "point").detach().to(device=self.device, dtype=self.dtype)
        block = self.ray_block
        edges = sorted(set(range(0, sizes_t[-1], block)) | set(sizes_t) | {0})
        batch = self._prepare_batch(point.unsqueeze(0))
        total = 0.0
        out = []
        with torch.no_grad():
            for lo, hi in zip(edges[:-1], edges[1:]):
                total += float(self._loss(self._forward(batch, self._x[lo:hi]), lo, hi).sum(dtype=torch.float64))
                if hi in sizes_t:
                    value = torch.tensor(total / self._loss.normaliser(hi), dtype=torch.float64)
                    out.append(float(value.to(self.dtype)))
        self.n_calls += 1
        self.n_vectors_evaluated += 1
        self.n_examples_evaluated += sizes_t[-1]
        return torch.tensor(out, dtype=torch.float64)

    def check_sizes(self, sizes: Sequence[int] | None) -> tuple[int, ...]:
        """The data prefixes (nested landscape sizes) ``sizes`` validated: distinct, increasing, in
        ``1..n_examples`` (None: the whole data set), else a TypeError / ValueError naming them."""
        if sizes is None:
            return (self.n_examples,)
        try:
            out = tuple(int(s) for s in sizes)
        except (TypeError, ValueError):
            raise TypeError(f"sizes must be a sequence of ints (data prefixes), got {sizes!r}") from None
        if not out or any(isinstance(s, bool) for s in sizes) or list(out) != sorted(set(out)) \
                or out[0] < 1 or out[-1] > self.n_examples:
            raise ValueError(f"sizes must be distinct increasing data prefixes in 1..{self.n_examples}, got {sizes!r}")
        return out

    def _first_layer_bytes(self) -> int:
        units = next(op.n_out for op in self._ops if hasattr(op, "n_in"))
        return units * self.n_examples * torch.empty((), dtype=self.dtype).element_size()

    def _first_layer_at(self, origin: Tensor) -> Tensor:
        """``W0 X^T + b0`` ``[units, N]`` at ``origin``, on the fixed block grid of the ray
        interface; kept for the last origin asked (a walk opens many batches from one anchor)."""
        if self._first_layer is not None and torch.equal(self._first_layer[0], origin):
            return self._first_layer[1]
        op0 = next(op for op in self._ops if hasattr(op, "n_in"))
        w0 = origin[op0.weight].view(op0.n_out, op0.n_in)
        b0 = origin[op0.bias].view(op0.n_out, 1) if op0.bias is not None else None
        out = torch.empty(op0.n_out, self.n_examples, dtype=self.dtype, device=self.device)
        block = self.ray_block
        with torch.no_grad():
            for lo in range(0, self.n_examples, block):
                x = self._x[lo:lo + block]
                out[:, lo:lo + block] = torch.addmm(b0, w0, x.t()) if b0 is not None else w0 @ x.t()
        self._first_layer = (origin.clone(), out)
        return out

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
                part = self._loss(out, lo, hi).sum(dim=1, dtype=torch.float64)
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
            if not is_oom(exc):
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
                hi = max(hi, round_up(math.ceil(n * min(1.0, reach)), self._chunking.chunk_multiple))
        per_example = self._bytes_input + n_active * self._bytes_pair
        fits = (self.memory_budget_bytes - n_active * self._bytes_vector) // per_example
        return int(min(n, hi, lo + max(1, round_down(fits, self._chunking.chunk_multiple))))

    def _prepare_batch(self, params: Tensor) -> Batch:
        """Lay out the weights of the ``b`` rows of ``params`` for :meth:`_forward`, once per vector
        chunk rather than once per data chunk."""
        return prepare_batch(params, self._ops if self.path == "matmul" else None, self._layers)

    def _forward(self, params: Tensor | Batch, x: Tensor) -> Tensor:
        """Model outputs ``[b, c, k]`` (a sequence model's ``[b, c, T, V]``) for ``b`` parameter
        vectors (a ``[b, n]`` tensor, or one laid out by :meth:`_prepare_batch`) on ``c`` shared
        examples."""
        batch = params if isinstance(params, Batch) else self._prepare_batch(params)
        out = forward_matmul(self._ops, batch, x) if self.path == "matmul" else forward_vmap(self._model, batch, x)
        return out.unsqueeze(-1) if out.ndim == 2 else out

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
                probe = round_up(math.ceil(n / d.early_exit_chunks), d.chunk_multiple)
                chunk = min(n, max(d.min_data_chunk, probe))
            # Largest chunk for which a single vector fits the budget.
            per_example = self._bytes_input + self._bytes_pair
            fits = (budget - self._bytes_vector) // per_example
            chunk = max(1, min(chunk, round_down(fits, d.chunk_multiple)))
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
    def _probe(self) -> tuple[tuple[int, ...], int]:
        """Run the model on one example: (per-example output shape, ``(k,)`` or ``(T, V)``; activation
        elements per example).

        The activations are the outputs of the leaf modules. A sequence model's attention scores
        (``heads * T^2`` per layer, computed inside its attention module, no leaf's output) are not
        among them; the sum over every leaf's output over-counts what is alive at once in a
        no-grad forward (one block's temporaries), which with ``activation_safety`` covers them
        (measured for the 10.65M-parameter character model in ``benchmarks/README.md``)."""
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
        if out.ndim not in (1, 2, 3) or out.shape[0] != 1:
            raise ValueError(
                f"the model must map [N, ...] inputs to [N, k] (or [N]) outputs, or a sequence model's "
                f"[N, T, V]; for one example it returned shape {tuple(out.shape)}"
            )
        shape = (1,) if out.ndim == 1 else tuple(int(d) for d in out.shape[1:])
        # Add the loss's temporaries (log-softmax, differences) of about a few outputs per example.
        return shape, total + 3 * math.prod(shape)

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
        if params.device != self.device and not same_device(params.device, self.device):
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

    def _anchor_log_probs(self) -> Tensor:
        """Log-softmax predictions ``[N, C]`` at the anchor, through the same path as the cost."""
        chunk, _ = self._plan(n_vectors=1, early=False)
        parts = []
        with torch.no_grad():
            for lo in range(0, self.n_examples, chunk):
                out = self._forward(self._anchor.unsqueeze(0), self._x[lo : lo + chunk])[0]
                parts.append(anchor_log_probs(out))
        return torch.cat(parts)
