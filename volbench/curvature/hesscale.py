"""HesScale: a diagonal Hessian approximation from one extra backward pass (Elsayed & Mahmood
2022, arXiv:2210.11639), the estimator Scherlis & Belrose use for their Eq. 18 preconditioner.
Exact for the last layer; see :func:`hesscale_diagonal` for what deeper layers drop."""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.func import grad

from volbench._checks import check_accepts
from volbench.costs.losses import check_targets

__all__ = ["hesscale_diagonal"]


# Elementwise activations HesScale can propagate through (sigma' and sigma'' are taken by autograd,
# which is exact only because each output depends on its own input alone).
_ELEMENTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Softsign, nn.LogSigmoid, nn.Hardtanh, nn.Tanhshrink,
    nn.Hardswish, nn.Hardsigmoid, nn.Identity,
)


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


def hesscale_diagonal(model: nn.Module, inputs: Tensor, targets: Tensor | None, loss: str = "ce") -> Tensor:
    """HesScale approximation of the Hessian diagonal of a loss w.r.t. an MLP's flat parameters
    (Elsayed & Mahmood 2022, "HesScale: scalable computation of Hessian diagonals",
    arXiv:2210.11639; the estimator Scherlis & Belrose use for Eq. 18). Returns [n] in
    ``model.parameters()`` order, on the model's device and dtype.

    Notation per example: layer l computes a_l = W_l x_l + b_l and x_{l+1} = sigma(a_l); the loss
    ell depends on the network output z. One backward pass carries, for the output of each module,
    the gradient g = d ell / d out and a diagonal curvature d ~ d^2 ell / d out^2:

        output:      d = diag of d^2 ell / dz^2 (exact): cross-entropy and KL  s (p - p^2),
                     p = softmax(z); MSE  2 s  (s = 1/B, or 1/(B C) for MSE: the mean)
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
        targets: "ce": [B] class indices; "mse": [B, C]; "kl": None (the targets are the model's
            own softmax predictions: the Hessian of the KL cost at the anchor).
        loss: "ce", "kl" or "mse" (the vocabulary of ``volbench.costs.losses``; the mean over
            examples, and over outputs for "mse").

    Example:
        >>> import torch
        >>> from torch import nn
        >>> torch.manual_seed(0) and None
        >>> model = nn.Linear(3, 2).double()  # one layer: HesScale is exact
        >>> x, y = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 1, 0, 1])
        >>> theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
        >>> from volbench.curvature import FlatLoss, hessian_diagonal
        >>> exact = hessian_diagonal(FlatLoss(model, x, y, "ce"), theta)
        >>> bool(torch.allclose(hesscale_diagonal(nn.Sequential(model), x, y), exact))
        True
    """
    if loss not in ("ce", "kl", "mse"):
        raise ValueError(f"hesscale_diagonal supports loss 'ce', 'kl' or 'mse' (volbench.costs.losses), got {loss!r}")
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
    t = check_targets(loss, targets, B, C, z.device, z.dtype)
    if loss in ("ce", "kl"):
        scale = 1.0 / B
        p = torch.softmax(z, dim=1)
        t = p if loss == "kl" else nn.functional.one_hot(t, C).to(z.dtype)  # the anchor's own predictions
        g = scale * (p - t)
        d = scale * (p - p * p)
    else:
        scale = 1.0 / (B * C)
        g = 2.0 * scale * (z - t)
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
