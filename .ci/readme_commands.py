#!/usr/bin/env python3
"""Print one of the README's two commands for a fresh machine, exactly as the README writes them.

    python3 .ci/readme_commands.py main   # the main job (the first ```bash block of the section)
    python3 .ci/readme_commands.py test   # the test command (the second)

`.ci/run` runs what this prints, so CI runs the README's commands and nothing else; the
section must hold exactly two one-line ```bash blocks (tests/test_ci_commands.py checks it).
Standard library only: it runs before any virtualenv exists.
"""
from __future__ import annotations

import sys
from pathlib import Path

SECTION = "## Two commands for a fresh machine"


def commands(readme: str) -> dict[str, str]:
    lines = readme.splitlines()
    try:
        start = lines.index(SECTION)
    except ValueError:
        raise SystemExit(f"README.md has no section {SECTION!r}") from None
    blocks, current = [], None
    for line in lines[start + 1:]:
        if line.startswith("## ") and current is None:
            break
        if current is None and line.strip() == "```bash":
            current = []
        elif current is not None and line.strip() == "```":
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(line)
    if len(blocks) != 2 or any(len(b) != 1 for b in blocks):
        raise SystemExit(f"the README section {SECTION!r} must hold exactly two one-line ```bash blocks, "
                         f"found {[len(b) for b in blocks]}")
    return {"main": blocks[0][0].strip(), "test": blocks[1][0].strip()}


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("main", "test"):
        raise SystemExit("usage: readme_commands.py main|test")
    print(commands((Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8"))[sys.argv[1]])
