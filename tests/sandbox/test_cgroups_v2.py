"""The cgroup v2 backend on a fake cgroupfs: plain files where the kernel has interface files."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from sandbox.cgroups import CgroupUnavailable, detect
from sandbox.cgroups import v2 as v2mod
from sandbox.cgroups.base import CgroupLimits, parent_name_for
from sandbox.cgroups.v2 import CgroupV2Backend, V2SandboxCgroup
from tests.sandbox import cgroupfs as fake
from tests.sandbox.cgroupfs import DEAD_PID, LIMITS, V2_FILES, pretend_root, read, strip_files, write_proc


def populate(path: Path, omit: tuple[str, ...] = ()) -> None:
    fake.populate(path, fake.V2_FILES, omit)


class FakeV2Backend(CgroupV2Backend):
    """mkdir on a fake tree makes no files; create what the kernel would."""

    def _mkdir(self, path: str, exist_ok: bool = False) -> None:
        super()._mkdir(path, exist_ok=exist_ok)
        if not os.path.exists(os.path.join(path, "cgroup.procs")):
            populate(Path(path))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A fake cgroup2 mount: the real root has no cgroup.type."""
    mount = tmp_path / "cgroup"
    mount.mkdir()
    populate(
        mount, omit=("cgroup.type", "cgroup.kill", "cgroup.events", "cgroup.freeze", "cpu.max", "memory.max")
    )
    return mount


@pytest.fixture
def own(root: Path) -> Path:
    """The server's own (non-root) cgroup."""
    d = root / "server.service"
    d.mkdir()
    populate(d)
    return d


@pytest.fixture
def sandbox_dir(tmp_path: Path) -> Path:
    d = tmp_path / "sb"
    d.mkdir()
    populate(d)
    return d


# --- one sandbox cgroup -----------------------------------------------------------------------------


def test_set_limits_writes_exact_values(sandbox_dir: Path) -> None:
    cg = V2SandboxCgroup("sb", str(sandbox_dir))
    cg.set_limits(LIMITS)
    assert read(sandbox_dir / "memory.max") == "67108864"
    assert read(sandbox_dir / "memory.swap.max") == "0"
    assert read(sandbox_dir / "cpu.max") == "20000 100000"
    assert read(sandbox_dir / "pids.max") == "64"
    assert read(sandbox_dir / "cpu.max.burst") == "0\n"  # no burst asked for: untouched


def test_set_limits_burst_capped_at_quota(sandbox_dir: Path) -> None:
    cg = V2SandboxCgroup("sb", str(sandbox_dir))
    cg.set_limits(CgroupLimits(memory_mb=64, cpu_cores=0.2, pids_max=64, cpu_burst_us=50_000))
    assert read(sandbox_dir / "cpu.max.burst") == "20000"
    cg.set_limits(CgroupLimits(memory_mb=64, cpu_cores=0.2, pids_max=64, cpu_burst_us=5_000))
    assert read(sandbox_dir / "cpu.max.burst") == "5000"


def test_set_limits_skips_optional_files(tmp_path: Path) -> None:
    d = tmp_path / "sb"
    d.mkdir()
    populate(d, omit=("memory.swap.max", "cpu.max.burst"))
    cg = V2SandboxCgroup("sb", str(d))
    cg.set_limits(CgroupLimits(memory_mb=1, cpu_cores=2.0, pids_max=8, cpu_burst_us=1000))
    assert not (d / "memory.swap.max").exists()
    assert not (d / "cpu.max.burst").exists()
    assert read(d / "memory.max") == "1048576"
    assert read(d / "cpu.max") == "200000 100000"
    assert read(d / "pids.max") == "8"


def test_set_limits_shorter_value_overwrites_cleanly(sandbox_dir: Path) -> None:
    (sandbox_dir / "pids.max").write_text("123456789")
    V2SandboxCgroup("sb", str(sandbox_dir)).set_limits(LIMITS)
    assert read(sandbox_dir / "pids.max") == "64"


def test_cpu_usage_from_cpu_stat(sandbox_dir: Path) -> None:
    (sandbox_dir / "cpu.stat").write_text(
        "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\nnr_periods 5\nnr_throttled 1\nthrottled_usec 7\n"
    )
    assert V2SandboxCgroup("sb", str(sandbox_dir)).cpu_usage_ns() == 1_234_000


def test_oom_kills_from_memory_events(sandbox_dir: Path) -> None:
    cg = V2SandboxCgroup("sb", str(sandbox_dir))
    assert cg.oom_kills() == 0
    (sandbox_dir / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n")
    assert cg.oom_kills() == 2


def test_memory_current_and_pids(sandbox_dir: Path) -> None:
    (sandbox_dir / "memory.current").write_text("4096\n")
    (sandbox_dir / "cgroup.procs").write_text("10\n11\n")
    cg = V2SandboxCgroup("sb", str(sandbox_dir))
    assert cg.memory_current_bytes() == 4096
    assert cg.pids() == [10, 11]
    assert cg.procs_files == (str(sandbox_dir / "cgroup.procs"),)
    assert not cg.is_empty()


def test_memory_peak_read_through_one_fd(sandbox_dir: Path) -> None:
    (sandbox_dir / "memory.peak").write_text("8388608\n")
    cg = V2SandboxCgroup("sb", str(sandbox_dir))
    assert cg.memory_peak_bytes() == 8_388_608
    fd = cg._peak_fd
    assert fd is not None
    cg.reset_memory_peak()
    assert cg._peak_fd == fd
    # The real file now reports the peak since the reset, through that fd.
    (sandbox_dir / "memory.peak").write_text("1048576\n")
    assert cg.memory_peak_bytes() == 1_048_576
    assert cg._peak_fd == fd
    cg.close_peak_fd()
    assert cg._peak_fd is None
    with pytest.raises(OSError):
        os.fstat(fd)


def test_memory_peak_reset_writes_reset(sandbox_dir: Path) -> None:
    (sandbox_dir / "memory.peak").write_text("")
    cg = V2SandboxCgroup("sb", str(sandbox_dir))
    cg.reset_memory_peak()
    assert read(sandbox_dir / "memory.peak") == "reset"
    cg.close_peak_fd()


def test_memory_peak_reset_refused_falls_back_to_lifetime_peak(
    sandbox_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sandbox_dir / "memory.peak").write_text("999\n")
    cg = V2SandboxCgroup("sb", str(sandbox_dir))
    calls = []

    def refuse(fd: int, data: bytes) -> int:
        calls.append(data)
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(v2mod.os, "write", refuse)
    cg.reset_memory_peak()
    cg.reset_memory_peak()  # remembered: no second try
    assert calls == [b"reset"]
    assert cg.memory_peak_bytes() == 999
    cg.close_peak_fd()


def test_memory_peak_read_only_file(sandbox_dir: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores file modes")
    (sandbox_dir / "memory.peak").write_text("77\n")
    (sandbox_dir / "memory.peak").chmod(0o444)
    cg = V2SandboxCgroup("sb", str(sandbox_dir))
    cg.reset_memory_peak()
    assert cg.memory_peak_bytes() == 77
    cg.close_peak_fd()


def test_memory_peak_missing_uses_current(tmp_path: Path) -> None:
    d = tmp_path / "sb"
    d.mkdir()
    populate(d, omit=("memory.peak",))
    (d / "memory.current").write_text("5555\n")
    cg = V2SandboxCgroup("sb", str(d))
    cg.reset_memory_peak()
    assert cg.memory_peak_bytes() == 5555


def test_kill_writes_cgroup_kill(sandbox_dir: Path) -> None:
    V2SandboxCgroup("sb", str(sandbox_dir)).kill()
    assert read(sandbox_dir / "cgroup.kill") == "1"


def test_kill_without_cgroup_kill_signals_pids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "sb"
    d.mkdir()
    populate(d, omit=("cgroup.kill",))
    (d / "cgroup.procs").write_text("101\n102\n")
    killed: list[list[int]] = []

    def fake_kill(pids: list[int]) -> None:
        killed.append(pids)
        (d / "cgroup.procs").write_text("")

    monkeypatch.setattr(v2mod, "kill_pids", fake_kill)
    V2SandboxCgroup("sb", str(d)).kill()
    assert killed == [[101, 102]]


def test_remove_kills_waits_and_rmdirs(sandbox_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    removed: list[str] = []
    monkeypatch.setattr(v2mod, "rmdir_when_empty", lambda path: removed.append(path))
    cg = V2SandboxCgroup("sb", str(sandbox_dir))
    cg.memory_peak_bytes()
    assert cg._peak_fd is not None
    cg.remove()
    assert read(sandbox_dir / "cgroup.kill") == "1"
    assert removed == [str(sandbox_dir)]
    assert cg._peak_fd is None


def test_remove_gives_up_waiting_after_timeout(sandbox_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (sandbox_dir / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    removed: list[str] = []
    monkeypatch.setattr(v2mod, "rmdir_when_empty", lambda path: removed.append(path))
    V2SandboxCgroup("sb", str(sandbox_dir)).remove(timeout_s=0.05)
    assert removed == [str(sandbox_dir)]


def test_freeze_and_thaw_write_cgroup_freeze(sandbox_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cg = V2SandboxCgroup("sb", str(sandbox_dir))
    writes: list[bytes] = []
    real_pwrite = os.pwrite
    monkeypatch.setattr(
        os, "pwrite", lambda fd, data, offset: (writes.append(data), real_pwrite(fd, data, offset))[1]
    )
    cg.freeze()
    assert read(sandbox_dir / "cgroup.freeze") == "1\n"
    assert not cg.is_frozen()  # the kernel has not reported it complete yet
    (sandbox_dir / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    assert cg.is_frozen()
    cg.thaw()
    assert read(sandbox_dir / "cgroup.freeze") == "0\n"
    assert writes == [b"1", b"0"]  # one write each, through the open fd


def test_kill_stops_freezing_for_good(sandbox_dir: Path) -> None:
    cg = V2SandboxCgroup("sb", str(sandbox_dir))
    cg.freeze()
    cg.kill()  # cgroup.kill reaches frozen tasks: no thaw needed
    assert read(sandbox_dir / "cgroup.kill") == "1"
    (sandbox_dir / "cgroup.freeze").write_text("0\n")
    cg.freeze()
    assert read(sandbox_dir / "cgroup.freeze") == "0\n"


def test_without_freezer_freeze_is_a_no_op(sandbox_dir: Path) -> None:
    cg = V2SandboxCgroup("sb", str(sandbox_dir), can_freeze=False)
    (sandbox_dir / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    cg.freeze()
    cg.thaw()
    assert read(sandbox_dir / "cgroup.freeze") == "0\n"
    assert not cg.is_frozen()


def test_memory_current_through_one_fd(sandbox_dir: Path) -> None:
    (sandbox_dir / "memory.current").write_text("4096\n")
    cg = V2SandboxCgroup("sb", str(sandbox_dir))
    assert cg.memory_current_bytes() == 4096
    (sandbox_dir / "memory.current").write_text("8192\n")  # same inode: the open fd sees it
    assert cg.memory_current_bytes() == 8192


# --- the backend -------------------------------------------------------------------------------------


def test_backend_setup_enables_controllers(own: Path) -> None:
    backend = FakeV2Backend(str(own.parent), str(own), "faas-1", move_self=False)
    assert backend.version == 2
    parent = own / "faas-1"
    assert backend.parent_paths == (str(parent),)
    assert parent.is_dir()
    # Each controller written on its own: the fake file keeps only the last.
    assert read(own / "cgroup.subtree_control") == "+pids"
    assert read(parent / "cgroup.subtree_control") == "+pids"
    assert not (own / "supervisor").exists()
    assert backend.supervisor_path is None


def test_backend_setup_writes_each_controller(own: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[tuple[str, str]] = []
    real_write = v2mod.write_text

    def record(path: str, value: str) -> None:
        writes.append((path, value))
        real_write(path, value)

    monkeypatch.setattr(v2mod, "write_text", record)
    FakeV2Backend(str(own.parent), str(own), "faas-1", move_self=False)
    parent = own / "faas-1"
    assert writes == [
        (str(own / "cgroup.subtree_control"), "+cpu"),
        (str(own / "cgroup.subtree_control"), "+memory"),
        (str(own / "cgroup.subtree_control"), "+pids"),
        (str(parent / "cgroup.subtree_control"), "+cpu"),
        (str(parent / "cgroup.subtree_control"), "+memory"),
        (str(parent / "cgroup.subtree_control"), "+pids"),
    ]


def test_backend_setup_skips_enabled_controllers(own: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (own / "cgroup.subtree_control").write_text("cpu memory\n")
    writes: list[str] = []
    real_write = v2mod.write_text
    monkeypatch.setattr(v2mod, "write_text", lambda p, v: (writes.append(v), real_write(p, v)))
    FakeV2Backend(str(own.parent), str(own), "faas-1", move_self=False)
    assert writes[0] == "+pids"


def test_backend_moves_self_into_supervisor(own: Path) -> None:
    backend = FakeV2Backend(str(own.parent), str(own), "faas-1", move_self=True)
    supervisor = own / "supervisor"
    assert backend.supervisor_path == str(supervisor)
    assert read(supervisor / "cgroup.procs") == str(os.getpid())
    strip_files(own / "faas-1")
    backend.close()
    assert not (own / "faas-1").exists()
    assert supervisor.is_dir()  # we still live there


def test_backend_at_real_root_does_not_move(root: Path) -> None:
    backend = FakeV2Backend(str(root), str(root), "faas-1", move_self=True)
    assert backend.supervisor_path is None
    assert not (root / "supervisor").exists()
    assert (root / "faas-1").is_dir()


def test_backend_at_namespace_root_moves(root: Path) -> None:
    # A container's cgroup namespace root looks like the mount point but is
    # not the real root: it has cgroup.type, and the rule applies.
    (root / "cgroup.type").write_text("domain\n")
    backend = FakeV2Backend(str(root), str(root), "faas-1", move_self=True)
    assert backend.supervisor_path == str(root / "supervisor")


def test_backend_ebusy_is_a_clear_error(own: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = v2mod.write_text

    def busy(path: str, value: str) -> None:
        if path.endswith("cgroup.subtree_control"):
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        real_write(path, value)

    monkeypatch.setattr(v2mod, "write_text", busy)
    with pytest.raises(CgroupUnavailable) as info:
        FakeV2Backend(str(own.parent), str(own), "faas-1", move_self=True)
    message = str(info.value)
    assert "\n" not in message
    assert "other processes share" in message and str(own) in message and "cpu" in message
    # Moved back out of the supervisor cgroup it made (whose rmdir only the kernel can do here).
    assert read(own / "cgroup.procs") == str(os.getpid())


def test_backend_missing_controller_is_named(own: Path) -> None:
    (own / "cgroup.controllers").write_text("cpu pids\n")
    with pytest.raises(CgroupUnavailable, match=r"controller memory is not available"):
        FakeV2Backend(str(own.parent), str(own), "faas-1", move_self=False)


def test_create_sets_limits(own: Path) -> None:
    backend = FakeV2Backend(str(own.parent), str(own), "faas-1", move_self=False)
    cg = backend.create("sb-1", LIMITS)
    d = own / "faas-1" / "sb-1"
    assert cg.name == "sb-1" and cg.path == str(d)
    assert read(d / "memory.max") == "67108864"
    assert read(d / "cpu.max") == "20000 100000"
    assert read(d / "pids.max") == "64"
    with pytest.raises(FileExistsError):
        backend.create("sb-1", LIMITS)


def test_backend_can_freeze_where_cgroup_freeze_exists(own: Path) -> None:
    backend = FakeV2Backend(str(own.parent), str(own), "faas-1", move_self=False)
    assert backend.can_freeze
    backend.create("sb", LIMITS).freeze()
    assert read(own / "faas-1" / "sb" / "cgroup.freeze") == "1\n"


def test_backend_without_cgroup_freeze_warns_once(
    own: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fake, "V2_FILES", {k: v for k, v in V2_FILES.items() if k != "cgroup.freeze"})
    backend = FakeV2Backend(str(own.parent), str(own), "faas-1", move_self=False)
    assert not backend.can_freeze
    cg = backend.create("sb", LIMITS)
    cg.freeze()
    backend.create("sb-2", LIMITS).freeze()
    assert not (own / "faas-1" / "sb" / "cgroup.freeze").exists()
    assert [r.message for r in caplog.records if "cgroup.freeze" in r.message] == [
        "cgroup v2 has no cgroup.freeze (Linux < 5.2): idle sandboxes are not frozen between calls"
    ]


def test_create_failure_removes_dir(own: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = FakeV2Backend(str(own.parent), str(own), "faas-1", move_self=False)
    # A directory without interface files: set_limits fails, create() cleans up.
    monkeypatch.setattr(backend, "_mkdir", lambda path, exist_ok=False: os.mkdir(path))
    with pytest.raises(FileNotFoundError):
        backend.create("sb-2", LIMITS)
    assert not (own / "faas-1" / "sb-2").exists()


def test_remove_stale_keeps_live_parents(own: Path) -> None:
    backend = FakeV2Backend(str(own.parent), str(own), parent_name_for(os.getpid()), move_self=False)
    dead = own / parent_name_for(DEAD_PID)
    (dead / "old-sandbox").mkdir(parents=True)
    (own / "not-ours").mkdir()
    assert backend.remove_stale() == 2
    assert not dead.exists()
    assert (own / parent_name_for(os.getpid())).is_dir()
    assert (own / "not-ours").is_dir()


def test_close_removes_parent(own: Path) -> None:
    backend = FakeV2Backend(str(own.parent), str(own), "faas-1", move_self=False)
    backend.create("sb", LIMITS)
    strip_files(own / "faas-1")
    backend.close()
    assert not (own / "faas-1").exists()


# --- detect() ----------------------------------------------------------------------------------------


def test_detect_picks_v2(tmp_path: Path, root: Path, own: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pretend_root(monkeypatch)
    mountinfo = (
        "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
        f"35 24 0:30 / {root} rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    proc = write_proc(tmp_path, mountinfo, f"0::/{own.name}\n")
    # The kernel would create the parent's files on mkdir; detect() builds the
    # real backend, so make the directory the way the kernel would.
    parent = own / parent_name_for(4242)
    parent.mkdir()
    populate(parent)
    backend = detect(proc=str(proc), server_pid=4242, move_self=False)
    assert isinstance(backend, CgroupV2Backend)
    assert backend.version == 2
    assert backend.parent_paths == (str(parent),)
    assert read(own / "cgroup.subtree_control") == "+pids"


def test_detect_without_usable_cgroups(tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pretend_root(monkeypatch)
    (root / "cgroup.controllers").write_text("cpu io\n")  # no memory, no pids
    mountinfo = (
        f"35 24 0:30 / {root} rw,relatime shared:9 - cgroup2 cgroup2 rw\n"
        f"36 24 0:31 / {tmp_path}/devices rw,relatime shared:10 - cgroup cgroup rw,devices\n"
    )
    proc = write_proc(tmp_path, mountinfo, "1:devices:/\n0::/\n")
    with pytest.raises(CgroupUnavailable) as info:
        detect(proc=str(proc), server_pid=4242, move_self=False)
    message = str(info.value)
    assert "\n" not in message
    assert "no usable cgroups" in message
    assert "cgroup2" in message and "cpu, memory, pids" in message
