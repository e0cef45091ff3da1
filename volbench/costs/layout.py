"""Where each parameter tensor lies in the flat vector, and the filter scales built from it.

The flat order is that of ``torch.nn.utils.parameters_to_vector(model.parameters())``. A parameter
shared by several modules (tied weights: a language model's token embedding reused as its output
layer) is one tensor in ``model.parameters()`` and ``model.named_parameters()`` (both drop repeats),
so it lies in the flat vector once, under the name it is first registered with, and a perturbation
of it moves every module that uses it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["ParamInfo", "NORM_TYPES", "describe_parameters", "filter_scale"]

#: Normalisation layers whose 1-D weight is an elementwise gain (class names, so subclasses by
#: other names are not guessed at): ``y = g * normalise(x) + beta`` per feature.
NORM_TYPES: frozenset[str] = frozenset({
    "LayerNorm", "RMSNorm", "GroupNorm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm1d",
    "InstanceNorm2d", "InstanceNorm3d", "LocalResponseNorm"})


@dataclass(frozen=True)
class ParamInfo:
    """One parameter tensor of the model and where it lives in the flat vector.

    Attributes:
        name: full parameter name, e.g. ``"0.weight"`` (as in ``model.named_parameters()``).
        module: qualified name of the owning module, e.g. ``"0"`` (``""`` for the root).
        module_type: class name of the owning module, e.g. ``"Linear"``, ``"Conv2d"``.
        kind: ``"weight"`` (>= 2-D; one row per output unit), ``"bias"`` (a 1-D tensor named
            ``bias``) or ``"other"`` (any other parameter, e.g. a norm layer's 1-D gain).
        shape: the tensor's shape.
        slice: where it lies in the flat vector.
        n_out: output units: ``shape[0]`` (Linear rows, conv output filters, bias entries);
            ``shape[1] * groups`` for transposed convolutions.
    """

    name: str
    module: str
    module_type: str
    kind: str
    shape: tuple[int, ...]
    slice: slice
    n_out: int

    @property
    def numel(self) -> int:
        return self.slice.stop - self.slice.start


def describe_parameters(model: nn.Module) -> tuple[ParamInfo, ...]:
    """ParamInfo for each parameter in ``model.parameters()`` order (shared ones once)."""
    modules = dict(model.named_modules())
    infos = []
    offset = 0
    for name, p in model.named_parameters():
        module_name, _, local = name.rpartition(".")
        module = modules[module_name]
        shape = tuple(p.shape)
        if p.ndim >= 2:
            kind = "weight"
        elif local == "bias":
            kind = "bias"
        else:
            kind = "other"
        n_out = shape[0] if shape else 1
        if kind == "weight" and isinstance(module, nn.modules.conv._ConvTransposeNd):
            n_out = shape[1] * module.groups
        infos.append(ParamInfo(name=name, module=module_name, module_type=type(module).__name__, kind=kind,
                               shape=shape, slice=slice(offset, offset + p.numel()), n_out=n_out))
        offset += p.numel()
    return tuple(infos)


def filter_scale(layers: tuple[ParamInfo, ...], point: Tensor, bias: str) -> Tensor:
    """Per-parameter multiplier of filter-normalised directions at the flat parameters ``point``.

    Filter normalisation (Li et al. 2018; Fan et al., App. A.2, eq. (8)-(9)) scales the noise of
    every *unit* (an output row of a map) by that unit's norm, so that a perturbation is the same
    relative size in every unit and rescalings the network is invariant to carry the directions
    along. The rule for each kind of parameter, and why:

    * **weights** (every parameter with >= 2 dimensions): each entry gets the L2 norm of its output
      row ``W[j, ...]`` (Linear: ``W[j, :]``; Conv: the output filter ``W[j, :, :, :]``; attention's
      query/key/value and output projections are Linear layers, so each projected feature is a
      unit). **Embeddings** ``E[V, C]`` are weights too: row ``j`` is token ``j``'s vector, scaled by
      its own norm, since a token's embedding is the unit that moves as one (a rarely seen token's
      small row gets small noise). A **tied** weight (token embedding = output layer) lies once in
      the flat vector and gets one scale; both readings agree, since an output row of the tied
      Linear is the same token's vector.
    * **biases** (1-D parameters named ``bias``): 1 (``bias="unscaled"``, what the main paper's code
      does) or their unit's scale (``bias="row"``): a Linear / Conv bias the norm of its unit's
      weight row, a normalisation layer's bias ``beta_j`` the magnitude ``|g_j|`` of its gain. Then
      a rescaling of a unit multiplies its bias's scale with it, and the perturbations are exactly
      covariant with ``(W_i, b_i, W_{i+1}) -> (a W_i, a b_i, W_{i+1} / a)``.
    * **normalisation gains** (the 1-D weight of a layer in :data:`NORM_TYPES`: layer norm, RMS norm,
      batch/group norm): ``|g_j|`` elementwise with ``bias="row"``, 1 with ``bias="unscaled"``. A
      gain is the diagonal weight of the layer's elementwise affine map ``g * x_hat + beta``, whose
      "row" for feature j is the single entry ``g_j``: ``|g_j|`` is the row-norm rule applied to it.
      It makes the directions covariant with the transformer's own rescaling symmetry
      (pre-LN block: ``(g, beta, W_next) -> (a g, a beta, W_next / a)`` leaves the function
      unchanged); the main paper's code leaves every 1-D parameter unscaled, so "unscaled" does.
      A gain that is exactly 0 gets scale 0 (like a zero weight row): the direction cannot move it,
      and a preconditioner built from this scale is refused as not positive.
    * **anything else** (a 1-D parameter of another module, a scalar): 1.

    See :meth:`volbench.costs.ModelCost.filter_scale` for an example.
    """
    if bias not in ("unscaled", "row"):
        raise ValueError(f"bias must be 'unscaled' or 'row', got {bias!r}")
    scale = torch.ones_like(point)
    unit_scale: dict[str, Tensor] = {}  # per module: the scale of each of its units (weight rows, gains)
    for p in layers:
        if p.kind == "weight":
            if p.module_type.startswith("ConvTranspose"):
                raise ValueError(
                    f"filter_scale does not support transposed convolutions ({p.name}): their output "
                    "filters lie along dimension 1; use isotropic directions for this model"
                )
            w = point[p.slice].view(p.shape)
            norms = w.reshape(p.shape[0], -1).norm(dim=1)
            scale[p.slice] = norms.repeat_interleave(p.numel // p.shape[0])
            unit_scale[p.module] = norms
        elif p.kind == "other" and p.module_type in NORM_TYPES and p.name.rpartition(".")[2] == "weight":
            gains = point[p.slice].abs()
            if bias == "row":
                scale[p.slice] = gains
            unit_scale[p.module] = gains
    if bias == "row":
        for p in layers:
            norms = unit_scale.get(p.module)
            if p.kind == "bias" and norms is not None and norms.numel() == p.numel:
                scale[p.slice] = norms
    return scale
