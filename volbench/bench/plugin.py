"""pytest plugin of the speed benchmarks (registered through the ``pytest11`` entry point
``volbench-bench``; it costs only the standard library and pytest at import).

* ``--benchmark-json PATH``: its parent directory is created (pytest-benchmark does not).
* ``pytest_benchmark_update_machine_info`` adds GPU name, CUDA/torch versions, TF32 settings and
  threads (:func:`volbench.bench.timer.machine_info`): pytest-benchmark keys saved runs by OS and
  Python only.
"""
from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["pytest_configure", "pytest_benchmark_update_machine_info"]


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("benchmark_json", default=None)
    if path:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError:  # pytest-benchmark reports the unwritable path itself
            pass


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    from volbench.bench.timer import machine_info as volbench_machine_info

    machine_info.update(volbench_machine_info())
