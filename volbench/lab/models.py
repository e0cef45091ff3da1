"""The papers' architectures, by name, initialised deterministically from a seed.

Every MLP and CNN is a flat ``nn.Sequential`` of ``nn.Flatten``, ``nn.Linear``, ``nn.Conv2d``,
``nn.MaxPool2d`` and activations, so other modules can walk the layer structure (the cost module
reads weight rows per output unit; ``volbench.costs.ModelCost`` evaluates MLPs through a batched
matmul path that needs exactly this form). They take the data set's natural input shape (images
``[N, C, H, W]``; MLPs flatten inside with a leading ``nn.Flatten()``) and return logits
``[N, n_outputs]``. The sequence model ``char_gpt`` (``volbench.lab.gpt``) takes token ids
``[N, T]`` and returns next-token logits ``[N, T, V]``; the cost evaluates it through its vmap path.

=================  ==========================  =========  =====================================
name               layers                      params     source
=================  ==========================  =========  =====================================
``mnist_mlp``      784-256-128-10, ReLU        235,146    Fan et al., Sec. 5 and Table 2
``mnist_mlp_deep`` 784-256-256-128-10, ReLU    300,938    Fan et al., App. C.2
``cifar_mlp``      3072-512-256-10, ReLU       1,707,274  Fan et al., Table 2
``mnist_cnn``      see below                   421,642    Fan et al., App. C.1 ("see repo")
``cifar_cnn``      see below                   1,276,234  Fan et al., App. C.1 ("see repo")
``swiss_mlp``      2-32x5-1, ReLU              4,353      Fan et al., Sec. 5 (two spirals, BCE)
``swiss_mlp_deep`` 2-32x6-1, ReLU              5,409      Fan et al., App. C.2
``modular_mlp``    194-250-97, ReLU            73,097     Fan et al., Sec. 5.5 (mod 97, MSE)
``modular_mlp_47`` 94-250-47, ReLU             35,547     the same for mod 47 (grokking smoke variant)
``digits_mlp``     64-64-10, GELU (tanh)       4,810      Scherlis & Belrose, Sec. 4.1
``boolean_fcn``    7-40-40-1, ReLU             2,001      Zhang et al., Sec. 4.1 (n = 7 Boolean)
``binary_fcn``     784-40-40-1, ReLU           33,081     Zhang et al., Sec. 4.2 (MNIST 0-4/5-9)
``char_gpt``       GPT, 6 x (6 heads, 384)     10,745,088 Fan et al.'s repository,
                   context 256, vocabulary 65             experiments/shakespeare_char (F14)
=================  ==========================  =========  =====================================

``char_gpt`` takes its sizes as options (``n_layer``, ``n_head``, ``n_embd``, ``block_size``,
``vocab_size``, ``bias``, ``activation``; :class:`volbench.lab.gpt.GPTConfig`), e.g. the smoke
tier's ``build("char_gpt", seed=0, n_layer=2, n_head=2, n_embd=64, block_size=32)`` (104,832
parameters). Its count: 10,745,088 in the flat vector, nanoGPT's "10.65M" without the position
embeddings (``volbench.lab.gpt``).

CNNs. The main paper defers their details to its repository; its public code (facts, not code,
taken over) builds 3x3 convolutions with padding 1, each followed by ReLU and a 2x2 max-pool, then
fully connected ReLU layers:

* ``mnist_cnn``: conv 1->32, pool, conv 32->64, pool -> 64*7*7 = 3,136 -> 128 -> 10;
* ``cifar_cnn``: conv 3->32, pool, conv 32->64, pool, conv 64->128, pool -> 128*4*4 = 2,048 ->
  512 -> 256 -> 10.

Activations. The swiss-roll, modular and MNIST/CIFAR MLPs of the main paper use ReLU (its code);
the digits MLP of Scherlis & Belrose uses GELU, and their JAX code's ``gelu`` is the tanh
approximation (JAX's default), so ``digits_mlp`` uses ``nn.GELU(approximate="tanh")``. The third
paper's FCNs have two hidden ReLU layers of 40 units ("784 inputs and 40 ReLU units in each hidden
layer", Sec. 4.2; the n = 7 system has "two hidden layers of 40 ReLU units each", Sec. 4.1).

Initialisation. PyTorch's default (``init="torch"``: Kaiming-uniform weights with a = sqrt(5),
i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and U(-1/sqrt(fan_in), 1/sqrt(fan_in)) biases), which is
what the first two papers' code uses (Scherlis & Belrose draw Gaussians of the same variance).
``init="nngp"`` draws the NNGP prior of the third paper instead::

    W_ij ~ N(0, sigma_w^2 / fan_in),    b_i ~ N(0, sigma_b^2),

with ``fan_in`` = in_features (conv: in_channels * kh * kw). Defaults: ``sigma_w = 1.0``,
``sigma_b = 0.1`` for ``boolean_fcn`` (Zhang et al., Sec. 4.1); ``sigma_w = sqrt(2)``,
``sigma_b = 1.0`` for every other model, the arc-cosine kernel's parameters in the third paper's
GP code, so sampled networks match the prior whose volume the NNGP computes.

The weights are drawn on the CPU in float32 under ``torch.random.fork_rng`` (default init) or
from an explicit ``torch.Generator`` (NNGP init, and ``char_gpt``) and then moved to
``device``/``dtype``: the same seed gives the same network on every device and in every dtype, and
the global RNG is untouched.

Size: one concept, the registry of architectures and how each is built and initialised (a little
over 450 lines with the sequence model's entry); the character GPT's layers live in
``volbench.lab.gpt``.

Example:
    >>> import torch
    >>> from volbench.lab import models
    >>> net = models.build("mnist_mlp", seed=0)
    >>> models.model_info(net)["n_params"]
    235146
    >>> net(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    >>> x = torch.randn(4, 1, 28, 28)
    >>> scaled = models.alpha_scale(net, 0, 5.0)
    >>> bool(torch.allclose(net(x), scaled(x), atol=1e-5))
    True
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from volbench._checks import check_seed
from volbench.lab.gpt import CharGPT, GPTConfig

__all__ = [
    "ModelSpec",
    "names",
    "spec",
    "build",
    "model_info",
    "weight_layers",
    "alpha_scale",
    "input_shape",
]

INITS: tuple[str, ...] = ("torch", "nngp")

# Modules through which y = f(alpha * x) = alpha * f(x) for alpha > 0 (positive homogeneity), so
# alpha-scaling one layer and dividing the next by alpha leaves the network's function unchanged.
_HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU, nn.Identity, nn.Flatten, nn.MaxPool2d, nn.AvgPool2d, nn.Dropout)
_WEIGHT_LAYERS = (nn.Linear, nn.Conv2d)


@dataclass(frozen=True)
class ModelSpec:
    """What one named architecture is.

    Attributes:
        name: registry name, e.g. ``"mnist_mlp"``.
        input_shape: shape of one input example, e.g. ``(1, 28, 28)``.
        n_outputs: logits per example (1 for the binary BCE tasks).
        loss: the loss the paper trains it with: ``"ce"``, ``"bce"`` or ``"mse"``.
        description: layer sizes in words.
        reference: paper and section.
        nngp_sigma_w, nngp_sigma_b: defaults of ``init="nngp"`` (see the module docstring).
        hidden: default hidden widths (MLPs; empty for CNNs, whose widths are fixed).
        activation: hidden activation of the MLPs, ``"relu"`` or ``"gelu_tanh"``.
        kind: ``"mlp"``, ``"cnn"`` or ``"sequence"`` (token ids in, logits per position out).
    """

    name: str
    input_shape: tuple[int, ...]
    n_outputs: int
    loss: str
    description: str
    reference: str
    nngp_sigma_w: float = math.sqrt(2.0)
    nngp_sigma_b: float = 1.0
    hidden: tuple[int, ...] = ()
    activation: str = "relu"
    kind: str = "mlp"

    @property
    def is_mlp(self) -> bool:
        return self.kind == "mlp"

    @property
    def n_inputs(self) -> int:
        return math.prod(self.input_shape)


_FAN = "Fan, Sandlund & Ko, 'Sharp minima can generalize'"
_ZHANG = "Zhang, Reid, Valle-Perez & Louis, 'Why flatness correlates with generalization'"
_SCHERLIS = "Scherlis & Belrose, 'Estimating the probability of sampling a trained neural network'"

_SPECS: Mapping[str, ModelSpec] = MappingProxyType({
    s.name: s
    for s in (
        ModelSpec("mnist_mlp", (1, 28, 28), 10, "ce", "784-256-128-10 ReLU MLP",
                  f"{_FAN}, Sec. 5, Table 2", hidden=(256, 128)),
        ModelSpec("mnist_mlp_deep", (1, 28, 28), 10, "ce", "784-256-256-128-10 ReLU MLP",
                  f"{_FAN}, App. C.2", hidden=(256, 256, 128)),
        ModelSpec("cifar_mlp", (3, 32, 32), 10, "ce", "3072-512-256-10 ReLU MLP",
                  f"{_FAN}, Table 2", hidden=(512, 256)),
        ModelSpec("mnist_cnn", (1, 28, 28), 10, "ce",
                  "conv3x3 1-32, pool, conv3x3 32-64, pool, 3136-128-10 (ReLU)",
                  f"{_FAN}, App. C.1 (architecture from the authors' repository)", kind="cnn"),
        ModelSpec("cifar_cnn", (3, 32, 32), 10, "ce",
                  "conv3x3 3-32, pool, 32-64, pool, 64-128, pool, 2048-512-256-10 (ReLU)",
                  f"{_FAN}, App. C.1 (architecture from the authors' repository)", kind="cnn"),
        ModelSpec("swiss_mlp", (2,), 1, "bce", "2-32x5-1 ReLU MLP (two spirals)",
                  f"{_FAN}, Sec. 5", hidden=(32,) * 5),
        ModelSpec("swiss_mlp_deep", (2,), 1, "bce", "2-32x6-1 ReLU MLP (two spirals)",
                  f"{_FAN}, App. C.2", hidden=(32,) * 6),
        ModelSpec("modular_mlp", (194,), 97, "mse", "194-250-97 ReLU MLP (addition mod 97)",
                  f"{_FAN}, Sec. 5.5", hidden=(250,)),
        # The CPU-sized variant of the grokking study (claim F10): addition mod 47 instead of 97,
        # the same width and recipe; 5,000 epochs on 1,104 pairs are ~1 TFLOP of training.
        ModelSpec("modular_mlp_47", (94,), 47, "mse", "94-250-47 ReLU MLP (addition mod 47)",
                  f"{_FAN}, Sec. 5.5, at modulus 47", hidden=(250,)),
        ModelSpec("digits_mlp", (1, 8, 8), 10, "ce", "64-64-10 MLP, GELU (tanh approximation)",
                  f"{_SCHERLIS}, Sec. 4.1", hidden=(64,), activation="gelu_tanh"),
        ModelSpec("boolean_fcn", (7,), 1, "bce", "7-40-40-1 ReLU FCN (n = 7 Boolean functions)",
                  f"{_ZHANG}, Sec. 4.1", nngp_sigma_w=1.0, nngp_sigma_b=0.1, hidden=(40, 40)),
        ModelSpec("binary_fcn", (1, 28, 28), 1, "bce", "784-40-40-1 ReLU FCN (binarised MNIST)",
                  f"{_ZHANG}, Sec. 4.2", hidden=(40, 40)),
        ModelSpec("char_gpt", (GPTConfig().block_size,), GPTConfig().vocab_size, "ce",
                  "character GPT (nanoGPT's shape): 6 pre-LN blocks of 6-head causal attention and a 4x GELU "
                  "MLP, 384 wide, context 256, vocabulary 65, LM head tied to the token embedding",
                  f"{_FAN}: the authors' repository, experiments/shakespeare_char (not in the paper)",
                  kind="sequence"),
    )
})


def names() -> list[str]:
    """Sorted names of every architecture :func:`build` knows."""
    return sorted(_SPECS)


def spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; ValueError listing :func:`names` if unknown."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    try:
        return _SPECS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(names())}") from None


# --------------------------------------------------------------------------- construction
def _activation(kind: str) -> nn.Module:
    if kind == "relu":
        return nn.ReLU()
    if kind == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    raise AssertionError(f"unhandled activation {kind!r}")  # registry bug, not user input


def _mlp(s: ModelSpec, hidden: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = s.n_inputs
    for h in hidden:
        layers += [nn.Linear(width, h), _activation(s.activation)]
        width = h
    layers.append(nn.Linear(width, s.n_outputs))
    return nn.Sequential(*layers)


def _cnn(in_channels: int, channels: tuple[int, ...], side: int, fc: tuple[int, ...],
         n_outputs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = in_channels
    for out in channels:
        # 3x3, padding 1 keeps the side; every conv block ends in a 2x2 max-pool (authors' repo).
        layers += [nn.Conv2d(c, out, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2)]
        c = out
        side //= 2
    layers.append(nn.Flatten())
    width = c * side * side
    for h in fc:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


def _construct(s: ModelSpec, hidden: tuple[int, ...]) -> nn.Sequential:
    if s.name == "mnist_cnn":
        return _cnn(1, (32, 64), 28, (128,), s.n_outputs)
    if s.name == "cifar_cnn":
        return _cnn(3, (32, 64, 128), 32, (512, 256), s.n_outputs)
    return _mlp(s, hidden)


def _nngp_init_(model: nn.Module, sigma_w: float, sigma_b: float, gen: torch.Generator) -> None:
    """W ~ N(0, sigma_w^2 / fan_in), b ~ N(0, sigma_b^2) for every Linear / Conv2d, in order."""
    with torch.no_grad():
        for layer in weight_layers(model):
            fan_in = layer.weight[0].numel()  # in_features, or in_channels * kh * kw
            layer.weight.normal_(0.0, sigma_w / math.sqrt(fan_in), generator=gen)
            if layer.bias is not None:
                layer.bias.normal_(0.0, sigma_b, generator=gen)




def build(name: str, *, seed: int, device: torch.device | str | None = None,
          dtype: torch.dtype = torch.float32, **options: Any) -> nn.Module:
    """Build the architecture ``name`` with weights drawn from ``seed``.

    Args:
        name: one of :func:`names`.
        seed: non-negative int; the only source of randomness (global RNG untouched).
        device: where the model lives (default CPU). Weights are drawn on the CPU first, so a
            seed gives the same network on every device.
        dtype: parameter dtype (default float32; the float32 draw is cast, so a float64 model
            holds exactly the float32 network's values).
        **options:
            ``init``: ``"torch"`` (default; PyTorch's default init) or ``"nngp"``
            (W ~ N(0, sigma_w^2/fan_in), b ~ N(0, sigma_b^2); Zhang et al.).
            ``sigma_w``, ``sigma_b``: NNGP standard deviations (only with ``init="nngp"``;
            defaults from :class:`ModelSpec`).
            ``hidden``: tuple of hidden widths overriding the paper's (MLPs only), e.g. a
            smaller ``swiss_mlp`` for fast tests.
            Sequence models (``char_gpt``) take the fields of :class:`volbench.lab.gpt.GPTConfig`
            instead (``n_layer``, ``n_head``, ``n_embd``, ``block_size``, ``vocab_size``, ``bias``,
            ``activation``); their weights come from a CPU generator seeded ``seed``.

    Returns:
        A flat ``nn.Sequential`` (MLPs, CNNs) or a :class:`volbench.lab.gpt.CharGPT`, in train mode
        (no dropout/batch-norm, so modes do not matter).

    Example:
        >>> m = build("boolean_fcn", seed=3, init="nngp")
        >>> sum(p.numel() for p in m.parameters())
        2001
    """
    s = spec(name)
    seed = check_seed(seed)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    if s.kind == "sequence":
        model = CharGPT(_gpt_config(name, options), generator=torch.Generator(device="cpu").manual_seed(seed))
        return model.to(device=device, dtype=dtype)
    allowed = {"init", "sigma_w", "sigma_b"} | ({"hidden"} if s.is_mlp else set())
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(f"build({name!r}) got unknown option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    init = options.get("init", "torch")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if init != "nngp" and ({"sigma_w", "sigma_b"} & set(options)):
        raise ValueError("sigma_w / sigma_b only apply with init='nngp'; pass init='nngp' as well")
    sigma_w = float(options.get("sigma_w", s.nngp_sigma_w))
    sigma_b = float(options.get("sigma_b", s.nngp_sigma_b))
    if not (math.isfinite(sigma_w) and sigma_w > 0 and math.isfinite(sigma_b) and sigma_b >= 0):
        raise ValueError(f"need sigma_w > 0 and sigma_b >= 0 (finite), got {sigma_w}, {sigma_b}")
    hidden = options.get("hidden", s.hidden)
    if s.is_mlp:
        if (not isinstance(hidden, (tuple, list)) or len(hidden) == 0
                or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden)):
            raise ValueError(f"hidden must be a non-empty tuple of positive ints, got {hidden!r}")
        hidden = tuple(hidden)

    # Draw on the CPU in float32 with the global RNG forked: default init uses the global
    # generator inside reset_parameters, so forking is the only way to seed it without side
    # effects; devices=[] keeps CUDA RNGs out of it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _construct(s, hidden)
    if init == "nngp":
        gen = torch.Generator(device="cpu").manual_seed(seed)
        _nngp_init_(model, sigma_w, sigma_b, gen)
    return model.to(device=device, dtype=dtype)


def _gpt_config(name: str, options: dict[str, Any]) -> GPTConfig:
    allowed = set(GPTConfig.__dataclass_fields__)
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(f"build({name!r}) got unknown option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return GPTConfig(**options)


def input_shape(name: str, **options: Any) -> tuple[int, ...]:
    """The per-example input shape ``build(name, **options)`` takes: a sequence model's longest
    window ``(block_size,)`` (shorter windows are fine), the spec's ``input_shape`` otherwise.

    Example:
        >>> input_shape("char_gpt", block_size=32), input_shape("mnist_mlp")
        ((32,), (1, 28, 28))
    """
    s = spec(name)
    if s.kind == "sequence":
        return (_gpt_config(name, dict(options)).block_size,)
    return tuple(s.input_shape)


# --------------------------------------------------------------------------- inspection
def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The ``nn.Linear`` / ``nn.Conv2d`` modules of ``model`` in registration (forward) order."""
    return [m for m in model.modules() if isinstance(m, _WEIGHT_LAYERS)]


def model_info(model: nn.Module) -> dict[str, Any]:
    """Parameter count and layer list of ``model`` (JSON-serialisable).

    Returns:
        ``{"n_params": int, "layers": [...], "modules": [...]}`` where each layer entry is
        ``{"index", "name", "type", "weight_shape", "bias_shape", "n_params", "offset"}``;
        ``offset`` is where the layer's weight starts in the flat vector
        ``torch.nn.utils.parameters_to_vector(model.parameters())`` (its bias follows the
        weight), and ``modules`` lists every leaf module's class name in order.

    Example:
        >>> info = model_info(build("swiss_mlp", seed=0))
        >>> info["n_params"], len(info["layers"]), info["layers"][1]["offset"]
        (4353, 6, 96)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    offsets: dict[int, int] = {}
    pos = 0
    for p in model.parameters():
        offsets[id(p)] = pos
        pos += p.numel()
    layers = []
    index = 0
    for name, m in model.named_modules():
        if not isinstance(m, _WEIGHT_LAYERS):
            continue
        layers.append({
            "index": index,
            "name": name,
            "type": type(m).__name__,
            "weight_shape": list(m.weight.shape),
            "bias_shape": list(m.bias.shape) if m.bias is not None else None,
            "n_params": m.weight.numel() + (m.bias.numel() if m.bias is not None else 0),
            "offset": offsets[id(m.weight)],
        })
        index += 1
    modules = [type(m).__name__ for m in model.modules() if not any(True for _ in m.children())]
    return {"n_params": pos, "layers": layers, "modules": modules}


# --------------------------------------------------------------------------- alpha scaling
def alpha_scale(model: nn.Module, layer_index: int, alpha: float) -> nn.Module:
    """A copy of ``model`` with weight layer ``layer_index`` scaled by ``alpha`` and the next
    weight layer's weights divided by ``alpha`` (Dinh et al. 2017; Zhang et al., App. C, eq. 9):

        (W_i, b_i, W_{i+1}) -> (alpha W_i, alpha b_i, W_{i+1} / alpha),   alpha > 0.

    Because ReLU (and max-pooling, flattening) is positively homogeneous,
    ``relu(alpha z) = alpha relu(z)``, the network's function is unchanged while flatness measures
    based on parameter derivatives change (claims F13, Z3). ``b_{i+1}`` is untouched.

    Args:
        model: a flat (possibly nested) ``nn.Sequential``; ``layer_index`` counts its
            ``nn.Linear`` / ``nn.Conv2d`` modules from 0 in forward order (as :func:`model_info`).
        layer_index: which layer to scale up; there must be a weight layer after it.
        alpha: positive finite factor.

    Raises:
        ValueError: alpha not positive, no next layer, or a module between the two layers that
            is not positively homogeneous (e.g. GELU), where the function would change.

    Example:
        >>> m = build("boolean_fcn", seed=0)
        >>> m2 = alpha_scale(m, 1, 2.0)
        >>> bool(torch.equal(m2[3].weight, 2.0 * m[3].weight))
        True
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(
            f"alpha_scale needs an nn.Sequential (forward order = module order), got {type(model).__name__}"
        )
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a real number, got {type(alpha).__name__}")
    alpha = float(alpha)
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be positive and finite (ReLU is only positively homogeneous), got {alpha}")
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    layer_pos = [i for i, m in enumerate(leaves) if isinstance(m, _WEIGHT_LAYERS)]
    if isinstance(layer_index, bool) or not isinstance(layer_index, int):
        raise TypeError(f"layer_index must be an int, got {type(layer_index).__name__}")
    if not 0 <= layer_index < len(layer_pos) - 1:
        raise ValueError(
            f"layer_index must be in [0, {len(layer_pos) - 2}] (a weight layer followed by another); "
            f"the model has {len(layer_pos)} weight layers, got {layer_index}"
        )
    lo, hi = layer_pos[layer_index], layer_pos[layer_index + 1]
    for m in leaves[lo + 1 : hi]:
        if type(m) not in _HOMOGENEOUS:
            raise ValueError(
                f"alpha-scaling keeps the function only through positively homogeneous modules "
                f"(ReLU, max-pool, flatten); layers {layer_index} and {layer_index + 1} are joined "
                f"by {type(m).__name__}"
            )
    if isinstance(leaves[lo], nn.Linear) and isinstance(leaves[hi], nn.Conv2d):
        raise ValueError("a Linear layer followed by a Conv2d is not supported by alpha_scale")
    out = copy.deepcopy(model)
    out_leaves = [m for m in out.modules() if not any(True for _ in m.children())]
    first, second = out_leaves[lo], out_leaves[hi]
    with torch.no_grad():
        first.weight.mul_(alpha)
        if first.bias is not None:
            first.bias.mul_(alpha)
        second.weight.div_(alpha)
    return out
