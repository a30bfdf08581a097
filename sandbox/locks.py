"""flock()ed files under /run that their holder removes when done, so that
locks named after network namespaces (a test makes a new one each run) do
not pile up.

Removing a lock file races with a process that opened it just before: it
would lock a file no longer in the directory while a third locks a new one
of the same name. So a lock counts only if, once held, the path still names
the file that was locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os


def try_lock(path: str, operation: int = fcntl.LOCK_EX | fcntl.LOCK_NB) -> int | None:
    """An fd holding `operation` on `path` (made if missing), or None where
    LOCK_NB was given and another holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, operation)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # removed meanwhile by its holder: lock the new one


def unlock_and_remove(path: str, fd: int) -> None:
    """Remove the file while holding its lock exclusively, then let go."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.close(fd)
