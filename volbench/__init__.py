"""volbench: measure the volume of neural-network minima.

The core is importable without side effects; the pytest plugin and the renderers live in
``volbench.report`` and import matplotlib lazily.

    >>> import torch, volbench
    >>> est = volbench.estimate_log_volume(lambda p: (p ** 2).sum(1), torch.zeros(10),
    ...                                    threshold=1.0, n_directions=4)
    >>> round(est.log_volume - volbench.log_unit_ball_volume(10), 2)
    -0.0
"""
from .estimator import ReferenceEstimate, VolumeEstimate, estimate_log_volume
from .estimator.measures import log_unit_ball_volume
from .reference import reference_log_volume

__version__ = "0.1.0"

__all__ = [
    "estimate_log_volume",
    "reference_log_volume",
    "VolumeEstimate",
    "ReferenceEstimate",
    "log_unit_ball_volume",
    "__version__",
]
