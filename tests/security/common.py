"""Shared by the security battery: deploy a hostile function, check that the
server is still healthy, look at the host's processes and the server's memory."""

from __future__ import annotations

import http.client
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import EXAMPLES, TEST_FUNCTIONS, Server

SANDBOX_UID_MIN = 200_000


def hostile(name: str) -> Path:
    """tests/functions/hostile_<name>.py"""
    path = TEST_FUNCTIONS / f"hostile_{name}.py"
    assert path.is_file(), path
    return path


def deploy_hostile(server: Server, name: str, **limits: Any) -> str:
    """Deploy tests/functions/hostile_<name>.py as `hostile-<name>`; returns the function's name."""
    fn = "hostile-" + name.replace("_", "-")
    server.deploy_ok(fn, hostile(name), **limits)
    return fn


def assert_healthy(server: Server) -> None:
    """The server process is alive, /healthz answers 200 and a `hello` call answers 200."""
    assert server.proc is not None and server.proc.poll() is None, f"server died:\n{server.log()[-4000:]}"
    health = server.request("GET", "/healthz", timeout=10)
    assert health.status == 200, health.text
    if server.request("GET", "/system/functions/hello", timeout=10).status != 200:
        server.deploy_ok("hello", EXAMPLES / "hello.py")
    hello = server.invoke("hello", timeout=10)
    assert hello.status == 200 and hello.text == "Hello, world!", (hello.status, hello.text)


def errno_name(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    return os.strerror(code) if code else type(exc).__name__


# -- the host's processes -----------------------------------------------------


def host_processes() -> list[dict[str, Any]]:
    """Every process on the host: pid, ppid, uid (real), name (comm)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        out.append(
            {
                "pid": int(entry),
                "ppid": int(fields["PPid"]),
                "uid": int(fields["Uid"].split()[0]),
                "name": fields["Name"].strip(),
            }
        )
    return out


def pids_where(pred: Callable[[dict[str, Any]], bool]) -> list[int]:
    return sorted(p["pid"] for p in host_processes() if pred(p))


def wait_until(pred: Callable[[], bool], timeout_s: float, step_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step_s)


# -- the server's memory ------------------------------------------------------


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def server_rss_mib(server: Server) -> float:
    assert server.proc is not None
    return _status_kib(server.proc.pid, "VmRSS") / 1024


def reset_server_peak(server: Server) -> float:
    """Reset the server's peak RSS (VmHWM) to its current RSS; returns it (MiB)."""
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/clear_refs", "w") as f:
        f.write("5")
    return _status_kib(server.proc.pid, "VmHWM") / 1024


def server_peak_mib(server: Server) -> float:
    assert server.proc is not None
    return _status_kib(server.proc.pid, "VmHWM") / 1024


def disk_free_mib(path: Path) -> float:
    return shutil.disk_usage(path).free / (1 << 20)


def invoke_status_only(
    server: Server, name: str, path: str = "", timeout: float = 60
) -> tuple[int, str, int]:
    """Call a function, read the status line, the headers and at most 64 KiB
    of the body: (status, first bytes of the body, Content-Length or -1). For
    answers that may be huge."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request("GET", f"/function/{name}{path}")
        resp = conn.getresponse()
        length = int(resp.headers.get("Content-Length", "-1"))
        head = resp.read(min(65536, length) if length >= 0 else 65536)
        return resp.status, head.decode(errors="replace"), length
    finally:
        conn.close()
