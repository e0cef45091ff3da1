"""The house's structure holds (issue R3): no import circle between volbench's packages and no
private name imported across packages (``tools/structure.py`` reads the imports from the source)."""
from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_circle_and_no_private_name_across_packages(capsys):
    structure = runpy.run_path(str(ROOT / "tools" / "structure.py"))
    rc = structure["main"](["structure.py", str(ROOT)])
    out = capsys.readouterr().out
    assert "import circles between packages: none" in out and "private names imported across packages: none" in out, out
    assert rc == 0


def test_the_checker_sees_a_circle_and_a_private_import(tmp_path):
    """The guard can fail: two packages that import each other, one through a private name."""
    pkg = tmp_path / "volbench"
    for sub, text in (("a", "from volbench.b.y import _hidden\n"), ("b", "from volbench.a.x import thing\n")):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
        (pkg / sub / ("x.py" if sub == "a" else "y.py")).write_text(text + "thing = _hidden = 1\n")
    (pkg / "__init__.py").write_text("")
    structure = runpy.run_path(str(ROOT / "tools" / "structure.py"))
    assert structure["main"](["structure.py", str(tmp_path)]) == 1
