"""Repository-level pytest configuration.

Points the data root at ``../shared/data`` (the real MNIST test split shipped beside this
repository) when the user has not chosen one, so `pytest cases/ -k mnist` works from a fresh
clone. A user's own ``VOLBENCH_DATA`` always wins; the shipped folder is appended to it.
"""
from __future__ import annotations

import os
from pathlib import Path

_SHIPPED = Path(__file__).resolve().parent.parent / "shared" / "data"


def pytest_configure(config):
    if _SHIPPED.is_dir():
        roots = [p for p in os.environ.get("VOLBENCH_DATA", "").split(os.pathsep) if p]
        if str(_SHIPPED) not in roots:
            os.environ["VOLBENCH_DATA"] = os.pathsep.join(roots + [str(_SHIPPED)])
