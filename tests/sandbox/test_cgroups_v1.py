"""The cgroup v1 backend on a fake cgroupfs: one fake hierarchy per controller."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from sandbox.cgroups import base
from sandbox.cgroups import v1 as v1mod
from sandbox.cgroups.base import CgroupLimits, parent_name_for
from sandbox.cgroups.v1 import FREEZE_ANCHOR, V1SandboxCgroup
from tests.sandbox.cgroupfs import (
    ALL,
    DEAD_PID,
    LIMITS,
    OWN,
    V1_UNLIMITED,
    FakeV1Backend,
    make_hierarchies,
    populate_v1,
    read,
    strip_files,
)


@pytest.fixture
def own(tmp_path: Path) -> dict[str, Path]:
    return make_hierarchies(tmp_path)


def backend_for(own: dict[str, Path], parent: str = "faas-1") -> FakeV1Backend:
    return FakeV1Backend({c: str(p) for c, p in own.items()}, parent)


def sandbox_dirs(own: dict[str, Path], name: str, parent: str = "faas-1") -> dict[str, Path]:
    return {c: p / parent / name for c, p in own.items()}


# --- create and limits -------------------------------------------------------------------------------


def test_create_writes_limits_in_each_hierarchy(own: dict[str, Path]) -> None:
    backend = backend_for(own)
    cg = backend.create("sb-1", LIMITS)
    d = sandbox_dirs(own, "sb-1")
    assert read(d["memory"] / "memory.limit_in_bytes") == "67108864"
    assert read(d["memory"] / "memory.memsw.limit_in_bytes") == "67108864"  # no swap
    assert read(d["memory"] / "memory.swappiness") == "0"
    assert read(d["cpu"] / "cpu.cfs_period_us") == "100000"
    assert read(d["cpu"] / "cpu.cfs_quota_us") == "20000"
    assert read(d["cpu"] / "cpu.cfs_burst_us") == "0\n"  # no burst asked for: untouched
    assert read(d["pids"] / "pids.max") == "64"
    assert read(d["freezer"] / "freezer.state") == "THAWED\n"
    assert cg.procs_files == tuple(str(d[c] / "cgroup.procs") for c in ALL)
    with pytest.raises(FileExistsError):
        backend.create("sb-1", LIMITS)


def test_burst_capped_at_quota(own: dict[str, Path]) -> None:
    cg = backend_for(own).create(
        "sb", CgroupLimits(memory_mb=64, cpu_cores=0.2, pids_max=8, cpu_burst_us=50_000)
    )
    burst = sandbox_dirs(own, "sb")["cpu"] / "cpu.cfs_burst_us"
    assert read(burst) == "20000"
    cg.set_limits(CgroupLimits(memory_mb=64, cpu_cores=0.2, pids_max=8, cpu_burst_us=5_000))
    assert read(burst) == "5000"


def record_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    writes: list[tuple[str, str]] = []
    real_write = v1mod.write_text

    def record(path: str, value: str) -> None:
        writes.append((os.path.basename(path), value))
        real_write(path, value)

    monkeypatch.setattr(v1mod, "write_text", record)
    return writes


def test_memsw_written_in_the_order_that_keeps_it_above_the_limit(
    own: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cg = backend_for(own).create("sb", LIMITS)
    writes = record_writes(monkeypatch)
    cg.set_limits(CgroupLimits(memory_mb=128, cpu_cores=0.2, pids_max=64))  # raising: memsw first
    memory_writes = [w for w in writes if w[0].startswith("memory.") and "limit" in w[0]]
    assert memory_writes == [
        ("memory.memsw.limit_in_bytes", "134217728"),
        ("memory.limit_in_bytes", "134217728"),
    ]
    writes.clear()
    cg.set_limits(CgroupLimits(memory_mb=32, cpu_cores=0.2, pids_max=64))  # lowering: memory first
    memory_writes = [w for w in writes if w[0].startswith("memory.") and "limit" in w[0]]
    assert memory_writes == [
        ("memory.limit_in_bytes", "33554432"),
        ("memory.memsw.limit_in_bytes", "33554432"),
    ]


def test_without_memsw_only_the_memory_limit(own: dict[str, Path]) -> None:
    cg = backend_for(own).create("sb", LIMITS)
    memory = sandbox_dirs(own, "sb")["memory"]
    (memory / "memory.memsw.limit_in_bytes").unlink()  # swap accounting off (swapaccount=0)
    (memory / "memory.limit_in_bytes").write_text(V1_UNLIMITED)
    cg.set_limits(LIMITS)
    assert read(memory / "memory.limit_in_bytes") == "67108864"
    assert not (memory / "memory.memsw.limit_in_bytes").exists()


def test_create_failure_removes_every_dir(own: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    backend = backend_for(own)
    removed: list[str] = []
    monkeypatch.setattr(v1mod, "rmdir_when_empty", lambda path: removed.append(path))
    (own["pids"] / "faas-1" / "sb").mkdir()  # pids hierarchy: mkdir fails (exists) after four made
    with pytest.raises(FileExistsError):
        backend.create("sb", LIMITS)
    d = sandbox_dirs(own, "sb")
    assert removed == [str(d["memory"]), str(d["cpuacct"]), str(d["cpu"])]


# --- counters ----------------------------------------------------------------------------------------


def test_counters_parsed(own: dict[str, Path]) -> None:
    cg = backend_for(own).create("sb", LIMITS)
    d = sandbox_dirs(own, "sb")
    (d["cpuacct"] / "cpuacct.usage").write_text("123456789\n")
    (d["memory"] / "memory.max_usage_in_bytes").write_text("8388608\n")
    (d["memory"] / "memory.usage_in_bytes").write_text("4194304\n")
    (d["pids"] / "cgroup.procs").write_text("10\n11\n")
    assert cg.cpu_usage_ns() == 123_456_789
    assert cg.memory_peak_bytes() == 8_388_608
    assert cg.memory_current_bytes() == 4_194_304
    assert cg.pids() == [10, 11]
    # The counters are read through fds kept open: a new value of the same file is seen.
    (d["cpuacct"] / "cpuacct.usage").write_text("223456789\n")
    (d["memory"] / "memory.usage_in_bytes").write_text("5242880\n")
    assert cg.cpu_usage_ns() == 223_456_789
    assert cg.memory_current_bytes() == 5_242_880


def test_reset_memory_peak_writes_zero(own: dict[str, Path]) -> None:
    cg = backend_for(own).create("sb", LIMITS)
    peak = sandbox_dirs(own, "sb")["memory"] / "memory.max_usage_in_bytes"
    peak.write_text("7\n")  # one digit: the kernel resets, a plain file keeps the tail of longer values
    cg.reset_memory_peak()
    assert read(peak) == "0\n"
    assert cg.memory_peak_bytes() == 0


def test_oom_kills_from_oom_control(own: dict[str, Path]) -> None:
    cg = backend_for(own).create("sb", LIMITS)
    oom_control = sandbox_dirs(own, "sb")["memory"] / "memory.oom_control"
    assert cg.oom_kills() == 0
    oom_control.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    assert cg.oom_kills() == 3
    oom_control.write_text("oom_kill_disable 0\nunder_oom 0\n")  # kernels before 4.13 have no oom_kill
    assert cg.oom_kills() == 0


# --- freeze, thaw, kill, remove ----------------------------------------------------------------------


def test_backend_keeps_a_frozen_anchor(own: dict[str, Path]) -> None:
    backend = backend_for(own)
    assert backend.can_freeze
    assert read(own["freezer"] / "faas-1" / FREEZE_ANCHOR / "freezer.state") == "FROZEN"


def test_freeze_and_thaw_one_write_each(own: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    cg = backend_for(own).create("sb", LIMITS)
    state = sandbox_dirs(own, "sb")["freezer"] / "freezer.state"
    writes: list[bytes] = []
    real_pwrite = os.pwrite
    monkeypatch.setattr(
        os, "pwrite", lambda fd, data, offset: (writes.append(data), real_pwrite(fd, data, offset))[1]
    )
    cg.freeze()
    assert read(state) == "FROZEN\n"
    assert cg.is_frozen()
    state.write_text("FREEZING\n")  # what the kernel reports until every task has stopped
    assert not cg.is_frozen()
    state.write_text("FROZEN\n")
    cg.thaw()
    assert read(state) == "THAWED\n"
    assert not cg.is_frozen()
    assert writes == [b"FROZEN", b"THAWED"]


def test_kill_freezes_signals_then_thaws(own: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    cg = backend_for(own).create("sb", LIMITS)
    d = sandbox_dirs(own, "sb")
    state = d["freezer"] / "freezer.state"
    (d["pids"] / "cgroup.procs").write_text("101\n102\n")
    cg.freeze()
    states_when_signalled: list[str] = []

    def fake_kill(pids: list[int]) -> None:
        states_when_signalled.append(read(state).strip())
        assert pids == [101, 102]
        (d["pids"] / "cgroup.procs").write_text("")

    monkeypatch.setattr(v1mod, "kill_pids", fake_kill)
    cg.kill()
    # Signalled while frozen; thawed after, so the tasks wake only to die.
    assert states_when_signalled == ["FROZEN"]
    assert read(state) == "THAWED\n"
    cg.freeze()  # a late freeze must not strand a killed task
    assert read(state) == "THAWED\n"


def test_remove_kills_and_removes_every_dir(own: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    cg = backend_for(own).create("sb", LIMITS)
    d = sandbox_dirs(own, "sb")
    cg.freeze()
    removed: list[str] = []
    monkeypatch.setattr(v1mod, "rmdir_when_empty", lambda path: removed.append(path))
    cg.remove()
    assert removed == [str(d[c]) for c in ALL]
    assert read(d["freezer"] / "freezer.state") == "THAWED\n"


def test_without_freezer_hierarchy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    own = make_hierarchies(tmp_path, ("cpu", "cpuacct", "memory", "pids"))
    with caplog.at_level(logging.WARNING, logger="faas.cgroups"):
        backend = backend_for(own)
    assert not backend.can_freeze
    assert [r.message for r in caplog.records] == [
        "cgroup v1 freezer hierarchy not mounted: idle sandboxes are not frozen between calls"
    ]
    cg = backend.create("sb", LIMITS)
    assert len(cg.procs_files) == 4
    cg.freeze()
    cg.thaw()
    assert not cg.is_frozen()
    (own["pids"] / "faas-1" / "sb" / "cgroup.procs").write_text("101\n")
    killed: list[list[int]] = []

    def fake_kill(pids: list[int]) -> None:
        killed.append(pids)
        (own["pids"] / "faas-1" / "sb" / "cgroup.procs").write_text("")

    monkeypatch.setattr(v1mod, "kill_pids", fake_kill)
    cg.kill()
    assert killed == [[101]]


def test_shared_cpu_cpuacct_hierarchy(tmp_path: Path) -> None:
    mount = tmp_path / "cpu,cpuacct"
    (mount / OWN).mkdir(parents=True)
    populate_v1(mount / OWN, ("cpu", "cpuacct"))
    own = make_hierarchies(tmp_path, ("memory", "pids"))
    own["cpu"] = own["cpuacct"] = mount / OWN
    cg = backend_for(own).create("sb", LIMITS)
    shared = mount / OWN / "faas-1" / "sb"
    assert read(shared / "cpu.cfs_quota_us") == "20000"
    (shared / "cpuacct.usage").write_text("42\n")
    assert cg.cpu_usage_ns() == 42
    assert cg.procs_files == tuple(
        str(own[c] / "faas-1" / "sb" / "cgroup.procs") for c in ("cpu", "memory", "pids")
    )


def test_v1_sandbox_cgroup_without_freezer_dir(tmp_path: Path) -> None:
    dirs = {}
    for controller in ("cpu", "cpuacct", "memory", "pids"):
        d = tmp_path / controller
        d.mkdir()
        populate_v1(d, (controller,))
        dirs[controller] = str(d)
    cg = V1SandboxCgroup("sb", dirs)
    cg.freeze()
    assert not cg.is_frozen()


# --- stale and close ---------------------------------------------------------------------------------


def test_remove_stale_removes_dead_servers_dirs(own: dict[str, Path]) -> None:
    backend = backend_for(own, parent=parent_name_for(os.getpid()))
    for path in own.values():
        (path / parent_name_for(DEAD_PID) / "sb-old").mkdir(parents=True)
    (own["freezer"] / parent_name_for(DEAD_PID) / FREEZE_ANCHOR).mkdir()
    (own["memory"] / "faas-not-a-pid").mkdir()
    # Two directories in each of five hierarchies, plus the dead server's anchor.
    assert backend.remove_stale() == 11
    for path in own.values():
        assert not (path / parent_name_for(DEAD_PID)).exists()
        assert (path / parent_name_for(os.getpid())).is_dir()
    assert (own["memory"] / "faas-not-a-pid").is_dir()


def test_remove_stale_thaws_frozen_leftovers(own: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    backend = backend_for(own, parent=parent_name_for(os.getpid()))
    sandbox = own["freezer"] / parent_name_for(DEAD_PID) / "sb-old"
    sandbox.mkdir(parents=True)
    populate_v1(sandbox, ("freezer",))
    (sandbox / "freezer.state").write_text("FROZEN\n")
    (sandbox / "cgroup.procs").write_text("101\n")
    signalled_in: list[str] = []

    def fake_kernel_kill(pids: list[int]) -> None:
        # A frozen v1 task dies of SIGKILL only once thawed.
        state = read(sandbox / "freezer.state").strip()
        signalled_in.append(state)
        if state == "THAWED":
            (sandbox / "cgroup.procs").write_text("")

    def fake_rmdir(path: str) -> None:
        if os.path.exists(os.path.join(path, "cgroup.procs")):
            assert read(Path(path) / "cgroup.procs") == "", f"{path} still holds tasks"
        strip_files(Path(path))
        os.rmdir(path)

    monkeypatch.setattr(base, "kill_pids", fake_kernel_kill)
    monkeypatch.setattr(base, "rmdir_when_empty", fake_rmdir)
    assert backend.remove_stale() == 2
    assert signalled_in == ["FROZEN", "THAWED"]
    assert not (own["freezer"] / parent_name_for(DEAD_PID)).exists()


def test_remove_stale_thaws_before_it_empties_the_other_hierarchies(
    own: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead server's frozen sandbox is in every hierarchy: its cgroups can
    go only once it is dead, which it is only once thawed in the freezer's."""
    backend = backend_for(own, parent=parent_name_for(os.getpid()))
    sandboxes = {c: p / parent_name_for(DEAD_PID) / "sb-old" for c, p in own.items()}
    for controller, sandbox in sandboxes.items():
        sandbox.mkdir(parents=True)
        populate_v1(sandbox, (controller,))
        (sandbox / "cgroup.procs").write_text("101\n")
    (sandboxes["freezer"] / "freezer.state").write_text("FROZEN\n")

    def fake_kernel_kill(pids: list[int]) -> None:
        if read(sandboxes["freezer"] / "freezer.state").strip() == "THAWED":
            for sandbox in sandboxes.values():
                (sandbox / "cgroup.procs").write_text("")

    def fake_rmdir(path: str) -> None:
        procs = Path(path) / "cgroup.procs"
        if procs.exists() and read(procs) != "":
            raise OSError(16, "Device or resource busy", path)
        strip_files(Path(path))
        os.rmdir(path)

    monkeypatch.setattr(base, "kill_pids", fake_kernel_kill)
    monkeypatch.setattr(base, "rmdir_when_empty", fake_rmdir)
    assert backend.remove_stale() == 2 * len(own)
    for path in own.values():
        assert not (path / parent_name_for(DEAD_PID)).exists()


def test_close_removes_parents_and_anchor(own: dict[str, Path]) -> None:
    backend = backend_for(own)
    backend.create("sb", LIMITS)
    for path in own.values():
        strip_files(path / "faas-1")
    backend.close()
    for path in own.values():
        assert not (path / "faas-1").exists()


def test_missing_controller_refused_by_backend(own: dict[str, Path]) -> None:
    del own["cpuacct"], own["pids"]
    with pytest.raises(ValueError, match=r"cgroup v1 controllers missing: cpuacct, pids"):
        backend_for(own)
