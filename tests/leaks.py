"""What a test run could leave behind: sandbox cgroups, zygotes, sandbox
processes (uid in the sandbox range) and mounts of the sandbox root."""

from __future__ import annotations

import os

from sandbox.cgroups import parse_mountinfo, parse_proc_cgroup

SANDBOX_UID_MIN = 200_000


def _cgroup_dirs() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        mounts = parse_mountinfo(f.read())
    with open("/proc/self/cgroup") as f:
        own = parse_proc_cgroup(f.read())
    found: set[str] = set()
    for _fstype, _root, point, opts in mounts:
        for controller in [c for c in opts if c in own] or ([""] if "" in own else []):
            base = os.path.join(point, own[controller].lstrip("/"))
            try:
                for entry in os.scandir(base):
                    if entry.name.startswith("faas-") and entry.is_dir():
                        found.add(entry.path)
            except OSError:
                continue
    return found


def _processes() -> set[str]:
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        if "sandbox.zygote" in cmd or uid >= SANDBOX_UID_MIN:
            found.add(f"pid {pid} uid {uid}: {cmd[:80]}")
    return found


def _mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f if "/run/root" in line.split()[4]}


def snapshot() -> dict[str, set[str]]:
    return {"cgroups": _cgroup_dirs(), "processes": _processes(), "mounts": _mounts()}


def leftovers(before: dict[str, set[str]]) -> dict[str, set[str]]:
    now = snapshot()
    return {k: now[k] - before[k] for k in now if now[k] - before[k]}
