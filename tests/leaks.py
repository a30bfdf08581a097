"""What a test run could leave behind: sandbox cgroups, zygotes, sandbox
processes (uid in the sandbox range) and mounts of the sandbox root."""

from __future__ import annotations

import os
import stat

from sandbox import procfs
from sandbox.cgroups import parse_mountinfo, parse_proc_cgroup

SANDBOX_UID_MIN = 200_000


def _cgroup_dirs() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        mounts = parse_mountinfo(f.read())
    with open("/proc/self/cgroup") as f:
        own = parse_proc_cgroup(f.read())
    found: set[str] = set()
    # On cgroup v2 test servers may run in cgroups of their own (see
    # tests/helpers.py, FAAS_TEST_CGROUP_PARENT): look under those too.
    parent = os.environ.get("FAAS_TEST_CGROUP_PARENT")
    if parent and os.path.isdir(parent):
        for server in os.scandir(parent):
            if server.is_dir() and server.name.startswith("server-"):
                found |= {
                    e.path for e in os.scandir(server.path) if e.is_dir() and e.name.startswith("faas-")
                }
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


# Servers this test run started (pids), and their zygotes: leftovers are
# judged against these only, so other runs on the same machine (a benchmark,
# a second test session) are not mistaken for ours.
SERVER_PIDS: set[int] = set()
ZYGOTE_PIDS: set[int] = set()


def zygotes_of(server_pid: int) -> set[int]:
    found = set()
    for pid, _name in procfs.children_of(server_pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"sandbox.zygote" in f.read():
                    found.add(pid)
        except OSError:
            continue
    return found


def in_sandbox_of(pid: int, server_pid: int) -> bool:
    """Whether process `pid` lives in a sandbox cgroup of that server."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return f"/faas-{server_pid}/" in f.read()
    except OSError:
        return False


def sandbox_pids_of(server_pid: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and in_sandbox_of(int(p), server_pid)]


def _ours(kind: str, item: str) -> bool:
    if kind == "cgroups":
        return any(item.rstrip("/").endswith(f"/faas-{pid}") for pid in SERVER_PIDS)
    if kind == "processes":
        pid = int(item.split()[1])
        return pid in ZYGOTE_PIDS or any(in_sandbox_of(pid, spid) for spid in SERVER_PIDS)
    return True


def snapshot() -> dict[str, set[str]]:
    return {"cgroups": _cgroup_dirs(), "processes": _processes(), "mounts": _mounts()}


def leftovers(before: dict[str, set[str]], only_ours: bool = False) -> dict[str, set[str]]:
    now = snapshot()
    out = {}
    for kind in now:
        new = {item for item in now[kind] - before[kind] if not only_ours or _ours(kind, item)}
        if new:
            out[kind] = new
    return out


# The host's device nodes every process relies on, with the kernel's numbers
# (Documentation/admin-guide/devices.txt: the "mem" driver, major 1).
HOST_DEVICES = {"/dev/null": (1, 3), "/dev/zero": (1, 5), "/dev/random": (1, 8), "/dev/urandom": (1, 9)}


def host_device_problems() -> set[str]:
    """What is wrong with the host's standard device nodes: each one must be a
    character device with its standard major/minor."""
    problems = set()
    for path, (major, minor) in HOST_DEVICES.items():
        try:
            st = os.lstat(path)
        except OSError as exc:
            problems.add(f"{path}: {exc.strerror}")
            continue
        if not stat.S_ISCHR(st.st_mode):
            kind = stat.filemode(st.st_mode)
            problems.add(f"{path}: not a character device ({kind}, {st.st_size} bytes, uid {st.st_uid})")
        elif (os.major(st.st_rdev), os.minor(st.st_rdev)) != (major, minor):
            got = (os.major(st.st_rdev), os.minor(st.st_rdev))
            problems.add(f"{path}: device {got}, not {(major, minor)}")
    return problems
