"""The ray interface of :class:`~volbench.costs.ModelCost`: costs along ``origin + t * d_k``.

The volume estimators never need the cost at arbitrary points, only along rays from one origin.
For an MLP that makes the first layer linear in t (Fan et al.'s and every other basin estimator
walks rays the same way):

    W0(t) X^T + b0(t) = (W0 X^T + b0) + t (V0 X^T + c0) = A + t B_k,

where (V0, c0) is direction k's block of the first layer. ``A`` ``[units, N]`` is computed once
per origin and ``B_k`` once per direction; every evaluation along the ray then costs an axpy plus
the later layers (for 784-256-128-10 the first layer is 85% of the multiply-adds). Later layers
are formed as the plain path forms them, ``t * d + origin`` (a product, then a sum).

A :class:`RayBatch` also returns the mean loss over several *prefixes* of the data at once
(``sizes``): with the examples in a nested order, landscape D of a minimum is the first D
examples, so one pass gives every nested landscape's cost (``volbench.lab.measure_many``).

Exactness. The result equals the plain path's ``cost(t * d + origin)`` up to float rounding (the
sums are associated differently): within ``ModelCost.rounding_bound(points, origin=origin)``, the
derived bound. :meth:`RayBatch.rounding_margin` is the cheaper margin the main paper's grid uses to
decide which near-threshold points to re-evaluate through the plain path (so that its crossings
are the sequential loop's wherever the margin covers the rounding); it is measured, not derived
(see ``LINEAR_MARGIN``), and no verdict depends on it: claim E3 compares the grid with the loop in
the cost domain, with the derived bound.

CNNs. The same identity holds for a first convolution, but it does not pay for the registered
CNNs: their first convolution is 5% (mnist_cnn) and 8% (cifar_cnn) of a forward pass's FLOPs,
while its output is 32x (mnist) and 11x (cifar) larger than the input, so a per-direction cache
would hold 25-33k floats per example and the axpy over it would cost about what it saves. The
vmap path forms each point instead (``RayBatch.linear`` is False).

Determinism. Examples are processed in fixed blocks (multiples of ``ModelCost.ray_block``:
``ChunkingDefaults.ray_block`` examples, fewer for a sequence model's long windows, cut at the
requested sizes) and the caches are computed in the same blocks whatever their memory
budget, so a ray's costs are the same arithmetic whatever other rays it is evaluated with and however
much of its cache fitted in memory, except for the batch shape of the matrix products, which a BLAS
may block and thread differently (another order: the results then agree within the derived rounding
bound, not necessarily bit for bit; on the CPUs measured they were identical).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from volbench.costs.chunking import CostOutOfMemoryError, is_oom, round_down, round_up
from volbench.costs.engines import LinearOp, forward_later_layers, prepare_batch

__all__ = ["RayBatch", "LINEAR_MARGIN", "LINEAR_MIN_SHARE"]

#: Relative rounding margin of the first-layer-linear path against the plain path, per dtype:
#: |ray cost - plain cost| <= margin * (|cost| + 1e-3). Measured on two trained MNIST MLPs
#: (784-256-128-10, landscapes of 480 and 960 examples, 16 filter-normalised directions x 25
#: radii, CE from 6e-4 to 340; torch 2.13, CPU): the largest relative difference was 3.6e-6 in
#: float32 and 8.4e-15 in float64; the margins are over 100x that. A larger margin only
#: re-evaluates more near-threshold points through the plain path (the paper mode does).
#: Measured, not derived (issue R1): the derived bound, ``ModelCost.rounding_bound``, needs a
#: float64 forward and backward pass per point, too dear for every point of the walk; the tests
#: check that this margin covers the derived bound on small MLPs (20-200x), and a margin too small
#: on some machine changes no verdict: it could only let the grid cross where the loop does not at a
#: point within rounding of tau, which E3 (and every test) explains in the cost domain.
#: The first-layer cache is used when the first layer is at least this share of a forward pass.
LINEAR_MIN_SHARE = 0.25

LINEAR_MARGIN = {torch.float32: 4e-4, torch.float64: 1e-12, torch.float16: 3e-2, torch.bfloat16: 1e-1}


class RayBatch:
    """Costs of one :class:`ModelCost` along ``b`` rays ``origin + t * directions[k]``.

    Built by :meth:`ModelCost.open_rays`; see the module docstring.

    Attributes:
        n_rays: b.
        sizes: the data prefixes (landscape sizes) whose mean losses are returned, increasing.
        linear: True when the first layer is evaluated as ``A + t B_k`` (matmul path), False when
            each point is formed and run through the cost's own forward (vmap path, or a cost
            built with ``first_layer_cache=False``).
        n_cached: examples whose ``B_k`` is cached for every ray (the rest are computed per
            evaluation, block by block, with the same arithmetic).
    """

    def __init__(self, cost: Any, origin: Tensor, directions: Tensor, sizes: Sequence[int] | None = None) -> None:
        self._cost = cost
        n = cost.n_params
        origin = cost._check_flat(origin, "origin").detach().to(device=cost.device, dtype=cost.dtype)
        if not isinstance(directions, Tensor) or directions.ndim != 2 or directions.shape[1] != n:
            shape = tuple(directions.shape) if isinstance(directions, Tensor) else type(directions).__name__
            raise ValueError(f"directions must be a [b, {n}] tensor (one direction per row), got {shape}")
        self._origin = origin
        self._dirs = directions.detach().to(device=cost.device, dtype=cost.dtype)
        self.n_rays = int(self._dirs.shape[0])
        self.sizes = cost.check_sizes(sizes)
        self.dtype = cost.dtype
        self._norms = torch.tensor([cost._loss.normaliser(s) for s in self.sizes], dtype=torch.float64,
                                   device=cost.device)
        top = self.sizes[-1]
        block = cost.ray_block
        # Evaluation blocks: the fixed grid, cut at every requested size.
        edges = sorted(set(range(0, top, block)) | set(self.sizes) | {0})
        self._blocks = list(zip(edges[:-1], edges[1:]))
        # The cache pays where the first layer is most of the work (MNIST MLP 784-256-128-10:
        # 85% of the multiply-adds); on a thin first layer (two-spirals MLP 2-32x5-1: 1.5%) it
        # would only add passes, so such a model's points are formed and run in full.
        self.linear = (cost.path == "matmul" and cost.first_layer_cache and self.n_rays > 0
                       and cost.first_layer_flops_per_example() >= LINEAR_MIN_SHARE * cost._matmul_flops())
        self._arange = torch.arange(self.n_rays, device=cost.device)
        self.n_cached = 0
        if self.linear:
            self._setup_linear(top, block)
        self._plan_vectors()

    # ------------------------------------------------------------------ setup
    def _setup_linear(self, top: int, block: int) -> None:
        cost = self._cost
        ops = cost._ops
        first = next(i for i, op in enumerate(ops) if isinstance(op, LinearOp))
        self._op0: LinearOp = ops[first]
        self._later_ops = ops[first + 1:]
        self._A = cost._first_layer_at(self._origin)  # [units, N], fixed blocks
        op0 = self._op0
        b, units = self.n_rays, op0.n_out
        self._V0 = self._dirs[:, op0.weight].reshape(b * units, op0.n_in)
        self._c0 = self._dirs[:, op0.bias].reshape(b * units, 1) if op0.bias is not None else None
        elem = self._dirs.element_size()
        budget = int(cost.memory_budget_bytes * cost._chunking.ray_cache_fraction)
        fits = budget // max(1, b * units * elem)
        # Whole blocks of the fixed grid [k block, min(N, (k + 1) block)), up to the largest size.
        want = min(cost.n_examples, round_up(top, block))
        self.n_cached = int(min(want, round_down(fits, block) if fits >= block else 0))
        self._B = torch.empty(b, units, self.n_cached, dtype=self.dtype, device=cost.device)
        with torch.no_grad():
            for lo in range(0, self.n_cached, block):
                hi = min(cost.n_examples, lo + block)
                self._B[:, :, lo:hi] = self._first_block(self._V0, self._c0, lo, hi, b)
        cost.n_first_layer_examples += b * self.n_cached

    def _first_block(self, v0: Tensor, c0: Tensor | None, lo: int, hi: int, b: int) -> Tensor:
        """``V0 X[lo:hi]^T + c0`` for ``b`` stacked directions, ``[b, units, hi - lo]``, computed on
        the fixed cache grid (a block of the grid is always one GEMM of the same shape)."""
        x = self._cost._x[lo:hi]
        out = torch.addmm(c0, v0, x.t()) if c0 is not None else v0 @ x.t()
        return out.view(b, self._op0.n_out, hi - lo)

    def _plan_vectors(self) -> None:
        """Vectors per chunk: the budget left after the caches over what one vector needs for one
        block (its activations, later-layer weights and first-layer block)."""
        cost = self._cost
        elem = torch.empty((), dtype=self.dtype).element_size()
        block = cost.ray_block
        cache = self._B.numel() * elem + cost._first_layer_bytes() if self.linear else 0
        later = (cost.n_params - (self._op0.weight.stop - self._op0.weight.start)) if self.linear else cost.n_params
        per_vector = block * cost._bytes_pair + 2 * later * elem + (
            block * self._op0.n_out * elem if self.linear else 0)
        room = cost.memory_budget_bytes - cache
        self.max_vectors = int(max(1, min(cost._chunking.max_vectors, room // max(1, per_vector))))

    # ------------------------------------------------------------------ evaluation
    def rounding_margin(self, values: Tensor) -> Tensor:
        """A margin on |these costs - the plain path's| (same shape as ``values``): the points
        within it of tau are re-decided through the plain path by the paper's grid walk.

        Linear path: ``LINEAR_MARGIN[dtype] * (|v| + 1e-3)`` (measured; covers the derived bound on
        the models tested). Plain path (the same per-point arithmetic, other data blocks): 64 ulp of
        ``|v|``, a heuristic for the float64 sum of the per-example losses and the final rounding;
        where a BLAS rounds per-example losses differently for another block shape it can be below
        the derived bound (``ModelCost.rounding_bound``). Neither is a verdict's tolerance (see the
        module docstring). NaN/inf values get inf.
        """
        eps = torch.finfo(self.dtype).eps
        rel = LINEAR_MARGIN.get(self.dtype, 1e-2) if self.linear else 64 * eps
        out = rel * (values.abs() + 1e-3)
        return torch.where(torch.isfinite(values), out, torch.full_like(out, math.inf))

    def __call__(self, rows: Tensor, radii: Tensor, stop_above: float | None = None) -> Tensor:
        """Cost over the largest size at ``origin + radii[i] * directions[rows[i]]`` (``[m]`` in the
        cost's dtype), with the early-exit contract of ``ModelCost.__call__``."""
        stop = torch.full((len(rows), len(self.sizes)), -math.inf, dtype=torch.float64)
        stop[:, -1] = math.inf if stop_above is None or not self._cost.early_exit else float(stop_above)
        values, _, _ = self.costs(rows, radii, stop)
        return values[:, -1].to(self.dtype)

    def costs(self, rows: Tensor, radii: Tensor, stop: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean losses over every prefix in ``sizes`` at ``origin + radii[i] * directions[rows[i]]``.

        Args:
            rows: ``[m]`` ray indices (repeats allowed).
            radii: ``[m]`` t (cast to the cost's dtype).
            stop: ``[m, S]`` float64 per (point, size): ``+inf`` = the exact mean is needed,
                ``-inf`` = not needed, a finite tau = needed only to decide ``cost > tau``: the
                point may stop once its partial mean for that size, rounded to the cost's dtype,
                is strictly above tau (losses are >= 0, so it is a lower bound).

        Returns:
            values ``[m, S]`` float64 (the means rounded to the cost's dtype: what the plain path
            returns), exact ``[m, S]`` bool (False: a lower bound, > tau where it was asked for;
            or a size past where the point stopped), done ``[m]`` examples processed.
        """
        cost = self._cost
        device = cost.device
        m, S = len(rows), len(self.sizes)
        if stop.shape != (m, S):
            raise ValueError(f"stop must be [{m}, {S}] (points x sizes), got {tuple(stop.shape)}")
        rows = rows.to(device=device, dtype=torch.long)
        t = radii.to(device=device, dtype=self.dtype)
        stop = stop.to(device=device, dtype=torch.float64)
        if not cost.early_exit:
            stop = torch.where(torch.isfinite(stop), torch.full_like(stop, math.inf), stop)
        values = torch.full((m, S), math.nan, dtype=torch.float64, device=device)
        exact = torch.zeros((m, S), dtype=torch.bool, device=device)
        done = torch.zeros(m, dtype=torch.long, device=device)
        cost.n_calls += 1
        cost.n_vectors_evaluated += m
        start = 0
        chunk = self.max_vectors
        with torch.no_grad():
            while start < m:
                stop_idx = min(m, start + chunk)
                try:
                    part = self._chunk(rows[start:stop_idx], t[start:stop_idx], stop[start:stop_idx])
                except RuntimeError as exc:
                    if not is_oom(exc):
                        raise
                    if chunk == 1:
                        raise CostOutOfMemoryError(
                            f"out of memory evaluating one ray point ({exc}); lower ChunkingDefaults.ray_block (or "
                            "ray_block_positions) "
                            "or ray_cache_fraction, or pass a larger memory_budget_bytes") from exc
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    chunk = max(1, chunk // 2)
                    self.max_vectors = chunk
                    cost.n_oom_retries += 1
                    continue
                values[start:stop_idx], exact[start:stop_idx], done[start:stop_idx] = part
                start = stop_idx
        cost.n_examples_evaluated += int(done.sum())
        return values.cpu(), exact.cpu(), done.cpu()

    def _chunk(self, rows: Tensor, t: Tensor, stop: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        cost = self._cost
        device = cost.device
        mc, S = len(rows), len(self.sizes)
        sizes = torch.tensor(self.sizes, device=device)
        needed = stop > -math.inf  # [mc, S]
        # Examples each point needs: up to its largest needed size (0: nothing asked).
        top_needed = torch.where(needed, sizes.expand(mc, S), torch.zeros_like(sizes).expand(mc, S)).amax(dim=1)
        values = torch.full((mc, S), math.nan, dtype=torch.float64, device=device)
        exact = torch.zeros((mc, S), dtype=torch.bool, device=device)
        done = torch.zeros(mc, dtype=torch.long, device=device)
        sums = torch.zeros(mc, dtype=torch.float64, device=device)
        active = (top_needed > 0).nonzero().squeeze(1)
        if active.numel() == 0:
            return values, exact, done
        weights = self._layout(rows[active], t[active])
        act_rows, act_t = rows[active], t[active]
        for lo, hi in self._blocks:
            sums[active] += self._block_losses(act_rows, act_t, weights, lo, hi)
            done[active] = hi
            ends = [i for i, s in enumerate(self.sizes) if s == hi]
            for i in ends:
                values[active, i] = (sums[active] / self._norms[i]).to(self.dtype).to(torch.float64)
                exact[active, i] = True
            # Which running points are settled: every needed size reached, or its partial mean
            # (rounded to the cost's dtype) strictly above its tau.
            part = (sums[active].unsqueeze(1) / self._norms).to(self.dtype).to(torch.float64)  # [ma, S]
            reached = sizes <= hi
            settled = reached | ~needed[active] | (part > stop[active])
            finished = settled.all(dim=1) | (top_needed[active] <= hi)
            if bool(finished.any()):
                gone = active[finished]
                unreached = ~reached.expand(len(gone), S)
                values[gone] = torch.where(unreached, part[finished], values[gone])
                keep = ~finished
                active = active[keep]
                if active.numel() == 0:
                    break
                act_rows, act_t = act_rows[keep], act_t[keep]
                weights = self._select(weights, keep)
        return values, exact, done

    def _layout(self, rows: Tensor, t: Tensor) -> Any:
        """Per-point weights: the later layers' ``(weight, bias)`` (linear path) or a laid-out
        :class:`Batch` of full parameter vectors (plain path), each ``t * d + origin``."""
        cost = self._cost
        if not self.linear:
            params = torch.mul(t.unsqueeze(1), self._dirs[rows]).add_(self._origin)
            return prepare_batch(params, cost._ops if cost.path == "matmul" else None, cost._layers)
        out = []
        for op in self._later_ops:
            if not isinstance(op, LinearOp):
                out.append(None)
                continue
            w = torch.mul(t.view(-1, 1), self._dirs[rows, op.weight]).add_(self._origin[op.weight])
            w = w.view(len(rows), op.n_out, op.n_in)
            bias = None
            if op.bias is not None:
                bias = torch.mul(t.view(-1, 1), self._dirs[rows, op.bias]).add_(self._origin[op.bias]).unsqueeze(2)
            out.append((w, bias))
        return out

    def _select(self, weights: Any, keep: Tensor) -> Any:
        if not self.linear:
            return prepare_batch(weights.params[keep], self._cost._ops if self._cost.path == "matmul" else None,
                                 self._cost._layers)
        return [None if w is None else (w[0][keep], None if w[1] is None else w[1][keep]) for w in weights]

    def _block_losses(self, rows: Tensor, t: Tensor, weights: Any, lo: int, hi: int) -> Tensor:
        """Summed losses (float64 ``[m]``) of ``m`` points on examples ``lo:hi``. On the linear
        path the points go through in groups whose first-layer activations fit ~2 MiB (a core's
        cache): the axpy and the activation are memory-bound passes, 2-4x slower on a working set
        that spills to main memory (one CPU core, torch 2.13). Grouping changes no value: every
        point's arithmetic is its own."""
        cost = self._cost
        if not self.linear:
            return cost._loss(self._forward_block(rows, t, weights, lo, hi), lo, hi).sum(dim=1, dtype=torch.float64)
        elem = torch.empty((), dtype=self.dtype).element_size()
        group = max(1, (2 << 20) // max(1, self._op0.n_out * (hi - lo) * elem))
        m = len(rows)
        if group >= m:
            return cost._loss(self._forward_block(rows, t, weights, lo, hi), lo, hi).sum(dim=1, dtype=torch.float64)
        parts = []
        for i in range(0, m, group):
            j = min(m, i + group)
            sub = [None if w is None else (w[0][i:j], None if w[1] is None else w[1][i:j]) for w in weights]
            out = self._forward_block(rows[i:j], t[i:j], sub, lo, hi)
            parts.append(cost._loss(out, lo, hi).sum(dim=1, dtype=torch.float64))
        return torch.cat(parts)

    def _run(self, rows: Tensor) -> int | None:
        """r0 when ``rows`` is r0, r0 + 1, ... (then the cache is read as a view, not gathered)."""
        r0 = int(rows[0])
        if r0 + len(rows) > self.n_rays:
            return None
        return r0 if bool((rows == self._arange[r0:r0 + len(rows)]).all()) else None

    def _forward_block(self, rows: Tensor, t: Tensor, weights: Any, lo: int, hi: int) -> Tensor:
        cost = self._cost
        if not self.linear:
            return cost._forward(weights, cost._x[lo:hi])
        block = cost.ray_block
        if hi <= self.n_cached:
            r0 = self._run(rows)
            b_blk = self._B[r0:r0 + len(rows), :, lo:hi] if r0 is not None else self._B[rows, :, lo:hi]
        else:  # not cached: the cache grid's block, computed as the cache would have been
            g_lo = lo // block * block
            g_hi = min(cost.n_examples, g_lo + block)
            v0 = self._V0.view(self.n_rays, -1, self._op0.n_in)[rows].reshape(-1, self._op0.n_in)
            c0 = None if self._c0 is None else self._c0.view(self.n_rays, -1, 1)[rows].reshape(-1, 1)
            b_blk = self._first_block(v0, c0, g_lo, g_hi, len(rows))[:, :, lo - g_lo:hi - g_lo]
            cost.n_first_layer_examples += len(rows) * (g_hi - g_lo)
        cost.n_linear_examples += len(rows) * (hi - lo)
        h = torch.addcmul(self._A[:, lo:hi], b_blk, t.view(-1, 1, 1))  # A + t B, [m, units, c]
        return forward_later_layers(self._later_ops, weights, h)
