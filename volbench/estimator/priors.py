"""Standard deviations of the Gaussian prior N(0, diag(sigma^2)) for the Gaussian measure.

Scherlis & Belrose (Sec. 3.3) replace the Lebesgue measure by "the Gaussian initialization
measure", reading training as Bayesian inference with a prior "related to initialization and
regularization of the network" (Sec. 2: posterior proportional to rho(theta) exp(-L(theta))).
This module gives three choices of sigma, each in parameter units:

- ``prior_std_from_init(model)``: per-parameter std of the distribution PyTorch initialises each
  layer from ([n], flat parameter order);
- ``prior_std_rms(initial_params)``: one isotropic sigma, the RMS of an initial parameter vector
  (the paper's code does this for its large models);
- ``prior_std_from_weight_decay(weight_decay, n_train)``: sigma = 1 / sqrt(weight_decay * n_train),
  the Gaussian prior that an L2 penalty implies (the paper's code, small MLP).

The estimator takes either a float or an [n] tensor as ``prior_std``.

Example:
    >>> import torch
    >>> from torch import nn
    >>> std = prior_std_from_init(nn.Linear(3, 2))          # fan_in 3: 1/sqrt(9) = 1/3
    >>> std.shape, round(float(std[0]), 6)
    (torch.Size([8]), 0.333333)
    >>> prior_std_from_weight_decay(0.01, 1024)             # 1/sqrt(10.24)
    0.3125
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["INIT_SCHEMES", "prior_std_from_init", "prior_std_rms", "prior_std_from_weight_decay"]

#: Initialisation schemes ``prior_std_from_init`` knows.
INIT_SCHEMES = ("pytorch-default",)

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _fan_in(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.in_features
    # weight [out, in / groups, *kernel]: fan_in = in / groups * prod(kernel)
    return module.weight.shape[1] * math.prod(module.weight.shape[2:])


def prior_std_from_init(model: nn.Module, scheme: str = "pytorch-default") -> Tensor:
    """Per-parameter std of the model's initialisation distribution, [n] float64 in
    ``model.parameters()`` order (the flat vector ``parameters_to_vector`` builds).

    "pytorch-default": ``nn.Linear`` and ``nn.Conv{1,2,3}d`` draw weights with
    ``kaiming_uniform_(a=sqrt(5))`` and biases from U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the weight
    bound is gain * sqrt(3 / fan_in) with gain = sqrt(2 / (1 + 5)), also 1/sqrt(fan_in). A uniform
    U(-b, b) has std b / sqrt(3), so every entry of such a layer has

        sigma = 1 / sqrt(3 * fan_in),   fan_in = in_features  (conv: in_channels/groups * prod(kernel)).

    The Gaussian with this sigma matches the initialisation's first two moments (it is not the
    same distribution: the uniform is bounded). Layers with other initialisations (normalisation
    layers start at exactly 1 and 0, embeddings at N(0, 1), ...) raise, naming the layer; use
    ``prior_std_rms`` for such models.

    Example:
        >>> from torch import nn
        >>> std = prior_std_from_init(nn.Sequential(nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 1)))
        >>> std.shape, round(float(std[0]), 6), round(float(std[-1]), 6)   # 1/6 and 1/sqrt(12)
        (torch.Size([57]), 0.166667, 0.288675)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; known: {', '.join(INIT_SCHEMES)}")
    pieces: list[Tensor] = []
    seen: list[int] = []
    seen_set: set[int] = set()
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if id(p) in seen_set:  # tied parameters appear once in model.parameters()
                continue
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if not isinstance(module, (nn.Linear, *_CONV)) or p_name not in ("weight", "bias"):
                raise ValueError(
                    f"parameter {full!r} belongs to {type(module).__name__}, whose initialisation is not "
                    f"U(-1/sqrt(fan_in), 1/sqrt(fan_in)); prior_std_from_init covers nn.Linear and nn.Conv1d/2d/3d "
                    f"only; use prior_std_rms(initial_params) for this model"
                )
            sigma = 1.0 / math.sqrt(3.0 * _fan_in(module))
            pieces.append(torch.full((p.numel(),), sigma, dtype=torch.float64))
            seen.append(id(p))
            seen_set.add(id(p))
    if not pieces:
        raise ValueError("the model has no parameters")
    # Guard the flat order: it must be model.parameters()' order, which the costs flatten by.
    if seen != [id(p) for p in model.parameters()]:
        raise RuntimeError("parameter order differs from model.parameters(); cannot build the flat prior std")
    return torch.cat(pieces)


def prior_std_rms(initial_params: Tensor) -> float:
    """Isotropic prior std: the RMS of an initial flat parameter vector, sqrt(mean theta_0^2).

    For a freshly initialised network this is the single sigma that matches the initialisation's
    average second moment. The paper's code uses one RMS sigma for its large models (its generic
    fallback is sqrt(mean(params^2)) of whatever vector it is handed). Pass the *initial*
    parameters here: the RMS of trained weights is a different, data-dependent prior.

    Example:
        >>> import torch
        >>> prior_std_rms(torch.tensor([3.0, -4.0, 0.0, 0.0]))
        2.5
    """
    if not isinstance(initial_params, Tensor):
        raise TypeError(f"initial_params must be a torch.Tensor, got {type(initial_params).__name__}")
    if initial_params.numel() == 0 or not initial_params.is_floating_point():
        raise ValueError("initial_params must be a non-empty floating-point tensor (e.g. "
                         "parameters_to_vector(model.parameters()))")
    x = initial_params.detach().to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError("initial_params has non-finite entries")
    rms = float(torch.sqrt(torch.mean(x * x)))
    if rms == 0.0:
        raise ValueError("initial_params are all zero; a zero-width prior is degenerate; pass the initial weights")
    return rms


def prior_std_from_weight_decay(weight_decay: float, n_train: int) -> float:
    """Prior std implied by L2 regularisation: sigma = 1 / sqrt(weight_decay * n_train).

    Training minimises the mean loss plus (weight_decay / 2) ||theta||^2 (PyTorch's
    ``weight_decay`` adds weight_decay * theta to the gradient, which is this penalty). Reading the
    mean loss as (1 / n_train) x the negative log-likelihood of n_train examples, the whole
    objective times n_train is

        NLL(theta) + (weight_decay * n_train / 2) ||theta||^2 = -log[likelihood x N(0, sigma^2 I)] + const,

    the posterior of Scherlis & Belrose's Sec. 2 (proportional to rho(theta) exp(-L(theta))) with a
    Gaussian rho of precision weight_decay * n_train. The formula is what the paper's code uses for
    its digits MLP (the paper's text does not print it). With AdamW's decoupled weight decay the
    correspondence is only heuristic: the decay is not scaled by Adam's preconditioner.

    Example:
        >>> prior_std_from_weight_decay(0.01, 100)
        1.0
    """
    for name, value in (("weight_decay", weight_decay), ("n_train", n_train)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if not isinstance(n_train, int):
        raise ValueError(f"n_train must be an integer number of training examples, got {n_train!r}")
    return 1.0 / math.sqrt(weight_decay * n_train)
