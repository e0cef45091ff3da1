"""Shared test configuration: hypothesis profiles and device parametrisation."""
from __future__ import annotations

import os

import torch._decomp.decompositions_for_jvp  # noqa: F401
from hypothesis import HealthCheck, settings

# The import above is torch's own, done here once per process while the stack is shallow and no
# other thread runs: forward-mode AD (torch.func.jvp/hessian) imports it lazily on first use, and
# it jit-scripts decompositions by parsing their source with ``ast``. CPython 3.11's AST
# constructor can raise a spurious "SystemError: AST constructor recursion depth mismatch" there
# (python/cpython#106905), which failed tests/test_flatness.py once in a CI rehearsal, deep in a
# vmap under pytest-xdist, while test_fetch's HTTP server thread was still writing.

# Explicit parents, so no profile silently inherits hypothesis' built-in "ci" profile.
_base = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
settings.register_profile("volbench-dev", parent=_base, max_examples=15)
settings.register_profile("volbench-ci", parent=_base, max_examples=25, derandomize=True, print_blob=True)
settings.register_profile("volbench-nightly", parent=_base, max_examples=300)
settings.load_profile(
    os.environ.get("VOLBENCH_HYPOTHESIS_PROFILE", "volbench-ci" if os.environ.get("CI") else "volbench-dev")
)

