"""Clear messages for failed writes (full disk, file-size limit, read-only folder).

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

__all__ = ["write_fix", "explain_write_error"]

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
