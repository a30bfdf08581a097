"""Escape attempts (docs/SANDBOX.md), each made by a deployed hostile function.

Every test checks (1) that the attempt failed and left the host, the server
and the other functions alone, and (2) that the server is healthy after it.
tests/e2e/test_isolation.py looks at the sandbox's shape from inside; these
tests act on it."""

from __future__ import annotations

import os
import secrets
import socket
from typing import Any

import pytest

from tests.helpers import REPO, Server
from tests.security.common import assert_healthy, deploy_hostile, host_processes

REFUSED = ("Connection refused", "Network is unreachable", "Cannot assign requested address")


def test_cannot_see_or_signal_host_processes(server: Server) -> None:
    assert server.proc is not None
    zygotes = [p["pid"] for p in host_processes() if p["ppid"] == server.proc.pid]
    targets = sorted({server.proc.pid, *zygotes} - {1, os.getpid()})
    fn = deploy_hostile(server, "pids")
    # Every host pid where pid_max is 32768 (the default); the targets are named anyway.
    with open("/proc/sys/kernel/pid_max") as f:
        scan_max = min(int(f.read()), 65536)
    resp = server.invoke(
        fn, method="POST", json_body={"terminate": targets, "probe": [os.getpid()], "scan_max": scan_max}
    )
    assert resp.status == 200, resp.text
    out = resp.json()
    print(out["attempts"])
    assert out["me"] == 1
    assert out["visible"] == [1], "pids outside the sandbox answer signal 0"
    assert out["proc"] == [1]
    for what, result in out["attempts"].items():
        assert result in ("No such process", "absent"), (what, result)
    assert server.proc.poll() is None
    assert_healthy(server)


@pytest.fixture(scope="module")
def files_attack(server: Server) -> dict[str, Any]:
    """One call of hostile_files: reads of host paths, writes everywhere, a
    walk of the whole sandbox tree (what is writable, what is set-id)."""
    canary = f"hostile-canary-{secrets.token_hex(4)}"
    data_entries = sorted(os.listdir(server.data_dir))
    read = ["/etc/shadow", "/root", "/root/.bashrc", "/home", str(server.data_dir)]
    read += [str(server.data_dir / e) for e in data_entries]
    read += [str(REPO), str(REPO / "pyproject.toml"), str(REPO / "tests" / "helpers.py")]
    # Names only the repository or the data directory has, looked for anywhere in the sandbox.
    names = [
        "registry.db",
        "usage.db",
        "ARCHITECTURE.md",
        "test_isolation.py",
        "zygote_client.py",
        "leaks.py",
    ]
    fn = deploy_hostile(server, "files")
    resp = server.invoke(
        fn,
        method="POST",
        json_body={"read": read, "canary": canary, "own_file": "hostile_files.py", "names": names},
    )
    assert resp.status == 200, resp.text
    return {"canary": canary, **resp.json()}


def test_cannot_read_host_files(server: Server, files_attack: dict[str, Any]) -> None:
    print(files_attack["reads"])
    leaked = {p: r for p, r in files_attack["reads"].items() if r.startswith(("read", "listed"))}
    assert not leaked, leaked
    assert files_attack["found_by_name"] == [], files_attack["found_by_name"]
    assert_healthy(server)


def test_cannot_write_outside_tmp(server: Server, files_attack: dict[str, Any]) -> None:
    print(files_attack["writes"])
    writes = dict(files_attack["writes"])
    assert writes.pop("/tmp (allowed)") == "ok"  # the one place that is writable
    succeeded = {what: r for what, r in writes.items() if r == "ok"}
    assert not succeeded, succeeded
    assert files_attack["writable"] == [], f"writable outside /tmp: {files_attack['writable'][:20]}"
    # Nothing of it reached the host.
    canary = files_attack["canary"]
    for place in [str(REPO), str(server.data_dir), "/", "/etc", "/usr", "/usr/lib", "/var"]:
        assert not os.path.exists(os.path.join(place, canary)), place
    for dirpath, _dirs, files in os.walk(server.data_dir):
        assert canary not in files, dirpath
    assert (REPO / "tests" / "functions" / "hostile_files.py").read_text().startswith('"""Tries')
    assert_healthy(server)


def test_setuid_binaries_give_nothing(server: Server, files_attack: dict[str, Any]) -> None:
    """Set-id files of the host's /usr/lib may be reachable (the libraries are
    bound in), but none may lie on a mount that honours set-id bits; and
    setuid(0) fails."""
    setid = files_attack["setid"]
    print(f"set-id files reachable in the sandbox: {setid}")
    honoured = {path: info for path, info in setid.items() if info["honoured"]}
    assert not honoured, f"set-id files on a mount that honours them: {honoured}"
    out = server.invoke(deploy_hostile(server, "syscalls")).json()
    for call in ("setuid(0)", "seteuid(0)", "setresuid(0,0,0)", "setgid(0)", "setgroups([0])"):
        assert out[call] == "Operation not permitted", (call, out[call])
    assert all(u >= 200_000 for u in out["uid"]), out["uid"]
    assert_healthy(server)


def test_host_paths_do_not_show_inside(server: Server) -> None:
    """sandbox/hostfs.py binds Python's paths at /python/... so that host
    paths such as /root/.pyenv or the repository never appear inside. Information
    only (nothing there can be opened), but it tells a function where the
    server keeps its data and code."""
    fn = deploy_hostile(server, "pathleak")
    resp = server.invoke(fn, method="POST", json_body={"paths": [str(server.data_dir), str(REPO)]})
    assert resp.status == 200, resp.text
    found = resp.json()["found"]
    print(f"host paths readable inside: {found}")
    # Known and documented (sandbox/hostfs.py, README): a bind mount's source
    # path is the root field of its line in the mount table. Names only.
    mount_tables = {"/proc/self/mountinfo", "/proc/self/mounts"}
    elsewhere = {source: hits for source, hits in found.items() if source not in mount_tables}
    assert not elsewhere, f"host paths visible inside the sandbox: {elsewhere}"
    assert_healthy(server)


@pytest.fixture(scope="module")
def syscalls(server: Server) -> dict[str, Any]:
    host_name = socket.gethostname()
    fn = deploy_hostile(server, "syscalls")
    resp = server.invoke(fn)
    assert resp.status == 200, resp.text
    out = resp.json()
    print(out)
    assert socket.gethostname() == host_name
    return out


@pytest.mark.parametrize(
    "attempt",
    [
        "unshare(user)",
        "unshare(mount)",
        "unshare(net)",
        "unshare(pid)",
        "unshare(uts)",
        "unshare(ipc)",
        "unshare(cgroup)",
        "mount tmpfs /tmp",
        "mount proc /tmp",
        "mount cgroup /tmp",
        "mount cgroup2 /tmp",
        "remount / rw",
        "bind /var/task rw",
        "umount /proc",
        "chroot /tmp",
        "pivot_root",
        "ptrace(ATTACH child)",
        "ptrace(SEIZE child)",
        "ptrace(TRACEME)",
        "process_vm_readv(child)",
        "init_module",
        "finit_module",
        "delete_module",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "io_uring_setup",
        "keyctl",
        "clock_settime",
        "sethostname",
        "setdomainname",
        "capset(all)",
        "ambient raise CAP_SYS_ADMIN",
    ],
)
def test_privileged_call_is_refused(syscalls: dict[str, Any], attempt: str) -> None:
    assert syscalls[attempt] == "Operation not permitted", syscalls[attempt]


def test_namespaces_cannot_be_entered(syscalls: dict[str, Any]) -> None:
    setns = {k: v for k, v in syscalls.items() if k.startswith("setns(")}
    assert setns, syscalls
    for what, result in setns.items():
        assert result != "ok", (what, result)


def test_clone_cannot_make_namespaces(server: Server) -> None:
    """unshare() is refused; clone() with the same flags must be too (a new
    user namespace gives its first process every capability inside it)."""
    fn = deploy_hostile(server, "userns")
    resp = server.invoke(fn)
    assert resp.status == 200, resp.text
    out = resp.json()
    print(out)
    if "skipped" in out:
        pytest.skip(f"raw clone() numbers are for x86_64, not {out['skipped']}")
    assert int(out["own"]["CapEff"], 16) == 0
    made = {
        flags: result
        for flags, result in out.items()
        if flags != "own" and result != "Operation not permitted"
    }
    assert not made, f"clone() made namespaces: {made}"
    assert_healthy(server)


def test_hostname_cannot_change(syscalls: dict[str, Any]) -> None:
    assert syscalls["hostname after"] == syscalls["hostname before"]
    assert syscalls["hostname before"].startswith("sandbox-")


def test_limits_cannot_be_raised(syscalls: dict[str, Any]) -> None:
    assert syscalls["raise RLIMIT_NOFILE"] != "ok"
    assert syscalls["raise RLIMIT_FSIZE"] != "ok"
    assert syscalls["raise RLIMIT_CORE"] != "ok"
    assert syscalls["nofile after"][1] <= 1024
    assert syscalls["clear no_new_privs"] != "ok"


def test_no_cgroup_files_inside(syscalls: dict[str, Any]) -> None:
    assert syscalls["/sys exists"] is False
    assert syscalls["/sys/fs/cgroup exists"] is False
    assert syscalls["write cgroup files"] == []


def test_server_healthy_after_privileged_calls(server: Server, syscalls: dict[str, Any]) -> None:
    assert_healthy(server)


def _host_addresses() -> list[str]:
    """The host's own non-loopback IPv4 address (the one its default route uses), if any."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
        return [s.getsockname()[0]]
    except OSError:
        return []
    finally:
        s.close()


def test_cannot_reach_the_host_network(server: Server) -> None:
    canaries: list[socket.socket] = []
    tcp: list[tuple[str, int]] = [("127.0.0.1", server.port), ("::1", server.port)]
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
            s.bind((host, 0))
        except OSError:
            continue  # no IPv6 on this host
        s.listen()
        s.setblocking(False)
        canaries.append(s)
        tcp.append((host, s.getsockname()[1]))
    udp_canary = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_canary.bind(("127.0.0.1", 0))
    udp_canary.setblocking(False)
    abstract_name = f"faas-security-canary-{secrets.token_hex(4)}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind("\0" + abstract_name)
    abstract.listen()
    abstract.setblocking(False)
    canaries.append(abstract)
    for addr in _host_addresses():
        tcp += [(addr, server.port), (addr, 22)]
    tcp += [("8.8.8.8", 53), ("1.1.1.1", 443)]
    try:
        fn = deploy_hostile(server, "net")
        resp = server.invoke(
            fn,
            method="POST",
            json_body={
                "tcp": tcp,
                "udp": [["127.0.0.1", udp_canary.getsockname()[1]], ["8.8.8.8", 53]],
                "abstract": abstract_name,
            },
        )
        assert resp.status == 200, resp.text
        out = resp.json()
        print(out)
        for host, port in tcp:
            assert out[f"tcp {host} {port}"] != "connected", (host, port)
        assert out["udp 8.8.8.8 53"] != "sent"
        assert out["abstract unix"] in REFUSED, out["abstract unix"]
        assert out["dns"] == "gaierror"
        assert out["raw icmp"] == "Operation not permitted"
        # The seccomp filter refuses the family itself (tests/security/test_sockets.py).
        assert out["packet"] == "Address family not supported by protocol", out["packet"]
        assert out["interfaces"] == ["lo"] and out["routes"] == []
        # Nothing arrived at the host's canaries (a UDP datagram to 127.0.0.1
        # "sent" inside reached the sandbox's own loopback, not the host's).
        for s in canaries:
            with pytest.raises(BlockingIOError):
                s.accept()
        with pytest.raises(BlockingIOError):
            udp_canary.recv(100)
    finally:
        for s in [*canaries, udp_canary]:
            s.close()
    assert_healthy(server)


def test_cannot_reach_other_channels(server: Server) -> None:
    # Warm neighbours whose channels it might look for.
    assert_healthy(server)
    fn = deploy_hostile(server, "fdscan")
    resp = server.invoke(fn)
    assert resp.status == 200, resp.text
    out = resp.json()
    print(out)
    sockets = {where: target for where, target in out["fds"].items() if target.startswith("socket:")}
    assert list(sockets) == ["1/3"], sockets  # its own channel, and only that
    assert all(where.startswith("1/") for where in out["fds"]), out["fds"]
    assert out["adopted"] == []
    assert out["unix"] == [], out["unix"]
    assert_healthy(server)
