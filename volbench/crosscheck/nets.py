"""The small trained networks the cross-checks measure (claims E4 and E5): ReLU MLPs on linearly
separable points, the papers' registry nets trained on few examples (the two spirals, the UCI
digits, MNIST), and the Boolean n = 7 network drawn from its NNGP prior. Each is trained (or drawn)
once per process (``functools.cache``) from its seed and returned as a
:class:`~volbench.costs.ModelCost`.

Example (the points; the nets train for seconds to minutes):
    >>> x, y = separable_points(0, n=6)
    >>> tuple(x.shape), bool(((x[:, 0] + x[:, 1] > 0).double() == y[:, 0]).all())
    ((6, 2), True)
"""
from __future__ import annotations

import functools
import math

import torch
from torch import nn

from volbench.costs import ModelCost

__all__ = ["separable_points", "separable_net", "trained_registry_net", "boolean_net"]


def separable_points(seed: int = 0, n: int = 200):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x, (x[:, 0] + x[:, 1] > 0).to(torch.float64)[:, None]


@functools.cache
def separable_net(hidden: int, seed: int = 0):
    x, y = separable_points(seed)
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 1)).double()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(1000):
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(m(x), y).backward()
        opt.step()
    return ModelCost(m, x, y, loss="bce", dtype=torch.float64)


@functools.cache
def trained_registry_net(name: str, seed: int = 0, hidden: tuple | None = None, examples: int | None = None):
    from volbench.data import load
    from volbench.lab.models import build
    from volbench.lab.train import paper_recipe, train

    if name == "swiss_mlp":
        ds = load("swiss_roll", n_train=200, seed=seed + 10)
        kw = dict(hidden=hidden) if hidden else {}
        model = build("swiss_mlp", seed=seed, **kw)
        recipe = paper_recipe("swiss_mlp", epochs=2000, lr=1e-2) if hidden else paper_recipe("swiss_mlp")
        loss = "bce"
    elif name == "digits_mlp":
        ds = load("digits", seed=seed + 10)
        # 500 epochs (not the paper code's 25): on 256 examples 25 epochs stop far from a minimum, where
        # the volume-scaling slope is meaningless (a non-zero gradient makes the sublevel set half-space-like).
        model, recipe, loss = build("digits_mlp", seed=seed), paper_recipe("digits_mlp", epochs=500), "ce"
    elif name == "mnist_mlp":
        from volbench.lab import load_dataset

        ds = load_dataset("mnist")
        model, loss = build("mnist_mlp", seed=seed), "ce"
        recipe = paper_recipe("mnist_mlp", epochs=100)
    else:
        raise ValueError(name)
    x, y = ds.train_inputs, ds.train_targets
    if examples:
        x, y = x[:examples], y[:examples]
    train(model, x, y, recipe)
    dtype = torch.float64 if hidden else torch.float32
    return ModelCost(model, x, y, loss=loss, dtype=dtype), model, x, y


@functools.cache
def boolean_net(seed: int = 0):
    from volbench.function_space.boolean import boolean_inputs
    from volbench.lab.models import build

    model = build("boolean_fcn", seed=seed, init="nngp")  # a draw from the NNGP prior: the anchor
    X = boolean_inputs(7)
    with torch.no_grad():
        f = (model(X)[:, 0] > 0).float()
    std = torch.cat([torch.full((p.numel(),), 1.0 / math.sqrt(mod.in_features) if name == "weight" else 0.1)
                     for mod in model if isinstance(mod, nn.Linear) for name, p in mod.named_parameters()])
    return ModelCost(model, X, f, loss="zero_one"), std.double()
