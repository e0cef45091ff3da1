"""Training to a minimum: AdamW, SGD and SAM, full batch or minibatches, deterministic per seed.

The main paper's recipe (Fan, Sandlund & Ko, "Sharp minima can generalize", Sec. 5 and their
code): AdamW with torch defaults (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01),
full batch for the MLPs, a fixed number of epochs (MNIST MLP 500, CIFAR MLP 400, swiss roll
500-1000), no early stopping. SAM (Foret et al. 2021, their Fig. 13) with rho = 0.05:

    e = rho * g / ||g||_2          (g = gradient at w, ||.|| over all parameters together)
    w <- base_step(w, grad L(w + e))

i.e. one ascent step along the globally normalised gradient, the gradient taken at the perturbed
point, and the base optimiser's update applied at the original point.

Determinism: the only randomness is the minibatch order, drawn each epoch as
``torch.randperm(N, generator=g)`` from one CPU ``torch.Generator`` seeded with ``config.seed``
(the model's initialisation has its own seed, see ``volbench.lab.models.build``). Two runs with the same
model, data and config give bit-identical parameters on the CPU.

Targets follow ``volbench.costs`` and ``volbench.data``: "ce" integer labels ``[N]``; "bce" floats
in [0, 1] shaped ``[N]`` or ``[N, 1]`` for a one-logit model; "mse" floats shaped like the outputs
(one-hot ``[N, k]`` for modular addition); a sequence model's "ce" integer tokens ``[N, T]`` for its
outputs ``[N, T, V]`` (the mean over all N * T tokens). Accuracy: argmax agreement for "ce" (for a
sequence model the share of positions whose argmax is the target, over all tokens); sign agreement
(logit > 0 vs target > 0.5) for "bce"; argmax agreement with one-hot targets for "mse" with k > 1
(NaN for a one-output regression).

Example:
    >>> import torch
    >>> from volbench.lab import models
    >>> from volbench.lab.train import TrainConfig, train
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(64, 2, generator=g); y = (x[:, 0] > 0).float()
    >>> net = models.build("swiss_mlp", seed=0, hidden=(16,))
    >>> res = train(net, x, y, TrainConfig(loss="bce", epochs=50, lr=1e-2, seed=0))
    >>> res.epochs_run, res.params.shape, res.exp_avg_sq.shape
    (50, torch.Size([65]), torch.Size([65]))
    >>> res.train_loss < res.history[0].train_loss
    True

Size: one concept, training: the recipe (TrainConfig), the loop (AdamW, SGD, SAM, minibatches, early
stop, checkpoints) and its record (TrainResult).
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from volbench._checks import check_accepts
from volbench.costs.losses import check_targets, mean_loss
from volbench.lab.models import spec

__all__ = [
    "OPTIMIZERS",
    "LOSSES",
    "TrainConfig",
    "EpochRecord",
    "TrainResult",
    "train",
    "paper_recipe",
    "loss_and_accuracy",
    "flat_params",
]

OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd", "sam")
SAM_BASES: tuple[str, ...] = ("adamw", "sgd")
LOSSES: tuple[str, ...] = ("ce", "bce", "mse")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Every default is the main paper's recipe unless stated.

    Attributes:
        optimizer: "adamw", "sgd" or "sam" (SAM around ``sam_base``).
        lr: learning rate (1e-3: torch's AdamW default, the paper's).
        weight_decay: 0.01, torch's AdamW default (decoupled, per step ``w -= lr*wd*w``). For
            "sgd" (and SAM on SGD) torch's SGD adds the coupled L2 gradient ``wd * w``; set 0.0
            for vanilla SGD (Zhang et al. train with plain SGD).
        betas, eps: AdamW's moment decay rates and denominator epsilon (torch defaults).
        momentum: SGD momentum (0: vanilla gradient descent).
        sam_rho: SAM's ascent radius in parameter space (0.05, Foret et al.; the paper's value).
        sam_base: the optimiser SAM steps with: "adamw" (the paper's AdamW + SAM) or "sgd".
        batch_size: examples per step; None (or >= N) means full batch, one step per epoch (the
            paper's MLPs). Otherwise batches are the consecutive slices of one random permutation
            per epoch; the last may be smaller.
        epochs: number of passes over the training set (the paper: fixed, no early stop).
        loss: "ce" (images), "bce" (two spirals, binary FCNs) or "mse" (modular addition).
        stop_at_train_loss: stop after the first epoch whose exact train loss (evaluated after
            the epoch's steps) is below this; None = never (the paper).
        stop_at_train_accuracy: stop after the first epoch whose exact train accuracy is at least
            this, e.g. 1.0 for "first zero training error" (Zhang et al.); None = never.
        checkpoint_epochs: epochs after which to keep a copy of the flat parameters (0 = the
            initial parameters), e.g. the grokking checkpoints 200..5,000.
        history_every: record the train (and test) loss and accuracy every this many epochs
            (and after the last one).
        seed: seeds the minibatch order (and nothing else).
    """

    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.0
    sam_rho: float = 0.05
    sam_base: str = "adamw"
    batch_size: int | None = None
    epochs: int = 500
    loss: str = "ce"
    stop_at_train_loss: float | None = None
    stop_at_train_accuracy: float | None = None
    checkpoint_epochs: tuple[int, ...] = ()
    history_every: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.sam_base not in SAM_BASES:
            raise ValueError(f"sam_base must be one of {SAM_BASES}, got {self.sam_base!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        for name in ("lr", "eps", "sam_rho"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay)
                and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", (float(betas[0]), float(betas[1])))
        if self.batch_size is not None and not (_is_int(self.batch_size) and self.batch_size > 0):
            raise ValueError(f"batch_size must be a positive int or None (full batch), got {self.batch_size!r}")
        if not (_is_int(self.epochs) and self.epochs >= 0):
            raise ValueError(f"epochs must be a non-negative int, got {self.epochs!r}")
        if not (_is_int(self.history_every) and self.history_every >= 1):
            raise ValueError(f"history_every must be a positive int, got {self.history_every!r}")
        if not (_is_int(self.seed) and self.seed >= 0):
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if self.stop_at_train_loss is not None and not (
                isinstance(self.stop_at_train_loss, (int, float)) and self.stop_at_train_loss > 0):
            raise ValueError(f"stop_at_train_loss must be positive or None, got {self.stop_at_train_loss!r}")
        if self.stop_at_train_accuracy is not None and not (
                isinstance(self.stop_at_train_accuracy, (int, float)) and 0 < self.stop_at_train_accuracy <= 1):
            raise ValueError(f"stop_at_train_accuracy must be in (0, 1] or None, got {self.stop_at_train_accuracy!r}")
        try:
            ckpts = tuple(sorted(set(self.checkpoint_epochs)))
        except TypeError:
            raise TypeError(f"checkpoint_epochs must be a collection of ints, got {self.checkpoint_epochs!r}") from None
        bad = [e for e in ckpts if not (_is_int(e) and 0 <= e <= self.epochs)]
        if bad:
            raise ValueError(f"checkpoint_epochs must be ints in [0, epochs={self.epochs}], got {bad}")
        object.__setattr__(self, "checkpoint_epochs", ckpts)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (tuples as lists), e.g. for the store's key."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["checkpoint_epochs"] = list(self.checkpoint_epochs)
        return d


@dataclass(frozen=True)
class EpochRecord:
    """Train (and test) loss and accuracy after ``epoch`` epochs.

    ``train_loss``/``train_accuracy`` are the epoch's running means over its minibatches, each
    taken before that batch's step (free to record); for full batch that is the loss at the
    parameters the epoch started from. Test values are exact evaluations after the epoch (None
    without test data).
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float | None = None
    test_accuracy: float | None = None


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns (all tensors on the CPU, detached, in the model's dtype).

    Attributes:
        params: final flat parameters ``[n]`` in ``model.parameters()`` order (load with
            ``torch.nn.utils.vector_to_parameters``).
        exp_avg, exp_avg_sq: Adam's first and second moments ``[n]``, aligned with ``params``
            (AdamW and SAM on AdamW; None for SGD). Not bias-corrected; ``optimizer_steps`` gives
            the step count t for the corrections ``1 - beta^t``.
        optimizer_steps: optimiser updates taken.
        checkpoints: ``{epoch: flat params}`` for the requested epochs that were reached.
        history: one :class:`EpochRecord` every ``config.history_every`` epochs and at the end.
        train_loss, train_accuracy: exact final values on the whole training set (eval mode).
        test_loss, test_accuracy: the same on the test set, None without one.
        seconds: wall time of the training loop and evaluations.
        epochs_run: epochs completed (< config.epochs after an early stop).
        stopped_early: whether a ``stop_at_*`` criterion ended training.
        seed: ``config.seed`` (the minibatch-order seed).
        config: the :class:`TrainConfig` used.
    """

    params: Tensor
    exp_avg: Tensor | None
    exp_avg_sq: Tensor | None
    optimizer_steps: int
    checkpoints: dict[int, Tensor]
    history: tuple[EpochRecord, ...]
    train_loss: float
    train_accuracy: float
    test_loss: float | None
    test_accuracy: float | None
    seconds: float
    epochs_run: int
    stopped_early: bool
    seed: int
    config: TrainConfig = field(repr=False)

    @property
    def n_params(self) -> int:
        return int(self.params.numel())

    def tensors(self) -> dict[str, Tensor]:
        """Named tensors for ``volbench.store.minima``: ``params``, ``adam.exp_avg``,
        ``adam.exp_avg_sq`` (if any) and ``checkpoint.<epoch, 6 digits>``."""
        out = {"params": self.params}
        if self.exp_avg is not None:
            out["adam.exp_avg"] = self.exp_avg
        if self.exp_avg_sq is not None:
            out["adam.exp_avg_sq"] = self.exp_avg_sq
        for epoch, p in self.checkpoints.items():
            out[f"checkpoint.{epoch:06d}"] = p
        return out

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable summary (everything but the tensors)."""
        return {
            "n_params": self.n_params,
            "train_loss": self.train_loss,
            "train_accuracy": _json_float(self.train_accuracy),
            "test_loss": self.test_loss,
            "test_accuracy": _json_float(self.test_accuracy),
            "seconds": self.seconds,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "optimizer_steps": self.optimizer_steps,
            "seed": self.seed,
            "config": self.config.as_dict(),
            "history": [{k: _json_float(v) for k, v in dataclasses.asdict(r).items()} for r in self.history],
        }

    @classmethod
    def from_stored(cls, tensors: dict[str, Tensor], metadata: dict[str, Any]) -> TrainResult:
        """Rebuild a result from :meth:`tensors` and :meth:`metadata` (e.g. a store hit)."""
        try:
            cfg = dict(metadata["config"])
            cfg["betas"] = tuple(cfg["betas"])
            cfg["checkpoint_epochs"] = tuple(cfg["checkpoint_epochs"])
            history = tuple(_record_from_json(r) for r in metadata["history"])
            return cls(
                params=tensors["params"],
                exp_avg=tensors.get("adam.exp_avg"),
                exp_avg_sq=tensors.get("adam.exp_avg_sq"),
                optimizer_steps=int(metadata["optimizer_steps"]),
                checkpoints={int(k.split(".", 1)[1]): v for k, v in tensors.items() if k.startswith("checkpoint.")},
                history=history,
                train_loss=float(metadata["train_loss"]),
                train_accuracy=_from_json_float(metadata["train_accuracy"]),
                test_loss=metadata["test_loss"],
                test_accuracy=None if metadata["test_loss"] is None else _from_json_float(metadata["test_accuracy"]),
                seconds=float(metadata["seconds"]),
                epochs_run=int(metadata["epochs_run"]),
                stopped_early=bool(metadata["stopped_early"]),
                seed=int(metadata["seed"]),
                config=TrainConfig(**cfg),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"stored training result is incomplete or malformed: {err!r}") from err


def _json_float(v: float | None) -> float | None:
    """JSON has no NaN: store NaN (undefined accuracy) as None."""
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _from_json_float(v: float | None) -> float:
    return math.nan if v is None else float(v)


def _record_from_json(r: dict[str, Any]) -> EpochRecord:
    has_test = r["test_loss"] is not None
    return EpochRecord(
        epoch=int(r["epoch"]),
        train_loss=float(r["train_loss"]),
        train_accuracy=_from_json_float(r["train_accuracy"]),
        test_loss=float(r["test_loss"]) if has_test else None,
        test_accuracy=_from_json_float(r["test_accuracy"]) if has_test else None,
    )


# --------------------------------------------------------------------------- recipes
_PAPER_EPOCHS = {
    # Fan et al. (NOTES.md: their code): fixed epochs, AdamW, full batch for MLPs.
    "mnist_mlp": 500,
    "mnist_mlp_deep": 500,
    "cifar_mlp": 400,
    "swiss_mlp": 500,        # 500-1000 in the paper; the lower end
    "swiss_mlp_deep": 500,
    "modular_mlp": 5000,     # the grokking study's last checkpoint
    "modular_mlp_47": 5000,  # its mod-47 smoke variant
    "mnist_cnn": 500,        # not stated for the CNNs; the MNIST MLP's count
    "cifar_cnn": 400,        # likewise the CIFAR MLP's
}
#: The authors' character GPT (NOTES.md: their experiments/shakespeare_char): AdamW lr 1e-3, weight
#: decay 0.1, betas (0.9, 0.95), batch 64. How long they train is not recorded; 16 epochs are
#: nanoGPT's shakespeare_char run (5,000 iterations of 64 windows) on their 20,000-window landscape.
CHAR_GPT_RECIPE = dict(optimizer="adamw", lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95), batch_size=64, epochs=16,
                       loss="ce")


def paper_recipe(model_name: str, **overrides: Any) -> TrainConfig:
    """The training recipe of the paper that uses ``model_name`` (``overrides`` replace fields).

    * Fan et al. models: AdamW, torch defaults, full batch, fixed epochs (MNIST 500, CIFAR 400,
      swiss 500, modular 5,000); loss "ce" / "bce" / "mse" as the model's task. The CNN epoch
      counts are not stated in the paper; we use the MLPs'.
    * ``digits_mlp`` (Scherlis & Belrose): the paper does not state its recipe; the defaults of
      their public training code are SGD, lr 0.1, batch 64, 25 epochs, no weight decay, which we
      take over.
    * ``boolean_fcn``, ``binary_fcn`` (Zhang et al.): vanilla SGD (no momentum, no weight decay)
      with the Keras defaults the paper says it uses (lr 0.01, batch 32), BCE on the logit,
      trained until the first epoch with zero training error (at most 2,000 epochs).
    * ``char_gpt`` (the authors' repository): :data:`CHAR_GPT_RECIPE`.

    Example:
        >>> paper_recipe("mnist_mlp").epochs, paper_recipe("mnist_mlp", optimizer="sam").optimizer
        (500, 'sam')
    """
    s = spec(model_name)
    if model_name in _PAPER_EPOCHS:
        base = TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=0.01, batch_size=None,
                           epochs=_PAPER_EPOCHS[model_name], loss=s.loss)
    elif model_name == "char_gpt":
        base = TrainConfig(**CHAR_GPT_RECIPE)
    elif model_name == "digits_mlp":
        base = TrainConfig(optimizer="sgd", lr=0.1, weight_decay=0.0, batch_size=64, epochs=25, loss="ce")
    elif model_name in ("boolean_fcn", "binary_fcn"):
        base = TrainConfig(optimizer="sgd", lr=0.01, weight_decay=0.0, batch_size=32, epochs=2000,
                           loss="bce", stop_at_train_accuracy=1.0)
    else:  # pragma: no cover - every registered model has a recipe (tested)
        raise AssertionError(f"no recipe for {model_name!r}")
    try:
        return dataclasses.replace(base, **overrides)
    except TypeError as err:
        fields = [f.name for f in dataclasses.fields(TrainConfig)]
        raise TypeError(f"paper_recipe override not a TrainConfig field: {err}; fields: {fields}") from None


# --------------------------------------------------------------------------- helpers
def flat_params(model: nn.Module) -> Tensor:
    """Detached CPU copy of ``model``'s parameters as one flat vector (``parameters()`` order)."""
    return nn.utils.parameters_to_vector(model.parameters()).detach().to("cpu", copy=True)


def _n_correct(out: Tensor, t: Tensor, loss: str) -> Tensor:
    """Number of correct predictions (0-dim tensor, no host sync); NaN if undefined."""
    if loss == "ce":
        if out.ndim == 3:  # a sequence model: each window counts its share of correct positions
            return (out.argmax(-1) == t).to(torch.float64).mean(dim=1).sum()
        return (out.argmax(1) == t).sum()
    if loss == "bce":
        return ((out > 0) == (t > 0.5)).all(dim=1).sum()
    if out.shape[1] == 1:
        return torch.tensor(math.nan, device=out.device)
    return (out.argmax(1) == t.argmax(1)).sum()


def loss_and_accuracy(model: nn.Module, inputs: Tensor, targets: Tensor, loss: str, *,
                      chunk: int = 8192) -> tuple[float, float]:
    """Exact mean loss and accuracy of ``model`` on a whole data set, in chunks of ``chunk``
    examples (eval mode, no gradients). ``targets`` as prepared for :func:`train`'s ``loss``.
    Token windows (integer inputs ``[N, T]``) go ``chunk // T`` windows at a time: ``chunk``
    counts positions there, whose activations are what the memory holds.

    Example:
        >>> m = nn.Linear(2, 1); x = torch.zeros(3, 2); y = torch.ones(3, 1)
        >>> with torch.no_grad(): _ = m.weight.zero_(), m.bias.fill_(1.0)
        >>> loss_and_accuracy(m, x, y, "bce")[1]
        1.0
    """
    n = inputs.shape[0]
    if n == 0:
        return math.nan, math.nan
    if inputs.ndim == 2 and not inputs.is_floating_point():
        chunk = max(1, chunk // inputs.shape[1])
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=inputs.device)
    correct = torch.zeros((), dtype=torch.float64, device=inputs.device)
    try:
        with torch.no_grad():
            for lo in range(0, n, chunk):
                out = model(inputs[lo:lo + chunk])
                tb = targets[lo:lo + chunk]
                total_loss += mean_loss(loss, out, tb).double() * tb.shape[0]
                correct += _n_correct(out, tb, loss).double()
    finally:
        model.train(was_training)
    return float(total_loss / n), float(correct / n)


def _adam_moments(opt: torch.optim.Optimizer, params: list[nn.Parameter]) -> tuple[Tensor | None, Tensor | None]:
    m, v = [], []
    for p in params:
        st = opt.state.get(p, {})
        if "exp_avg" not in st:  # no step taken yet (epochs=0): moments are zero by definition
            m.append(torch.zeros(p.numel(), dtype=p.dtype))
            v.append(torch.zeros(p.numel(), dtype=p.dtype))
            continue
        m.append(st["exp_avg"].detach().reshape(-1).to("cpu"))
        v.append(st["exp_avg_sq"].detach().reshape(-1).to("cpu"))
    return torch.cat(m).clone(), torch.cat(v).clone()


def _make_optimizer(kind: str, params: Iterable[nn.Parameter], c: TrainConfig) -> torch.optim.Optimizer:
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=c.weight_decay)
    return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)


def _sam_perturb(params: list[nn.Parameter], rho: float) -> list[Tensor]:
    """Move every parameter by e = rho * g / ||g|| (global norm) in place; return e."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    # The tiny floor keeps a zero gradient (an exact stationary point) from dividing by zero;
    # e is then zero and SAM reduces to the base step.
    scale = rho / norm.clamp_min(1e-12)
    e = [g * scale for g in grads]
    with torch.no_grad():
        for p, d in zip(params, e):
            p.add_(d)
    return e


# --------------------------------------------------------------------------- training
def train(model: nn.Module, inputs: Tensor, targets: Tensor, config: TrainConfig, *,
          test_inputs: Tensor | None = None, test_targets: Tensor | None = None,
          device: torch.device | str | None = None, progress: bool = False,
          eval_chunk: int = 8192) -> TrainResult:
    """Train ``model`` in place on ``(inputs, targets)`` and return a :class:`TrainResult`.

    Args:
        model: the network (e.g. from ``volbench.lab.models.build``); moved to ``device`` and
            trained in place. Its dtype is kept; floating inputs are cast to it.
        inputs: ``[N, ...]`` training inputs in the model's natural shape.
        targets: see the module docstring for each loss.
        config: a :class:`TrainConfig` (``paper_recipe(name)`` for the papers' settings).
        test_inputs, test_targets: optional held-out set, evaluated at each history point and at
            the end.
        device: where to train (default: where the model's parameters are).
        progress: show a tqdm progress bar (to stderr) with the running loss.
        eval_chunk: examples per forward pass in the exact evaluations (memory bound only).

    Returns:
        :class:`TrainResult` with CPU copies of the final parameters, Adam moments,
        checkpoints, history and final metrics.

    Raises:
        TypeError / ValueError: wrong config type, inputs/targets that do not fit the model or
            the loss (the message names the expected shape).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if (test_inputs is None) != (test_targets is None):
        raise ValueError("pass both test_inputs and test_targets, or neither")
    if not (_is_int(eval_chunk) and eval_chunk > 0):
        raise ValueError(f"eval_chunk must be a positive int, got {eval_chunk!r}")
    dev = torch.device(device) if device is not None else params[0].device
    dtype = params[0].dtype
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]

    def prep_x(x: Tensor) -> Tensor:
        x = x.detach().to(dev)
        return x.to(dtype) if x.is_floating_point() else x

    x = prep_x(inputs)
    n = x.shape[0]
    if n == 0:
        raise ValueError("inputs are empty; need at least one training example")
    probe = check_accepts(model, x, n_examples=1)
    # the per-example output shape: (k,), or a sequence model's (T, V)
    k = tuple(probe.shape[1:]) if probe.ndim == 3 else int(probe.reshape(1, -1).shape[1])
    y = check_targets(config.loss, targets, n, k, dev, dtype, "targets")
    if test_inputs is not None:
        if not isinstance(test_inputs, Tensor):
            raise TypeError(f"test_inputs must be a torch.Tensor, got {type(test_inputs).__name__}")
        xt = prep_x(test_inputs)
        yt = check_targets(config.loss, test_targets, xt.shape[0], k, dev, dtype, "test_targets")
    else:
        xt = yt = None

    c = config
    base_kind = c.sam_base if c.optimizer == "sam" else c.optimizer
    opt = _make_optimizer(base_kind, params, c)
    gen = torch.Generator(device="cpu").manual_seed(c.seed)
    batch = n if c.batch_size is None else min(c.batch_size, n)
    full_batch = batch == n

    def batch_loss(xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor]:
        out = model(xb)
        return mean_loss(c.loss, out, yb), _n_correct(out.detach(), yb, c.loss)

    checkpoints: dict[int, Tensor] = {}
    history: list[EpochRecord] = []
    steps = 0
    stopped = False
    epochs_run = 0
    if 0 in c.checkpoint_epochs:
        checkpoints[0] = flat_params(model)

    bar: Any = None
    if progress:
        from tqdm.auto import tqdm  # only when asked for; keeps the import light

        bar = tqdm(total=c.epochs, desc="train", unit="epoch", leave=False)
    t0 = time.perf_counter()
    model.train()
    try:
        for epoch in range(1, c.epochs + 1):
            if full_batch:
                order: list[Tensor | None] = [None]
            else:
                perm = torch.randperm(n, generator=gen).to(dev)
                order = list(perm.split(batch))
            sum_loss = torch.zeros((), dtype=torch.float64, device=dev)
            sum_correct = torch.zeros((), dtype=torch.float64, device=dev)
            for idx in order:
                xb, yb = (x, y) if idx is None else (x[idx], y[idx])
                opt.zero_grad(set_to_none=True)
                loss, correct = batch_loss(xb, yb)
                loss.backward()
                if c.optimizer == "sam":
                    e = _sam_perturb(params, c.sam_rho)
                    opt.zero_grad(set_to_none=True)
                    batch_loss(xb, yb)[0].backward()
                    with torch.no_grad():
                        for p, d in zip(params, e):
                            p.sub_(d)
                opt.step()
                steps += 1
                sum_loss += loss.detach().double() * xb.shape[0]
                sum_correct += correct.double()
            epochs_run = epoch
            if epoch in c.checkpoint_epochs:
                checkpoints[epoch] = flat_params(model)
            stop = False
            if c.stop_at_train_loss is not None or c.stop_at_train_accuracy is not None:
                tl, ta = loss_and_accuracy(model, x, y, c.loss, chunk=eval_chunk)
                stop = ((c.stop_at_train_loss is not None and tl < c.stop_at_train_loss)
                        or (c.stop_at_train_accuracy is not None and ta >= c.stop_at_train_accuracy))
            last = stop or epoch == c.epochs
            if epoch % c.history_every == 0 or last:
                run_loss, run_acc = float(sum_loss / n), float(sum_correct / n)
                if xt is not None:
                    tel, tea = loss_and_accuracy(model, xt, yt, c.loss, chunk=eval_chunk)
                else:
                    tel = tea = None
                history.append(EpochRecord(epoch, run_loss, run_acc, tel, tea))
                if bar is not None:
                    bar.set_postfix(loss=f"{run_loss:.4g}")
            if bar is not None:
                bar.update(1)
            if stop:
                stopped = True
                break
    finally:
        if bar is not None:
            bar.close()

    train_loss, train_acc = loss_and_accuracy(model, x, y, c.loss, chunk=eval_chunk)
    if xt is not None:
        test_loss, test_acc = loss_and_accuracy(model, xt, yt, c.loss, chunk=eval_chunk)
    else:
        test_loss = test_acc = None
    seconds = time.perf_counter() - t0
    if base_kind == "adamw":
        # all parameters, frozen ones included (zero moments), to stay aligned with ``params``
        exp_avg, exp_avg_sq = _adam_moments(opt, list(model.parameters()))
    else:
        exp_avg = exp_avg_sq = None
    return TrainResult(
        params=flat_params(model),
        exp_avg=exp_avg,
        exp_avg_sq=exp_avg_sq,
        optimizer_steps=steps,
        checkpoints=checkpoints,
        history=tuple(history),
        train_loss=train_loss,
        train_accuracy=train_acc,
        test_loss=test_loss,
        test_accuracy=test_acc,
        seconds=seconds,
        epochs_run=epochs_run,
        stopped_early=stopped,
        seed=c.seed,
        config=c,
    )
