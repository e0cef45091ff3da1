"""Keskar sharpness, and the alpha-scaling that changes it without changing the function.

From Zhang, Reid, Valle-Perez, Louis, "Why flatness correlates with generalization for deep neural
networks" (ICML 2021), Sec. 2.2 and App. B-C:

* Sharpness (Keskar et al. 2017, Def. 2.1):  100 (max_{w' in C_eps} L(w') - L(w)) / (1 + L(w)),
  over the box C_eps = {w + d : |d_i| <= eps (|w_i| + 1)} (their eq. 7), eps = 1e-4. Keskar used
  L-BFGS-B for the maximisation; Zhang et al. used SGD ascent (Table 1: MNIST FCN batch 32,
  lr 1e-3, 100 epochs; Boolean FCN batch 16, lr 1e-3, 10 epochs). Both are offered here.
* For small eps,  sharpness ~ 100 ||H||_2 eps^2 / (2 (1 + L))  (Dinh et al. 2017), H the Hessian
  (its spectral norm and top eigenvalues: ``volbench.curvature.spectrum``).
* Alpha scaling (Dinh et al. 2017; Zhang et al. eq. 8): (W_i, b_i, W_{i+1}) -> (a W_i, a b_i,
  W_{i+1} / a), a > 0, leaves a ReLU network's function unchanged but scales the Hessian blocks
  (``volbench.lab.models.alpha_scale``).

Sharpness works on a scalar loss of the flat parameter vector, ``loss_fn(theta[, index])`` --
the same flat-vector view the volume estimators use; :class:`volbench.curvature.FlatLoss` builds one
from a model, its data and a loss name, and takes ``index`` (a [B] tensor of example indices) so the
SGD ascent can draw minibatches. A plain callable works with full-batch evaluation
(``SharpnessConfig.batch_size = None``).

Example (a quadratic bowl 1/2 w^T A w: the box maximum of a convex bowl at its minimum lies at a
corner, where the loss is 1/2 eps^2 sum_i a_i (|w_i| + 1)^2):
    >>> import torch
    >>> A = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    >>> res = sharpness(lambda w: 0.5 * w @ A @ w, torch.zeros(2, dtype=torch.float64),
    ...                 SharpnessConfig(eps=0.1, method="lbfgsb", batch_size=None))
    >>> round(res.sharpness, 6)  # 100 * (0.5 * 0.01 * (4 + 1)) / (1 + 0)
    2.5
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch

from volbench._checks import check_flat, check_seed

__all__ = ["SharpnessConfig", "SharpnessResult", "sharpness", "sharpness_from_spectral_norm"]

LossFn = Callable[..., torch.Tensor]


def _scalar_loss(loss_fn: LossFn, theta: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(theta) -> scalar tensor, got {type(loss_fn).__name__}")
    out = loss_fn(theta) if index is None else loss_fn(theta, index)
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"loss_fn must return a scalar tensor (a mean loss), got {shape}")
    return out.reshape(())


# ----------------------------------------------------------------------------------------------
# Loss of a model as a function of its flat parameters
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Hessian
# ----------------------------------------------------------------------------------------------


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
    ``loss_fn`` must accept ``loss_fn(theta, index)`` and expose ``n_examples`` (``volbench.curvature.FlatLoss`` does).

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
                "cannot be minibatched; wrap the model in volbench.curvature.FlatLoss or use batch_size=None "
                "(full batch)"
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
