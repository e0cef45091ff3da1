"""The one loss at flat parameters: ``f(theta)``, the mean loss of a model whose parameters are
replaced by the flat vector ``theta`` (``model.parameters()`` order, as
``torch.nn.utils.parameters_to_vector``), on fixed data.

Curvature (``volbench.curvature.hessian``: Hessian-vector products, the Hessian, its diagonal) and
flatness measures (``volbench.curvature.spectrum``, ``volbench.function_space.sharpness``) take
such a function. :class:`FlatLoss` builds it from a model, its data and a loss of the one vocabulary
(``volbench.costs.losses``: "ce", "bce", "mse", "kl"); it evaluates through
``torch.func.functional_call``, so ``torch.func`` transforms compose with it, and it takes an
optional ``index`` of examples (the minibatches of the sharpness ascent). The model itself is never
modified; its buffers are used as they are and its train/eval mode is respected (call
``model.eval()`` first if it has dropout, or the loss is random).

"kl" is Scherlis & Belrose's cost: ``mean_i KL(p_anchor(x_i) || p_theta(x_i))``, zero at the anchor
(the model's own parameters, or ``anchor``); its Hessian there is the curvature their
preconditioners use.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> x, t = torch.randn(8, 3), torch.randint(0, 2, (8,))
    >>> f = FlatLoss(net, x, t, loss="ce")
    >>> bool(torch.isclose(f(f.anchor), torch.nn.functional.cross_entropy(net(x), t)))
    True
    >>> float(FlatLoss(net, x, None, loss="kl")(f.anchor))  # zero at the anchor
    0.0
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from volbench._checks import check_accepts, check_flat
from volbench.costs.losses import DIFFERENTIABLE, anchor_log_probs, check_targets, mean_loss

__all__ = ["FlatLoss"]


class FlatLoss:
    """``f(theta[, index])``: the mean ``loss`` of ``model`` with flat parameters ``theta`` on
    ``(inputs, targets)`` (all examples, or those in ``index``).

    Args:
        model: the network; its parameters give ``anchor`` unless ``anchor`` is given.
        inputs: ``[N, ...]`` on the model's device.
        targets: as ``volbench.costs.losses.check_targets`` takes them for ``loss`` ([N] class
            labels for "ce"; [N] or [N, k] in [0, 1] for "bce"; [N, k] for "mse"; None for "kl").
        loss: "ce", "bce", "mse" or "kl".
        anchor: flat ``[n]`` parameters the "kl" cost compares with (default: the model's own).

    Attributes:
        anchor: ``[n]`` detached copy of the flat parameters (the model's, or ``anchor``).
        n_params, n_examples: sizes.
    """

    def __init__(self, model: nn.Module, inputs: Tensor, targets: Tensor | None, loss: str, *,
                 anchor: Tensor | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if loss not in DIFFERENTIABLE:
            raise ValueError(f"loss must be one of {', '.join(DIFFERENTIABLE)} (a differentiable loss of "
                             f"volbench.costs.losses), got {loss!r}")
        if not isinstance(inputs, Tensor) or inputs.ndim == 0 or inputs.shape[0] == 0:
            raise ValueError("inputs must be a [N, ...] tensor with N >= 1 examples")
        named = list(model.named_parameters())
        if not named:
            raise ValueError("model has no parameters")
        self.model, self.inputs, self.loss = model, inputs, loss
        self._names = [name for name, _ in named]
        self._shapes = [p.shape for _, p in named]
        self._numels = [p.numel() for _, p in named]
        own = torch.cat([p.detach().reshape(-1) for _, p in named])
        self.anchor = (own if anchor is None else check_flat(anchor, "anchor").detach().to(own)).clone()
        self.n_params = int(self.anchor.numel())
        self.n_examples = int(inputs.shape[0])
        out = check_accepts(model, inputs, n_examples=1)  # a model/data mismatch is a ValueError naming both
        k = 1 if out.ndim == 1 else int(out.reshape(1, -1).shape[1])
        self.targets = check_targets(loss, targets, self.n_examples, k, inputs.device, out.dtype)
        self.anchor_logp = None
        if loss == "kl":
            with torch.no_grad():
                self.anchor_logp = anchor_log_probs(self.outputs(self.anchor).reshape(self.n_examples, -1))

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """{parameter name: view of theta} in the model's parameter order."""
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta must be the flat [{self.n_params}] parameter vector of the model, got shape "
                             f"{tuple(theta.shape)}")
        chunks = torch.split(theta, self._numels)
        return {n: c.view(s) for n, c, s in zip(self._names, chunks, self._shapes)}

    def outputs(self, theta: Tensor, index: Tensor | None = None) -> Tensor:
        """Model outputs with parameters ``theta`` on all examples or on ``index``."""
        x = self.inputs if index is None else self.inputs[index]
        return functional_call(self.model, self.unflatten(theta), (x,))

    def __call__(self, theta: Tensor, index: Tensor | None = None) -> Tensor:
        out = self.outputs(theta, index)
        out = out.reshape(out.shape[0], -1)
        t = self.targets if self.targets is None or index is None else self.targets[index]
        logp = self.anchor_logp if self.anchor_logp is None or index is None else self.anchor_logp[index]
        return mean_loss(self.loss, out, t, anchor_logp=logp)
