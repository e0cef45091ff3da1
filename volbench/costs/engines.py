"""The two forward engines of :class:`~volbench.costs.ModelCost`: ``b`` parameter vectors on ``c``
shared examples at once.

* **matmul** (a plain ``nn.Sequential`` of ``nn.Linear`` and parameter-free elementwise
  activations, optionally starting with ``nn.Flatten()``): the first layer of all ``b`` vectors is
  one GEMM ``[W1_1; ...; W1_b] X^T`` of the stacked weights ``[b * out, in]`` with the shared data;
  later layers are ``torch.baddbmm`` over the ``b`` vectors. Hidden states are kept transposed,
  ``[b, units, c]``, so every product is a plain contiguous (batched) GEMM.
* **vmap** (any module whose forward ``torch.func.vmap`` can batch: embeddings, layer norm,
  attention, tied weights included): ``torch.func.vmap`` of ``torch.func.functional_call`` over the
  ``b`` parameter sets, the data shared. :func:`check_batchable` tries it once on two parameter
  sets when a cost is built, and turns torch's error for a forward it cannot batch (Python
  branches on tensor values, ``.item()``, in-place updates of buffers or parameters, batch norm in
  training mode, random draws) into a TypeError naming the module and the fix.

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
           "forward_later_layers", "forward_vmap", "unflatten", "check_batchable"]

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


# What a forward that vmap cannot batch does, recognised by torch's message: (what it does, the fix).
_UNBATCHABLE = (
    ("data-dependent control flow", "branches in Python on a tensor's value (if / while on a tensor)",
     "compute both branches and select with torch.where (or a mask)"),
    (".item()", "reads a tensor's value into Python (.item(), float(), int(), .tolist())",
     "keep the computation in tensor operations"),
    ("random operation", "draws random numbers (dropout in training mode, torch.rand, ...)",
     "make the forward deterministic: the cost evaluates a fixed function of the parameters, with no "
     "dropout or sampling"),
    ("running_mean", "updates batch-norm running statistics (batch norm in training mode)",
     "evaluate the layer in eval mode (the cost calls model.eval(); do not switch it back in forward) or use "
     "nn.LayerNorm"),
    ("inplace", "writes in place into a tensor that does not depend on the parameters (a buffer)",
     "use out-of-place operations (x = x + y, not x += y) and leave buffers unchanged in forward"),
    ("broadcast shape", "writes in place into a tensor that does not depend on the parameters (a buffer)",
     "use out-of-place operations (x = x + y, not x += y) and leave buffers unchanged in forward"),
)


def check_batchable(model: nn.Module, layers: tuple[ParamInfo, ...], point: Tensor, x: Tensor) -> None:
    """Evaluate ``model`` through :func:`forward_vmap` at two copies of the flat ``point`` on the
    examples ``x`` (one or two suffice), once, and raise a TypeError naming the module and the fix
    where torch cannot batch its forward over parameter sets, or where the forward changed the
    parameters it was given (an in-place update of a weight would corrupt the points of a walk).

    The innermost module running when torch raised is found with forward pre- and post-hooks (a
    stack of the modules entered and not yet left).

    Example:
        >>> from torch import nn
        >>> class Peek(nn.Module):
        ...     def __init__(self):
        ...         super().__init__(); self.lin = nn.Linear(2, 2)
        ...     def forward(self, x):
        ...         return self.lin(x) * float(self.lin.weight.sum())
        >>> m = nn.Sequential(Peek())
        >>> from volbench.costs.layout import describe_parameters
        >>> flat = torch.nn.utils.parameters_to_vector(m.parameters()).detach()
        >>> try:
        ...     check_batchable(m, describe_parameters(m), flat, torch.zeros(1, 2))
        ... except TypeError as exc:
        ...     print(str(exc)[:90])
        module '0' (Peek) cannot be evaluated at many parameter vectors at once: it reads a tensor
    """
    stack: list[str] = []

    def enter(name: str):
        def hook(_module: nn.Module, _args: Any) -> None:  # returns None: the inputs stay as they are
            stack.append(name)
        return hook

    def leave(_module: nn.Module, _args: Any, _out: Any) -> None:  # returns None: the output stays
        if stack:
            stack.pop()

    handles = []
    for name, m in model.named_modules():
        handles.append(m.register_forward_pre_hook(enter(name)))
        handles.append(m.register_forward_hook(leave))
    params = point.detach().unsqueeze(0).repeat(2, 1)
    before = params.clone()
    try:
        with torch.no_grad():
            forward_vmap(model, prepare_batch(params, None, layers), x)
    except Exception as exc:  # torch raises RuntimeError (and a few others) for what vmap cannot batch
        if "out of memory" in str(exc).lower():
            raise
        where = stack[-1] if stack else ""
        message = str(exc)
        what, fix = next(((w, f) for key, w, f in _UNBATCHABLE if key in message),
                         ("uses an operation torch.func.vmap cannot batch over parameter sets",
                          "rewrite that step with batchable tensor operations (see torch.func's 'UX limitations')"))
        raise TypeError(_unbatchable(model, where, what, fix, message)) from exc
    finally:
        for h in handles:
            h.remove()
    changed = [p for p in layers if not torch.equal(params[:, p.slice], before[:, p.slice])]
    if changed:
        where = _where_changed(model, layers, point, x)
        raise TypeError(_unbatchable(model, where, f"changes the parameter {changed[0].name!r} in place during "
                                     "forward", "leave parameters unchanged in forward (constrain or project them "
                                                "before building the cost)", ""))


def _where_changed(model: nn.Module, layers: tuple[ParamInfo, ...], point: Tensor, x: Tensor) -> str:
    """Run the probe again, comparing the parameter sets at every module's entry and exit: the first
    change seen at an entry was made by the running parent's own code, at an exit by the module
    leaving. Only after a change was found (a comparison per hook costs a pass over the vectors)."""
    params = point.detach().unsqueeze(0).repeat(2, 1)
    before = params.clone()
    stack: list[str] = []
    found: list[str] = []

    def check(culprit: str) -> None:
        if not found and not torch.equal(params, before):
            found.append(culprit)

    def enter(name: str):
        def hook(_module: nn.Module, _args: Any) -> None:
            check(stack[-1] if stack else name)
            stack.append(name)
        return hook

    def leave(name: str):
        def hook(_module: nn.Module, _args: Any, _out: Any) -> None:
            check(name)
            if stack:
                stack.pop()
        return hook

    handles = []
    for name, m in model.named_modules():
        handles += [m.register_forward_pre_hook(enter(name)), m.register_forward_hook(leave(name))]
    try:
        with torch.no_grad():
            forward_vmap(model, prepare_batch(params, None, layers), x)
    finally:
        for h in handles:
            h.remove()
    return found[0] if found else ""


def _unbatchable(model: nn.Module, where: str, what: str, fix: str, torch_said: str) -> str:
    module = dict(model.named_modules()).get(where, model)
    label = f"module {where!r} ({type(module).__name__})" if where else f"the model ({type(model).__name__})"
    said = f" (torch: {torch_said.strip().splitlines()[0][:200]})" if torch_said.strip() else ""
    return (f"{label} cannot be evaluated at many parameter vectors at once: it {what}, which "
            f"torch.func.vmap cannot batch. Fix: {fix}{said}")
