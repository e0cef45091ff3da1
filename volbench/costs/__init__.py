"""Batched cost of a network at many flat parameter vectors (the *cost protocol*).

The volume estimators need the training loss ``L(theta)`` of one network at hundreds of perturbed
parameter vectors ``theta = theta_0 + t * u``, each over a whole data set. :class:`ModelCost` turns a
model and its data into such a cost::

    cost(params[B, n]) -> Tensor[B],   cost(params)[b] = (1/N) * sum_i  l(f(x_i; params[b]), y_i)

with the flat order of ``torch.nn.utils.parameters_to_vector(model.parameters())``. It implements
the "Cost protocol" of ``docs/CONTRACTS.md``: ``accepts_stop_above``, ``n_params``, ``anchor``,
``filter_scale`` and ``max_batch``.

Costs (all non-negative, which early exit relies on):

* ``"ce"``   mean cross-entropy, integer targets (Fan et al., "Sharp minima can generalize", images);
  for a sequence model's outputs ``[N, T, V]`` per token, integer targets ``[N, T]``, the mean over
  all ``N * T`` tokens (the authors' character GPT, claim F14);
* ``"bce"``  binary cross-entropy with logits, targets in [0, 1] (their two-spirals MLP);
* ``"mse"``  ``torch.nn.MSELoss()`` default, mean over all N*k elements (their modular addition with
  one-hot targets, threshold 0.01);
* ``"kl"``   ``(1/N) sum_i KL(p(x_i; anchor) || p(x_i; theta))`` of the softmax predictions (Scherlis &
  Belrose, "Estimating the probability of sampling a trained neural network at random", sec. 3.4);
  zero at the anchor by construction, targets unused;
* ``"zero_one"`` error rate: argmax for several logits, sign of the logit for one.

Beyond the flat protocol, a ``ModelCost`` offers the *ray interface* (``docs/CONTRACTS.md``):
``cost.open_rays(origin, directions, sizes=...)`` returns a :class:`RayBatch` that evaluates the cost
along ``origin + t * d_k`` with the first layer's linearity in ``t`` (``volbench.costs.rays``) and
the mean over several nested prefixes of the data at once.

Modules: ``model_cost`` (validation, planning, the flat evaluation loop), ``engines`` (the matmul
and vmap forward passes), ``rays`` (the ray interface), ``losses`` (per-example losses and their
targets), ``layout`` (flat parameter layout, filter scales), ``chunking`` (memory planning).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from volbench.costs import ModelCost
    >>> g = torch.Generator().manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> x, y = torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)
    >>> cost = ModelCost(model, x, y, loss="ce")
    >>> params = cost.anchor + 0.1 * torch.randn(5, cost.n_params, generator=g)
    >>> cost(params).shape
    torch.Size([5])
    >>> cost.path
    'matmul'
"""
from volbench.costs.chunking import ChunkingDefaults, CostOutOfMemoryError
from volbench.costs.layout import ParamInfo
from volbench.costs.losses import LOSSES
from volbench.costs.model_cost import PATHS, ModelCost
from volbench.costs.rays import RayBatch

__all__ = ["LOSSES", "PATHS", "ChunkingDefaults", "CostOutOfMemoryError", "ModelCost", "ParamInfo", "RayBatch"]
