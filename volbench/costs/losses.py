"""The one loss vocabulary of volbench: the names, their targets, and their values.

Every layer that evaluates a loss takes one of :data:`LOSSES` and validates its targets with
:func:`check_targets`: the batched costs (:class:`~volbench.costs.ModelCost`, per-example losses
through :class:`ExampleLoss`, so early exit can use partial sums and one pass can give every
nested prefix), training (:func:`mean_loss`, ``volbench.lab.train``) and curvature at flat
parameters (:func:`mean_loss`, ``volbench.curvature.flat_loss``). ``mean_loss(out)`` is the mean of
``ExampleLoss``'s per-example values up to rounding (tested): the mean is computed by torch's fused
losses, which training has always used.

* ``"ce"``: cross-entropy, integer class labels ``[N]`` for outputs ``[N, k]``; per-token
  cross-entropy, integer targets ``[N, T]`` for sequence outputs ``[N, T, V]`` (a language model's
  next-token logits at T positions over a vocabulary of V);
* ``"bce"``: binary cross-entropy with logits, float targets in [0, 1] shaped like the outputs;
* ``"mse"``: squared error, mean over all ``N * k`` elements (``torch.nn.MSELoss()``);
* ``"kl"``: ``KL(p_anchor || p_theta)`` of the softmax predictions against the anchor's (Scherlis &
  Belrose); no targets, the anchor's log-probabilities instead;
* ``"zero_one"``: the error rate (costs only: a step function has no gradient).

Every per-example loss is >= 0, which early exit relies on (a partial sum is a lower bound of the
full sum). See the package docstring for where each loss comes from.

Sequences. A model whose outputs are ``[N, T, V]`` (one example = one window of T positions) takes
"ce", "zero_one" and "kl" per position; the loss of one example is the **mean over its T
positions**, and the cost the mean over its N examples, so the cost is the mean over all ``N * T``
tokens: ``F.cross_entropy(out.reshape(-1, V), targets.reshape(-1))``, what nanoGPT trains on. Every
example has the same T, so the per-example values keep what early exit (a partial sum over
examples) and nested data prefixes (examples = windows) need. "bce" and "mse" take ``[N, k]``
outputs only.

Example:
    >>> import torch
    >>> out, t = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    >>> loss = ExampleLoss("ce", check_targets("ce", t, 2, 2, out.device, out.dtype), 2)
    >>> bool(torch.isclose(loss(out[None], 0, 2).mean(), mean_loss("ce", out, t)))
    True
    >>> z, tok = torch.randn(2, 3, 5), torch.tensor([[0, 4, 1], [2, 2, 3]])   # N=2 windows, T=3, V=5
    >>> seq = ExampleLoss("ce", check_targets("ce", tok, 2, (3, 5), z.device, z.dtype), 5)
    >>> bool(torch.isclose(seq(z[None], 0, 2).mean(), mean_loss("ce", z, tok)))
    True
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LOSSES", "DIFFERENTIABLE", "SEQUENCE_LOSSES", "ExampleLoss", "as_multiclass", "check_targets",
           "mean_loss", "anchor_log_probs", "output_shape"]

LOSSES: tuple[str, ...] = ("ce", "bce", "mse", "kl", "zero_one")
#: The losses with a gradient (training, curvature).
DIFFERENTIABLE: tuple[str, ...] = ("ce", "bce", "mse", "kl")
#: The losses defined per position for sequence outputs ``[N, T, V]`` (see the module docstring).
SEQUENCE_LOSSES: tuple[str, ...] = ("ce", "kl", "zero_one")


def output_shape(k: int | tuple[int, ...]) -> tuple[int, ...]:
    """The per-example output shape: ``(k,)`` for an int ``k`` (outputs ``[N, k]``), or the tuple
    itself, ``(k,)`` or ``(T, V)`` (sequence outputs ``[N, T, V]``); anything else is refused."""
    shape = (k,) if isinstance(k, int) and not isinstance(k, bool) else tuple(k)
    if len(shape) not in (1, 2) or not all(isinstance(d, int) and d >= 1 for d in shape):
        raise ValueError(f"per-example outputs must be [k] (outputs [N, k]) or [T, V] (sequence outputs "
                         f"[N, T, V]), got {shape}")
    return shape


def _mean_positions(per: Tensor) -> Tensor:
    """``[b, c, *positions]`` per-position losses -> ``[b, c]`` per-example means (no-op without
    positions, so the classification losses' arithmetic is unchanged)."""
    return per if per.ndim == 2 else per.mean(dim=tuple(range(2, per.ndim)))


def as_multiclass(out: Tensor) -> Tensor:
    """One logit z is the two-class softmax over (0, z), i.e. Bernoulli(sigmoid(z))."""
    if out.shape[-1] != 1:
        return out
    return torch.cat([torch.zeros_like(out), out], dim=-1)


def check_targets(loss: str, targets: Any, n: int, k: int | tuple[int, ...], device: torch.device,
                  dtype: torch.dtype, what: str = "targets") -> Tensor | None:
    """The targets of ``loss`` validated and laid out for :class:`ExampleLoss` and :func:`mean_loss`
    (None for "kl"), or a TypeError / ValueError that names the fix (``what``: the argument's name).

    ``k``: the model's per-example output shape, an int k (outputs ``[N, k]``) or ``(T, V)``
    (sequence outputs ``[N, T, V]``: integer targets ``[N, T]`` in ``[0, V)``)."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    shape = output_shape(k)
    if len(shape) == 2 and loss not in SEQUENCE_LOSSES:
        raise ValueError(f"loss {loss!r} takes outputs [N, k], but the model returns sequence outputs "
                         f"[N, {shape[0]}, {shape[1]}]; use 'ce' (per-token cross-entropy), 'kl' or 'zero_one'")
    if loss == "kl":
        return None  # the anchor's predictions are the reference
    if not isinstance(targets, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor for loss {loss!r}, got {type(targets).__name__}")
    if targets.shape[:1] != (n,):
        raise ValueError(f"{what} must have {n} rows (one per input), got shape {tuple(targets.shape)}")
    t = targets.detach().to(device)
    if len(shape) == 2:
        return _sequence_targets(loss, t, n, shape, what)
    k = shape[0]
    if loss == "ce" or (loss == "zero_one" and k > 1):
        if k < 2:
            raise ValueError(f"loss {loss!r} needs >= 2 logits but the model has 1; use 'bce'")
        if t.ndim != 1 or t.dtype.is_floating_point or t.dtype == torch.bool:
            raise TypeError(
                f"loss {loss!r} needs integer class labels of shape [{n}], got {t.dtype} "
                f"{tuple(t.shape)}; convert one-hot targets with .argmax(1)"
            )
        if n and (int(t.min()) < 0 or int(t.max()) >= k):
            raise ValueError(f"class labels must lie in [0, {k}), got range [{int(t.min())}, {int(t.max())}]")
        return t.long()
    if loss == "zero_one":  # one logit: the class is the logit's sign
        t = t.reshape(n, -1) if t.ndim == 2 else t
        if t.ndim == 2 and t.shape[1] != 1:
            raise ValueError(f"one-logit 'zero_one' needs targets [{n}] or [{n}, 1], got {tuple(targets.shape)}")
        t = t.reshape(n)
        if not bool(((t == 0) | (t == 1)).all()):
            raise ValueError(f"one-logit 'zero_one' needs {what} in {{0, 1}}")
        return t.bool()
    # bce, mse: float targets shaped like the outputs
    if t.ndim == 1 and k == 1:
        t = t.unsqueeze(1)
    if t.shape != (n, k):
        raise ValueError(f"loss {loss!r} needs {what} of shape [{n}, {k}] like the outputs, got {tuple(t.shape)}")
    t = t.to(dtype)
    if loss == "bce" and n and not bool(((t >= 0) & (t <= 1)).all()):
        raise ValueError(f"loss 'bce' needs {what} in [0, 1] (probabilities of class 1)")
    return t


def _sequence_targets(loss: str, t: Tensor, n: int, shape: tuple[int, int], what: str) -> Tensor:
    """Integer targets ``[N, T]`` in ``[0, V)`` for sequence outputs ``[N, T, V]``."""
    T, V = shape
    if V < 2:
        raise ValueError(f"loss {loss!r} on sequence outputs needs a vocabulary of >= 2 logits, got V = {V}")
    if t.shape != (n, T) or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(
            f"loss {loss!r} on the model's sequence outputs [N, T, V] = [{n}, {T}, {V}] needs integer {what} "
            f"[{n}, {T}] (the class at every position, e.g. the next character), got {t.dtype} "
            f"{tuple(t.shape)}; for a language model pass the input windows shifted by one position")
    if n and (int(t.min()) < 0 or int(t.max()) >= V):
        raise ValueError(f"{what} must lie in [0, {V}) (the vocabulary), got range [{int(t.min())}, {int(t.max())}]")
    return t.long()


def anchor_log_probs(out: Tensor) -> Tensor:
    """The anchor's log-probabilities for "kl": log-softmax of its outputs ``[N, k]`` or ``[N, T, V]``
    over the last dimension (one logit z is the two-class softmax over (0, z))."""
    return torch.log_softmax(as_multiclass(out), dim=-1)


def mean_loss(loss: str, out: Tensor, targets: Tensor | None, *, anchor_logp: Tensor | None = None) -> Tensor:
    """The mean loss of outputs ``out`` ``[N, k]`` (or sequence outputs ``[N, T, V]``: the mean over
    all N * T tokens) against ``targets`` laid out by :func:`check_targets` (``anchor_logp`` ``[N, C]``
    or ``[N, T, V]`` for "kl"), differentiable: torch's fused losses for "ce" and "bce"; "mse" written
    out, because forward-over-reverse differentiation (the curvature's Hessian-vector products)
    through ATen's fused ``mse_loss`` fails in torch 2.13 ("ZeroTensors are immutable") when the
    targets carry no tangent."""
    if loss == "ce":
        if out.ndim == 3:  # tokens: F.cross_entropy over the flattened [N * T, V] logits
            return F.cross_entropy(out.reshape(-1, out.shape[-1]), targets.reshape(-1))
        return F.cross_entropy(out, targets)
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(out, targets.reshape(out.shape).to(out.dtype))
    if loss == "mse":
        return (out - targets.reshape(out.shape)).square().mean()
    if loss == "kl":
        if anchor_logp is None:
            raise ValueError("loss 'kl' needs the anchor's log-probabilities (anchor_log_probs of its outputs)")
        p = anchor_logp.exp()
        return (p * (anchor_logp - torch.log_softmax(as_multiclass(out), dim=-1))).sum(-1).mean()
    raise ValueError(f"loss {loss!r} has no gradient (or is unknown); a differentiable loss is one of "
                     f"{', '.join(DIFFERENTIABLE)}")


class ExampleLoss:
    """Per-example non-negative losses ``[b, c]`` of outputs ``[b, c, k]`` (or ``[b, c, T, V]``:
    the mean over the T positions) on examples ``lo:hi`` (summed over output elements for "bce" and
    "mse"), and the normaliser of their mean.

    Attributes:
        loss: one of :data:`LOSSES`; targets: laid out by :func:`check_targets`.
        n_outputs: k, the model's output width.
        anchor_logp, anchor_negent: for "kl", the anchor's log-softmax predictions ``[N, C]`` (or
            ``[N, T, V]``) and ``sum_k p log p`` per example (and position), set by the cost once it
            can evaluate the anchor.
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
            t = self.targets[lo:hi]  # [c] or [c, T]
            picked = out.gather(-1, t.unsqueeze(0).unsqueeze(-1).expand(out.shape[0], *t.shape, 1)).squeeze(-1)
            # logsumexp = max + log(sum exp(z - max)) with sum >= 1, so each value is >= 0 exactly.
            return _mean_positions(torch.logsumexp(out, dim=-1) - picked)
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
            return _mean_positions((self.anchor_negent[lo:hi] - cross.sum(-1)).clamp_min(0))
        # zero_one
        if self.n_outputs == 1:
            return ((out[..., 0] > 0) != self.targets[lo:hi]).to(out.dtype)
        return _mean_positions((out.argmax(dim=-1) != self.targets[lo:hi]).to(out.dtype))
