"""The machine class of a process: what decides how trained minima and statistics round, so
whether a statistic near its rule's boundary lands on one side of it or the other.

The verdict baseline (:mod:`volbench.report.baseline`) records the class it was recorded on. On
that class every moved verdict fails a case's test; on another, a verdict moving between pass or
fail and inconclusive is reported, not failed. Two processes are of one class when every field
is equal:

* ``cpu_vendor``: /proc/cpuinfo's ``vendor_id`` (GenuineIntel, AuthenticAMD): MKL takes other
  code paths on Intel and AMD CPUs.
* ``cpu_capability``: the ISA level ATen dispatches its CPU kernels to (DEFAULT, AVX2, AVX512, …;
  ``ATEN_CPU_CAPABILITY`` lowers it): other kernels, other rounding.
* ``threads``: ``torch.get_num_threads()`` of the process that judges (each pytest-xdist worker
  sets its own): a reduction split over other threads sums in another order.
* ``device`` and ``gpu``: the device type the cases run on (``VOLBENCH_DEVICE``, else cuda where
  available, else cpu) and, for CUDA, the GPU's name ("" otherwise).
* ``dtype``: torch's default dtype.
* ``tf32``: whether float32 matmuls may use TF32 (``allow_tf32``, or a
  ``float32_matmul_precision`` below "highest"), or, on a CUDA device, cuDNN's convolutions may.
* ``torch``: torch's release, without the build's local tag (2.13.0 of 2.13.0+cpu).
* ``blas``: MKL's code-path switches set in the environment (``MKL_CBWR``,
  ``MKL_ENABLE_INSTRUCTIONS``; "" when unset, the default branch): another branch sums in another
  order, and long training (F10's 5,000 epochs, F14's transformer) carries that into the minimum.
  Records without the field (older baselines and runs) read as "".

Only the standard library at import (the report plugin imports this); :func:`machine_class`
imports torch.

Example:
    >>> m = MachineClass("AuthenticAMD", "AVX512", 1, "cpu", "", "float32", False, "2.13.0")
    >>> m.describe()
    'AuthenticAMD AVX512, 1 thread, cpu, float32, TF32 off, torch 2.13.0'
    >>> MachineClass.from_dict(m.to_dict()) == m
    True
    >>> import dataclasses
    >>> m.differences(dataclasses.replace(m, cpu_vendor="GenuineIntel", threads=2))
    ['CPU vendor AuthenticAMD -> GenuineIntel', 'threads 1 -> 2']
    >>> dataclasses.replace(m, blas="MKL_CBWR=COMPATIBLE").describe()
    'AuthenticAMD AVX512, 1 thread, cpu, float32, TF32 off, torch 2.13.0, MKL_CBWR=COMPATIBLE'
    >>> MachineClass.from_dict({k: v for k, v in m.to_dict().items() if k != "blas"}) == m
    True
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["MachineClass", "machine_class", "default_device", "describe_machine"]

_LABELS = {"cpu_vendor": "CPU vendor", "cpu_capability": "ISA", "threads": "threads", "device": "device",
           "gpu": "GPU", "dtype": "dtype", "tf32": "TF32", "torch": "torch", "blas": "BLAS branch"}
#: MKL's switches of its code path (the environment variables whose values join ``blas``).
BLAS_SWITCHES = ("MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS")


@dataclass(frozen=True)
class MachineClass:
    """The machine class of one process (see the module's docstring for each field)."""

    cpu_vendor: str
    cpu_capability: str
    threads: int
    device: str
    gpu: str
    dtype: str
    tf32: bool
    torch: str
    blas: str = ""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            expected = {"threads": int, "tf32": bool}.get(f.name, str)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ValueError(f"machine class field {f.name!r} must be a {expected.__name__}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MachineClass:
        """The class from :meth:`to_dict`'s output; ValueError names missing or unknown keys."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a machine class is a JSON object, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        data = {"blas": "", **data}  # recorded before the field existed: the default branch
        missing, unknown = sorted(set(names) - set(data)), sorted(set(data) - set(names))
        if missing or unknown:
            raise ValueError(f"a machine class has the keys {names}; missing {missing}, unknown {unknown}")
        return cls(**{name: data[name] for name in names})

    def describe(self) -> str:
        """One line, e.g. ``GenuineIntel AVX2, 8 threads, cuda (NVIDIA H100), float32, TF32 on, torch 2.5.1``."""
        device = f"{self.device} ({self.gpu})" if self.gpu else self.device
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        return (f"{self.cpu_vendor} {self.cpu_capability}, {threads}, {device}, {self.dtype}, "
                f"TF32 {'on' if self.tf32 else 'off'}, torch {self.torch}" + (f", {self.blas}" if self.blas else ""))

    def differences(self, other: MachineClass) -> list[str]:
        """``"<field> <this> -> <other>"`` for each field in which ``other`` differs."""
        def text(value: Any) -> str:
            return ("on" if value else "off") if isinstance(value, bool) else (str(value) or "-")

        return [f"{_LABELS[f.name]} {text(getattr(self, f.name))} -> {text(getattr(other, f.name))}"
                for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]


def describe_machine(machine: MachineClass | Mapping[str, Any] | None) -> str:
    """:meth:`MachineClass.describe` of a class or its dict; "an unrecorded machine class" for None
    or an empty or unreadable dict.

    >>> describe_machine(None)
    'an unrecorded machine class'
    """
    if isinstance(machine, Mapping):
        try:
            machine = MachineClass.from_dict(machine) if machine else None
        except ValueError:
            machine = None
    return machine.describe() if machine is not None else "an unrecorded machine class"


def default_device() -> str:
    """The device the claim cases run on: ``VOLBENCH_DEVICE``, else cuda where torch sees a GPU,
    else cpu (the ``device`` fixture of ``cases/conftest.py``)."""
    import torch

    return os.environ.get("VOLBENCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


def machine_class(device: Any = None) -> MachineClass:
    """This process's machine class, for ``device`` (default :func:`default_device`).

    The claim cases pass no device: a case that pins itself to the CPU on a GPU host still belongs
    to the host's class, so one run has one class and ``volbench baseline update`` can record it.

    >>> m = machine_class("cpu")
    >>> m.device, m.gpu, m.tf32 in (True, False), m.threads >= 1
    ('cpu', '', True, True)
    """
    import torch

    from volbench.report.envinfo import cpu_capability, cpu_vendor, tf32_settings

    where = torch.device(device if device is not None else default_device())
    switches = tf32_settings(torch)
    tf32 = (bool(switches["tf32_matmul"])
            or switches["float32_matmul_precision"] not in (None, "highest")
            or (where.type == "cuda" and bool(switches["tf32_cudnn"])))
    return MachineClass(
        cpu_vendor=cpu_vendor(),
        cpu_capability=cpu_capability(torch),
        threads=int(torch.get_num_threads()),
        device=where.type,
        gpu=str(torch.cuda.get_device_name(where)) if where.type == "cuda" else "",
        dtype=str(torch.get_default_dtype()).removeprefix("torch."),
        tf32=tf32,
        torch=str(torch.__version__).split("+")[0],
        blas=" ".join(f"{name}={os.environ[name]}" for name in BLAS_SWITCHES if os.environ.get(name)),
    )
