"""How a blank sandbox is created, against the real zygote and cgroups: one
clone into its namespaces, its cgroup joined from inside, and its runtime
bound from the zygote's read-only template (sandbox/mounts.py) with every
mount as read-only, nosuid, nodev (and noexec) as a bind made anew would
be, none of it visible on the host."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.factory import FactoryConfig, SandboxFactory
from sandbox.mounts import outermost
from sandbox.spec import BindMount

pytestmark = pytest.mark.inprocess


def test_outermost_keeps_only_binds_not_inside_another() -> None:
    binds = (
        BindMount("/s/lib", "/python/lib"),
        BindMount("/s/dyn", "/python/lib/dyn"),
        BindMount("/s/libx", "/python/libx"),  # a sibling with a common prefix, not nested
        BindMount("/s/usr", "/usr/lib"),
    )
    assert [b.target for b in outermost(binds)] == ["/python/lib", "/python/libx", "/usr/lib"]


def _mountinfo(pid: int | str) -> dict[str, tuple[str, set[str], str]]:
    """mount point -> (root, per-mount options, optional fields)."""
    found = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        found[fields[4]] = (fields[3], set(fields[5].split(",")), " ".join(fields[6:separator]))
    return found


@pytest.fixture
async def factory(tmp_path: Path) -> AsyncIterator[SandboxFactory]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    async with SandboxFactory(FactoryConfig(data_dir=str(tmp_path), prewarm=0, import_cache=False)) as f:
        yield f


async def test_blank_binds_the_runtime_read_only_from_the_template(factory: SandboxFactory) -> None:
    assert factory._template is not None
    binds = factory._template.runtime_binds
    assert len(outermost(binds)) < len(binds)  # some come along with an outer one
    sandbox = await factory.blank(timeout_s=30)
    try:
        inside = _mountinfo(sandbox.pid)
        for bind in binds:
            root, options, propagation = inside[bind.target]
            assert root == os.path.realpath(bind.source) or bind.source.endswith(root)
            assert {"ro", "nosuid", "nodev"} <= options, bind
            assert ("noexec" in options) == bind.noexec, bind
            assert propagation == "", f"{bind.target} propagates: {propagation}"
        assert "rw" in inside["/"][1]  # writable until specialize, as before
        for name in ("null", "zero", "random", "urandom"):
            assert {"rw", "nosuid", "noexec"} <= inside[f"/dev/{name}"][1]
        # Nothing of the template, the sandbox's root or the zygote's namespace on the host.
        data_dir = factory.config.data_dir
        assert not [m for m in _mountinfo("self") if m.startswith(data_dir)]
        assert os.listdir(os.path.join(data_dir, "run", "template")) == []
        # The sandbox joined its own cgroup from inside its pid namespace.
        cgroup = Path(f"/proc/{sandbox.pid}/cgroup").read_text()
        assert f"sb-{sandbox.id}" in cgroup
        assert sandbox.pid in sandbox.cgroup.pids()
    finally:
        await sandbox.destroy()


async def test_each_blank_is_a_direct_child_of_the_zygote_in_new_namespaces(factory: SandboxFactory) -> None:
    assert factory.zygote is not None and factory.zygote.pid is not None
    sandbox = await factory.blank(timeout_s=30)
    try:
        status = Path(f"/proc/{sandbox.pid}/status").read_text()
        assert f"PPid:\t{factory.zygote.pid}\n" in status
        assert "NSpid:" in status and status.split("NSpid:")[1].split("\n")[0].split()[-1] == "1"
        for ns in ("mnt", "pid", "net", "ipc", "uts"):
            assert os.readlink(f"/proc/{sandbox.pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
        zygote_mnt = os.readlink(f"/proc/{factory.zygote.pid}/ns/mnt")
        assert zygote_mnt != os.readlink("/proc/self/ns/mnt")  # the template's own namespace
        assert os.readlink(f"/proc/{sandbox.pid}/ns/mnt") != zygote_mnt
    finally:
        await sandbox.destroy()
