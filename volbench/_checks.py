"""The one validation module: checks of the arguments every layer takes (seeds, counts, dtypes,
devices, flat parameter vectors, thresholds, a model against its inputs), each raising a
TypeError or ValueError that names the argument and the fix. Library code calls these; no
package keeps its own copy.

Example:
    >>> check_seed(3), check_count(5, "n_directions", minimum=1)
    (3, 5)
    >>> try:
    ...     check_seed(-1)
    ... except ValueError as exc:
    ...     print(exc)
    seed must be a non-negative int, got -1
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import nn

__all__ = ["check_seed", "check_count", "check_positive_int", "optional_positive_int", "check_dtype", "as_device",
           "check_threshold", "check_flat", "check_accepts"]


def check_seed(seed: Any, what: str = "seed") -> int:
    """A non-negative int seed below 2**63 (what ``torch.Generator.manual_seed`` accepts; numpy
    integers allowed), else a TypeError / ValueError naming it."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{what} must be a non-negative int, got {seed!r} ({type(seed).__name__})")
    if seed < 0:
        raise ValueError(f"{what} must be a non-negative int, got {seed}")
    if seed >= 2 ** 63:
        raise ValueError(f"{what} must be below 2**63 (torch.Generator's range), got {seed}")
    return int(seed)


def check_count(value: Any, what: str, *, minimum: int = 0) -> int:
    """An integer count >= ``minimum`` (rejects bools and floats such as 1e3)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return int(value)


def check_positive_int(value: Any, what: str, hint: str = "") -> int:
    """A positive int (a number of directions, a batch size), else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{what} must be a positive integer{hint}, got {value!r}")
    return int(value)


def optional_positive_int(name: str, value: Any) -> int | None:
    """None, or a positive int (a chunk size, a batch size), else a ValueError naming it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    return int(value)


def check_dtype(dtype: Any) -> torch.dtype:
    """A floating-point torch.dtype, else a TypeError naming the fix."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or dtype.is_complex:
        raise TypeError(f"dtype must be a floating-point torch.dtype such as torch.float32 or torch.float64, "
                        f"got {dtype!r}")
    return dtype


def as_device(device: Any, what: str = "device") -> torch.device:
    """``torch.device(device)``, or a ValueError / TypeError that names the fix: an unknown
    device string, or CUDA asked for where torch sees no (or not that many) CUDA devices."""
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, (str, int)) and not isinstance(device, bool):
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"{what} {device!r} is not a torch device ({str(exc).splitlines()[0][:80]}...); "
                             "use 'cpu', 'cuda' or 'cuda:N'") from None
    else:
        raise TypeError(f"{what} must be a torch.device, a string such as 'cpu' or 'cuda:0', or None; "
                        f"got {type(device).__name__}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{what} {str(dev)!r} needs CUDA, but torch {torch.__version__} sees no CUDA device; "
                             "pass device='cpu' (or install a CUDA build of torch on a GPU machine)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{what} {str(dev)!r} does not exist: torch sees {torch.cuda.device_count()} "
                             f"CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return dev


def check_threshold(threshold: Any) -> float:
    """A finite positive loss level, else a ValueError naming it."""
    if (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)
            or not math.isfinite(threshold) or threshold <= 0):
        raise ValueError(f"threshold must be a finite positive number (a loss level), got {threshold!r}")
    return float(threshold)


def check_flat(x: Any, what: str = "theta", *, nonnegative: bool = False) -> torch.Tensor:
    """A non-empty, finite, floating-point flat ``[n]`` tensor (parameters, a curvature diagonal),
    else a TypeError / ValueError that names it and the fix."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a flat torch.Tensor [n], got {type(x).__name__}")
    if x.ndim != 1 or x.numel() == 0:
        raise ValueError(f"{what} must be a flat [n] tensor (1-D, non-empty), got shape {tuple(x.shape)}; "
                         "flatten it with torch.nn.utils.parameters_to_vector")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{what} must be a floating-point tensor, got {x.dtype}; cast with .double() or .float()")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{what} has {bad} non-finite entries (NaN/Inf); the minimum is corrupt or diverged, or "
                         "check where it was computed")
    if nonnegative and (x < 0).any():
        raise ValueError(f"{what} must be non-negative")
    return x


def check_accepts(model: nn.Module, inputs: torch.Tensor, *, n_examples: int = 2,
                  what: str = "inputs") -> torch.Tensor:
    """Run ``model`` on the first ``n_examples`` of ``inputs`` and return its outputs; a model
    that cannot take them (wrong feature count, image vs flat shape, channels, dtype) raises a
    ValueError naming the model, the inputs' shape and dtype and the fix instead of torch's bare
    RuntimeError. The model's parameters and buffers are not modified (the forward runs with
    copies of the buffers, so batch-norm statistics stay as they were). Out-of-memory errors
    propagate unchanged.

    Example:
        >>> check_accepts(nn.Sequential(nn.Flatten(), nn.Linear(2, 1)), torch.zeros(4, 2)).shape
        torch.Size([2, 1])
        >>> try:
        ...     check_accepts(nn.Sequential(nn.Flatten(), nn.Linear(2, 1)), torch.zeros(4, 3))
        ... except ValueError as exc:
        ...     print(str(exc)[:60])
        the model (Sequential: Flatten, Linear) cannot take inputs o
    """
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor [N, ...], got {type(inputs).__name__}")
    if inputs.ndim == 0 or inputs.shape[0] == 0:
        raise ValueError(f"{what} must be [N, ...] with N >= 1 examples, got shape {tuple(inputs.shape)}")
    state = {name: p.detach() for name, p in model.named_parameters()}
    state.update({name: b.clone() for name, b in model.named_buffers()})
    try:
        with torch.no_grad():
            return torch.func.functional_call(model, state, (inputs[:n_examples],))
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():
            raise
        leaves = [type(m).__name__ for m in model.modules() if not any(True for _ in m.children())]
        layers = ", ".join(leaves[:3]) + (", ..." if len(leaves) > 3 else "")
        layers = type(model).__name__ if leaves == [type(model).__name__] else f"{type(model).__name__}: {layers}"
        first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))), None)
        expects = ""
        if isinstance(first, nn.Linear):
            expects = f"; its first Linear layer expects {first.in_features} features per example"
        elif isinstance(first, nn.Conv2d):
            expects = f"; its first Conv2d layer expects [N, {first.in_channels}, H, W] images"
        raise ValueError(
            f"the model ({layers}) cannot take {what} of shape {tuple(inputs.shape)} "
            f"({str(inputs.dtype).removeprefix('torch.')}){expects}: {str(exc).splitlines()[0]}. The model and the "
            f"data do not match: use a model built for this data set (volbench.lab.models.spec(name).input_shape), "
            f"or reshape / convert the inputs (float, one example per row)"
        ) from exc
