"""Trained minima: ``train_minimum(spec, store)`` returns the store's minimum for ``spec``,
training it (and recording it in the ledger) on a miss."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from volbench.lab import models as vmodels
from volbench.lab.ledger import LEDGER
from volbench.lab.spec import MinimumSpec, load_dataset, training_batch
from volbench.lab.train import train
from volbench.store.minima import MinimaStore


@dataclass(frozen=True)
class Minimum:
    spec: MinimumSpec
    params: torch.Tensor
    metrics: dict[str, Any]
    key: str
    trained_now: bool
    tensors: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)

    def build_model(self, device=None, dtype=torch.float32) -> torch.nn.Module:
        model = vmodels.build(self.spec.model, seed=self.spec.seed, device=device, dtype=dtype,
                              **dict(self.spec.model_options))
        torch.nn.utils.vector_to_parameters(self.params.to(device=device, dtype=dtype), model.parameters())
        return model


def check_compatible(spec: MinimumSpec) -> None:
    """Raise ValueError naming both if ``spec.model`` cannot take ``spec.dataset``'s inputs."""
    ds = load_dataset(spec.dataset, spec.dataset_options)
    ms = vmodels.spec(spec.model)
    shape = tuple(ds.input_shape)
    fits = (math.prod(shape) == ms.n_inputs) if ms.is_mlp else (shape == tuple(ms.input_shape))
    if not fits:
        matching = [name for name in vmodels.names()
                    if (math.prod(shape) == vmodels.spec(name).n_inputs if vmodels.spec(name).is_mlp
                        else shape == tuple(vmodels.spec(name).input_shape))]
        raise ValueError(
            f"model {spec.model!r} takes inputs of shape {tuple(ms.input_shape)} but data set {spec.dataset!r} "
            f"has inputs of shape {shape}: they are incompatible; use a model built for {spec.dataset!r} "
            f"({', '.join(matching) or 'none is registered'})"
        )


def train_minimum(spec: MinimumSpec, store: MinimaStore, *, device=None, progress: bool = False) -> Minimum:
    """The minimum of ``spec`` from the store, training it on a miss (ValueError first if the
    model and the data set do not fit together)."""
    check_compatible(spec)

    def train_fn():
        batch = training_batch(spec)
        ds = load_dataset(spec.dataset, spec.dataset_options)
        model = vmodels.build(spec.model, seed=spec.seed, device=device, **dict(spec.model_options))
        result = train(model, batch.inputs, batch.targets, spec.train, test_inputs=ds.test_inputs,
                       test_targets=ds.test_targets, device=device, progress=progress)
        return result.tensors(), result.metadata()

    entry = store.get_or_train(spec.config(), train_fn)
    if entry.trained:
        LEDGER.trained_seconds += float(entry.metadata.get("seconds", 0.0) or 0.0)
        LEDGER.minima_trained += 1
    else:
        LEDGER.minima_served += 1
    return Minimum(spec=spec, params=entry.params, metrics=dict(entry.metadata), key=entry.key,
                   trained_now=entry.trained, tensors=dict(entry.tensors))
