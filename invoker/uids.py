"""Sandbox uids: each server holds a range of its own, so two servers on
one host never share a uid (nor the per-uid limits of the kernel), and a
server's sandboxes can be told from another's by uid. The range is held by
an flock on a file under /run for the server's lifetime; the kernel lets go
of it when the server dies, even by SIGKILL."""

from __future__ import annotations

import fcntl
import itertools
import os

from sandbox.api import UidMapping

from .errors import StartupError

UID_BASE = 200_000
RANGE_SIZE = 65_536
RANGES = 1024
LOCK_DIR = "/run/faas/uid-ranges"
# The top of a range: the uids of layer zygotes (sandbox/import_cache.py),
# never a sandbox's. The first uid of a range is nobody's.
ZYGOTE_UIDS = 1024
SANDBOX_UIDS = RANGE_SIZE - ZYGOTE_UIDS - 1


class UidRange:
    def __init__(self, lock_dir: str = LOCK_DIR) -> None:
        self._lock_dir = lock_dir
        self._fd: int | None = None
        self.first = 0
        self._next = itertools.count()
        self._next_zygote = itertools.count()

    def __enter__(self) -> UidRange:
        os.makedirs(self._lock_dir, mode=0o700, exist_ok=True)
        for index in range(RANGES):
            fd = os.open(os.path.join(self._lock_dir, f"{index}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._fd = fd
            self.first = UID_BASE + index * RANGE_SIZE
            return self
        raise StartupError(f"no free range of sandbox uids: {RANGES} servers hold one each")

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def next(self) -> int:
        """The uid (and gid) of the next sandbox; reused after SANDBOX_UIDS."""
        return self.first + 1 + next(self._next) % SANDBOX_UIDS

    def layer_zygote(self) -> UidMapping:
        """The uids of a new layer zygote: one of its own, and every sandbox uid."""
        zygote_uid = self.first + RANGE_SIZE - ZYGOTE_UIDS + next(self._next_zygote) % ZYGOTE_UIDS
        return UidMapping(zygote_uid=zygote_uid, first=self.first, count=SANDBOX_UIDS + 1)
