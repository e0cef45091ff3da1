"""The one atomic writer, and clear messages for failed writes (full disk, file-size limit,
read-only folder).

Every file volbench writes (reports, caches, the baseline, measurement records) goes through
:func:`atomic_write_bytes` / :func:`atomic_write_many`: a temporary file beside the target,
flushed and fsynced, then renamed over it, so readers see the old or the new file, never a part;
the store's minima entries are directories staged with :func:`write_durably` and renamed whole.

Only the standard library, so the report package (imported by the pytest plugin for every run)
can use it without importing torch.

Example:
    >>> import errno
    >>> exc = explain_write_error(OSError(errno.ENOSPC, "No space left on device"), "/r/index.html")
    >>> str(exc).split(";")[0]
    '[Errno 28] No space left on device while writing /r/index.html'
    >>> type(exc).__name__, "free space" in str(exc)
    ('OSError', True)
"""
from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["write_fix", "explain_write_error", "atomic_write_bytes", "atomic_write_text", "atomic_write_many",
           "write_durably", "fsync_dir"]

_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
_NO_FOLDER = {errno.ENOENT, errno.ENOTDIR}


def write_fix(exc: BaseException) -> str:
    """What to do about an OSError raised while writing a file ("" when there is no advice)."""
    code = getattr(exc, "errno", None)
    if code in _NO_SPACE:
        return "Fix: free space on that file system (or raise the disk quota), or write somewhere else"
    if code == errno.EFBIG:
        return ("Fix: the file is larger than this process may write (the file-size limit, `ulimit -f`, "
                "or the file system's maximum); raise the limit, or write somewhere else")
    if code in _NOT_WRITABLE:
        return "Fix: make the folder writable (permissions, read-only mount), or write somewhere else"
    if code in _NO_FOLDER:
        return "Fix: create the folder (a part of the path is missing or is a file), or write somewhere else"
    return ""


def explain_write_error(exc: OSError, path: str | os.PathLike, *, what: str = "",
                        kept: str = "the previous file is unchanged and no partial file was left") -> OSError:
    """A new OSError (same errno, so the same subclass) whose message names the file, what was
    kept and the fix; raise it ``from exc``. An OSError without errno is returned unchanged."""
    if getattr(exc, "errno", None) is None:
        return exc
    reason = exc.strerror or str(exc)
    target = f"{what} {os.fspath(path)}" if what else os.fspath(path)
    fix = write_fix(exc)
    message = f"{reason} while writing {target}; {kept}" + (f". {fix}" if fix else "")
    return OSError(exc.errno, message)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, what: str = "", kept: str = "") -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never a part.

    The bytes go to a temporary file in the same directory (so ``os.replace`` is a rename on one
    file system), are flushed and fsynced, then renamed over ``path``. A crash or SIGKILL at any
    point leaves the previous file intact; the temporary file is removed on errors. A failed
    write (full disk, file-size limit, read-only folder) raises an OSError with the same errno
    whose message names the file and the fix.
    """
    atomic_write_many([(path, data)], what=what, kept=kept)


def atomic_write_many(items: Sequence[tuple[str | os.PathLike, bytes]], *, what: str = "", kept: str = "") -> None:
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
            kept = kept or ("the previous file is unchanged and no partial file was left" if len(staged) <= 1 else
                            "every previous file of this set is unchanged and no partial file was left")
            raise explain_write_error(exc, current, what=what, kept=kept) from exc
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


def atomic_write_text(path: str | os.PathLike, text: str, *, what: str = "", kept: str = "") -> None:
    """:func:`atomic_write_bytes` for UTF-8 text (``what``: how the error names the file;
    ``kept``: what it says was kept)."""
    atomic_write_bytes(path, text.encode("utf-8"), what=what, kept=kept)


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file ``path`` and fsync it (a file inside a staging folder that is
    renamed into place whole, as the minima store does)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """fsync a folder, so a rename or a file created in it is durable (not available everywhere)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
