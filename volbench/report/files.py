"""Files of a report directory: run ids, the ``latest`` pointer, loading and saving runs (every
write through ``volbench._io``'s atomic writer).

Layout (see ``reports/README.md``)::

    reports/
      latest -> 20250101T120000Z-1a2b3c     symlink (or a LATEST text file where links fail)
      20250101T120000Z-1a2b3c/
        results.json                         rewritten atomically after every test
        report.md, figures/*.png             rendered at the end of the session
        index.html                           self-contained (plots inlined as base64 PNG)

Only the standard library is used, so the pytest plugin imports this cheaply.

Example:
    >>> import tempfile
    >>> run_id = new_run_id()
    >>> create_run_dir(tempfile.mkdtemp())[0] != run_id
    True
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
from pathlib import Path

from volbench._io import atomic_write_text
from volbench.results import RunReport, SchemaError

__all__ = [
    "RESULTS_NAME",
    "ReportFileError",
    "new_run_id",
    "utc_now",
    "create_run_dir",
    "point_latest",
    "resolve_run",
    "load_run",
    "save_run",
    "default_report_root",
]

RESULTS_NAME = "results.json"
LATEST_LINK = "latest"
LATEST_FILE = "LATEST"
#: Environment variable naming the report root (the --volbench-report-dir option wins over it).
REPORT_DIR_ENV = "VOLBENCH_REPORT_DIR"


class ReportFileError(ValueError):
    """A results.json could not be read (corrupt or not volbench's); the message names the file."""


def utc_now() -> str:
    """Current UTC time, ISO 8601 with seconds, e.g. ``2025-01-01T12:00:00Z``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id() -> str:
    """``<UTC yyyymmddThhmmssZ>-<6 hex>``: sorts by start time; the random suffix (from the OS,
    not a seeded generator: it is a name, not an experiment) keeps parallel runs apart."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def create_run_dir(root: str | os.PathLike) -> tuple[str, Path]:
    """Create ``root/<new run id>`` (and ``root``) and return ``(run_id, path)``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for _ in range(16):
        run_id = new_run_id()
        try:
            (root / run_id).mkdir()
        except FileExistsError:  # same second and same suffix: draw another suffix
            continue
        return run_id, root / run_id
    raise FileExistsError(f"could not create a fresh run directory under {root}")


def point_latest(root: str | os.PathLike, run_id: str) -> str:
    """Point ``root/latest`` at ``run_id``; returns ``"symlink"`` or ``"file"``.

    The symlink is made under a temporary name and renamed over ``latest`` (atomic). Where
    symlinks fail (some Windows and network file systems), ``root/LATEST`` gets the run id.
    """
    root = Path(root)
    link = root / LATEST_LINK
    tmp = root / f".{LATEST_LINK}.{secrets.token_hex(4)}.tmp"
    try:
        os.symlink(run_id, tmp, target_is_directory=True)
        try:
            os.replace(tmp, link)
        except OSError:
            os.unlink(tmp)
            raise
    except (OSError, NotImplementedError):
        atomic_write_text(root / LATEST_FILE, run_id + "\n")
        return "file"
    try:  # a LATEST file from an earlier fallback would now disagree with the link
        (root / LATEST_FILE).unlink()
    except FileNotFoundError:
        pass
    return "symlink"


def default_report_root(base: str | os.PathLike | None = None) -> Path:
    """``$VOLBENCH_REPORT_DIR`` if set and non-empty, else ``<base or cwd>/reports``."""
    env = os.environ.get(REPORT_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path(base if base is not None else os.getcwd()) / "reports"


def resolve_run(run: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """Path of the results.json that ``run`` names.

    ``run`` is a run directory, a results.json file, a run id under ``root``, or ``"latest"``
    (``root/latest``, else the id in ``root/LATEST``). ``root`` defaults to
    :func:`default_report_root`. Raises FileNotFoundError naming what was tried.
    """
    root = Path(root) if root is not None else default_report_root()
    text = os.fspath(run)
    if text == LATEST_LINK:
        link = root / LATEST_LINK
        if link.exists():
            candidate = link
        elif (root / LATEST_FILE).is_file():
            candidate = root / (root / LATEST_FILE).read_text().strip()
        else:
            raise FileNotFoundError(
                f"no latest run under {root} (neither {link} nor {root / LATEST_FILE} exists); "
                f"run the cases first, or pass a run directory / --report-dir"
            )
    else:
        candidate = Path(text)
        if not candidate.exists() and not candidate.is_absolute() and (root / text).exists():
            candidate = root / text
    if candidate.is_dir():
        candidate = candidate / RESULTS_NAME
    if not candidate.is_file():
        raise FileNotFoundError(f"no results.json at {candidate} (run {text!r}); pass a run "
                                f"directory, its results.json, a run id under {root}, or 'latest'")
    return candidate


def load_run(path: str | os.PathLike) -> RunReport:
    """Read and validate a results.json (FileNotFoundError, or ReportFileError naming the file)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"no results.json at {path}") from None
    except UnicodeDecodeError as exc:
        raise ReportFileError(f"{path} is not UTF-8 text ({exc}); it is not a volbench "
                              f"results.json") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportFileError(f"{path} is not valid JSON (line {exc.lineno}, column "
                              f"{exc.colno}: {exc.msg}); the file is corrupt or truncated") from None
    try:
        return RunReport.from_dict(data)
    except SchemaError as exc:
        raise ReportFileError(f"{path}: {exc}") from None


def save_run(run: RunReport, path: str | os.PathLike) -> None:
    """Write ``run`` as strict JSON to ``path`` atomically."""
    atomic_write_text(path, run.to_json())
