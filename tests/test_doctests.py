"""Every docstring example in the library runs and prints what it says (the doctests are the
library's documentation; ``python -m pytest --doctest-modules volbench -p no:xdist`` runs the
same examples through pytest's own collector)."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import volbench


def _modules() -> list[str]:
    # __main__ modules run their command when imported: they hold no examples
    return sorted(m.name for m in pkgutil.walk_packages(volbench.__path__, prefix="volbench.")
                  if not m.name.endswith(".__main__"))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"
