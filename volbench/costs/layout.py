"""Where each parameter tensor lies in the flat vector, and the filter scales built from it.

The flat order is that of ``torch.nn.utils.parameters_to_vector(model.parameters())``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["ParamInfo", "describe_parameters", "filter_scale"]


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
    """Per-parameter multiplier of filter-normalised directions at the flat parameters ``point``:
    each weight entry gets the L2 norm of its output row (conv: output filter), biases 1
    (``"unscaled"``) or their unit's row norm (``"row"``), other parameters 1. See
    :meth:`volbench.costs.ModelCost.filter_scale` for the references and an example."""
    if bias not in ("unscaled", "row"):
        raise ValueError(f"bias must be 'unscaled' or 'row', got {bias!r}")
    scale = torch.ones_like(point)
    row_norms: dict[str, Tensor] = {}
    for p in layers:
        if p.kind != "weight":
            continue
        if p.module_type.startswith("ConvTranspose"):
            raise ValueError(
                f"filter_scale does not support transposed convolutions ({p.name}): their output "
                "filters lie along dimension 1; use isotropic directions for this model"
            )
        w = point[p.slice].view(p.shape)
        norms = w.reshape(p.shape[0], -1).norm(dim=1)
        scale[p.slice] = norms.repeat_interleave(p.numel // p.shape[0])
        row_norms[p.module] = norms
    if bias == "row":
        for p in layers:
            norms = row_norms.get(p.module)
            if p.kind == "bias" and norms is not None and norms.numel() == p.numel:
                scale[p.slice] = norms
    return scale
