"""volbench: measure the volume of neural-network minima.

The core is importable without side effects; the pytest plugin and the renderers live in
``volbench.report`` and import matplotlib lazily. Names below are loaded on first use, so the
pytest plugin (loaded for every pytest run) does not pay for importing torch.

    >>> import torch, volbench
    >>> est = volbench.estimate_log_volume(lambda p: (p ** 2).sum(1), torch.zeros(10),
    ...                                    threshold=1.0, n_directions=4)
    >>> round(est.log_volume - volbench.log_unit_ball_volume(10), 2)
    -0.0
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "estimate_log_volume": "volbench.estimator.core",
    "VolumeEstimate": "volbench.estimator.result",
    "ReferenceEstimate": "volbench.estimator.result",
    "log_unit_ball_volume": "volbench.estimator.measures",
    "reference_log_volume": "volbench.estimator.reference",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'volbench' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
