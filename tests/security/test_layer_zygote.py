"""A function whose sandbox a layer's zygote forked attacks its neighbours:
another function of the same layer (forked by the same zygote) and the
zygote itself. Neither may notice (docs/SANDBOX.md#the-import-cache)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.package_index import files_body, require_index
from tests.helpers import Server, wait_until

VICTIM = """
import os
import numpy

def handle(event, context):
    if event.path == "/plant":
        with open("/tmp/victim-data", "w") as f:
            f.write("intact")
    return {"tmp": open("/tmp/victim-data").read() if os.path.exists("/tmp/victim-data") else None,
            "pid": os.getpid()}
"""

HOSTILE = """
import ctypes, errno, os, signal
import numpy

libc = ctypes.CDLL(None, use_errno=True)

def attempt(fn):
    try:
        fn()
        return "done"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))

def syscall_result(result):
    return "done" if result == 0 else errno.errorcode.get(ctypes.get_errno(), "?")

def handle(event, context):
    out = {}
    # Every process it may signal: only its own pid namespace's (itself, PID 1, is spared).
    out["kill_all"] = attempt(lambda: os.kill(-1, signal.SIGKILL))
    # Pids of the zygote's namespace (the zygote is 1 there): not in its own /proc.
    out["other_pids"] = sorted(p for p in os.listdir("/proc") if p.isdigit() and p != "1")
    out["setuid_root"] = attempt(lambda: os.setuid(0))
    out["write_layer"] = attempt(lambda: open("/opt/python/numpy/__init__.py", "a").close())
    out["write_root"] = attempt(lambda: open("/escape", "w").close())
    out["unmount_tmp"] = syscall_result(libc.umount2(b"/tmp", 2))
    out["new_user_ns"] = syscall_result(libc.unshare(0x10000000))
    out["uid_map"] = attempt(lambda: open("/proc/self/uid_map", "w").write("0 0 1"))
    out["ptrace"] = syscall_result(libc.ptrace(16, 1, None, None))  # PTRACE_ATTACH (seccomp: any pid)
    out["victim_tmp"] = os.path.exists("/tmp/victim-data")
    return out
"""

BUILD_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_index()
    srv = Server(tmp_path_factory.mktemp("layer-zygote") / "data").start()
    for name, code in (("victim", VICTIM), ("hostile", HOSTILE)):
        body = files_body(name, {"handler.py": code, "requirements.txt": "numpy\n"})
        resp = srv.request("POST", "/system/functions", json_body=body, timeout=BUILD_TIMEOUT_S)
        assert resp.status == 201, resp.text
    wait_until(
        lambda: srv.request("GET", "/system/layers").json()[0]["import_cache"]["state"] == "ready",
        120,
        "the layer's zygote to start",
    )
    yield srv
    assert srv.stop() == 0, srv.log()[-3000:]


def test_a_sandbox_of_a_layer_zygote_cannot_reach_its_neighbours(server: Server) -> None:
    planted = server.invoke("victim", "/plant")
    assert planted.status == 200 and planted.json()["tmp"] == "intact"
    attack = server.invoke("hostile")
    assert attack.status == 200, attack.text
    out = attack.json()
    assert out["other_pids"] == [] and out["victim_tmp"] is False
    assert out["setuid_root"] == "EPERM"
    assert out["write_layer"] in ("EROFS", "EACCES") and out["write_root"] in ("EROFS", "EACCES")
    assert out["unmount_tmp"] == "EPERM" and out["new_user_ns"] == "EPERM" and out["ptrace"] == "EPERM"
    assert out["uid_map"] in ("EPERM", "EACCES")
    # The victim's sandbox, forked by the same zygote, is untouched and still warm.
    after = server.invoke("victim")
    assert after.status == 200 and after.headers["X-Cold-Start"] == "false"
    assert after.json() == planted.json()
    # And the zygote is alive and unharmed.
    assert server.request("GET", "/system/layers").json()[0]["import_cache"]["state"] == "ready"
