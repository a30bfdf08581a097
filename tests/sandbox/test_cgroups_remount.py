"""Which cgroup hierarchies a server started by `ip netns exec` (a fresh
/sys, no cgroup mounts) mounts again in its own mount namespace."""

from __future__ import annotations

from sandbox.cgroups.remount import hierarchies

V1 = """13:freezer:/
12:pids:/
11:rdma:/
9:memory:/process_api/abc
4:cpuacct:/
3:cpu:/
2:cpuset:/
1:name=systemd:/
0::/
"""


def test_v1_hosts_get_the_controllers_the_server_uses() -> None:
    assert hierarchies(V1) == [
        ("cgroup", "freezer"),
        ("cgroup", "pids"),
        ("cgroup", "memory"),
        ("cgroup", "cpuacct"),
        ("cgroup", "cpu"),
    ]


def test_combined_v1_controllers_are_mounted_as_they_are_combined() -> None:
    assert hierarchies("5:cpu,cpuacct:/x\n4:memory:/x\n3:pids:/x\n") == [
        ("cgroup", "cpu,cpuacct"),
        ("cgroup", "memory"),
        ("cgroup", "pids"),
    ]


def test_a_v2_host_gets_the_unified_hierarchy() -> None:
    assert hierarchies("0::/user.slice/session-1.scope\n") == [("cgroup2", "")]
    assert hierarchies("") == []
