"""The cgroup contract: one interface, a v1 and a v2 backend behind it.

A `SandboxCgroup` is the cgroup of one sandbox (a directory per hierarchy on
v1, one directory on v2). A `CgroupBackend` owns the server's parent cgroup
under which every sandbox cgroup is created, and removes it at the end.

Freezing (work between calls is neither limited nor billed, because it does
not happen): `freeze()` after a call, `thaw()` before the next call's frame.

- Each is one write to a file kept open: about 3.5 µs per freeze+thaw pair
  on either version (v1 only with the backend's frozen anchor cgroup, see
  v1.py; without it 160-180 µs, p99 over 3 ms).
- freeze() does not wait: the kernel stops the tasks asynchronously (v1
  `freezer.state` reads FREEZING, v2 `cgroup.events` `frozen 0`, until every
  task has stopped; a task in uninterruptible sleep delays it). is_frozen()
  says when it is complete; the call path never needs to ask.
- thaw() is complete when it returns on both versions: the kernel wakes
  every task inside the write (v1 reads THAWED, v2 `frozen 0` right after).
  A frame written to a frozen sandbox's socket would wait in the socket
  buffer anyway; it is the call's wall time that needs the thaw first.
- A frozen cgroup uses no CPU (its CPU counter stops) and allocates no
  memory, but keeps what it holds: memory_current_bytes() still counts it.
- kill() works on a frozen cgroup on both versions (v1 signals, then thaws,
  because a frozen v1 task acts on SIGKILL only once thawed; v2 fatal
  signals and `cgroup.kill` reach frozen tasks). After kill() or remove(),
  freeze() and thaw() are no-ops, so a late freeze cannot strand a killed
  task. remove() of a frozen cgroup works (kill, then rmdir).
- OOM while frozen: a frozen cgroup allocates nothing, so it cannot hit its
  own limit; if the kernel still picks one of its tasks (a global OOM), it
  thaws the victim so that it dies. oom_kills() counts it; the sandbox is
  found dead at its next call.
- Where the freezer is missing (v1: no freezer hierarchy; v2: no
  `cgroup.freeze`), `CgroupBackend.can_freeze` is False, the backend logs
  one warning, and freeze()/thaw() do nothing.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from .files import Freezer

log = logging.getLogger("faas.cgroups")


class CgroupUnavailable(RuntimeError):
    """Cgroups cannot be used here; the message says what is missing."""


@dataclass(frozen=True)
class CgroupLimits:
    memory_mb: int
    cpu_cores: float
    pids_max: int
    cpu_period_us: int = 100_000
    # Lets a short burst run at full speed instead of being stretched by the
    # quota (a 50 ms burst under 20% took 140 ms of wall time without it).
    cpu_burst_us: int = 0

    @property
    def memory_bytes(self) -> int:
        return self.memory_mb * 1024 * 1024

    @property
    def cpu_quota_us(self) -> int:
        return max(1000, round(self.cpu_cores * self.cpu_period_us))


def read_int(path: str) -> int:
    with open(path) as f:
        return int(f.read().strip() or 0)


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def write_text(path: str, value: str) -> None:
    # O_TRUNC is a no-op on cgroupfs; it keeps plain files (fake trees in tests) exact.
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def read_keyed(path: str) -> dict[str, int]:
    """Parse flat keyed files such as cpu.stat, memory.events, memory.oom_control."""
    out: dict[str, int] = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                try:
                    out[parts[0]] = int(parts[1])
                except ValueError:
                    continue
    return out


def read_pids(procs_file: str) -> list[int]:
    try:
        with open(procs_file) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def rmdir_when_empty(path: str, timeout_s: float = 2.0) -> None:
    """rmdir a cgroup directory, retrying while the kernel still counts tasks in it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.001)


class SandboxCgroup(ABC):
    name: str

    @property
    @abstractmethod
    def procs_files(self) -> tuple[str, ...]:
        """The cgroup.procs files a process writes its pid to, to join."""

    @abstractmethod
    def set_limits(self, limits: CgroupLimits) -> None: ...

    @abstractmethod
    def cpu_usage_ns(self) -> int: ...

    @abstractmethod
    def memory_peak_bytes(self) -> int:
        """Peak memory since the last reset_memory_peak() (or since creation)."""

    @abstractmethod
    def reset_memory_peak(self) -> None: ...

    @abstractmethod
    def memory_current_bytes(self) -> int:
        """Memory the cgroup holds now (frozen or not), through an open fd."""

    @abstractmethod
    def oom_kills(self) -> int:
        """How many processes the OOM killer has killed in this cgroup."""

    @abstractmethod
    def pids(self) -> list[int]: ...

    @abstractmethod
    def kill(self) -> None:
        """SIGKILL every process in the cgroup."""

    @abstractmethod
    def remove(self) -> None:
        """Kill what is left and remove the cgroup (every hierarchy on v1)."""

    # Set by each backend's constructor; a no-op Freezer where there is none.
    _freezer: Freezer

    def freeze(self) -> None:
        """Start freezing every task; returns without waiting (see the module docstring)."""
        self._freezer.freeze()

    def thaw(self) -> None:
        """Let every task run again; complete when it returns."""
        self._freezer.thaw()

    @property
    def thaw_command(self) -> tuple[str, str] | None:
        """(file, value) that thaws this cgroup, for whoever must thaw it
        without this object (the zygote, killing its sandboxes as it exits:
        a frozen v1 task acts on SIGKILL only once thawed); None without a freezer."""
        return self._freezer.thaw_command

    def is_frozen(self) -> bool:
        """True once freezing has completed (False where the freezer is missing)."""
        return self._freezer.available and self._kernel_reports_frozen()

    @abstractmethod
    def _kernel_reports_frozen(self) -> bool:
        """Whether the kernel says every task has stopped."""

    def is_empty(self) -> bool:
        return not self.pids()


class CgroupBackend(ABC):
    version: int
    # Whether SandboxCgroup.freeze() does anything here.
    can_freeze: bool
    # Where sandbox cgroups are created, for logs and the cleanup check.
    parent_paths: tuple[str, ...]

    @abstractmethod
    def create(self, name: str, limits: CgroupLimits) -> SandboxCgroup: ...

    @abstractmethod
    def remove_stale(self) -> int:
        """Remove sandbox cgroups left behind by a dead server; return how many."""

    @abstractmethod
    def close(self) -> None:
        """Remove the server's parent cgroup (after every sandbox is gone)."""


PARENT_PREFIX = "faas-"


def parent_name_for(pid: int) -> str:
    """The server's parent cgroup is named after its pid, so several servers
    can share a machine and a dead one's leftovers can be told apart."""
    return f"{PARENT_PREFIX}{pid}"


def remove_tree(path: str) -> int:
    """Kill every process below a cgroup directory and remove it, leaves first.

    Returns how many directories were removed.
    """
    if not os.path.isdir(path):
        return 0
    removed = 0
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            removed += remove_tree(entry.path)
    # A dead server may have left sandboxes frozen (its zygote's SIGKILLs
    # wait for a thaw on v1): thaw after signalling, so they wake only to die.
    freezer_state = os.path.join(path, "freezer.state")
    for _ in range(100):
        pids = read_pids(os.path.join(path, "cgroup.procs"))
        if not pids:
            break
        kill_pids(pids)
        if os.path.exists(freezer_state):
            write_text(freezer_state, "THAWED")
    rmdir_when_empty(path)
    return removed + 1


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_parents(own_dirs: tuple[str, ...]) -> int:
    """Remove `faas-<pid>` cgroups whose server process is gone.

    On v1 a dead server's frozen sandbox is frozen through the freezer
    hierarchy and dies only once thawed there: every hierarchy's stale tree
    is killed and thawed first, then removed. One that still cannot be
    removed is logged and left for the next start; it never stops this one."""
    stale = []
    for own in own_dirs:
        try:
            entries = list(os.scandir(own))
        except FileNotFoundError:
            continue
        for entry in entries:
            suffix = entry.name[len(PARENT_PREFIX) :]
            if entry.name.startswith(PARENT_PREFIX) and suffix.isdigit() and not _pid_alive(int(suffix)):
                stale.append(entry.path)
    for path in stale:
        _kill_and_thaw_tree(path)
    removed = 0
    for path in stale:
        try:
            removed += remove_tree(path)
        except OSError as exc:
            log.warning("could not remove the cgroup %s of a dead server: %s", path, exc)
    return removed


def _kill_and_thaw_tree(path: str) -> None:
    for root, _dirs, _files in os.walk(path, topdown=False):
        kill_pids(read_pids(os.path.join(root, "cgroup.procs")))
        freezer_state = os.path.join(root, "freezer.state")
        if os.path.exists(freezer_state):
            with contextlib.suppress(OSError):
                write_text(freezer_state, "THAWED")
