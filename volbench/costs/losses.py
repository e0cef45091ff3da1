"""Per-example losses of :class:`~volbench.costs.ModelCost` and the validation of their targets.

Every per-example loss is >= 0, which early exit relies on (a partial sum is a lower bound of the
full sum). See the package docstring for what each loss is and where it comes from.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LOSSES", "ExampleLoss", "as_multiclass", "check_targets"]

LOSSES: tuple[str, ...] = ("ce", "bce", "mse", "kl", "zero_one")


def as_multiclass(out: Tensor) -> Tensor:
    """One logit z is the two-class softmax over (0, z), i.e. Bernoulli(sigmoid(z))."""
    if out.shape[-1] != 1:
        return out
    return torch.cat([torch.zeros_like(out), out], dim=-1)


def check_targets(loss: str, targets: Any, n: int, k: int, device: torch.device, dtype: torch.dtype) -> Tensor | None:
    """The targets of ``loss`` validated and laid out for :class:`ExampleLoss` (None for "kl"),
    or a TypeError / ValueError that names the fix."""
    if loss == "kl":
        return None  # the anchor's predictions are the reference
    if not isinstance(targets, Tensor):
        raise TypeError(f"targets must be a torch.Tensor for loss {loss!r}, got {type(targets).__name__}")
    if targets.shape[:1] != (n,):
        raise ValueError(f"targets must have {n} rows (one per input), got shape {tuple(targets.shape)}")
    t = targets.detach().to(device)
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
    t = t.to(dtype)
    if loss == "bce" and not bool(((t >= 0) & (t <= 1)).all()):
        raise ValueError("loss 'bce' needs targets in [0, 1] (probabilities of class 1)")
    return t


class ExampleLoss:
    """Per-example non-negative losses ``[b, c]`` of outputs ``[b, c, k]`` on examples ``lo:hi``
    (summed over output elements for "bce" and "mse"), and the normaliser of their mean.

    Attributes:
        loss: one of :data:`LOSSES`; targets: laid out by :func:`check_targets`.
        n_outputs: k, the model's output width.
        anchor_logp, anchor_negent: for "kl", the anchor's log-softmax predictions ``[N, C]`` and
            ``sum_k p log p`` per example (set by the cost once it can evaluate the anchor).
    """

    def __init__(self, loss: str, targets: Tensor | None, n_outputs: int) -> None:
        self.loss = loss
        self.targets = targets
        self.n_outputs = n_outputs
        self.anchor_logp: Tensor | None = None
        self.anchor_negent: Tensor | None = None

    def normaliser(self, n_examples: int) -> float:
        """M of the mean: N for "ce", "kl", "zero_one"; N * k (every element) for "bce", "mse"."""
        return float(n_examples * (self.n_outputs if self.loss in ("bce", "mse") else 1))

    def set_anchor_predictions(self, logp: Tensor) -> None:
        self.anchor_logp = logp
        p = logp.exp()
        # sum_k p log p per example (0 log 0 = 0), so KL = negent - sum_k p_anchor log p_theta.
        self.anchor_negent = torch.special.xlogy(p, p).sum(-1)

    def __call__(self, out: Tensor, lo: int, hi: int) -> Tensor:
        loss = self.loss
        if loss == "ce":
            t = self.targets[lo:hi]
            picked = out.gather(-1, t.view(1, -1, 1).expand(out.shape[0], -1, 1)).squeeze(-1)
            return torch.logsumexp(out, dim=-1) - picked
        if loss == "bce":
            t = self.targets[lo:hi].expand_as(out)
            return F.binary_cross_entropy_with_logits(out, t, reduction="none").sum(-1)
        if loss == "mse":
            return (out - self.targets[lo:hi]).square().sum(-1)
        if loss == "kl":
            logp = torch.log_softmax(as_multiclass(out), dim=-1)
            p_anchor = self.anchor_logp[lo:hi].exp()
            # where(): 0 * log p_theta is 0 even where log p_theta underflowed to -inf.
            cross = torch.where(p_anchor > 0, p_anchor * logp, torch.zeros((), dtype=out.dtype, device=out.device))
            # KL >= 0 exactly; clamp rounding noise so early exit's lower bound stays valid.
            return (self.anchor_negent[lo:hi] - cross.sum(-1)).clamp_min(0)
        # zero_one
        if self.n_outputs == 1:
            return ((out[..., 0] > 0) != self.targets[lo:hi]).to(out.dtype)
        return (out.argmax(dim=-1) != self.targets[lo:hi]).to(out.dtype)
