"""Fake cgroupfs trees for the v1 and v2 backend tests: plain files where the
kernel has interface files, and a fake /proc/self (mountinfo, cgroup)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.cgroups.base import CgroupLimits
from sandbox.cgroups.v1 import CgroupV1Backend

DEAD_PID = 2**22 + 12345  # above pid_max's ceiling: never a live process

LIMITS = CgroupLimits(memory_mb=64, cpu_cores=0.2, pids_max=64)

# What the kernel puts in a new non-root v2 cgroup directory (with cpu,
# memory, pids enabled in the parent), and their initial contents.
V2_FILES = {
    "cgroup.controllers": "cpu memory pids\n",
    "cgroup.subtree_control": "",
    "cgroup.procs": "",
    "cgroup.type": "domain\n",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.freeze": "0\n",
    "cgroup.kill": "",
    "cpu.max": "max 100000\n",
    "cpu.max.burst": "0\n",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
    "memory.max": "max\n",
    "memory.swap.max": "max\n",
    "memory.current": "0\n",
    "memory.peak": "0\n",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    "pids.max": "max\n",
}

V1_UNLIMITED = "9223372036854771712\n"  # what memory.limit_in_bytes reads when unlimited

# What the kernel puts in a new v1 cgroup directory, per hierarchy.
V1_COMMON_FILES = {
    "cgroup.procs": "",
    "tasks": "",
    "notify_on_release": "0\n",
    "cgroup.clone_children": "0\n",
}
V1_FILES = {
    "cpu": {"cpu.cfs_quota_us": "-1\n", "cpu.cfs_period_us": "100000\n", "cpu.cfs_burst_us": "0\n"},
    "cpuacct": {"cpuacct.usage": "0\n", "cpuacct.stat": "user 0\nsystem 0\n"},
    "memory": {
        "memory.limit_in_bytes": V1_UNLIMITED,
        "memory.memsw.limit_in_bytes": V1_UNLIMITED,
        "memory.max_usage_in_bytes": "0\n",
        "memory.usage_in_bytes": "0\n",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        "memory.swappiness": "60\n",
    },
    "pids": {"pids.max": "max\n", "pids.current": "0\n"},
    "freezer": {"freezer.state": "THAWED\n"},
}


def populate(path: Path, files: dict[str, str], omit: tuple[str, ...] = ()) -> None:
    for name, content in files.items():
        if name not in omit:
            (path / name).write_text(content)


def populate_v1(path: Path, controllers: tuple[str, ...], omit: tuple[str, ...] = ()) -> None:
    """The files of a v1 cgroup directory in a hierarchy holding `controllers`."""
    populate(path, V1_COMMON_FILES, omit)
    for controller in controllers:
        populate(path, V1_FILES[controller], omit)


def read(path: Path) -> str:
    return path.read_text()


def strip_files(path: Path) -> None:
    """On cgroupfs the interface files vanish with rmdir; on a fake tree, delete them first."""
    for dirpath, _, files in os.walk(path):
        for name in files:
            os.unlink(os.path.join(dirpath, name))


def write_proc(tmp_path: Path, mountinfo: str, cgroup: str) -> Path:
    """A fake /proc/self for detect(): its mountinfo and cgroup files."""
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "mountinfo").write_text(mountinfo)
    (proc / "cgroup").write_text(cgroup)
    return proc


def cgroup_mount_line(mount_id: int, point: Path, fstype: str, options: str) -> str:
    """One /proc/self/mountinfo line of a cgroup (v1) or cgroup2 mount at `point`."""
    return f"{mount_id} 24 0:{mount_id} / {point} rw,nosuid,nodev,noexec,relatime - {fstype} {fstype} {options}\n"


def pretend_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """detect() refuses to run without root; the fake trees need none."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)


ALL = ("cpu", "cpuacct", "memory", "pids", "freezer")
OWN = "server.service"  # the server's own cgroup in each hierarchy


class FakeV1Backend(CgroupV1Backend):
    """mkdir on a fake tree makes no files; create what the kernel would,
    for the controllers of the hierarchy the directory is in."""

    def _mkdir(self, path: str, exist_ok: bool = False) -> None:
        super()._mkdir(path, exist_ok=exist_ok)
        if os.path.exists(os.path.join(path, "cgroup.procs")):
            return
        controllers = tuple(
            c for c, parent in self._parents.items() if path == parent or path.startswith(parent + "/")
        )
        populate_v1(Path(path), controllers)


def make_hierarchies(tmp_path: Path, controllers: tuple[str, ...] = ALL) -> dict[str, Path]:
    """One fake mount per controller, each holding the server's own cgroup."""
    own = {}
    for controller in controllers:
        mount = tmp_path / "cgroup" / controller
        (mount / OWN).mkdir(parents=True)
        populate_v1(mount, (controller,))
        populate_v1(mount / OWN, (controller,))
        own[controller] = mount / OWN
    return own
