"""The structure of ``volbench/``: modules and lines per folder, the largest modules, import circles
between packages, and private names imported across packages (issue R3).

    python tools/structure.py            # this checkout
    python tools/structure.py OTHER/ROOT # another checkout (e.g. a worktree of an older commit)

Imports are read from the source (``ast``), relative ones resolved, lazy ones inside functions
included; nothing is imported or run. Exit status 1 when there is a circle or a private import.
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in sorted((root / "volbench").rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        out[".".join(rel.parts[:-1] if rel.parts[-1] == "__init__" else rel.parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, list[str]]]:
    """[(imported module, [names])] of one module, relative imports resolved."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("volbench")):
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            names = [a.name for a in node.names]
            found.append((target, names))
            found += [(f"{target}.{n}", []) for n in names if f"{target}.{n}" in known]
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("volbench")]
    return found


def package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else Path(__file__).resolve().parents[1]).resolve()
    mods = modules(root)
    lines = {m: len(p.read_text().splitlines()) for m, p in mods.items()}
    folders: dict[str, list[str]] = defaultdict(list)
    for m, p in mods.items():
        folders[str(p.parent.relative_to(root))].append(m)
    print("modules per folder:")
    for folder in sorted(folders):
        print(f"  {folder}/: {len(folders[folder])} modules, {sum(lines[m] for m in folders[folder]):,} lines")
    print("largest modules:")
    for m in sorted(lines, key=lines.get, reverse=True)[:10]:
        print(f"  {lines[m]:5d}  {m}")
    graph: dict[str, set[str]] = defaultdict(set)
    private = []
    for m, p in mods.items():
        for target, names in imports(m, p, set(mods)):
            if target in mods and package(target) != package(m):
                graph[package(m)].add(package(target))
                private += [f"{m} imports {target}.{n}" for n in names
                            if n.startswith("_") and not n.startswith("__")]
    found = circles(graph)
    print("import circles between packages:", found or "none")
    print("private names imported across packages:", private or "none")
    return 1 if found or private else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
