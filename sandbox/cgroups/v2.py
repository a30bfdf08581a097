"""cgroup v2: one directory per sandbox in the unified hierarchy.

Layout, under the server's own cgroup `<own>` (as /proc/self/cgroup names it):

    <own>/supervisor            the server itself (a leaf; see below)
    <own>/faas-<pid>            the server's parent cgroup
    <own>/faas-<pid>/<sandbox>  one per sandbox, with cpu, memory and pids limits

v2's no-internal-process rule: a non-root cgroup that holds processes cannot
enable controllers for its children (EBUSY). So, unless `<own>` is the real
root cgroup, the server first moves itself into the leaf `<own>/supervisor`.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time

from .base import (
    CgroupBackend,
    CgroupLimits,
    CgroupUnavailable,
    SandboxCgroup,
    kill_pids,
    read_keyed,
    read_pids,
    remove_stale_parents,
    remove_tree,
    rmdir_when_empty,
    write_text,
)
from .files import Freezer, OpenFile

CONTROLLERS = ("cpu", "memory", "pids")
SUPERVISOR = "supervisor"

log = logging.getLogger("faas.cgroups")

# Errors from writing to memory.peak on kernels that cannot reset it (< 6.12).
_NO_RESET_ERRNOS = (errno.EINVAL, errno.EBADF, errno.EPERM, errno.EACCES, errno.EOPNOTSUPP)


class V2SandboxCgroup(SandboxCgroup):
    def __init__(self, name: str, path: str, can_freeze: bool = True) -> None:
        self.name = name
        self.path = path
        # Fatal signals and cgroup.kill reach frozen v2 tasks: kill() needs no thaw.
        self._freezer = Freezer(self._file("cgroup.freeze") if can_freeze else None, "1", "0")
        self._memory_current = OpenFile(self._file("memory.current"))
        self._lock = threading.Lock()
        self._peak_fd: int | None = None
        self._peak_opened = False  # tried to open memory.peak (it may not exist)
        self._peak_resettable = True
        self._cpu_stat = OpenFile(self._file("cpu.stat"))

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def procs_files(self) -> tuple[str, ...]:
        return (self._file("cgroup.procs"),)

    def set_limits(self, limits: CgroupLimits) -> None:
        write_text(self._file("memory.max"), str(limits.memory_bytes))
        swap = self._file("memory.swap.max")
        if os.path.exists(swap):
            write_text(swap, "0")
        write_text(self._file("cpu.max"), f"{limits.cpu_quota_us} {limits.cpu_period_us}")
        burst = self._file("cpu.max.burst")
        if limits.cpu_burst_us and os.path.exists(burst):
            write_text(burst, str(min(limits.cpu_burst_us, limits.cpu_quota_us)))
        write_text(self._file("pids.max"), str(limits.pids_max))

    def cpu_usage_ns(self) -> int:
        for line in self._cpu_stat.read().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) * 1000
        return 0

    def _peak_fd_locked(self) -> int | None:
        """The fd on memory.peak, opened on first use; None where the file is missing."""
        if not self._peak_opened:
            self._peak_opened = True
            path = self._file("memory.peak")
            try:
                self._peak_fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                self._peak_fd = None  # kernel < 5.19: no memory.peak at all
            except OSError:
                # Read-only memory.peak (kernel < 6.12): readable, not resettable.
                self._peak_resettable = False
                try:
                    self._peak_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    self._peak_fd = None
        return self._peak_fd

    def reset_memory_peak(self) -> None:
        """Start a new peak measurement.

        Since Linux 6.12 writing to memory.peak resets the peak as seen through
        the file descriptor that wrote it, so one fd per cgroup is kept open and
        both written and read. Older kernels refuse the write (or the O_RDWR
        open); there the reset is a no-op and memory_peak_bytes() reports the
        cgroup's lifetime peak. That over-reports but is an honest upper bound:
        memory.current at reset time would be no bound at all, since the peak
        since then may lie anywhere above it.
        """
        with self._lock:
            fd = self._peak_fd_locked()
            if fd is None or not self._peak_resettable:
                return
            try:
                # os.write, not pwrite: kernfs seq files refuse pwrite (ESPIPE).
                os.write(fd, b"reset")
            except OSError as exc:
                if exc.errno not in _NO_RESET_ERRNOS:
                    raise
                self._peak_resettable = False

    def memory_peak_bytes(self) -> int:
        """Peak memory since the last reset_memory_peak() (lifetime peak where the
        kernel cannot reset; memory.current where there is no memory.peak)."""
        with self._lock:
            fd = self._peak_fd_locked()
            if fd is not None:
                return int(os.pread(fd, 64, 0).strip() or 0)
        return self.memory_current_bytes()

    def memory_current_bytes(self) -> int:
        return self._memory_current.read_int()

    def oom_kills(self) -> int:
        try:
            return read_keyed(self._file("memory.events")).get("oom_kill", 0)
        except FileNotFoundError:
            return 0

    def pids(self) -> list[int]:
        return read_pids(self._file("cgroup.procs"))

    def _populated(self) -> bool:
        try:
            events = read_keyed(self._file("cgroup.events"))
        except FileNotFoundError:
            return bool(self.pids())
        if "populated" in events:
            return events["populated"] != 0
        return bool(self.pids())

    def _kernel_reports_frozen(self) -> bool:
        return read_keyed(self._file("cgroup.events")).get("frozen", 0) == 1

    def kill(self) -> None:
        self._freezer.stop()
        # cgroup.kill (Linux 5.14+) kills every process, forks in flight included.
        kill_file = self._file("cgroup.kill")
        if os.path.exists(kill_file):
            try:
                write_text(kill_file, "1")
                return
            except FileNotFoundError:
                return  # the cgroup is already gone
        # Without it, killing every listed pid includes the sandbox's PID 1,
        # whose death makes the kernel kill the rest of its PID namespace.
        for _ in range(100):
            pids = self.pids()
            if not pids:
                return
            kill_pids(pids)

    def close_peak_fd(self) -> None:
        with self._lock:
            if self._peak_fd is not None:
                os.close(self._peak_fd)
            self._peak_fd = None
            self._peak_opened = True  # never reopen: the cgroup is going away

    def remove(self, timeout_s: float = 2.0) -> None:
        self.close_peak_fd()
        self._freezer.close()
        self._cpu_stat.close()
        self._memory_current.close()
        if not os.path.isdir(self.path):
            return
        self.kill()
        has_kill = os.path.exists(self._file("cgroup.kill"))
        deadline = time.monotonic() + timeout_s
        delay = 0.0005
        while self._populated() and time.monotonic() < deadline:
            if not has_kill:
                kill_pids(self.pids())
            time.sleep(delay)
            delay = min(delay * 2, 0.01)
        rmdir_when_empty(self.path)


class CgroupV2Backend(CgroupBackend):
    version = 2

    def __init__(self, mount_point: str, own_dir: str, parent_name: str, move_self: bool = True) -> None:
        """Prepare `<own_dir>/<parent_name>` for sandbox cgroups.

        move_self: move this process into `<own_dir>/supervisor` first, as the
        no-internal-process rule requires unless own_dir is the root cgroup.
        Tests on a fake tree pass False.
        """
        self.mount_point = mount_point
        self.own_dir = own_dir
        self.parent_path = os.path.join(own_dir, parent_name)
        self.parent_paths = (self.parent_path,)
        self.supervisor_path: str | None = None

        if move_self and not self._is_root(own_dir):
            self._move_self_to_supervisor()
        try:
            self._enable_controllers(own_dir)
        except BaseException:
            self._move_self_back()
            raise
        self._mkdir(self.parent_path, exist_ok=True)
        self._enable_controllers(self.parent_path)
        # cgroup.freeze (Linux 5.2+) exists in every non-root cgroup.
        self.can_freeze = os.path.exists(os.path.join(self.parent_path, "cgroup.freeze"))
        if not self.can_freeze:
            log.warning(
                "cgroup v2 has no cgroup.freeze (Linux < 5.2): idle sandboxes are not frozen between calls"
            )

    def _is_root(self, path: str) -> bool:
        """The real root cgroup is exempt from the no-internal-process rule.

        A cgroup namespace's root (e.g. a container's "/") is not the real root;
        the kernel gives every cgroup but the real root a cgroup.type file.
        """
        if os.path.realpath(path) != os.path.realpath(self.mount_point):
            return False
        return not os.path.exists(os.path.join(path, "cgroup.type"))

    def _mkdir(self, path: str, exist_ok: bool = False) -> None:
        """mkdir a cgroup; the kernel fills it with its interface files.
        (Tests on a fake tree override this to create those files too.)"""
        try:
            os.mkdir(path)
        except FileExistsError:
            if not exist_ok:
                raise

    def _move_self_to_supervisor(self) -> None:
        supervisor = os.path.join(self.own_dir, SUPERVISOR)
        try:
            self._mkdir(supervisor, exist_ok=True)
            write_text(os.path.join(supervisor, "cgroup.procs"), str(os.getpid()))
        except OSError as exc:
            raise CgroupUnavailable(
                f"cannot move the server into the leaf cgroup {supervisor}: {exc.strerror or exc}"
            ) from exc
        self.supervisor_path = supervisor

    def _move_self_back(self) -> None:
        """Undo _move_self_to_supervisor after a failed setup (best effort)."""
        if self.supervisor_path is None:
            return
        try:
            write_text(os.path.join(self.own_dir, "cgroup.procs"), str(os.getpid()))
        except OSError:
            return
        supervisor, self.supervisor_path = self.supervisor_path, None
        try:
            os.rmdir(supervisor)
        except OSError:
            pass

    def _enable_controllers(self, path: str) -> None:
        try:
            with open(os.path.join(path, "cgroup.controllers")) as f:
                available: set[str] | None = set(f.read().split())
        except OSError:
            available = None
        try:
            with open(os.path.join(path, "cgroup.subtree_control")) as f:
                enabled = set(f.read().split())
        except OSError:
            enabled = set()
        for controller in CONTROLLERS:
            if controller in enabled:
                continue
            if available is not None and controller not in available:
                raise CgroupUnavailable(
                    f"cgroup v2 controller {controller} is not available in {path} "
                    f"(cgroup.controllers: {' '.join(sorted(available)) or 'empty'}); "
                    "the parent cgroup must delegate it"
                )
            try:
                write_text(os.path.join(path, "cgroup.subtree_control"), f"+{controller}")
            except OSError as exc:
                if exc.errno == errno.EBUSY:
                    raise CgroupUnavailable(
                        f"cannot enable cgroup v2 controller {controller} in {path}: other processes "
                        "share this cgroup (EBUSY); run the server in a cgroup of its own"
                    ) from exc
                raise CgroupUnavailable(
                    f"cannot enable cgroup v2 controller {controller} in {path}: {exc.strerror or exc}"
                ) from exc

    def create(self, name: str, limits: CgroupLimits) -> V2SandboxCgroup:
        path = os.path.join(self.parent_path, name)
        self._mkdir(path)
        cgroup = V2SandboxCgroup(name, path, can_freeze=self.can_freeze)
        try:
            cgroup.set_limits(limits)
            return cgroup
        except BaseException:
            try:
                rmdir_when_empty(path)
            except OSError:
                pass
            raise

    def remove_stale(self) -> int:
        return remove_stale_parents((self.own_dir,))

    def close(self) -> None:
        # The supervisor cgroup stays: this process still lives in it.
        remove_tree(self.parent_path)
