"""Where data lives: the ordered list of data roots and the not-found message.

Resolution order (first hit wins):

1. the ``root`` argument of ``volbench.data.load`` (a folder, or a list of folders);
2. ``$VOLBENCH_DATA``: folders separated by ``os.pathsep`` (``:`` on POSIX, ``;`` on Windows);
3. the user cache, ``$XDG_CACHE_HOME/volbench/data`` or ``~/.cache/volbench/data`` (downloads go here).

Each data set then looks in fixed sub-folders of every root (e.g. ``mnist/``, ``MNIST/raw/``,
``mnist-10k/`` for MNIST), so one root can hold every data set.

Example:
    >>> import os
    >>> from volbench.data.roots import data_roots
    >>> roots = data_roots("/tmp/a", environ={"VOLBENCH_DATA": os.pathsep.join(["/tmp/b", ""]),
    ...                                       "XDG_CACHE_HOME": "/tmp/c"})
    >>> [str(r) for r in roots]
    ['/tmp/a', '/tmp/b', '/tmp/c/volbench/data']
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Union

__all__ = ["ENV_VAR", "data_roots", "user_cache_dir", "not_found_message"]

ENV_VAR = "VOLBENCH_DATA"

PathLike = Union[str, "os.PathLike[str]"]


def user_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/volbench/data``, else ``~/.cache/volbench/data`` (XDG base-dir spec)."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "volbench" / "data"


def _as_paths(root: PathLike | Sequence[PathLike] | None) -> list[Path]:
    if root is None:
        return []
    if isinstance(root, (str, os.PathLike)):
        return [Path(os.fspath(root)).expanduser()]
    if isinstance(root, Iterable):
        out = []
        for r in root:
            if not isinstance(r, (str, os.PathLike)):
                raise TypeError(f"root must be a folder path or a list of folder paths, got an item {r!r}")
            out.append(Path(os.fspath(r)).expanduser())
        return out
    raise TypeError(f"root must be a folder path or a list of folder paths, got {type(root).__name__}")


def data_roots(root: PathLike | Sequence[PathLike] | None = None, *,
               environ: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """The data roots in search order (argument, ``$VOLBENCH_DATA``, user cache), without
    duplicates. Folders that do not exist are kept so error messages can list them."""
    env = os.environ if environ is None else environ
    candidates = _as_paths(root)
    candidates += [Path(p).expanduser() for p in env.get(ENV_VAR, "").split(os.pathsep) if p.strip()]
    candidates.append(user_cache_dir(env))
    seen: set[str] = set()
    out = []
    for c in candidates:
        key = os.path.normpath(os.path.abspath(c))
        if key not in seen:
            seen.add(key)
            out.append(c)
    return tuple(out)


def not_found_message(dataset: str, searched: Sequence[Path], layout: str, *, download_hint: bool) -> str:
    """The DatasetNotFoundError text: what was looked for, where, and how to fix it."""
    folders = "\n".join(f"  - {p}{'' if p.exists() else '  (does not exist)'}" for p in searched)
    hint = (f"\nOr pass download=True to fetch it into the user cache ({user_cache_dir()})."
            if download_hint else "")
    hint += f"\nOr run `volbench data fetch {dataset}` (SHA-256 checked, into {user_cache_dir()})."
    return (
        f"could not find the {dataset} data set. Folders searched, in order:\n{folders}\n"
        f"Expected layout inside a data root:\n{layout}\n"
        f"Fix: put the files there and pass root=<folder>, or set the {ENV_VAR} environment variable "
        f"to the data root (several roots separated by {os.pathsep!r}).{hint}"
    )
