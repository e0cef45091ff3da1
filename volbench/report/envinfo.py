"""The environment block written into every report: what ran where, with which settings.

Timings and even radii depend on the hardware and on numerical settings (TF32 changes float32
matmuls on Ampere and newer GPUs), so every run records them. Works without CUDA: GPU fields are
then None / empty.

Example:
    >>> env = collect_environment(tier="smoke", include_git=False)
    >>> env["cuda_available"] in (True, False) and env["torch"] != ""
    True
    >>> print(format_environment({"python": "3.11.7", "devices": []}))
    python   3.11.7
    devices  -
"""
from __future__ import annotations

import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "collect_environment",
    "format_environment",
    "environment_rows",
    "tf32_settings",
    "cuda_devices",
    "cpu_model",
    "cpu_vendor",
    "cpu_capability",
]

#: seconds allowed for each helper program (git, nvidia-smi); a hung tool must not hang pytest.
_TOOL_TIMEOUT_S = 5.0


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _run(cmd: Sequence[str], cwd: str | os.PathLike | None = None) -> str | None:
    """stdout of a helper program, stripped, or None if it is missing, fails or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        proc = subprocess.run(
            list(cmd), cwd=cwd, capture_output=True, text=True, timeout=_TOOL_TIMEOUT_S,
            # GIT_OPTIONAL_LOCKS=0: `git status` must not refresh (write) the index of a repo that
            # other processes may be committing to.
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _cpuinfo_field(name: str) -> str | None:
    """The first ``name : value`` of /proc/cpuinfo (Linux), or None where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip().lower() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform's guess elsewhere)."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_vendor() -> str:
    """The CPU's vendor, /proc/cpuinfo's ``vendor_id`` (GenuineIntel, AuthenticAMD), else
    platform's guess: MKL takes other code paths on Intel and AMD CPUs, so results round differently."""
    return _cpuinfo_field("vendor_id") or platform.processor() or platform.machine() or "unknown"


def cpu_capability(torch: Any) -> str:
    """The ISA level ATen dispatches its CPU kernels to (``torch.backends.cpu.get_cpu_capability()``:
    DEFAULT, AVX2, AVX512, ...; it honours ``ATEN_CPU_CAPABILITY``), "unknown" where torch cannot say."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # an older torch without the query
        return "unknown"


def tf32_settings(torch: Any) -> dict[str, Any]:
    """TF32 and reduced-precision switches of ``torch`` (the module): they decide float32, bf16
    and fp16 matmul/conv precision on GPUs.

    ``tf32_matmul`` = ``torch.backends.cuda.matmul.allow_tf32``, ``tf32_cudnn`` =
    ``torch.backends.cudnn.allow_tf32``, ``float32_matmul_precision`` =
    ``torch.get_float32_matmul_precision()`` ("highest" = no TF32 for matmuls),
    ``bf16_reduced_precision_reduction`` / ``fp16_reduced_precision_reduction`` =
    ``torch.backends.cuda.matmul.allow_{bf16,fp16}_reduced_precision_reduction``. A switch this
    torch does not have is recorded as None (unknown).
    """
    out: dict[str, Any] = {}
    for key, getter in (
        ("tf32_matmul", lambda: bool(torch.backends.cuda.matmul.allow_tf32)),
        ("tf32_cudnn", lambda: bool(torch.backends.cudnn.allow_tf32)),
        ("float32_matmul_precision", lambda: str(torch.get_float32_matmul_precision())),
        # reduced-precision accumulation inside bf16 / fp16 GEMMs (cuBLAS); changes bf16 speed
        # and rounding the way TF32 does for float32
        ("bf16_reduced_precision_reduction",
         lambda: bool(torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction)),
        ("fp16_reduced_precision_reduction",
         lambda: bool(torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction)),
    ):
        try:
            out[key] = getter()
        except Exception:  # an API moved in some torch version: record that we could not tell
            out[key] = None
    return out


def cuda_devices(torch: Any) -> list[dict[str, Any]]:
    """Name, memory (GiB) and compute capability of each visible CUDA device; [] without CUDA.

    Reading the properties initialises CUDA in this process (a context on each device queried);
    only called when CUDA is available.
    """
    if not torch.cuda.is_available():
        return []
    devices = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        devices.append({
            "index": index,
            "name": str(props.name),
            "memory_gib": round(props.total_memory / 2**30, 2),
            "capability": f"{props.major}.{props.minor}",
        })
    return devices


def collect_environment(
    *,
    tier: str | None = None,
    seeds: Mapping[str, Any] | None = None,
    argv: Sequence[str] | None = None,
    include_git: bool = True,
    repo_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Collect the environment block of a report (JSON-able dict).

    Args:
        tier: the tier the run was asked for ("smoke"/"nightly"), or None.
        seeds: seeds of the run worth listing at the top (each result keeps its own).
        argv: the command line (default ``sys.argv``).
        include_git: look up the commit of the repository holding volbench (or ``repo_dir``).
        repo_dir: where to look for the git repository (default: the volbench source tree).

    Keys: volbench, python, platform, torch, numpy, cuda_available, cuda (toolkit torch was built
    with), cudnn, cuda_driver (from nvidia-smi), devices (see :func:`cuda_devices`), tf32_matmul,
    tf32_cudnn, float32_matmul_precision, torch_threads (of this process: an xdist worker sets its
    own), cpu, cpu_vendor, cpu_capability (the ISA level ATen uses), cpu_count, hostname,
    git_commit, git_dirty, command, cuda_visible_devices, tier, seeds.
    """
    import torch  # lazily: the report plugin must stay cheap to import

    env: dict[str, Any] = {
        "volbench": _version("volbench") or _volbench_source_version(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": str(torch.__version__),
        "numpy": _version("numpy"),
        "cuda_available": bool(torch.cuda.is_available()),
        "cuda": torch.version.cuda,
        "cudnn": None,
        "cuda_driver": None,
        "devices": [],
    }
    try:
        env["cudnn"] = torch.backends.cudnn.version()
    except Exception:  # cudnn missing from this build
        env["cudnn"] = None
    if env["cuda_available"]:
        env["devices"] = cuda_devices(torch)
        driver = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
        env["cuda_driver"] = driver.splitlines()[0].strip() if driver else None
    env.update(tf32_settings(torch))
    env["torch_threads"] = int(torch.get_num_threads())
    env["cpu"] = cpu_model()
    env["cpu_vendor"] = cpu_vendor()
    env["cpu_capability"] = cpu_capability(torch)
    env["cpu_count"] = os.cpu_count()
    env["hostname"] = socket.gethostname()
    env["git_commit"] = None
    env["git_dirty"] = None
    if include_git:
        where = Path(repo_dir) if repo_dir is not None else Path(__file__).resolve().parents[2]
        commit = _run(["git", "rev-parse", "HEAD"], cwd=where)
        env["git_commit"] = commit
        if commit:
            status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where)
            env["git_dirty"] = None if status is None else bool(status)
    env["command"] = _command_line(sys.argv if argv is None else argv)
    env["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    env["tier"] = tier
    env["seeds"] = dict(seeds) if seeds is not None else {}
    return env


def _command_line(argv: Sequence[str]) -> str:
    """The command as typed: ``python -m pytest …`` rather than ``…/pytest/__main__.py …``."""
    argv = [str(a) for a in argv]
    if argv and Path(argv[0]).name == "__main__.py":
        argv = ["python", "-m", Path(argv[0]).parent.name, *argv[1:]]
    return shlex.join(argv)


def _volbench_source_version() -> str | None:
    module = sys.modules.get("volbench")
    return getattr(module, "__version__", None)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, Mapping) for v in value):
            return "; ".join(_device_text(v) for v in value)
        return ", ".join(_cell(v) for v in value) or "-"
    return str(value)


def _device_text(device: Mapping[str, Any]) -> str:
    if "name" in device:
        return (f"[{device.get('index', '?')}] {device['name']}, "
                f"{device.get('memory_gib', '?')} GiB, sm {device.get('capability', '?')}")
    return _cell(dict(device))


def environment_rows(env: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, text) pairs of the environment block, for tables."""
    return [(str(key), _cell(value)) for key, value in env.items()]


def format_environment(env: Mapping[str, Any]) -> str:
    """The environment block as aligned ``key  value`` lines."""
    rows = environment_rows(env)
    width = max((len(key) for key, _ in rows), default=0)
    return "\n".join(f"{key.ljust(width)}  {value}" for key, value in rows)
