"""The volume estimator: directions, batched radius search, measures and results."""
from volbench.estimator.core import estimate_log_volume
from volbench.estimator.result import ReferenceEstimate, VolumeEstimate

__all__ = ["estimate_log_volume", "VolumeEstimate", "ReferenceEstimate"]
