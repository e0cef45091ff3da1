"""What produced a cached result: a digest of the source code that computes it, plus versions.

Cached minima and measurements are keyed by their configuration *and* by what produced them
(:func:`training_provenance`, :func:`measurement_provenance`), so a fix to the training code, the
models, the data loaders, the estimator, the reference procedure or the costs makes the next run
recompute, while a run of unchanged code reuses everything.

The digest of a source entry is the SHA-256 of its abstract syntax tree with docstrings and the
messages of raised errors removed (``ast.dump`` without line numbers): edits to comments,
docstrings, error messages and layout do not change it; any change to what the code computes does.
An entry is a module (``"volbench.lab.train"``), a package (``"volbench.estimator"``: every ``.py`` file in
it, by relative path), or one top-level function or class of a module
(``"volbench.lab.spec:training_batch"``), so a module that mixes computing code with bookkeeping
(``lab.measure``: its caching) contributes only its computing parts.

Which sources count (the lists below) is a judgement kept deliberately narrow: the CLI, the
report, the download code (``volbench.data.fetch``, ``download``, ``roots``) and the caching code
do not change what a minimum or a measurement *is*, so edits there never invalidate a cache.
Whoever adds a function that computes part of a minimum or a measurement adds it here; a listed
name that no longer exists raises ``LookupError`` (tested), so a rename cannot silently drop it.

The AST format can change between Python minor versions, so a Python upgrade may recompute
once; torch's and volbench's versions are part of the record (:func:`versions`).

Example:
    >>> p = training_provenance()
    >>> sorted(p), len(p["code"]["digest"])
    (['code', 'versions'], 64)
    >>> source_digest(["volbench.crosscheck.oracles"]) == source_digest(("volbench.crosscheck.oracles",))
    True
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["TRAINING_SOURCES", "MEASUREMENT_SOURCES", "source_digest", "entry_digest", "versions",
           "training_provenance", "measurement_provenance", "compare_provenance"]

#: Sources whose code determines a trained minimum: the optimisation loop and recipes, the
#: architectures and their initialisation, the loaders (which bytes become which tensors) and the
#: subset rules, and the lab's functions that assemble a training set and call the trainer.
TRAINING_SOURCES: tuple[str, ...] = (
    "volbench.lab.train",
    "volbench.lab.models",
    "volbench.lab.gpt",
    "volbench.lab.spec",
    "volbench.lab.minima:train_minimum",
    "volbench.data.dataset",
    "volbench.data.idx",
    "volbench.data.images",
    "volbench.data.synthetic",
    "volbench.data.text",
    "volbench.data.subsets",
    "volbench.data.registry",
)

#: Sources whose code determines a measurement of a given minimum (the minimum's own key, which
#: carries :data:`TRAINING_SOURCES`, is part of every measurement key): the estimator's search,
#: directions, measures and results, the paper's grid procedure, the batched costs, and the lab's
#: functions that build the landscape's cost and turn an estimate into a ``Measurement`` (not its
#: caching or ledger).
MEASUREMENT_SOURCES: tuple[str, ...] = (
    "volbench.estimator.core",
    "volbench.estimator.directions",
    "volbench.estimator.distributed",
    "volbench.estimator.measures",
    "volbench.estimator.prior_rays",
    "volbench.estimator.reference",
    "volbench.estimator.result",
    "volbench.estimator.search",
    "volbench.estimator.walk",
    "volbench.costs",
    "volbench._checks",
    "volbench.lab.spec:landscape_batch",
    "volbench.lab.spec:_nested_order",
    "volbench.lab.spec:training_batch",
    "volbench.lab.minima:Minimum",
    "volbench.lab.measure:Measurement",
    "volbench.lab.measure:_landscape_cost",
    "volbench.lab.measure:_compute_measurements",
    "volbench.lab.measure:_measurement",
    "volbench.lab.measure:_finite_list",
)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """Remove what cannot change a result: docstrings, and the messages of raised errors and
    failed assertions (a result that was produced went through no ``raise``; the exception's type
    is kept, since it decides which handler runs)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
        elif isinstance(node, ast.Raise):
            if isinstance(node.exc, ast.Call):
                node.exc = node.exc.func
            node.cause = None
        elif isinstance(node, ast.Assert):
            node.msg = None
    return tree


def _tree_digest(tree: ast.AST) -> str:
    text = ast.dump(_strip_docstrings(tree), annotate_fields=True, include_attributes=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _module_file(module: str) -> tuple[Path, bool]:
    """(path, is_package): the source file of ``module`` (its ``__init__.py`` for a package)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise LookupError(f"no Python source for {module!r}; fix volbench.store.provenance's source lists")
    return Path(spec.origin), spec.submodule_search_locations is not None


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_mtime_ns, st.st_size


@cache
def _file_digest(path: str, mtime_ns: int, size: int, name: str = "") -> str:
    """Digest of a whole file, or of its top-level definition ``name``; mtime and size are part
    of the cache key only, so an edited file is parsed again."""
    del mtime_ns, size
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    if not name:
        return _tree_digest(tree)
    found = [node for node in tree.body
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name]
    if not found:
        raise LookupError(f"{path} has no top-level function or class {name!r}; it was renamed or removed, "
                          f"so update volbench.store.provenance's source lists")
    return _tree_digest(ast.Module(body=found, type_ignores=[]))


def entry_digest(entry: str) -> str:
    """SHA-256 of one source entry (module, package, or ``module:TopLevelName``), see the module doc."""
    if not isinstance(entry, str) or not entry:
        raise TypeError(f"a source entry is a non-empty str such as 'volbench.lab.train', got {entry!r}")
    module, _, name = entry.partition(":")
    path, is_package = _module_file(module)
    if name or not is_package:
        return _file_digest(*_stat_key(path), name)
    h = hashlib.sha256()
    folder = path.parent
    for file in sorted(folder.rglob("*.py")):
        h.update(file.relative_to(folder).as_posix().encode("utf-8") + b"\0")
        h.update(_file_digest(*_stat_key(file)).encode("ascii") + b"\n")
    return h.hexdigest()


def source_digest(entries: Sequence[str]) -> str:
    """One SHA-256 over the digests of ``entries`` (order-independent, duplicates ignored)."""
    h = hashlib.sha256()
    for entry in sorted(set(entries)):
        h.update(f"{entry}={entry_digest(entry)}\n".encode())
    return h.hexdigest()


def versions() -> dict[str, str]:
    """The library versions that are part of every cache key: volbench's and torch's."""
    import torch

    from volbench import __version__

    return {"volbench": __version__, "torch": str(torch.__version__)}


def _provenance(entries: Sequence[str]) -> dict[str, Any]:
    return {"code": {"digest": source_digest(entries),
                     "sources": {e: entry_digest(e)[:16] for e in sorted(set(entries))}},
            "versions": versions()}


def training_provenance() -> dict[str, Any]:
    """``{"code": {"digest", "sources"}, "versions"}`` of the code that trains a minimum; merged
    into every minimum's store configuration. Computed from the files as they are now (parsing is
    cached per file and modification time)."""
    return _provenance(TRAINING_SOURCES)


def measurement_provenance() -> dict[str, Any]:
    """As :func:`training_provenance`, for the code that measures a given minimum."""
    return _provenance(MEASUREMENT_SOURCES)


def compare_provenance(recorded: Any, current: dict[str, Any]) -> str:
    """Why a recorded provenance is not the current one ("" when it is): which sources or versions
    differ, for ``volbench cache list``."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("code"), dict):
        return "no code provenance (written by an older volbench)"
    why = []
    old_v, new_v = recorded.get("versions") or {}, current["versions"]
    why += [f"{k} {old_v.get(k, '?')} -> {new_v[k]}" for k in sorted(new_v) if old_v.get(k) != new_v[k]]
    if recorded["code"].get("digest") != current["code"]["digest"]:
        old_s, new_s = recorded["code"].get("sources") or {}, current["code"]["sources"]
        changed = sorted(k for k in set(old_s) | set(new_s) if old_s.get(k) != new_s.get(k))
        why.append("code changed: " + (", ".join(changed) if changed else "sources differ"))
    return "; ".join(why)
