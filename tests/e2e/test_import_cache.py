"""The import cache end to end (docs/SANDBOX.md#the-import-cache): a layer's
zygote, confined before it imports anything, forks the sandboxes of the
functions using the layer; they are as isolated from each other as any two
sandboxes. numpy stands in for a heavy layer (pandas: bench/imports.py)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.package_index import files_body, require_index
from tests.helpers import Server, server_with_config, wait_until

# Whether numpy was in memory before the function's module imported it:
# true only in a sandbox forked from the layer's zygote.
PROBE = """
import ctypes, os, socket, sys
PRELOADED = "numpy" in sys.modules
import numpy

def status(key):
    with open("/proc/self/status") as f:
        return next(line.split(":", 1)[1].strip() for line in f if line.startswith(key + ":"))

def handle(event, context):
    libc = ctypes.CDLL(None, use_errno=True)
    if event.path == "/write":
        with open("/tmp/mine", "w") as f:
            f.write(context.function_name)
    with open("/proc/self/cgroup") as f:
        cgroup = sorted(line.strip().split(":", 2)[2] for line in f)
    with open("/proc/self/uid_map") as f:
        uid_map = f.read().split()
    return {
        "preloaded": PRELOADED,
        "sum": int(numpy.arange(4).sum()),
        "pid": os.getpid(),
        "processes": sorted(p for p in os.listdir("/proc") if p.isdigit()),
        "uid": os.getuid(),
        "uid_map": uid_map,
        "hostname": socket.gethostname(),
        "tmp": sorted(os.listdir("/tmp")),
        "code": sorted(os.listdir("/var/task")),
        "me": open("/var/task/me.txt").read(),
        "cap_eff": status("CapEff"),
        "no_new_privs": status("NoNewPrivs"),
        "seccomp_filters": int(status("Seccomp_filters")),
        "unshare": libc.unshare(0x00020000) == 0,
        "mount": libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, None) == 0,
        "interfaces": sorted(name for _i, name in socket.if_nameindex()),
        "cgroup": cgroup,
        "layer_writable": os.access("/opt/python/numpy/__init__.py", os.W_OK),
    }
"""
ZYGOTE_CAPABILITIES = (1 << 6) | (1 << 7) | (1 << 8) | (1 << 12) | (1 << 21)
BUILD_TIMEOUT_S = 600


def deploy(srv: Server, name: str) -> Any:
    files = {"handler.py": PROBE, "requirements.txt": "numpy\n", "me.txt": name}
    resp = srv.request(
        "POST", "/system/functions", json_body=files_body(name, files), timeout=BUILD_TIMEOUT_S
    )
    assert resp.status in (200, 201), resp.text
    return resp.json()


def cache_state(srv: Server) -> dict[str, Any]:
    [layer] = srv.request("GET", "/system/layers").json()
    return layer["import_cache"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_index()
    srv = Server(tmp_path_factory.mktemp("cache") / "data").start()
    deploy(srv, "numpy-a")
    deploy(srv, "numpy-b")
    wait_until(lambda: cache_state(srv)["state"] != "starting", 120, "the layer's zygote to start")
    yield srv
    assert srv.stop() == 0, srv.log()[-3000:]


def test_the_layer_zygote_imported_the_layer(server: Server) -> None:
    state = cache_state(server)
    assert state == {"state": "ready", "imported": ["numpy"], "failed": {}}, server.log()[-3000:]
    a = server.invoke("numpy-a")
    assert a.status == 200 and a.headers["X-Cold-Start"] == "true"
    assert a.json()["preloaded"] is True and a.json()["sum"] == 6


def test_sandboxes_of_one_layer_zygote_are_isolated_from_each_other(server: Server) -> None:
    a = server.invoke("numpy-a", "/write").json()
    b = server.invoke("numpy-b").json()
    for out, name in ((a, "numpy-a"), (b, "numpy-b")):
        assert out["preloaded"] is True
        assert out["pid"] == 1 and out["processes"] == ["1"]  # its own pid namespace, nothing else in it
        assert out["me"] == name and out["code"] == ["handler.py", "me.txt", "requirements.txt"]
        assert out["cap_eff"] == "0000000000000000" and out["no_new_privs"] == "1"
        assert out["seccomp_filters"] >= 2  # the layer zygote's, and the sandbox's own on top
        assert out["unshare"] is False and out["mount"] is False
        assert out["interfaces"] == ["lo"]
        assert out["uid"] > 0 and len(out["uid_map"]) == 6  # its uid in the zygote's user namespace
        assert out["layer_writable"] is False
        assert _own_cgroups(out["cgroup"])  # a cgroup of its own, not the zygote's
    assert a["tmp"] == ["mine"] and b["tmp"] == []  # /tmp is each sandbox's own
    assert a["uid"] != b["uid"] and a["hostname"] != b["hostname"]
    assert not set(_own_cgroups(a["cgroup"])) & set(_own_cgroups(b["cgroup"]))


def _own_cgroups(paths: list[str]) -> list[str]:
    """The sandbox cgroups among a process's cgroup paths; each path the
    server manages (faas-PID/...) must be one."""
    managed = [path for path in paths if "/faas-" in path]
    assert all("/sb-" in path for path in managed), paths
    return managed


SECRET_READER = """
import os, sys
PRELOADED = "numpy" in sys.modules

def handle(event, context):
    path = "/var/openfaas/secrets/db-password"
    st = os.stat(path)
    return {"preloaded": PRELOADED, "value": open(path).read(), "mine": st.st_uid == os.getuid(),
            "mode": oct(st.st_mode & 0o777), "dir_mode": oct(os.stat(os.path.dirname(path)).st_mode & 0o777)}
"""


def test_a_layer_zygotes_sandbox_gets_its_secrets(server: Server) -> None:
    resp = server.request("POST", "/system/secrets", json_body={"name": "db-password", "value": "s3cret"})
    assert resp.status in (200, 201), resp.text
    files = {"handler.py": SECRET_READER, "requirements.txt": "numpy\n"}
    body = files_body("numpy-secret", files, secrets=["db-password"])
    resp = server.request("POST", "/system/functions", json_body=body, timeout=BUILD_TIMEOUT_S)
    assert resp.status == 201, resp.text
    out = server.invoke("numpy-secret").json()
    assert out == {"preloaded": True, "value": "s3cret", "mine": True, "mode": "0o400", "dir_mode": "0o500"}
    assert server.request("DELETE", "/system/functions/numpy-secret").status == 200
    assert server.request("DELETE", "/system/secrets/db-password").status == 200


def _layer_zygotes(server: Server) -> list[int]:
    """Host pids of the server's layer zygotes: in a user namespace whose root
    is an unprivileged uid, PID 1 of a pid namespace right below the host's
    (the sandboxes they fork are one level further down)."""
    assert server.proc is not None
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"sandbox.zygote" not in f.read():
                    continue
            with open(f"/proc/{pid}/uid_map") as f:
                first = f.readline().split()
            status = _status(int(pid))
        except (OSError, ValueError):
            continue
        nspid = status.get("NSpid", "").split()
        if (
            first[:1] == ["0"]
            and first[1] != "0"
            and len(nspid) == 2
            and _descends_from(int(pid), server.proc.pid)
        ):
            found.append(int(pid))
    return found


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(_status(pid)["PPid"])
        except (OSError, KeyError, ValueError):
            return False
    return False


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, v in (line.split(":", 1) for line in f)}


def test_the_layer_zygote_is_confined(server: Server) -> None:
    zygotes = _layer_zygotes(server)
    assert len(zygotes) == 1, zygotes
    [pid] = zygotes
    status = _status(pid)
    with open(f"/proc/{pid}/uid_map") as f:
        host_uid = int(f.readline().split()[1])
    assert host_uid >= 200_000  # an unprivileged host uid (root only inside its user namespace)
    assert os.stat(f"/proc/{pid}").st_uid == host_uid
    assert (
        int(status["CapEff"], 16) == ZYGOTE_CAPABILITIES and int(status["CapBnd"], 16) == ZYGOTE_CAPABILITIES
    )
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2" and status["Threads"] == "1"
    for ns in ("user", "mnt", "pid", "net", "ipc", "uts"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
    with open(f"/proc/{pid}/cgroup") as f:
        assert _own_cgroups([line.strip().split(":", 2)[2] for line in f])


def test_a_dead_layer_zygote_is_started_again(server: Server) -> None:
    [pid] = _layer_zygotes(server)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: cache_state(server)["state"] != "ready", 10, "the server to see its layer zygote die")
    # Its sandboxes died with it; the next cold start starts another zygote and is forked from it.
    resp = server.invoke("numpy-a")
    assert resp.status == 200 and resp.headers["X-Cold-Start"] == "true", resp.text
    assert resp.json()["preloaded"] is True
    assert cache_state(server)["state"] == "ready"
    [new] = _layer_zygotes(server)
    assert new != pid


def _in_user_namespace(namespace: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and os.readlink(f"/proc/{pid}/ns/user") == namespace:
                found.append(int(pid))
        except OSError:
            continue
    return found


def test_a_killed_server_leaves_no_layer_sandbox_behind(tmp_path: Path) -> None:
    """SIGKILL: the zygote kills the layer zygote, and thaws the frozen
    sandboxes it forked so that they die too; the next start is clean and
    starts the layer's zygote again."""
    require_index()
    srv = Server(tmp_path / "data").start()
    deploy(srv, "numpy-killed")
    wait_until(lambda: cache_state(srv)["state"] != "starting", 120, "the layer's zygote to start")
    assert srv.invoke("numpy-killed").json()["preloaded"] is True  # now warm, frozen
    [zygote] = _layer_zygotes(srv)
    namespace = os.readlink(f"/proc/{zygote}/ns/user")
    assert len(_in_user_namespace(namespace)) >= 2  # the zygote and the sandbox it forked
    srv.stop(signal.SIGKILL)
    wait_until(
        lambda: not _in_user_namespace(namespace),
        20,
        "the layer zygote and its sandboxes to die",
        detail=lambda: _in_user_namespace(namespace),
    )
    srv.start()
    try:
        # The layer survived, and its zygote starts with the server, not at the first call.
        wait_until(lambda: cache_state(srv)["state"] == "ready", 120, "the layer's zygote to start again")
        resp = srv.invoke("numpy-killed")
        assert resp.status == 200 and resp.json()["preloaded"] is True
    finally:
        assert srv.stop() == 0


def test_a_layer_zygote_goes_with_its_layer(server: Server) -> None:
    for name in ("numpy-a", "numpy-b"):
        server.request("DELETE", f"/system/functions/{name}")
    wait_until(lambda: not _layer_zygotes(server), 30, "the layer's zygote to stop")
    assert server.request("GET", "/system/layers").json() == []


def test_without_the_import_cache_sandboxes_import_the_layer_themselves(tmp_path: Path) -> None:
    require_index()
    (tmp_path / "off").mkdir()
    srv = server_with_config(tmp_path / "off", "import_cache = false\n").start()
    try:
        deploy(srv, "numpy-plain")
        assert cache_state(srv) == {"state": "off"}
        out = srv.invoke("numpy-plain").json()
        assert out["preloaded"] is False and out["sum"] == 6
        assert out["pid"] == 1 and out["cap_eff"] == "0000000000000000" and out["seccomp_filters"] == 1
        assert len(out["uid_map"]) == 3  # the host's user namespace
        assert not _layer_zygotes(srv)
    finally:
        assert srv.stop() == 0
