"""The two forward engines of :class:`~volbench.costs.ModelCost`: ``b`` parameter vectors on ``c``
shared examples at once.

* **matmul** (a plain ``nn.Sequential`` of ``nn.Linear`` and parameter-free elementwise
  activations, optionally starting with ``nn.Flatten()``): the first layer of all ``b`` vectors is
  one GEMM ``[W1_1; ...; W1_b] X^T`` of the stacked weights ``[b * out, in]`` with the shared data;
  later layers are ``torch.baddbmm`` over the ``b`` vectors. Hidden states are kept transposed,
  ``[b, units, c]``, so every product is a plain contiguous (batched) GEMM.
* **vmap** (any module): ``torch.func.vmap`` of ``torch.func.functional_call`` over the ``b``
  parameter sets, the data shared.

Both take the weights laid out once per vector chunk (:func:`prepare_batch`), so that a chunk's
many data chunks reuse them.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from volbench.costs.layout import ParamInfo

__all__ = ["ELEMENTWISE", "LinearOp", "ActOp", "Batch", "matmul_plan", "prepare_batch", "forward_matmul",
           "forward_later_layers", "forward_vmap", "unflatten"]

# Parameter-free elementwise modules the batched-matmul path applies as they are. Exact types only:
# a subclass may override forward with something that is not elementwise. Dropout is the identity
# because the cost always evaluates the model in eval mode.
ELEMENTWISE = (
    nn.ReLU, nn.GELU, nn.Tanh, nn.Identity, nn.Sigmoid, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Softplus,
    nn.Dropout,
)


@dataclass(frozen=True)
class LinearOp:
    """A Linear layer of the matmul path: where its weight and bias lie in the flat vector."""

    weight: slice
    bias: slice | None
    n_out: int
    n_in: int


@dataclass(frozen=True)
class ActOp:
    """An elementwise activation of the matmul path, with an in-place version of it."""

    module: nn.Module
    inplace: Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Batch:
    """``b`` parameter vectors (``params``, ``[b, n]``) and their weights laid out for one path:
    per op of the matmul plan ``(weight, bias)`` or None (activations), or the vmap path's dict
    of ``[b, *shape]`` tensors."""

    params: Tensor
    weights: Any

    @property
    def shape(self) -> torch.Size:
        return self.params.shape


def _inplace_version(module: nn.Module) -> Callable[[Tensor], Tensor]:
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


def matmul_plan(model: nn.Module, inputs: Tensor, layers: tuple[ParamInfo, ...]) -> tuple[list[Any] | None, str]:
    """The op list of the batched-matmul path, or (None, why the model does not qualify)."""
    if type(model) is not nn.Sequential:
        return None, f"the model is a {type(model).__name__}, not a plain nn.Sequential"
    if not inputs.is_floating_point():
        return None, "the inputs are not floating point"
    offsets = {p.name: p.slice for p in layers}
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
            ops.append(LinearOp(weight=offsets[f"{name}.weight"],
                                bias=offsets.get(f"{name}.bias") if m.bias is not None else None,
                                n_out=m.out_features, n_in=m.in_features))
            width = m.in_features if width is None else width
        elif type(m) in ELEMENTWISE:
            if any(True for _ in m.parameters()):
                return None, f"module {name} has parameters"
            if type(m) is not nn.Dropout:
                ops.append(ActOp(module=m, inplace=_inplace_version(m)))
        else:
            return None, f"module {name} is a {type(m).__name__}, not Linear or an elementwise activation"
    if n_linear == 0:
        return None, "the model has no nn.Linear layer"
    has_flatten = any(type(m) is nn.Flatten for m in model.children())
    feat = inputs[0].numel() if has_flatten else (inputs.shape[1] if inputs.ndim == 2 else None)
    if feat != width:
        return None, (
            f"the inputs {tuple(inputs.shape)} do not enter the first Linear as [N, {width}] "
            "(add nn.Flatten() at the start for image inputs)"
        )
    return ops, ""


def unflatten(layers: tuple[ParamInfo, ...], flat: Tensor) -> dict[str, Tensor]:
    """``[B, n]`` flat vectors as named ``[B, *shape]`` tensors (views where possible)."""
    b = flat.shape[0]
    return {p.name: flat[:, p.slice].reshape(b, *p.shape) for p in layers}


def prepare_batch(params: Tensor, ops: list[Any] | None, layers: tuple[ParamInfo, ...]) -> Batch:
    """Lay out the weights of the ``b`` rows of ``params`` for :func:`forward_matmul` (``ops``
    given) or :func:`forward_vmap` (``ops`` None), once per vector chunk rather than once per data
    chunk."""
    if ops is None:
        return Batch(params, unflatten(layers, params))
    b = params.shape[0]
    weights: list[tuple[Tensor, Tensor | None] | None] = []
    first = True
    for op in ops:
        if not isinstance(op, LinearOp):
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
    return Batch(params, tuple(weights))


def forward_matmul(ops: list[Any], batch: Batch, x: Tensor) -> Tensor:
    """Outputs ``[b, c, k]`` of the matmul plan ``ops`` for the ``b`` laid-out vectors on ``x[c, in]``."""
    b = batch.shape[0]
    h = x
    shared = True  # h is still the data [c, in], the same for every vector
    for op, weights in zip(ops, batch.weights):
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
        raise RuntimeError("matmul path without a Linear layer")  # excluded by matmul_plan
    return h.transpose(1, 2)


def forward_later_layers(ops: list[Any], weights: Any, h: Tensor) -> Tensor:
    """The matmul plan after its first Linear: ``h`` is the first layer's pre-activation
    ``[b, units, c]`` (ours to overwrite); returns outputs ``[b, c, k]``."""
    for op, w in zip(ops, weights):
        if w is not None:
            weight, bias = w
            h = torch.baddbmm(bias, weight, h) if bias is not None else torch.bmm(weight, h)
        else:
            h = op.inplace(h)
    return h.transpose(1, 2)


def forward_vmap(model: nn.Module, batch: Batch, x: Tensor) -> Tensor:
    """Outputs ``[b, c, ...]`` of ``model`` for the ``b`` parameter sets of ``batch`` on ``x``."""

    def one(p: dict[str, Tensor], xs: Tensor) -> Tensor:
        return torch.func.functional_call(model, p, (xs,))

    return torch.func.vmap(one, in_dims=(0, None))(batch.weights, x)
