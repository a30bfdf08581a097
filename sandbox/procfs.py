"""Reading processes from /proc: who is whose child. Read each time, never
remembered, so a recycled pid is never taken for one of ours."""

from __future__ import annotations

import os


def children_of(parent: int, include_zombies: bool = True) -> list[tuple[int, str]]:
    """(pid, command name) of every process whose parent is `parent`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split at the last ")".
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == parent and (include_zombies or fields[0] != "Z"):
            found.append((int(entry), name))
    return found


def reap_exited_children(_signum: int = 0, _frame: object = None) -> None:
    """Collect every child that has exited, without blocking (also usable as
    a SIGCHLD handler): the zygote's sandboxes, or a sandbox's orphans."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


SIGKILL_BIT = 1 << 8  # signal 9, in /proc/PID/stat's bitmap of pending signals


def killed(pid: int) -> bool:
    """Whether `pid` is gone or has a SIGKILL pending. A task in a frozen
    cgroup (v1) acts on SIGKILL only once thawed, so a sandbox killed while
    frozen still looks alive until then: this tells it before a call does."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return _stat_says_killed(f.read())
    except OSError:
        return True


class ProcessStat:
    """/proc/PID/stat of one process kept open: `killed()` is one pread,
    cheap enough for every warm call."""

    def __init__(self, pid: int) -> None:
        self._fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)

    def killed(self) -> bool:
        if self._fd < 0:
            return True
        try:
            return _stat_says_killed(os.pread(self._fd, 1024, 0))
        except OSError:  # ESRCH: the process is gone
            return True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _stat_says_killed(stat: bytes) -> bool:
    fields = stat[stat.rindex(b")") + 2 :].split()
    return len(fields) <= 28 or bool(int(fields[28]) & SIGKILL_BIT)
