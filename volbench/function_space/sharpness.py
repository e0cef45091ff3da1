"""Local flatness measures: Keskar sharpness, Hessian spectral norm, top Hessian eigenvalues, and
the alpha-scaling reparameterisation that changes them without changing the function.

From Zhang, Reid, Valle-Perez, Louis, "Why flatness correlates with generalization for deep neural
networks" (ICML 2021), Sec. 2.2 and App. B-C:

* Sharpness (Keskar et al. 2017, Def. 2.1):  100 (max_{w' in C_eps} L(w') - L(w)) / (1 + L(w)),
  over the box C_eps = {w + d : |d_i| <= eps (|w_i| + 1)} (their eq. 7), eps = 1e-4. Keskar used
  L-BFGS-B for the maximisation; Zhang et al. used SGD ascent (Table 1: MNIST FCN batch 32,
  lr 1e-3, 100 epochs; Boolean FCN batch 16, lr 1e-3, 10 epochs). Both are offered here.
* For small eps,  sharpness ~ 100 ||H||_2 eps^2 / (2 (1 + L))  (Dinh et al. 2017), H the Hessian.
* Hessian flatness: the spectral norm ||H||_2 and the product of the top-k (k = 50) eigenvalues.
* Alpha scaling (Dinh et al. 2017; Zhang et al. eq. 8): (W_i, b_i, W_{i+1}) -> (a W_i, a b_i,
  W_{i+1} / a), a > 0, leaves a ReLU network's function unchanged but scales the Hessian blocks.

Design: every measure works on a *scalar loss of the flat parameter vector*, ``loss_fn(theta) ->
Tensor[]`` with ``theta`` a [n] tensor, evaluated at an anchor ``theta`` -- the same flat-vector view
the volume estimators use. ``ModelLoss`` builds one from an ``nn.Module``, data and a loss name
("ce" for cross-entropy on [N, C] logits, "bce" for binary cross-entropy with logits on [N] or
[N, 1] outputs) through ``torch.func.functional_call``; it also accepts ``index`` (a [B] tensor of
example indices) so the SGD ascent of ``sharpness`` can draw minibatches. A plain callable works
everywhere with full-batch evaluation (``SharpnessConfig.batch_size = None``).

Example (a quadratic bowl 1/2 w^T A w with A = diag(4, 1): ||H||_2 = 4):
    >>> import torch
    >>> A = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    >>> loss = lambda w: 0.5 * w @ A @ w
    >>> res = hessian_spectral_norm(loss, torch.zeros(2, dtype=torch.float64), seed=0)
    >>> round(res.value, 6)
    4.0
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from volbench._checks import check_accepts, check_flat, check_seed
from volbench.lab.models import alpha_scale  # one implementation (Zhang et al. eq. 9); re-exported here

__all__ = [
    "ModelLoss",
    "hessian_vector_product",
    "SpectralNormResult",
    "hessian_spectral_norm",
    "TopEigenvalues",
    "hessian_top_eigenvalues",
    "SharpnessConfig",
    "SharpnessResult",
    "sharpness",
    "sharpness_from_spectral_norm",
    "alpha_scale",
]

LossFn = Callable[..., torch.Tensor]
_LOSSES = ("ce", "bce")


# ----------------------------------------------------------------------------------------------
# Loss of a model as a function of its flat parameters
# ----------------------------------------------------------------------------------------------


class ModelLoss:
    """Mean loss of ``model`` on fixed data as a function of a flat parameter vector.

    ``loss_fn(theta)`` evaluates the model with its parameters replaced by ``theta`` (same order
    as ``model.parameters()``, as in ``torch.nn.utils.parameters_to_vector``) on all examples;
    ``loss_fn(theta, index)`` on the examples ``index`` only. The model itself is never modified;
    buffers are used as they are, and the module's train/eval mode is respected (call
    ``model.eval()`` first if it has dropout, or the loss is random).

    Args:
        model: the network; its parameters give ``anchor``.
        inputs: [N, ...] inputs on the model's device.
        targets: [N] class indices (int64) for "ce"; [N] or [N, 1] labels in {0, 1} for "bce".
        loss: "ce" (``F.cross_entropy`` on [N, C] logits) or "bce"
            (``F.binary_cross_entropy_with_logits`` on [N] or [N, 1] logits).

    Attributes:
        anchor: [n] detached copy of the model's flat parameters.
        n_params, n_examples: sizes.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        >>> x, t = torch.randn(8, 3), torch.randint(0, 2, (8,))
        >>> f = ModelLoss(net, x, t, loss="ce")
        >>> bool(torch.isclose(f(f.anchor), torch.nn.functional.cross_entropy(net(x), t)))
        True
    """

    def __init__(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, loss: Literal["ce", "bce"]):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES} (cross-entropy or BCE-with-logits), got {loss!r}")
        if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
            raise TypeError("inputs and targets must be torch.Tensors")
        if inputs.shape[0] != targets.shape[0] or inputs.shape[0] == 0:
            raise ValueError(
                f"inputs and targets must hold the same positive number of examples, got {inputs.shape[0]} and "
                f"{targets.shape[0]}"
            )
        if loss == "ce" and (targets.ndim != 1 or targets.dtype not in (torch.int64, torch.int32)):
            raise ValueError("targets for loss='ce' must be a [N] integer tensor of class indices")
        if loss == "bce":
            if targets.ndim == 2 and targets.shape[1] == 1:
                targets = targets[:, 0]
            if targets.ndim != 1 or not bool(((targets == 0) | (targets == 1)).all()):
                raise ValueError("targets for loss='bce' must be a [N] (or [N, 1]) tensor of labels in {0, 1}")
        self.model = model
        self.inputs = inputs
        self.targets = targets
        self.loss = loss
        named = list(model.named_parameters())
        if not named:
            raise ValueError("model has no parameters")
        self._names = [name for name, _ in named]
        self._shapes = [p.shape for _, p in named]
        self._numels = [p.numel() for _, p in named]
        self.anchor = torch.cat([p.detach().reshape(-1) for _, p in named]).clone()
        self.n_params = int(self.anchor.numel())
        self.n_examples = int(inputs.shape[0])
        check_accepts(model, inputs)  # a model/data mismatch is a ValueError naming both, now

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """{parameter name: view of theta} in the model's parameter order."""
        if theta.ndim != 1 or theta.numel() != self.n_params:
            raise ValueError(f"theta must be a flat [{self.n_params}] tensor, got shape {tuple(theta.shape)}")
        chunks = torch.split(theta, self._numels)
        return {n: c.view(s) for n, c, s in zip(self._names, chunks, self._shapes)}

    def outputs(self, theta: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Model outputs (logits) with parameters ``theta`` on all examples or on ``index``."""
        x = self.inputs if index is None else self.inputs[index]
        return torch.func.functional_call(self.model, self.unflatten(theta), (x,))

    def __call__(self, theta: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        out = self.outputs(theta, index)
        t = self.targets if index is None else self.targets[index]
        if self.loss == "ce":
            return F.cross_entropy(out, t.long())
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        return F.binary_cross_entropy_with_logits(out, t.to(out.dtype))




def _scalar_loss(loss_fn: LossFn, theta: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(theta) -> scalar tensor, got {type(loss_fn).__name__}")
    out = loss_fn(theta) if index is None else loss_fn(theta, index)
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"loss_fn must return a scalar tensor (a mean loss), got {shape}")
    return out.reshape(())


# ----------------------------------------------------------------------------------------------
# Hessian
# ----------------------------------------------------------------------------------------------


def hessian_vector_product(loss_fn: LossFn, theta: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return v -> H v, H = d^2 loss_fn / d theta^2 at ``theta``, by double backward.

    The gradient graph is built once and reused for every product (each product costs about one
    backward pass). Works for any twice-differentiable torch function of ``theta``.

    Example:
        >>> import torch
        >>> hvp = hessian_vector_product(lambda w: (w ** 3).sum(), torch.tensor([1.0, 2.0]))
        >>> hvp(torch.tensor([1.0, 1.0])).tolist()   # H = diag(6 w)
        [6.0, 12.0]
    """
    theta = check_flat(theta, "theta").detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = _scalar_loss(loss_fn, theta)
        if not loss.requires_grad:
            raise ValueError("loss_fn(theta) does not depend on theta differentiably (no autograd graph)")
        (grad,) = torch.autograd.grad(loss, theta, create_graph=True)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        if v.shape != theta.shape:
            raise ValueError(f"v must have shape {tuple(theta.shape)}, got {tuple(v.shape)}")
        if not grad.requires_grad:  # loss linear in theta: H = 0
            return torch.zeros_like(theta).detach()
        (hv,) = torch.autograd.grad(grad, theta, grad_outputs=v.to(theta), retain_graph=True, allow_unused=True)
        return torch.zeros_like(theta).detach() if hv is None else hv.detach()

    return hvp


def _start_vector(n: int, seed: int, like: torch.Tensor) -> torch.Tensor:
    # Drawn on the CPU so the same seed gives the same start on every device.
    g = torch.Generator().manual_seed(int(seed))
    v = torch.randn(n, generator=g, dtype=torch.float64).to(device=like.device, dtype=like.dtype)
    return v / v.norm()




@dataclass(frozen=True)
class SpectralNormResult:
    """Power-iteration estimate of the Hessian's spectral norm ||H||_2 = max_i |lambda_i|.

    Attributes:
        value: ||H v|| for the final unit vector v, a lower bound on ||H||_2 that converges to it.
        rayleigh: v^T H v, the signed dominant eigenvalue (meaningless if +-lambda tie).
        iterations, converged: power iterations run and whether the relative change of ``value``
            fell below ``tol``.
        seed: seed of the random start vector. tol, max_iter: settings.
    """

    value: float
    rayleigh: float
    iterations: int
    converged: bool
    seed: int
    tol: float
    max_iter: int


def hessian_spectral_norm(
    loss_fn: LossFn, theta: torch.Tensor, *, max_iter: int = 200, tol: float = 1e-6, seed: int = 0
) -> SpectralNormResult:
    """Spectral norm of the Hessian at ``theta`` by power iteration with Hessian-vector products.

    v_0 ~ N(0, I) (seeded, normalised); v_{k+1} = H v_k / ||H v_k||. The estimate ||H v_k||
    converges to max |lambda| at the rate (lambda_2 / lambda_1)^(2k); iteration stops when it changes
    by less than ``tol`` relatively. Zhang et al. (2021), Sec. 2.2, App. B, Fig. S1-S2, S12, S14.

    Example:
        >>> import torch
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)   # eigenvalues 1, 3
        >>> r = hessian_spectral_norm(lambda w: 0.5 * w @ A @ w, torch.ones(2, dtype=torch.float64), seed=1)
        >>> round(r.value, 6), r.converged
        (3.0, True)
    """
    seed = check_seed(seed)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    hvp = hessian_vector_product(loss_fn, theta)
    v = _start_vector(theta.numel(), seed, theta)
    value, rayleigh, converged, it = 0.0, 0.0, False, 0
    for it in range(1, max_iter + 1):  # noqa: B007  `it` is read after the loop (the iteration count returned)
        w = hvp(v)
        new = float(w.norm())
        rayleigh = float(v @ w)
        if new == 0.0:  # H v = 0: v in the null space (or H = 0); nothing to iterate on
            value, converged = 0.0, True
            break
        v = w / new
        if abs(new - value) <= tol * new:
            value, converged = new, True
            break
        value = new
    return SpectralNormResult(value=value, rayleigh=rayleigh, iterations=it, converged=converged, seed=seed,
                              tol=tol, max_iter=max_iter)


@dataclass(frozen=True)
class TopEigenvalues:
    """The k largest (algebraic) Hessian eigenvalues and the log of their product.

    Attributes:
        eigenvalues: [k] float64 CPU tensor, descending.
        log_product: sum of log(lambda) over the positive ones among them -- the log of the
            "product of the top-k eigenvalues" flatness measure (Wu et al. 2017; Zhang et al. 2021,
            App. B, k = 50), in nats; -inf if none is positive.
        n_positive: how many of the k were positive (and entered ``log_product``).
        seed: seed of the Lanczos start vector.
    """

    eigenvalues: torch.Tensor
    log_product: float
    n_positive: int
    seed: int


def hessian_top_eigenvalues(
    loss_fn: LossFn, theta: torch.Tensor, k: int, *, seed: int = 0, tol: float = 0.0, max_iter: int | None = None
) -> TopEigenvalues:
    """The k largest eigenvalues of the Hessian at ``theta`` by implicitly restarted Lanczos.

    Uses ``scipy.sparse.linalg.eigsh`` (ARPACK, which="LA") on a ``LinearOperator`` whose matvec is a
    Hessian-vector product computed by torch on ``theta``'s device; the start vector is seeded.
    ``tol`` and ``max_iter`` are ARPACK's (0 = machine precision, None = 10 n). Requires k < n.

    Example:
        >>> import torch
        >>> A = torch.diag(torch.tensor([5.0, -1.0, 3.0, 2.0], dtype=torch.float64))
        >>> r = hessian_top_eigenvalues(lambda w: 0.5 * w @ A @ w, torch.zeros(4, dtype=torch.float64), 2)
        >>> [round(x, 6) for x in r.eigenvalues.tolist()], round(r.log_product, 6) == round(math.log(15), 6)
        ([5.0, 3.0], True)
    """
    from scipy.sparse.linalg import LinearOperator, eigsh  # scipy.sparse is heavy; load on use

    seed = check_seed(seed)
    theta = check_flat(theta, "theta").detach()
    n = theta.numel()
    if isinstance(k, bool) or not isinstance(k, int) or not 0 < k < n:
        raise ValueError(f"k must be an int with 0 < k < n = {n} (ARPACK); for k >= n use torch.func.hessian, got "
                         f"{k!r}")
    hvp = hessian_vector_product(loss_fn, theta)

    def matvec(x: np.ndarray) -> np.ndarray:
        v = torch.as_tensor(np.ascontiguousarray(x).reshape(-1), dtype=theta.dtype).to(theta.device)
        return hvp(v).to("cpu", torch.float64).numpy()

    op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = _start_vector(n, seed, torch.empty(0, dtype=torch.float64)).numpy()
    vals = eigsh(op, k=k, which="LA", v0=v0, tol=tol, maxiter=max_iter, return_eigenvectors=False)
    vals = torch.as_tensor(np.sort(vals)[::-1].copy(), dtype=torch.float64)
    pos = vals[vals > 0]
    log_product = float(torch.log(pos).sum()) if pos.numel() else -math.inf
    return TopEigenvalues(eigenvalues=vals, log_product=log_product, n_positive=int(pos.numel()), seed=seed)


# ----------------------------------------------------------------------------------------------
# Sharpness
# ----------------------------------------------------------------------------------------------

_PAPER_SHARPNESS = {
    # Zhang et al. (2021) Table 1: box eps, batch size, learning rate, epochs of the SGD ascent.
    "boolean": (1e-4, 16, 1e-3, 10),
    "mnist": (1e-4, 32, 1e-3, 100),
    "cifar10-fcn": (1e-5, 128, 5e-5, 100),
    "cifar10-resnet50": (1e-5, 128, 1.0, 100),
}


@dataclass(frozen=True)
class SharpnessConfig:
    """How to maximise the loss over the sharpness box. Defaults: the paper's MNIST FCN row.

    Attributes:
        eps: relative box size; |d_i| <= eps (|w_i| + 1) (dimensionless). 1e-4 as in Keskar et al.
            and Zhang et al. Table 1 (MNIST, Boolean).
        method: "sgd" -- projected stochastic gradient *ascent*, the paper's choice: d <- clip(d + lr
            grad L_batch(w + d)) per minibatch; or "lbfgsb" -- scipy's L-BFGS-B on the full-batch
            loss with box bounds, Keskar et al.'s original (float64 on the CPU side).
        lr: ascent step size (SGD), in parameter units per unit gradient. Paper: 1e-3.
        batch_size: examples per SGD step (paper: 32 for MNIST). None = full batch, required for a
            plain ``loss_fn(theta)`` without an ``index`` argument.
        epochs: SGD passes over the data (paper: 100 for MNIST, 10 for Boolean); each epoch ends
            with a full-batch evaluation, and the largest of these is the max. With
            batch_size=None an epoch is a single full-batch step.
        max_iter: L-BFGS-B iterations (method "lbfgsb" only).
        init: "random" starts from d ~ U(box) (seeded): at an exact critical point the gradient is
            zero and ascent from the centre never moves; "center" starts from d = 0.
        seed: seeds the start point and the minibatch order.
    """

    eps: float = 1e-4
    method: Literal["sgd", "lbfgsb"] = "sgd"
    lr: float = 1e-3
    batch_size: int | None = 32
    epochs: int = 100
    max_iter: int = 100
    init: Literal["random", "center"] = "random"
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"eps must be a positive finite number (relative box size), got {self.eps!r}")
        if self.method not in ("sgd", "lbfgsb"):
            raise ValueError(f"method must be 'sgd' or 'lbfgsb', got {self.method!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
                                            or self.batch_size < 1):
            raise ValueError(f"batch_size must be a positive int or None (full batch), got {self.batch_size!r}")
        for name in ("epochs", "max_iter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.init not in ("random", "center"):
            raise ValueError(f"init must be 'random' or 'center', got {self.init!r}")
        check_seed(self.seed)

    @classmethod
    def paper(cls, setting: str = "mnist", **overrides: Any) -> SharpnessConfig:
        """The SGD-ascent hyperparameters of Zhang et al. Table 1 for ``setting`` in
        {"boolean", "mnist", "cifar10-fcn", "cifar10-resnet50"}."""
        if setting not in _PAPER_SHARPNESS:
            raise ValueError(f"setting must be one of {sorted(_PAPER_SHARPNESS)}, got {setting!r}")
        eps, bs, lr, epochs = _PAPER_SHARPNESS[setting]
        return cls(eps=eps, method="sgd", lr=lr, batch_size=bs, epochs=epochs, **overrides)

    @classmethod
    def smoke(cls, **overrides: Any) -> SharpnessConfig:
        """A cheap variant for tests and smoke cases: the MNIST row with 5 epochs instead of 100."""
        return replace(cls(), **{"epochs": 5, **overrides})


@dataclass(frozen=True)
class SharpnessResult:
    """Keskar sharpness 100 (max L - L) / (1 + L) at one point.

    Attributes:
        sharpness: the value (dimensionless, "percent").
        base_loss: L(w) at the anchor.
        max_loss: the largest full-batch loss found in the box (>= base_loss).
        history: running maximum after each epoch (SGD) or each L-BFGS-B evaluation; use it to
            check that the maximisation has converged (Zhang et al. Fig. S4).
        n_steps: SGD steps or L-BFGS-B loss evaluations.
        config: the ``SharpnessConfig`` used (its seed included). seconds: wall clock.
    """

    sharpness: float
    base_loss: float
    max_loss: float
    history: tuple[float, ...]
    n_steps: int
    config: SharpnessConfig
    seconds: float = field(default=0.0, compare=False)


def _sharpness_value(max_loss: float, base: float) -> float:
    return 100.0 * (max_loss - base) / (1.0 + base)


def sharpness(loss_fn: LossFn, theta: torch.Tensor, config: SharpnessConfig = SharpnessConfig()) -> SharpnessResult:
    """Keskar sharpness of ``loss_fn`` at ``theta`` (Zhang et al. Def. 2.1 and eq. 7).

        sharpness = 100 (max_{|d_i| <= eps (|theta_i| + 1)} L(theta + d) - L(theta)) / (1 + L(theta))

    The maximum is searched by ``config.method`` (see ``SharpnessConfig``) and is a lower bound on
    the true box maximum (both searches find local maxima). For SGD with a ``batch_size``,
    ``loss_fn`` must accept ``loss_fn(theta, index)`` and expose ``n_examples`` (``ModelLoss`` does).

    Example (1-D quadratic: the box maximum is exact, 100 * 0.5 * 2 * (1e-2 * 2)^2 / 1 = 0.04):
        >>> import torch
        >>> cfg = SharpnessConfig(eps=1e-2, method="lbfgsb")
        >>> r = sharpness(lambda w: (w ** 2 - 2 * w + 1).sum(), torch.tensor([1.0], dtype=torch.float64), cfg)
        >>> round(r.sharpness, 8)
        0.04
    """
    if not isinstance(config, SharpnessConfig):
        raise TypeError(f"config must be a SharpnessConfig, got {type(config).__name__}")
    theta = check_flat(theta, "theta").detach()
    t0 = time.perf_counter()
    bound = config.eps * (theta.abs() + 1.0)
    with torch.no_grad():
        base = float(_scalar_loss(loss_fn, theta))
    if not math.isfinite(base):
        raise ValueError(f"loss at theta is {base}; sharpness needs a finite loss")
    if config.init == "random":
        g = torch.Generator().manual_seed(config.seed)
        u = torch.rand(theta.numel(), generator=g, dtype=torch.float64).to(theta.device, theta.dtype)
        delta0 = (2.0 * u - 1.0) * bound
    else:
        delta0 = torch.zeros_like(theta)
    if config.method == "lbfgsb":
        best, history, steps = _maximise_lbfgsb(loss_fn, theta, bound, delta0, config)
    else:
        best, history, steps = _maximise_sgd(loss_fn, theta, bound, delta0, config)
    best = max(best, base)
    return SharpnessResult(
        sharpness=_sharpness_value(best, base), base_loss=base, max_loss=best, history=tuple(history),
        n_steps=steps, config=config, seconds=time.perf_counter() - t0,
    )


def _maximise_sgd(loss_fn, theta, bound, delta, config):
    batched = config.batch_size is not None
    if batched:
        n_examples = getattr(loss_fn, "n_examples", None)
        if not isinstance(n_examples, int):
            raise ValueError(
                "SharpnessConfig.batch_size is set but loss_fn has no integer n_examples attribute and "
                "cannot be minibatched; wrap the model in ModelLoss or use batch_size=None (full batch)"
            )
        g = torch.Generator().manual_seed(config.seed + 1)  # the start point used `seed` itself
    running, history, steps = -math.inf, [], 0
    with torch.no_grad():
        running = max(running, float(_scalar_loss(loss_fn, theta + delta)))
    for _ in range(config.epochs):
        if batched:
            order = torch.randperm(n_examples, generator=g).to(theta.device)
            batches = torch.split(order, config.batch_size)
        else:
            batches = (None,)
        for idx in batches:
            d = delta.clone().requires_grad_(True)
            with torch.enable_grad():
                loss = _scalar_loss(loss_fn, theta + d, idx)
                (grad,) = torch.autograd.grad(loss, d, allow_unused=True)
            if grad is not None:
                # Ascent step, then projection onto the box (a clamp, as the box is axis-aligned).
                delta = torch.clamp(delta + config.lr * grad, -bound, bound)
            steps += 1
        with torch.no_grad():
            running = max(running, float(_scalar_loss(loss_fn, theta + delta)))
        history.append(running)
    return running, history, steps


def _maximise_lbfgsb(loss_fn, theta, bound, delta0, config):
    from scipy.optimize import Bounds, minimize  # load on use

    history: list[float] = []
    best = [-math.inf]

    def negloss(x: np.ndarray):
        d = torch.as_tensor(x, dtype=torch.float64).to(theta.device, theta.dtype).requires_grad_(True)
        with torch.enable_grad():
            loss = _scalar_loss(loss_fn, theta + d)
            (grad,) = torch.autograd.grad(loss, d, allow_unused=True)
        value = float(loss.detach())
        best[0] = max(best[0], value)
        history.append(best[0])
        g = np.zeros_like(x) if grad is None else -grad.detach().to("cpu", torch.float64).numpy()
        return -value, g

    b = bound.to("cpu", torch.float64).numpy()
    # gtol = 0: scipy's default stops when the largest *projected* gradient component is below
    # 1e-5 in absolute units, but that component is bounded by the box width 2 eps (|w_i| + 1), so
    # for eps <~ 1e-6 the search stopped after one evaluation and returned ~0 (measured: 2e-6
    # instead of 7e-4 at eps = 1e-6 on a trained binary-MNIST FCN). Run to max_iter (or until the
    # line search stalls) instead.
    minimize(negloss, delta0.to("cpu", torch.float64).numpy(), jac=True, method="L-BFGS-B",
             bounds=Bounds(-b, b), options={"maxiter": config.max_iter, "gtol": 0.0})
    return best[0], history, len(history)


def sharpness_from_spectral_norm(spectral_norm: float, loss: float, *, eps: float) -> float:
    """The small-eps relation of Dinh et al. (2017), quoted by Zhang et al. (2021) Sec. 2.2:

        sharpness ~ 100 ||H||_2 eps^2 / (2 (1 + L)).

    It is the exact second-order maximum over a *ball* of radius eps around a minimum. The
    sharpness box |d_i| <= eps (|w_i| + 1) is not that ball: it contains the ball of radius
    r_min = eps min_i(|w_i| + 1) and lies inside the ball of radius r_max = eps ||(|w| + 1)||_2, so at a
    minimum with PSD Hessian, to second order,
        100 ||H|| r_min^2 / (2 (1 + L))  <=  sharpness  <=  100 ||H|| r_max^2 / (2 (1 + L)).
    Pass ``eps`` = r_min or r_max (or eps itself for the paper's form) accordingly.

    Example:
        >>> sharpness_from_spectral_norm(2.0, 0.0, eps=0.1)
        1.0000000000000002
    """
    for name, value in (("spectral_norm", spectral_norm), ("loss", loss), ("eps", eps)):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if spectral_norm < 0 or eps <= 0 or loss <= -1:
        raise ValueError("need spectral_norm >= 0, eps > 0 and loss > -1")
    return 100.0 * spectral_norm * eps**2 / (2.0 * (1.0 + loss))
