"""Curvature-based preconditioners for the volume estimator (Scherlis & Belrose, Sec. 3.2).

The estimator searches along v = P u / ||P u|| (u uniform on the unit sphere) and weights each ray
by ||P u||^(-n). Any P with |det P| = 1 keeps the estimator unbiased; the closer P is to a multiple
of H^(-1/2) for a quadratic basin with Hessian H, the smaller its variance (zero for the exact
one, claim S4). This module turns curvature into such a P:

    diagonal curvature h (Eq. 18):   p_i = 1 / (|h_i|^exponent + eps),  P = diag(p) / exp(mean log p)
    matrix curvature H = V diag(h) V^T (Eq. 17):
                                     P = V diag(p) V^T / exp(mean log p)

so that sum log p = log det P = 0. Note the matrix form is V diag(p) V^T; the paper's public code
applied diag(p) V^T x instead (regression-tested in tests/test_preconditioners.py: both have unit
determinant and stay unbiased, but only V diag(p) V^T makes a rotated ellipsoid round).

Curvature sources, cheapest last to first (each returns a tensor on ``theta``'s device and dtype):

- ``hessian(f, theta)``: exact [n, n] Hessian via ``torch.func.hessian``; small nets only.
- ``hessian_diagonal(f, theta)``: exact diag(H) from n Hessian-vector products (forward-over-
  reverse, ``torch.func.jvp`` of ``torch.func.grad``) batched with ``vmap``.
- ``hutchinson_diagonal(f, theta, n_samples=..., seed=...)``: unbiased E[z * H z], Rademacher z.
- ``hesscale_diagonal(model, inputs, targets, loss)``: HesScale (Elsayed & Mahmood 2022), one
  extra backward pass; exact for the last layer.
- ``adam_second_moment(exp_avg_sq)`` / ``adam_first_moment(exp_avg)``: free for any network.

``f`` is a scalar function of the flat parameter vector (``loss_of_flat_params`` builds one from a
model); it must be composable with ``torch.func`` transforms (no ``.item()``, no in-place writes
to its argument, no data-dependent Python control flow).

Example (the paper's diag(H) preconditioner on a tiny model):
    >>> import torch
    >>> from torch import nn
    >>> torch.manual_seed(0) and None
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    >>> x, y = torch.randn(8, 3, dtype=torch.float64), torch.tensor([0, 1] * 4)
    >>> f = loss_of_flat_params(model, x, y, "cross_entropy")
    >>> theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    >>> h = hessian_diagonal(f, theta)
    >>> P = make_preconditioner(h, **PAPER.hessian_diagonal.as_kwargs())
    >>> P.shape, abs(float(P.log().sum())) < 1e-9
    (torch.Size([26]), True)
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vmap

from volbench._checks import check_accepts, check_flat

__all__ = [
    "CurvatureSetting",
    "PaperSettings",
    "PAPER",
    "HESSIAN_MAX_PARAMS",
    "loss_of_flat_params",
    "hessian",
    "hessian_diagonal",
    "hutchinson_diagonal",
    "hesscale_diagonal",
    "adam_second_moment",
    "adam_first_moment",
    "adam_state_vectors",
    "make_preconditioner",
    "matrix_preconditioner_sweep",
    "eigen_preconditioner_sweeps",
    "preconditioners_from_eigh",
    "filter_preconditioner",
]

# Largest n for which ``hessian`` builds the dense [n, n] matrix by default: 5,000 covers the
# paper's 4,810-parameter digits MLP (its Hessian is 93 MB in float32); beyond that, use a
# diagonal source or pass ``max_params`` explicitly.
HESSIAN_MAX_PARAMS = 5_000

# Elementwise activations HesScale can propagate through (sigma' and sigma'' are taken by autograd,
# which is exact only because each output depends on its own input alone).
_ELEMENTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Softsign, nn.LogSigmoid, nn.Hardtanh, nn.Tanhshrink,
    nn.Hardswish, nn.Hardsigmoid, nn.Identity,
)


@dataclass(frozen=True)
class CurvatureSetting:
    """How one curvature source becomes a preconditioner: p = 1 / (|h|^exponent + eps).

    Attributes:
        eps: added to |h|^exponent (units of |h|^exponent); caps p at 1/eps where the curvature
            vanishes, so flat directions do not swamp the determinant normalisation.
        exponent: 0.5 makes P ~ H^(-1/2), the zero-variance choice for a quadratic basin (Eq. 16).
    """

    eps: float
    exponent: float = 0.5

    def as_kwargs(self) -> dict:
        """``{"eps": ..., "exponent": ...}`` for ``make_preconditioner(h, **setting.as_kwargs())``."""
        return asdict(self)


@dataclass(frozen=True)
class PaperSettings:
    """The epsilons Scherlis & Belrose tuned on their digits MLP (Sec. 4.1: "eps = 0.1 works best
    for the Hessian, while eps = 0.01 is best for diag(H) and HesScale and eps = 0.001 is best for
    both Adam preconditioners"). Their curvature there is the Hessian of the KL cost.

    ``adam_second_moment`` has exponent 1.0 because ``adam_second_moment(v)`` returns
    h = sqrt(v): 1 / (sqrt(v)^1 + eps) is exactly what the paper's code computes from the raw
    buffer (it applies exponent 0.5 to v itself). The first moment is fed as |m| with exponent
    0.5 in both.
    """

    hessian: CurvatureSetting = CurvatureSetting(eps=0.1)
    hessian_diagonal: CurvatureSetting = CurvatureSetting(eps=0.01)
    hesscale: CurvatureSetting = CurvatureSetting(eps=0.01)
    adam_first_moment: CurvatureSetting = CurvatureSetting(eps=0.001)
    adam_second_moment: CurvatureSetting = CurvatureSetting(eps=0.001, exponent=1.0)


PAPER = PaperSettings()


# ----------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------



def _check_scalar_function(f, theta: Tensor) -> None:
    if not callable(f):
        raise TypeError(f"f must be a callable Tensor[n] -> Tensor[], got {type(f).__name__}")
    value = f(theta)
    if not isinstance(value, Tensor) or value.ndim != 0:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"f must return a 0-dim tensor (reduce with .mean() or .sum()), got {shape}")
    if not torch.isfinite(value):
        raise ValueError("f(theta) is not finite; curvature at this anchor is undefined")


def _seed_for(seed: int, index: int) -> int:
    """64-bit seed of draw ``index`` under run seed ``seed`` (numpy SeedSequence mixing), so draw k
    is the same whatever the chunking or device."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0]
    return int(state)


# ----------------------------------------------------------------------------------------------
# Scalar loss of the flat parameters
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _LossSpec:
    kind: Literal["cross_entropy", "mse"]
    reduction: Literal["mean", "sum"]


def _loss_spec(loss) -> _LossSpec:
    if isinstance(loss, str):
        if loss not in ("cross_entropy", "mse"):
            raise ValueError("loss must be 'cross_entropy' or 'mse' (or an nn.CrossEntropyLoss/nn.MSELoss), got "
                             f"{loss!r}")
        return _LossSpec(loss, "mean")
    if isinstance(loss, nn.CrossEntropyLoss):
        if loss.weight is not None or loss.label_smoothing != 0.0:
            raise ValueError("nn.CrossEntropyLoss with class weights or label smoothing is not supported; use a plain "
                             "one")
        kind = "cross_entropy"
    elif isinstance(loss, nn.MSELoss):
        kind = "mse"
    else:
        raise TypeError("loss must be 'cross_entropy', 'mse', nn.CrossEntropyLoss or nn.MSELoss, got "
                        f"{type(loss).__name__}")
    if loss.reduction not in ("mean", "sum"):
        raise ValueError(f"loss reduction must be 'mean' or 'sum' (a scalar loss), got {loss.reduction!r}")
    return _LossSpec(kind, loss.reduction)


def _check_targets(spec: _LossSpec, outputs_shape: tuple, targets: Tensor) -> None:
    B, C = outputs_shape
    if not isinstance(targets, Tensor):
        raise TypeError(f"targets must be a torch.Tensor, got {type(targets).__name__}")
    if spec.kind == "cross_entropy":
        if targets.ndim == 1 and not targets.is_floating_point():
            if targets.shape[0] != B:
                raise ValueError(f"class-index targets must be [B={B}], got {tuple(targets.shape)}")
            if targets.min() < 0 or targets.max() >= C:
                raise ValueError(f"class-index targets must lie in [0, {C}); got range [{int(targets.min())}, "
                                 f"{int(targets.max())}]")
            return
        if targets.shape == (B, C) and targets.is_floating_point():
            if (targets < 0).any():
                raise ValueError("probability targets must be non-negative")
            return
        raise ValueError(f"cross-entropy targets must be [B] class indices (integer) or [B, C] probabilities "
                         f"(float) with B={B}, C={C}; got {tuple(targets.shape)} {targets.dtype}")
    if targets.shape != (B, C) or not targets.is_floating_point():
        raise ValueError(f"MSE targets must be a float [B={B}, C={C}] tensor like the outputs; got "
                         f"{tuple(targets.shape)} {targets.dtype}")


def _apply_loss(spec: _LossSpec, outputs: Tensor, targets: Tensor) -> Tensor:
    if spec.kind == "cross_entropy":
        return nn.functional.cross_entropy(outputs, targets, reduction=spec.reduction)
    # Written out rather than F.mse_loss: in torch 2.13, forward-over-reverse (jvp of grad) through
    # mse_loss's backward fails with "ZeroTensors are immutable" when the targets carry no tangent.
    sq = (outputs - targets) ** 2
    return sq.mean() if spec.reduction == "mean" else sq.sum()


def loss_of_flat_params(model: nn.Module, inputs: Tensor, targets: Tensor,
                        loss="cross_entropy") -> Callable[[Tensor], Tensor]:
    """Return f(theta) = loss(model_theta(inputs), targets), a scalar function of the flat
    parameter vector theta (``model.parameters()`` order, as ``parameters_to_vector``).

    The result is composable with ``torch.func`` (it uses ``functional_call``), so it can be fed
    to ``hessian``, ``hessian_diagonal`` and ``hutchinson_diagonal``. ``model`` is not modified.

    Args:
        model: any module; its buffers are used as they are.
        inputs: the batch fed to the model.
        targets: class indices [B] or probabilities [B, C] for cross-entropy (probabilities of the
            anchor's predictions give the Hessian of the KL cost at the anchor), [B, C] for MSE.
        loss: "cross_entropy" | "mse" (reduction mean, PyTorch's convention: MSE averages over
            all B*C entries) or an nn.CrossEntropyLoss / nn.MSELoss with reduction mean or sum.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = nn.Linear(2, 3).double()
        >>> x, y = torch.ones(4, 2, dtype=torch.float64), torch.zeros(4, dtype=torch.long)
        >>> f = loss_of_flat_params(m, x, y)
        >>> theta = torch.nn.utils.parameters_to_vector(m.parameters()).detach()
        >>> bool(torch.isclose(f(theta), nn.functional.cross_entropy(m(x), y)))
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    spec = _loss_spec(loss)
    names, shapes = [], []
    for name, p in model.named_parameters():
        names.append(name)
        shapes.append(p.shape)
    sizes = [math.prod(s) for s in shapes]
    n = sum(sizes)
    check_accepts(model, inputs)  # a model/data mismatch is a ValueError naming both, now

    def f(theta: Tensor) -> Tensor:
        if theta.shape != (n,):
            raise ValueError(f"theta must be the flat [{n}] parameter vector of the model, got {tuple(theta.shape)}")
        chunks = torch.split(theta, sizes)
        params = {name: c.view(shape) for name, c, shape in zip(names, chunks, shapes)}
        return _apply_loss(spec, functional_call(model, params, (inputs,)), targets)

    return f


# ----------------------------------------------------------------------------------------------
# Exact curvature
# ----------------------------------------------------------------------------------------------

def hessian(f: Callable[[Tensor], Tensor], theta: Tensor, *, max_params: int = HESSIAN_MAX_PARAMS) -> Tensor:
    """Exact Hessian H_ij = d^2 f / d theta_i d theta_j at ``theta`` (``torch.func.hessian``,
    forward-over-reverse), an [n, n] tensor on theta's device and dtype.

    Memory and time grow as n^2 (one forward-mode pass per parameter, vmapped), so this refuses
    n > ``max_params`` (default ``HESSIAN_MAX_PARAMS`` = 5,000). It feeds the paper's full-Hessian
    preconditioner P ~ V (|D|^(1/2) + eps)^(-1) V^T (Eq. 17), used there on the 4,810-parameter
    digits MLP only.

    Example:
        >>> import torch
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> H = hessian(lambda x: 0.5 * x @ A @ x, torch.zeros(2, dtype=torch.float64))
        >>> bool(torch.allclose(H, A))
        True
    """
    theta = check_flat(theta, "theta")
    n = theta.numel()
    if not isinstance(max_params, int) or max_params < 1:
        raise ValueError(f"max_params must be a positive integer, got {max_params!r}")
    if n > max_params:
        raise ValueError(
            f"hessian: n = {n} parameters exceeds max_params = {max_params} (an [n, n] Hessian needs "
            f"{n * n * theta.element_size() / 2**20:.0f} MiB and n forward passes); use hessian_diagonal, "
            f"hutchinson_diagonal or hesscale_diagonal, or raise max_params if you have the memory"
        )
    theta = theta.detach()
    _check_scalar_function(f, theta)
    return torch.func.hessian(f)(theta).detach()


def _hvp_fn(f: Callable[[Tensor], Tensor], theta: Tensor) -> Callable[[Tensor], Tensor]:
    """v -> H v by forward-over-reverse: the directional derivative of grad f along v."""
    g = grad(f)

    def hvp(v: Tensor) -> Tensor:
        return jvp(g, (theta,), (v,))[1]

    return hvp


def _check_chunk(chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")


def hessian_diagonal(f: Callable[[Tensor], Tensor], theta: Tensor, *, chunk_size: int = 64) -> Tensor:
    """Exact Hessian diagonal diag(H)_i = e_i^T H e_i from n Hessian-vector products, [n].

    Each product H e_i is a forward-mode derivative (``torch.func.jvp``) of the reverse-mode
    gradient (``torch.func.grad``); ``chunk_size`` basis vectors are pushed through together with
    ``vmap``, so memory is ~chunk_size x (one gradient computation) and the cost is n gradient-
    like passes: exact, but as expensive as the full Hessian (the paper's Sec. 3.2 remark). Use it
    as the reference for HesScale and Hutchinson, or on small networks.

    Example:
        >>> import torch
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> hessian_diagonal(lambda x: 0.5 * x @ A @ x, torch.zeros(2, dtype=torch.float64)).tolist()
        [2.0, 3.0]
    """
    theta = check_flat(theta, "theta").detach()
    _check_chunk(chunk_size)
    _check_scalar_function(f, theta)
    n = theta.numel()
    batched = vmap(_hvp_fn(f, theta))
    out = torch.empty_like(theta)
    for start in range(0, n, chunk_size):
        stop = min(n, start + chunk_size)
        rows = torch.arange(stop - start, device=theta.device)
        basis = torch.zeros(stop - start, n, dtype=theta.dtype, device=theta.device)
        basis[rows, start + rows] = 1.0
        out[start:stop] = batched(basis)[rows, start + rows]
    return out


def hutchinson_diagonal(f: Callable[[Tensor], Tensor], theta: Tensor, *, n_samples: int, seed: int,
                        chunk_size: int = 64) -> Tensor:
    """Hutchinson's estimate of diag(H): (1/S) sum_s z_s * (H z_s), z_s with i.i.d. +-1 entries, [n].

    Unbiased because E[z_i z_j] = delta_ij; the variance of entry i is sum_{j != i} H_ij^2 / S, so
    the error shrinks as S^(-1/2) and is small where the Hessian is diagonally dominant. Any size:
    memory ~chunk_size gradient computations, cost S Hessian-vector products.

    Sample s draws its signs from a CPU generator seeded by (seed, s), so the estimate depends only
    on (seed, n_samples), not on chunk_size or device. Accumulation is in float64.

    Example:
        >>> import torch
        >>> A = torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64))
        >>> d = hutchinson_diagonal(lambda x: 0.5 * x @ A @ x, torch.zeros(2, dtype=torch.float64),
        ...                         n_samples=3, seed=0)
        >>> d.tolist()  # exact for a diagonal Hessian: z_i^2 = 1
        [1.0, 4.0]
    """
    theta = check_flat(theta, "theta").detach()
    _check_chunk(chunk_size)
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    _check_scalar_function(f, theta)
    n = theta.numel()
    batched = vmap(_hvp_fn(f, theta))
    gen = torch.Generator(device="cpu")
    total = torch.zeros(n, dtype=torch.float64, device=theta.device)
    for start in range(0, n_samples, chunk_size):
        stop = min(n_samples, start + chunk_size)
        z = torch.empty(stop - start, n, dtype=torch.float32)
        for row, s in enumerate(range(start, stop)):
            gen.manual_seed(_seed_for(seed, s))
            z[row] = torch.randint(0, 2, (n,), generator=gen, dtype=torch.float32)
        z = (2.0 * z - 1.0).to(device=theta.device, dtype=theta.dtype)
        total += (z * batched(z)).to(torch.float64).sum(dim=0)
    return (total / n_samples).to(theta.dtype)


# ----------------------------------------------------------------------------------------------
# HesScale
# ----------------------------------------------------------------------------------------------

def _activation_derivatives(act: nn.Module, a: Tensor) -> tuple[Tensor, Tensor]:
    """sigma'(a) and sigma''(a) of an elementwise activation, by reverse-over-reverse autograd
    (d/da sum sigma(a) is sigma'(a) entrywise because each output depends on its own input only).
    """
    if getattr(act, "inplace", False):
        act = copy.copy(act)
        act.inplace = False  # an in-place op would overwrite the leaf autograd differentiates at
    d1 = grad(lambda t: act(t).sum())
    d2 = grad(lambda t: d1(t).sum())
    with torch.enable_grad():
        return d1(a), d2(a)


def _hesscale_layers(model: nn.Module) -> list[nn.Module]:
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"hesscale_diagonal supports nn.Sequential MLPs, got {type(model).__name__}; "
                        f"use hessian_diagonal or hutchinson_diagonal for other models")
    layers = list(model)
    seen_linear = False
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            seen_linear = True
        elif isinstance(layer, nn.Flatten):
            if seen_linear:
                raise ValueError(f"layer {i}: nn.Flatten is only supported before the first nn.Linear")
        elif isinstance(layer, _ELEMENTWISE):
            if any(True for _ in layer.parameters()):
                raise ValueError(f"layer {i}: activation {type(layer).__name__} has parameters; not supported")
        else:
            raise ValueError(
                f"layer {i}: {type(layer).__name__} is not supported by hesscale_diagonal (nn.Linear, nn.Flatten "
                f"and elementwise activations only: {', '.join(c.__name__ for c in _ELEMENTWISE)})"
            )
    if not seen_linear:
        raise ValueError("hesscale_diagonal: the model has no nn.Linear layer, hence no parameters to score")
    return layers


def hesscale_diagonal(model: nn.Module, inputs: Tensor, targets: Tensor, loss="cross_entropy") -> Tensor:
    """HesScale approximation of the Hessian diagonal of a loss w.r.t. an MLP's flat parameters
    (Elsayed & Mahmood 2022, "HesScale: scalable computation of Hessian diagonals",
    arXiv:2210.11639; the estimator Scherlis & Belrose use for Eq. 18). Returns [n] in
    ``model.parameters()`` order, on the model's device and dtype.

    Notation per example: layer l computes a_l = W_l x_l + b_l and x_{l+1} = sigma(a_l); the loss
    ell depends on the network output z. One backward pass carries, for the output of each module,
    the gradient g = d ell / d out and a diagonal curvature d ~ d^2 ell / d out^2:

        output:      d = diag of d^2 ell / dz^2 (exact): cross-entropy  s * sum(t) * (p - p^2),
                     p = softmax(z); MSE  2 s  (s = 1/B or 1/(B C) for reduction mean, 1 for sum)
        Linear:      diag_W[i, j] = sum_b d[b, i] x[b, j]^2,  diag_b[i] = sum_b d[b, i]       (exact
                     given d, since W_ij enters ell only through a_i)
                     g_in = g W,  d_in = d (W o W)          (drops the off-diagonal terms of d^2 ell)
        activation:  g_in = sigma'(a) g,  d_in = sigma'(a)^2 d + sigma''(a) g              (exact)

    The last Linear layer's parameters are therefore exact, and so is everything in a network
    with one hidden layer and MSE loss (its output curvature is diagonal). Deeper layers lose
    the off-diagonal curvature terms; at the anchor of a KL cost g = 0, so dropping those terms
    is the only approximation there. Measured relative L2 error of the hidden-layer block against
    the exact diagonal (float64, cross-entropy, 10 classes): 5-22% for random Linear-Tanh-Linear
    nets, 4-40% with two GELU hidden layers (tests/test_preconditioners.py), and 18% (5.8% over
    all parameters, last layer exact) for the KL cost at a trained 64-64-10 GELU digits MLP.

    Args:
        model: ``nn.Sequential`` of ``nn.Linear`` layers and elementwise activations (an optional
            leading ``nn.Flatten``). Its parameters are read, not modified.
        inputs: [B, ...] batch (flattened by a leading ``nn.Flatten``, else [B, d_in]).
        targets: cross-entropy: [B] class indices or [B, C] probabilities (use the anchor's
            softmax outputs for the KL cost); MSE: [B, C].
        loss: "cross_entropy" | "mse" (reduction mean) or nn.CrossEntropyLoss / nn.MSELoss with
            reduction "mean" or "sum".

    Example:
        >>> import torch
        >>> from torch import nn
        >>> torch.manual_seed(0) and None
        >>> model = nn.Linear(3, 2).double()  # one layer: HesScale is exact
        >>> x, y = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 1, 0, 1])
        >>> theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
        >>> exact = hessian_diagonal(loss_of_flat_params(model, x, y), theta)
        >>> bool(torch.allclose(hesscale_diagonal(nn.Sequential(model), x, y), exact))
        True
    """
    spec = _loss_spec(loss)
    layers = _hesscale_layers(model)
    if not isinstance(inputs, Tensor) or inputs.ndim < 2:
        raise ValueError("inputs must be a [B, ...] tensor with a batch dimension")
    check_accepts(model, inputs)  # a model/data mismatch is a ValueError naming both

    # Forward pass, keeping each module's input (cloned: an in-place activation would overwrite it).
    layer_inputs = []
    with torch.no_grad():
        x = inputs
        for layer in layers:
            layer_inputs.append(x.detach().clone())
            x = layer(x)
        z = x.detach()
    if z.ndim != 2:
        raise ValueError(f"the model's output must be [B, C], got {tuple(z.shape)}")
    B, C = z.shape
    _check_targets(spec, (B, C), targets)

    if spec.kind == "cross_entropy":
        scale = 1.0 / B if spec.reduction == "mean" else 1.0
        p = torch.softmax(z, dim=1)
        t = nn.functional.one_hot(targets, C).to(z.dtype) if not targets.is_floating_point() else targets.to(z.dtype)
        mass = t.sum(dim=1, keepdim=True)  # 1 for class labels and normalised probabilities
        g = scale * (mass * p - t)
        d = scale * mass * (p - p * p)
    else:
        scale = 1.0 / (B * C) if spec.reduction == "mean" else 1.0
        g = 2.0 * scale * (z - targets.to(z.dtype))
        d = torch.full_like(z, 2.0 * scale)

    diag: dict[int, Tensor] = {}
    first_linear = next(i for i, layer in enumerate(layers) if isinstance(layer, nn.Linear))
    with torch.no_grad():
        for i in range(len(layers) - 1, first_linear - 1, -1):
            layer, x_in = layers[i], layer_inputs[i]
            if isinstance(layer, nn.Linear):
                W = layer.weight
                diag[id(W)] = d.T @ (x_in * x_in)
                if layer.bias is not None:
                    diag[id(layer.bias)] = d.sum(dim=0)
                if i > first_linear:
                    g, d = g @ W, d @ (W * W)
            else:  # elementwise activation
                s1, s2 = _activation_derivatives(layer, x_in)
                g, d = s1 * g, s1 * s1 * d + s2 * g

    out = []
    for name, p in model.named_parameters():
        if id(p) not in diag:  # cannot happen for supported layers; guard the flat order anyway
            raise RuntimeError(f"hesscale_diagonal: no curvature computed for parameter {name!r}")
        out.append(diag[id(p)].reshape(-1))
    return torch.cat(out).detach()


# ----------------------------------------------------------------------------------------------
# Adam moments
# ----------------------------------------------------------------------------------------------

def adam_second_moment(exp_avg_sq: Tensor) -> Tensor:
    """Curvature from Adam's second-moment buffer: h = sqrt(exp_avg_sq), [n].

    Why the square root: Adam steps by m / (sqrt(v) + eps_adam), the diagonal analogue of a Newton
    step H^(-1) g, so sqrt(v) is the curvature Adam itself acts on. The paper (Sec. 3.2: "use
    Adam's second moment buffers to estimate diag(H)") reads v itself as the curvature instead
    (v ~ E[g^2], the diagonal empirical Fisher ~ H at a minimum): its code computes
    p = 1 / (v^0.5 + eps). With h = sqrt(v) that is ``make_preconditioner(h, exponent=1.0, eps)``,
    which ``PAPER.adam_second_moment`` encodes; the default exponent 0.5 gives the milder
    p = 1 / (v^0.25 + eps). Both are unit-determinant, so both are unbiased; which has the smaller
    variance is an empirical question (claim S5).

    The raw (not bias-corrected) buffer is used, as in the paper; bias correction only rescales v
    by 1 / (1 - beta2^t), which the determinant normalisation removes except through eps
    (after 5,000 steps with beta2 = 0.999 the factor is 1.007).

    Example:
        >>> import torch
        >>> adam_second_moment(torch.tensor([4.0, 0.25])).tolist()
        [2.0, 0.5]
    """
    return torch.sqrt(check_flat(exp_avg_sq, "exp_avg_sq", nonnegative=True).detach())


def adam_first_moment(exp_avg: Tensor) -> Tensor:
    """Curvature proxy from Adam's first-moment buffer: h = |exp_avg|, [n] (the paper's "Adam
    first moment (mu)" preconditioner, Sec. 4.1; its code feeds the buffer to
    p = 1 / (|m|^0.5 + eps), i.e. ``make_preconditioner(h, **PAPER.adam_first_moment.as_kwargs())``).

    Example:
        >>> import torch
        >>> adam_first_moment(torch.tensor([-3.0, 2.0])).tolist()
        [3.0, 2.0]
    """
    return check_flat(exp_avg, "exp_avg").detach().abs()


def adam_state_vectors(optimizer: torch.optim.Optimizer, parameters: Iterable[Tensor]) -> tuple[Tensor, Tensor]:
    """Flatten a live Adam/AdamW optimiser's buffers into (exp_avg [n], exp_avg_sq [n]) in the
    order of ``parameters`` (pass ``model.parameters()`` so it matches the flat parameter vector).

    Example:
        >>> import torch
        >>> m = torch.nn.Linear(2, 1)
        >>> opt = torch.optim.AdamW(m.parameters())
        >>> m(torch.ones(1, 2)).sum().backward(); opt.step()
        >>> [t.shape for t in adam_state_vectors(opt, m.parameters())]
        [torch.Size([3]), torch.Size([3])]
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    m, v = [], []
    for k, p in enumerate(parameters):
        state = optimizer.state.get(p, {})
        if "exp_avg" not in state or "exp_avg_sq" not in state:
            raise ValueError(f"parameter {k} (shape {tuple(p.shape)}) has no Adam state: the optimiser is not "
                             f"Adam/AdamW, has not stepped yet, or was built over other parameters")
        m.append(state["exp_avg"].detach().reshape(-1))
        v.append(state["exp_avg_sq"].detach().reshape(-1))
    if not m:
        raise ValueError("parameters is empty")
    return torch.cat(m), torch.cat(v)


# ----------------------------------------------------------------------------------------------
# Preconditioners
# ----------------------------------------------------------------------------------------------

def _log_p(h: Tensor, exponent: float, eps: float) -> Tensor:
    """Centred log p, p = 1/(|h|^exponent + eps), in float64; raises if some p is infinite."""
    denom = h.abs() ** exponent + eps
    if (denom <= 0).any():
        raise ValueError("curvature has zero entries and eps = 0, so p = 1/0; pass eps > 0 (see PAPER)")
    log_p = -torch.log(denom)
    return log_p - log_p.mean()


def make_preconditioner(curvature: Tensor, *, eps: float, exponent: float = 0.5,
                        kind: Literal["auto", "diagonal", "matrix"] = "auto") -> Tensor:
    """Unit-determinant preconditioner from curvature (Scherlis & Belrose Eqs. 17-18).

    Diagonal ([n] curvature h):    p_i = 1/(|h_i|^exponent + eps);  returns p / exp(mean log p), [n].
    Matrix ([n, n] symmetric H = V diag(h) V^T): same p on the eigenvalues; returns
    V diag(p / exp(mean log p)) V^T, [n, n], symmetric positive definite.

    Either way log det P = sum log p = 0. Taking |h| keeps P positive definite where the
    curvature is negative or zero; eps caps p at 1/eps in flat directions. With exponent 0.5 and
    eps = 0 the matrix form is exactly det-normalised H^(-1/2), the zero-variance preconditioner of a
    quadratic basin (claim S4). Computed in float64, returned in the curvature's dtype and device.

    Args:
        curvature: [n] diagonal curvature or [n, n] symmetric matrix (e.g. ``hessian``).
        eps: >= 0, in units of |h|^exponent; the paper's values are in ``PAPER``.
        exponent: >= 0; 0.5 aims at H^(-1/2) (Eq. 16); 0 gives the identity.
        kind: "auto" (by shape), "diagonal" (an [n, n] input contributes its diagonal: the diag(H)
            preconditioner of Eq. 18 from a full Hessian) or "matrix" (requires [n, n]).

    Example:
        >>> import torch
        >>> p = make_preconditioner(torch.tensor([1.0, 4.0, 16.0]), eps=0.0)
        >>> [round(x, 6) for x in p.tolist()]  # |h|^-1/2 = 1, 1/2, 1/4, divided by their geometric mean 1/2
        [2.0, 1.0, 0.5]
    """
    if not isinstance(curvature, Tensor):
        raise TypeError(f"curvature must be a torch.Tensor ([n] or [n, n]), got {type(curvature).__name__}")
    if not curvature.is_floating_point():
        raise TypeError(f"curvature must be floating point, got {curvature.dtype}")
    if not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r} (the paper's values are in PAPER)")
    if not isinstance(exponent, (int, float)) or not math.isfinite(exponent) or exponent < 0:
        raise ValueError(f"exponent must be a finite number >= 0, got {exponent!r}")
    if kind not in ("auto", "diagonal", "matrix"):
        raise ValueError(f"kind must be 'auto', 'diagonal' or 'matrix', got {kind!r}")
    if curvature.numel() == 0 or not torch.isfinite(curvature).all():
        raise ValueError("curvature must be non-empty and finite (check the curvature source)")
    square = curvature.ndim == 2 and curvature.shape[0] == curvature.shape[1]
    if curvature.ndim != 1 and not square:
        raise ValueError(f"curvature must be [n] or [n, n], got shape {tuple(curvature.shape)}")
    if kind == "matrix" and not square:
        raise ValueError("kind='matrix' needs an [n, n] curvature matrix; a vector gives a diagonal preconditioner")

    h = curvature.detach().to(torch.float64)
    if curvature.ndim == 1 or kind == "diagonal":
        if h.ndim == 2:
            h = torch.diagonal(h)
        P = torch.exp(_log_p(h, float(exponent), float(eps)))
    else:
        scale = float(h.abs().max())
        if not torch.allclose(h, h.T, rtol=1e-6, atol=1e-9 * scale):
            raise ValueError("matrix curvature must be symmetric (a Hessian); symmetrise it with (H + H.T) / 2")
        evals, V = torch.linalg.eigh(0.5 * (h + h.T))
        P = _matrix_from_eigh(evals, V, float(exponent), float(eps))
    return P.to(dtype=curvature.dtype, device=curvature.device)


def _matrix_from_eigh(evals: Tensor, V: Tensor, exponent: float, eps: float) -> Tensor:
    p = torch.exp(_log_p(evals, exponent, eps))
    P = (V * p) @ V.T  # V diag(p) V^T, not diag(p) V^T
    return 0.5 * (P + P.T)


def matrix_preconditioner_sweep(hessian_matrix: Tensor, eps_values: Sequence[float], *,
                                exponent: float = 0.5) -> dict[float, Tensor]:
    """``{eps: make_preconditioner(H, eps=eps, exponent=exponent, kind="matrix")}`` from one
    eigendecomposition: an eps sweep over a dense Hessian (claim S5) then costs one eigh (about
    20 s in float64 for the 4,810-parameter digits MLP on 2 CPU cores) instead of one per eps.

    Example:
        >>> import torch
        >>> H = torch.diag(torch.tensor([1.0, 4.0]))
        >>> Ps = matrix_preconditioner_sweep(H, [0.0, 1.0])
        >>> torch.allclose(Ps[0.0], make_preconditioner(H, eps=0.0, kind="matrix"))
        True
    """
    faithful, _ = eigen_preconditioner_sweeps(hessian_matrix, eps_values, exponent=exponent)
    return faithful


def eigen_preconditioner_sweeps(hessian_matrix: Tensor, eps_values: Sequence[float], *, exponent: float = 0.5
                                ) -> tuple[dict[float, Tensor], dict[float, Tensor]]:
    """From one eigendecomposition H = V diag(h) V^T, for every eps: the faithful full-matrix
    preconditioner V diag(p) V^T (Eq. 17, as ``matrix_preconditioner_sweep``) and what the second
    paper's public code does with it.

    That code applies the matrix to a Gaussian u as diag(p) V^T u. Since V is orthogonal, V^T u is
    again a standard Gaussian vector, so its rays have the law of diag(p) u': a *diagonal*
    preconditioner whose entries are the eigenvalue-based scales p (in eigh's ascending order of
    eigenvalues) assigned to the parameter coordinates in their flat order, i.e. to arbitrary
    coordinates. The importance weight ||diag(p) V^T u||^(-n) = ||diag(p) u'||^(-n) matches too,
    so running the estimator with this [n] vector reproduces the paper code's estimator exactly in
    distribution (with directions u' = V^T u). Claim S5 reports it beside the faithful one.

    Returns:
        (faithful {eps: [n, n]}, paper_code {eps: [n] unit-determinant diagonal}).

    Example:
        >>> import torch
        >>> H = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)  # eigenvalues 1, 3
        >>> faithful, code = eigen_preconditioner_sweeps(H, [0.0])
        >>> [round(x, 6) for x in code[0.0].tolist()]  # 3^(1/4), 3^(-1/4): p of the eigenvalues, on coordinates 0, 1
        [1.316074, 0.759836]
        >>> bool(torch.allclose(faithful[0.0] @ faithful[0.0] @ H, torch.eye(2, dtype=torch.float64) * 3 ** 0.5))
        True
    """
    if not isinstance(hessian_matrix, Tensor) or hessian_matrix.ndim != 2 or \
            hessian_matrix.shape[0] != hessian_matrix.shape[1]:
        raise ValueError("hessian_matrix must be a square [n, n] tensor (use make_preconditioner for [n] curvature)")
    eps_values = list(eps_values)
    if not eps_values:
        raise ValueError("eps_values is empty: pass the epsilons to sweep, e.g. [1e-3, 1e-2, 1e-1]")
    for eps in eps_values:
        if not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
            raise ValueError(f"every eps must be a finite number >= 0, got {eps!r}")
    if not isinstance(exponent, (int, float)) or not math.isfinite(exponent) or exponent < 0:
        raise ValueError(f"exponent must be a finite number >= 0, got {exponent!r}")
    h = hessian_matrix.detach().to(torch.float64)
    scale = float(h.abs().max())
    if not torch.isfinite(h).all() or not torch.allclose(h, h.T, rtol=1e-6, atol=1e-9 * scale):
        raise ValueError("hessian_matrix must be finite and symmetric; symmetrise it with (H + H.T) / 2")
    evals, V = torch.linalg.eigh(0.5 * (h + h.T))
    like = dict(dtype=hessian_matrix.dtype, device=hessian_matrix.device)
    faithful, paper_code = {}, {}
    for eps in eps_values:
        f, c = preconditioners_from_eigh(evals, V, eps, exponent=exponent)
        faithful[eps], paper_code[eps] = f.to(**like), c.to(**like)
    return faithful, paper_code


def preconditioners_from_eigh(evals: Tensor, V: Tensor, eps: float, *, exponent: float = 0.5
                              ) -> tuple[Tensor, Tensor]:
    """(V diag(p) V^T, p) for one eps from a kept eigendecomposition (``torch.linalg.eigh`` of the
    Hessian, float64): the faithful full-matrix preconditioner and the diagonal law of the paper
    code's diag(p) V^T map (see :func:`eigen_preconditioner_sweeps`), so a sweep over eps needs one
    eigh however its values arrive."""
    if not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return (_matrix_from_eigh(evals, V, float(exponent), float(eps)),
            torch.exp(_log_p(evals, float(exponent), float(eps))))


def filter_preconditioner(scale: Tensor) -> Tensor:
    """Filter normalisation as a diagonal preconditioner: scale / exp(mean log scale), [n].

    ``scale`` is the per-parameter multiplier of filter-normalised directions (Fan et al.: each
    weight entry gets its output row's / filter's norm; see ``cost.filter_scale`` in
    docs/CONTRACTS.md). Dividing by the geometric mean makes the determinant 1, so the estimator
    with importance weight ||P u||^(-n) stays unbiased for the Lebesgue volume.

    Example:
        >>> import torch
        >>> filter_preconditioner(torch.tensor([1.0, 4.0])).tolist()
        [0.5, 2.0]
    """
    s = check_flat(scale, "scale")
    if (s <= 0).any():
        raise ValueError("scale must be strictly positive (a weight row of norm zero cannot scale a direction)")
    log_s = torch.log(s.detach().to(torch.float64))
    return torch.exp(log_s - log_s.mean()).to(dtype=s.dtype, device=s.device)
