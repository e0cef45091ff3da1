"""Shared test configuration: hypothesis profiles and device parametrisation."""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Explicit parents, so no profile silently inherits hypothesis' built-in "ci" profile.
_base = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
settings.register_profile("volbench-dev", parent=_base, max_examples=15)
settings.register_profile("volbench-ci", parent=_base, max_examples=25, derandomize=True, print_blob=True)
settings.register_profile("volbench-nightly", parent=_base, max_examples=300)
settings.load_profile(
    os.environ.get("VOLBENCH_HYPOTHESIS_PROFILE", "volbench-ci" if os.environ.get("CI") else "volbench-dev")
)

