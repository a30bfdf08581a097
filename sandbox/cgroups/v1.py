"""cgroup v1: one directory per sandbox in each of the cpu, cpuacct, memory
and pids hierarchies (cpu and cpuacct may share one mount), and in freezer's
where it is mounted.

The freeze anchor: the kernel turns its freezer checks on (a static key,
patched into running code) while any v1 cgroup is freezing or frozen, and
off again when none is. Freezing one sandbox at a time would patch kernel
text twice per call: 160-180 µs per freeze+thaw pair, p99 over 3 ms. The
backend keeps one empty cgroup, `<parent>/freeze-anchor`, frozen for its
whole life, so the key stays on and a pair costs about 3.5 µs.
"""

from __future__ import annotations

import logging
import os

from .base import (
    CgroupBackend,
    CgroupLimits,
    SandboxCgroup,
    kill_pids,
    read_int,
    read_keyed,
    read_pids,
    read_text,
    remove_stale_parents,
    remove_tree,
    rmdir_when_empty,
    write_text,
)
from .files import Freezer, OpenFile

CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")
# Used where mounted; without it sandboxes are not frozen between calls.
FREEZER = "freezer"
FREEZE_ANCHOR = "freeze-anchor"
FROZEN, THAWED = "FROZEN", "THAWED"

log = logging.getLogger("faas.cgroups")


class V1SandboxCgroup(SandboxCgroup):
    def __init__(self, name: str, dirs: dict[str, str]) -> None:
        self.name = name
        self._dirs = dirs  # controller -> directory
        self._unique_dirs = tuple(dict.fromkeys(dirs.values()))
        self._cpu_usage = OpenFile(self._path("cpuacct", "cpuacct.usage"))
        self._memory_peak = OpenFile(self._path("memory", "memory.max_usage_in_bytes"), writable=True)
        self._memory_current = OpenFile(self._path("memory", "memory.usage_in_bytes"))
        freezer_state = self._path(FREEZER, "freezer.state") if FREEZER in dirs else None
        self._freezer = Freezer(freezer_state, FROZEN, THAWED)

    @property
    def procs_files(self) -> tuple[str, ...]:
        return tuple(os.path.join(d, "cgroup.procs") for d in self._unique_dirs)

    def _path(self, controller: str, file: str) -> str:
        return os.path.join(self._dirs[controller], file)

    def set_limits(self, limits: CgroupLimits) -> None:
        mem = self._path("memory", "memory.limit_in_bytes")
        memsw = self._path("memory", "memory.memsw.limit_in_bytes")
        # memsw must stay >= the memory limit, so order the writes by direction.
        current = read_int(mem)
        if os.path.exists(memsw):
            if limits.memory_bytes >= current:
                write_text(memsw, str(limits.memory_bytes))
                write_text(mem, str(limits.memory_bytes))
            else:
                write_text(mem, str(limits.memory_bytes))
                write_text(memsw, str(limits.memory_bytes))
        else:
            write_text(mem, str(limits.memory_bytes))
        swappiness = self._path("memory", "memory.swappiness")
        if os.path.exists(swappiness):
            write_text(swappiness, "0")
        write_text(self._path("cpu", "cpu.cfs_period_us"), str(limits.cpu_period_us))
        write_text(self._path("cpu", "cpu.cfs_quota_us"), str(limits.cpu_quota_us))
        burst = self._path("cpu", "cpu.cfs_burst_us")
        if limits.cpu_burst_us and os.path.exists(burst):
            write_text(burst, str(min(limits.cpu_burst_us, limits.cpu_quota_us)))
        write_text(self._path("pids", "pids.max"), str(limits.pids_max))

    def cpu_usage_ns(self) -> int:
        return self._cpu_usage.read_int()

    def memory_peak_bytes(self) -> int:
        return self._memory_peak.read_int()

    def reset_memory_peak(self) -> None:
        self._memory_peak.write("0")

    def memory_current_bytes(self) -> int:
        return self._memory_current.read_int()

    def oom_kills(self) -> int:
        return read_keyed(self._path("memory", "memory.oom_control")).get("oom_kill", 0)

    def pids(self) -> list[int]:
        return read_pids(self._path("pids", "cgroup.procs"))

    def _kernel_reports_frozen(self) -> bool:
        return read_text(self._path(FREEZER, "freezer.state")) == FROZEN

    def kill(self) -> None:
        # A frozen v1 task acts on SIGKILL only once thawed, so with a
        # freezer: freeze (nothing forks meanwhile), signal, thaw; the tasks
        # wake only to die. Then, as without one (v1 has no cgroup.kill):
        # killing every listed pid includes the sandbox's PID 1, whose death
        # makes the kernel kill the rest of its PID namespace, so a fork bomb
        # cannot outrun the loop.
        self._freezer.stop(while_frozen=lambda: kill_pids(self.pids()))
        for _ in range(100):
            pids = self.pids()
            if not pids:
                return
            kill_pids(pids)

    def remove(self) -> None:
        self.kill()
        self._freezer.close()
        self._cpu_usage.close()
        self._memory_peak.close()
        self._memory_current.close()
        for d in self._unique_dirs:
            rmdir_when_empty(d)


class CgroupV1Backend(CgroupBackend):
    version = 1

    def __init__(self, controller_dirs: dict[str, str], parent_name: str) -> None:
        """controller_dirs: controller -> the server's own cgroup directory in
        it; CONTROLLERS are required, FREEZER is used where given."""
        missing = [c for c in CONTROLLERS if c not in controller_dirs]
        if missing:
            raise ValueError(f"cgroup v1 controllers missing: {', '.join(missing)}")
        used = CONTROLLERS + ((FREEZER,) if FREEZER in controller_dirs else ())
        self.can_freeze = FREEZER in controller_dirs
        self._parents = {c: os.path.join(controller_dirs[c], parent_name) for c in used}
        self.parent_paths = tuple(dict.fromkeys(self._parents.values()))
        self._own_dirs = tuple(dict.fromkeys(controller_dirs[c] for c in used))
        self._freezer_own = controller_dirs.get(FREEZER)
        for d in self.parent_paths:
            self._mkdir(d, exist_ok=True)
        if self.can_freeze:
            anchor = os.path.join(self._parents[FREEZER], FREEZE_ANCHOR)
            self._mkdir(anchor, exist_ok=True)
            write_text(os.path.join(anchor, "freezer.state"), FROZEN)
        else:
            log.warning(
                "cgroup v1 freezer hierarchy not mounted: idle sandboxes are not frozen between calls"
            )

    def _mkdir(self, path: str, exist_ok: bool = False) -> None:
        """mkdir a cgroup; the kernel fills it with its interface files.
        (Tests on a fake tree override this to create those files too.)"""
        os.makedirs(path, exist_ok=exist_ok)

    def create(self, name: str, limits: CgroupLimits) -> V1SandboxCgroup:
        dirs = {c: os.path.join(p, name) for c, p in self._parents.items()}
        made: list[str] = []
        try:
            for d in dict.fromkeys(dirs.values()):
                self._mkdir(d)
                made.append(d)
            cgroup = V1SandboxCgroup(name, dirs)
            cgroup.set_limits(limits)
            return cgroup
        except BaseException:
            for d in reversed(made):
                rmdir_when_empty(d)
            raise

    def remove_stale(self) -> int:
        # The freezer hierarchy first: a dead server's frozen sandboxes die of
        # their SIGKILL only once thawed there, and until they are dead their
        # cgroups in the other hierarchies cannot be removed (EBUSY).
        return remove_stale_parents(tuple(sorted(self._own_dirs, key=lambda d: d != self._freezer_own)))

    def close(self) -> None:
        for d in self.parent_paths:
            remove_tree(d)
