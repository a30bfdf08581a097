"""Cgroup hierarchies mounted again where the server's mount namespace has
lost them: `ip netns exec NS faas serve` gives the server a mount
namespace of its own with a fresh /sys, without /sys/fs/cgroup's mounts.

Only ever in a mount namespace other than the one of the process that
started the server (so the host's mounts are never touched: `ip netns
exec` makes one just for the command it runs), and only the hierarchies
the server sits in, as /proc/self/cgroup lists them: the same kernel
hierarchies, seen again.
"""

from __future__ import annotations

import os

from .. import linux

CGROUP_ROOT = "/sys/fs/cgroup"
# The v1 controllers a server uses (the others are not mounted again).
WANTED_V1 = {"cpu", "cpuacct", "memory", "pids", "freezer"}


def hierarchies(proc_cgroup: str) -> list[tuple[str, str]]:
    """(filesystem type, mount options) of each hierarchy to mount again,
    from the text of /proc/self/cgroup."""
    found = []
    v1 = False
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers = set(parts[1].split(",")) if parts[1] else set()
        if controllers & WANTED_V1:
            v1 = True
            found.append(("cgroup", parts[1]))
    if not v1 and any(line.startswith("0::") for line in proc_cgroup.splitlines()):
        found.append(("cgroup2", ""))
    return found


def mount_missing(proc: str = "/proc/self") -> bool:
    """Mount the server's hierarchies under /sys/fs/cgroup if this is a mount
    namespace of its own with none there; whether it did."""
    try:
        parent = os.stat(f"/proc/{os.getppid()}/ns/mnt").st_ino
    except OSError:
        return False  # cannot tell: leave it to the caller's error
    if os.stat(os.path.join(proc, "ns/mnt")).st_ino == parent:
        return False
    with open(os.path.join(proc, "cgroup")) as f:
        wanted = hierarchies(f.read())
    if not wanted or not os.path.isdir(CGROUP_ROOT):
        return False
    if wanted == [("cgroup2", "")]:
        linux.mount("cgroup2", CGROUP_ROOT, "cgroup2", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
        return True
    linux.mount("tmpfs", CGROUP_ROOT, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, "mode=755")
    for fstype, options in wanted:
        point = os.path.join(CGROUP_ROOT, options)
        os.makedirs(point, exist_ok=True)
        linux.mount("cgroup", point, fstype, linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, options)
    return True
