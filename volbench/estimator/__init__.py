"""The volume estimator: directions, batched radius search, measures and results."""
from .core import estimate_log_volume
from .result import ReferenceEstimate, VolumeEstimate

__all__ = ["estimate_log_volume", "VolumeEstimate", "ReferenceEstimate"]
