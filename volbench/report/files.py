"""Files of a report directory: atomic writes, run ids, the ``latest`` pointer, loading runs.

Layout (see ``reports/README.md``)::

    reports/
      latest -> 20250101T120000Z-1a2b3c     symlink (or a LATEST text file where links fail)
      20250101T120000Z-1a2b3c/
        results.json                         rewritten atomically after every test
        report.md, figures/*.png             rendered at the end of the session
        index.html                           self-contained (plots inlined as base64 PNG)

Only the standard library is used, so the pytest plugin imports this cheaply.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write_text(root / "a.txt", "hello")
    >>> (root / "a.txt").read_text()
    'hello'
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .._writes import explain_write_error
from .schema import RunReport, SchemaError

__all__ = [
    "RESULTS_NAME",
    "ReportFileError",
    "atomic_write_bytes",
    "atomic_write_many",
    "atomic_write_text",
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never a part.

    The bytes go to a temporary file in the same directory (so ``os.replace`` is a rename on one
    file system), are flushed and fsynced, then renamed over ``path``. A crash or SIGKILL at any
    point leaves the previous file intact; the temporary file is removed on errors. A failed
    write (full disk, file-size limit, read-only folder) raises an OSError with the same errno
    whose message names the file and the fix.
    """
    atomic_write_many([(path, data)])


def atomic_write_many(items: Sequence[tuple[str | os.PathLike, bytes]]) -> None:
    """Write several files so that a failed write replaces none of them.

    Every file is first written to its own temporary file beside it (flushed and fsynced); only
    when all of them are complete are they renamed over their targets. A full disk or a
    file-size limit hit while writing any of them therefore leaves every previous file as it was
    and removes the temporary files (renames need no space). Used for a report's ``report.md``,
    ``index.html`` and figures, which must not end up from two different renderings.
    """
    staged: list[tuple[str, Path]] = []
    current: Path | None = None
    try:
        for target, data in items:
            current = Path(target)
            fd, tmp = tempfile.mkstemp(dir=current.parent, prefix=f".{current.name}.", suffix=".tmp")
            staged.append((tmp, current))
            # mkstemp makes the file private (0600); a report is shared like any file the user
            # writes, so give it the mode open() would have (0666 minus the umask).
            os.chmod(tmp, 0o666 & ~_umask())
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        current = None
        for tmp, target in staged:
            current = target
            os.replace(tmp, target)
    except BaseException as exc:
        for tmp, _ in staged:
            try:
                os.unlink(tmp)
            except OSError:  # already renamed into place, or never created
                pass
        if isinstance(exc, OSError) and exc.errno is not None and current is not None:
            kept = ("the previous file is unchanged and no partial file was left" if len(staged) <= 1 else
                    "every previous file of this set is unchanged and no partial file was left")
            raise explain_write_error(exc, current, kept=kept) from exc
        raise


def _umask() -> int:
    """The process umask, read without changing it (Linux /proc); 0o022 where unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


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
