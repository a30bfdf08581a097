"""Freezing and memory on the host's real cgroups, with real child processes.

cgroup v1 through the backend as the invoker uses it (detect(), create()),
where the v1 freezer hierarchy is mounted and we are root. The v2 freezer
(a core cgroup2 feature, no controller needed) on a cgroup2 mount where one
is writable, through V2SandboxCgroup directly.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from sandbox.cgroups import (
    CgroupBackend,
    CgroupLimits,
    SandboxCgroup,
    detect,
    parse_mountinfo,
    parse_proc_cgroup,
)
from sandbox.cgroups.v2 import V2SandboxCgroup

pytestmark = pytest.mark.inprocess

BURN = "while True: pass"
IDLE = "import sys; sys.stdin.read()"
# Allocates (and touches) 50 MiB once told to, so it is charged to the cgroup it has joined by then.
ALLOCATE = (
    "import sys; sys.stdin.readline(); b = b'x' * (50 << 20); print('ready', flush=True); sys.stdin.read()"
)
MIB = 1 << 20
LIMITS = CgroupLimits(memory_mb=256, cpu_cores=1.0, pids_max=64)


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    with open("/proc/self/mountinfo") as f:
        return parse_mountinfo(f.read())


def _own_cgroups() -> dict[str, str]:
    with open("/proc/self/cgroup") as f:
        return parse_proc_cgroup(f.read())


def _has_v1_freezer() -> bool:
    return any(fstype == "cgroup" and "freezer" in opts for fstype, _, _, opts in _mounts())


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.005)


@pytest.fixture
def children() -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """Start `python -c CODE` children; every one is killed and reaped at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(code: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def attach(cgroup: SandboxCgroup, pid: int) -> None:
    for procs_file in cgroup.procs_files:
        with open(procs_file, "w") as f:
            f.write(str(pid))


@pytest.fixture
def backend() -> Iterator[CgroupBackend]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not _has_v1_freezer():
        pytest.skip("needs the cgroup v1 freezer hierarchy")
    backend = detect()
    try:
        if backend.version != 1 or not backend.can_freeze:
            pytest.skip("needs the cgroup v1 backend with the freezer")
        yield backend
    finally:
        backend.close()


@pytest.fixture
def cgroup(backend: CgroupBackend) -> Iterator[SandboxCgroup]:
    cg = backend.create(f"sb-test-{uuid.uuid4().hex[:12]}", LIMITS)
    try:
        yield cg
    finally:
        cg.remove()


def assert_cpu_stopped_and_resumed(cg: SandboxCgroup) -> None:
    """The CPU counter stands still while frozen and moves again once thawed."""
    start = cg.cpu_usage_ns()
    wait_until(lambda: cg.cpu_usage_ns() - start > 20_000_000, "the child to burn 20 ms of CPU")
    cg.freeze()
    wait_until(cg.is_frozen, "the frozen state")
    before = cg.cpu_usage_ns()
    time.sleep(0.2)  # the measuring window, not a wait for a state
    assert cg.cpu_usage_ns() - before < 1_000_000, "a frozen cgroup used CPU"
    cg.thaw()
    assert not cg.is_frozen(), "thaw() returned before the thaw was complete"
    thawed = cg.cpu_usage_ns()
    wait_until(lambda: cg.cpu_usage_ns() - thawed > 20_000_000, "the thawed child to burn 20 ms of CPU")


# --- cgroup v1 ---------------------------------------------------------------------------------------


def test_v1_freeze_stops_cpu_and_thaw_resumes_it(
    cgroup: SandboxCgroup, children: Callable[[str], subprocess.Popen[str]]
) -> None:
    attach(cgroup, children(BURN).pid)
    assert_cpu_stopped_and_resumed(cgroup)


def test_v1_kill_while_frozen_kills(
    cgroup: SandboxCgroup, children: Callable[[str], subprocess.Popen[str]]
) -> None:
    child = children(BURN)
    attach(cgroup, child.pid)
    cgroup.freeze()
    wait_until(cgroup.is_frozen, "the frozen state")
    cgroup.kill()
    assert child.wait(timeout=5) == -9
    cgroup.freeze()  # no-op after kill(): nothing may be left frozen with a SIGKILL pending
    assert not cgroup.is_frozen()


def test_v1_remove_frozen_leaves_nothing(
    backend: CgroupBackend, children: Callable[[str], subprocess.Popen[str]]
) -> None:
    cg = backend.create(f"sb-test-{uuid.uuid4().hex[:12]}", LIMITS)
    dirs = [os.path.dirname(f) for f in cg.procs_files]
    try:
        child = children(BURN)
        attach(cg, child.pid)
        cg.freeze()
        wait_until(cg.is_frozen, "the frozen state")
    finally:
        cg.remove()
    assert child.wait(timeout=5) == -9
    assert [d for d in dirs if os.path.exists(d)] == []


def test_v1_memory_current_counts_held_memory(
    cgroup: SandboxCgroup, children: Callable[[str], subprocess.Popen[str]]
) -> None:
    child = children(ALLOCATE)
    attach(cgroup, child.pid)
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline() == "ready\n"
    assert cgroup.memory_current_bytes() >= 50 * MIB
    cgroup.freeze()
    wait_until(cgroup.is_frozen, "the frozen state")
    assert cgroup.memory_current_bytes() >= 50 * MIB  # frozen memory is still held
    cgroup.thaw()


def test_v1_freeze_thaw_pair_is_cheap(
    cgroup: SandboxCgroup, children: Callable[[str], subprocess.Popen[str]]
) -> None:
    """The backend's frozen anchor keeps the kernel's freezer key on: without
    it a pair costs 160-180 µs here, with it about 3.5 µs."""
    attach(cgroup, children(IDLE).pid)
    pairs_ns = []
    for _ in range(1000):
        t0 = time.perf_counter_ns()
        cgroup.freeze()
        cgroup.thaw()
        pairs_ns.append(time.perf_counter_ns() - t0)
    median_us = statistics.median(pairs_ns) / 1000
    print(f"freeze+thaw pair on cgroup v1: median {median_us:.1f} µs")
    assert median_us < 50


# --- cgroup v2's freezer, where a cgroup2 mount is writable ------------------------------------------


@pytest.fixture
def v2_cgroup() -> Iterator[V2SandboxCgroup]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    own = _own_cgroups().get("")
    mount = next((point for fstype, root, point, _ in _mounts() if fstype == "cgroup2" and root == "/"), None)
    if own is None or mount is None:
        pytest.skip("no cgroup2 mount")
    # Named like a server's parent, so a leftover is caught by the suite's leak check.
    path = os.path.join(mount, own.lstrip("/"), f"faas-{os.getpid()}-freezer-test")
    try:
        os.mkdir(path)
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup2 directory: {exc}")
    cg = V2SandboxCgroup("freezer-test", path)
    try:
        if not os.path.exists(os.path.join(path, "cgroup.freeze")):
            pytest.skip("no cgroup.freeze (Linux < 5.2)")
        yield cg
    finally:
        cg.remove()


def test_v2_freeze_stops_cpu_and_kill_reaches_frozen(
    v2_cgroup: V2SandboxCgroup, children: Callable[[str], subprocess.Popen[str]]
) -> None:
    child = children(BURN)
    attach(v2_cgroup, child.pid)
    assert_cpu_stopped_and_resumed(v2_cgroup)
    v2_cgroup.freeze()
    wait_until(v2_cgroup.is_frozen, "the frozen state")
    v2_cgroup.kill()
    assert child.wait(timeout=5) == -9
