"""Detect which cgroup version this host offers and open the right backend."""

from __future__ import annotations

import os

from . import remount
from .base import CgroupBackend, CgroupLimits, CgroupUnavailable, SandboxCgroup, parent_name_for
from .v1 import CONTROLLERS as V1_CONTROLLERS
from .v1 import FREEZER as V1_FREEZER
from .v1 import CgroupV1Backend
from .v2 import CgroupV2Backend

__all__ = [
    "CgroupBackend",
    "CgroupLimits",
    "CgroupUnavailable",
    "SandboxCgroup",
    "detect",
    "parse_mountinfo",
    "parse_proc_cgroup",
]

V2_CONTROLLERS = ("cpu", "memory", "pids")


def parse_mountinfo(text: str) -> list[tuple[str, str, str, set[str]]]:
    """Cgroup mounts as (fstype, mount root, mount point, super options)."""
    mounts = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        rfields = right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        fstype = rfields[0]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        mounts.append((fstype, fields[3], fields[4], set(rfields[2].split(","))))
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Map each v1 controller (and "" for v2) to the process's cgroup path."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            paths[controller] = parts[2]
    return paths


def _join(mount_point: str, mount_root: str, path: str) -> str:
    # A mount may expose only part of the hierarchy (containers); our path
    # in /proc/self/cgroup is relative to the hierarchy's real root.
    if mount_root != "/" and (path == mount_root or path.startswith(mount_root + "/")):
        path = path[len(mount_root) :]
    return os.path.join(mount_point, path.lstrip("/"))


def detect(proc: str = "/proc/self", server_pid: int | None = None, move_self: bool = True) -> CgroupBackend:
    """Open the v1 backend where its controllers are mounted, else v2.

    move_self: on v2, let the backend move this process into a leaf cgroup
    (False for tests on a fake tree).

    Raises CgroupUnavailable with one line saying what is missing.
    """
    if os.geteuid() != 0:
        raise CgroupUnavailable("faas serve needs root (to create namespaces and cgroups)")
    with open(os.path.join(proc, "mountinfo")) as f:
        mounts = parse_mountinfo(f.read())
    if not mounts and proc == "/proc/self" and remount.mount_missing():
        # Started by `ip netns exec` (a mount namespace of its own, a fresh /sys).
        with open(os.path.join(proc, "mountinfo")) as f:
            mounts = parse_mountinfo(f.read())
    with open(os.path.join(proc, "cgroup")) as f:
        own = parse_proc_cgroup(f.read())
    parent = parent_name_for(server_pid if server_pid is not None else os.getpid())

    v1_dirs: dict[str, str] = {}
    for fstype, root, point, opts in mounts:
        if fstype != "cgroup":
            continue
        for controller in (*V1_CONTROLLERS, V1_FREEZER):
            if controller in opts and controller in own and os.access(point, os.W_OK):
                v1_dirs[controller] = _join(point, root, own[controller])
    if all(c in v1_dirs for c in V1_CONTROLLERS):
        return CgroupV1Backend(v1_dirs, parent)

    for fstype, root, point, _ in mounts:
        if fstype != "cgroup2" or "" not in own:
            continue
        try:
            with open(os.path.join(point, "cgroup.controllers")) as f:
                available = set(f.read().split())
        except OSError:
            continue
        if all(c in available for c in V2_CONTROLLERS):
            return CgroupV2Backend(point, _join(point, root, own[""]), parent, move_self=move_self)

    found_v1 = sorted(c for c in v1_dirs if c in V1_CONTROLLERS)
    raise CgroupUnavailable(
        "no usable cgroups: need cgroup v1 controllers cpu, cpuacct, memory, pids "
        f"(found {', '.join(found_v1) or 'none'}) or a cgroup2 mount offering cpu, memory, pids"
    )
