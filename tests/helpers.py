"""Helpers shared by the unit tests (import as `from helpers import ...`)."""
from __future__ import annotations

import pytest
import torch

CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device; none is visible to torch")


def devices():
    """CPU always; CUDA as a `gpu`-marked param that skips without a GPU."""
    return [
        pytest.param("cpu", id="cpu"),
        pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, requires_cuda]),
    ]
