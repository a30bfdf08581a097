"""detect() choosing the cgroup v1 backend from a fake /proc/self and fake hierarchies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.cgroups import CgroupUnavailable, detect
from sandbox.cgroups.base import parent_name_for
from sandbox.cgroups.v1 import FREEZE_ANCHOR, CgroupV1Backend
from tests.sandbox.cgroupfs import (
    ALL,
    OWN,
    cgroup_mount_line,
    make_hierarchies,
    populate_v1,
    pretend_root,
    read,
    write_proc,
)


def v1_mountinfo(tmp_path: Path, controllers: tuple[str, ...]) -> str:
    return "22 1 0:21 / /proc rw,nosuid - proc proc rw\n" + "".join(
        cgroup_mount_line(30 + i, tmp_path / "cgroup" / c, "cgroup", f"rw,{c}")
        for i, c in enumerate(controllers)
    )


def v1_proc_cgroup(controllers: tuple[str, ...]) -> str:
    return "".join(f"{i + 1}:{c}:/{OWN}\n" for i, c in enumerate(controllers)) + "0::/\n"


def prepare_parent(own: dict[str, Path], parent: str) -> None:
    """detect() builds the real backend, whose mkdir makes no files: make the
    directories the way the kernel would."""
    for controller, path in own.items():
        (path / parent).mkdir()
        populate_v1(path / parent, (controller,))
    if "freezer" in own:
        (own["freezer"] / parent / FREEZE_ANCHOR).mkdir()
        populate_v1(own["freezer"] / parent / FREEZE_ANCHOR, ("freezer",))


def test_detect_picks_v1_with_freezer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = make_hierarchies(tmp_path)
    pretend_root(monkeypatch)
    proc = write_proc(tmp_path, v1_mountinfo(tmp_path, ALL), v1_proc_cgroup(ALL))
    parent = parent_name_for(4242)
    prepare_parent(own, parent)
    backend = detect(proc=str(proc), server_pid=4242, move_self=False)
    assert isinstance(backend, CgroupV1Backend)
    assert backend.version == 1 and backend.can_freeze
    assert backend.parent_paths == tuple(str(own[c] / parent) for c in ALL)
    assert read(own["freezer"] / parent / FREEZE_ANCHOR / "freezer.state") == "FROZEN"


def test_detect_v1_without_freezer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pretend_root(monkeypatch)
    controllers = ("cpu", "cpuacct", "memory", "pids")
    own = make_hierarchies(tmp_path, controllers)
    proc = write_proc(tmp_path, v1_mountinfo(tmp_path, controllers), v1_proc_cgroup(controllers))
    prepare_parent(own, parent_name_for(4242))
    backend = detect(proc=str(proc), server_pid=4242, move_self=False)
    assert backend.version == 1 and not backend.can_freeze


def test_detect_names_missing_v1_controllers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pretend_root(monkeypatch)
    controllers = ("cpu", "memory", "freezer")
    make_hierarchies(tmp_path, controllers)
    proc = write_proc(tmp_path, v1_mountinfo(tmp_path, controllers), v1_proc_cgroup(controllers))
    with pytest.raises(CgroupUnavailable) as info:
        detect(proc=str(proc), server_pid=4242, move_self=False)
    message = str(info.value)
    assert "\n" not in message
    assert "need cgroup v1 controllers cpu, cpuacct, memory, pids (found cpu, memory)" in message


def test_detect_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(CgroupUnavailable, match="needs root"):
        detect()
