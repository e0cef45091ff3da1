"""Trained minima: ``train_minimum(spec, store)`` returns the store's minimum for ``spec``,
training it (and recording it in the ledger) on a miss."""
from __future__ import annotations

import math
from collections.abc import Sequence
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
    if ms.kind == "sequence" or not ds.train_inputs.is_floating_point():
        _check_sequence(spec, ds, ms)
        return
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


def _check_sequence(spec: MinimumSpec, ds, ms) -> None:
    """A sequence model takes token windows no longer than its context over its vocabulary."""
    options = dict(spec.model_options)
    if ms.kind != "sequence" or ds.train_inputs.is_floating_point() or ds.train_inputs.ndim != 2:
        raise ValueError(f"model {spec.model!r} ({ms.kind}) and data set {spec.dataset!r} (inputs "
                         f"{ds.train_inputs.dtype} of shape {tuple(ds.input_shape)}) are incompatible: token windows "
                         "go with a sequence model (char_gpt), images and features with the others")
    block = vmodels.input_shape(spec.model, **options)[0]
    vocab = int(options.get("vocab_size", ms.n_outputs))
    if ds.input_shape[0] > block or ds.n_classes != vocab:
        raise ValueError(f"model {spec.model!r} takes windows of at most {block} tokens over {vocab} ids, but data set "
                         f"{spec.dataset!r} has windows of {ds.input_shape[0]} over {ds.n_classes}: pass "
                         f"block_size >= {ds.input_shape[0]} and vocab_size = {ds.n_classes} as model options, or a "
                         "shorter window as a data set option")


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


def prefetch_minima(specs: Sequence[MinimumSpec], store: MinimaStore, *, device=None) -> list[MinimumSpec]:
    """Train, in order, the minima of ``specs`` that are neither stored nor being trained by
    another process, and return those another process was training (left to the caller, whose
    ``train_minimum`` then waits for them or reads them). Cases on several xdist workers that share
    minima (the same spec, hence the same store key) call it first, so the workers train different
    minima instead of queueing on one key's lock in the same order."""
    left = []
    for spec in specs:
        state = store.status(spec.config())
        if state == "busy":
            left.append(spec)
        elif state == "missing":
            train_minimum(spec, store, device=device)
    return left
