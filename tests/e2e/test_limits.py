"""Limits and failures: timeout, memory, CPU quota, crashes, protocol garbage."""

from __future__ import annotations

import time

from tests.helpers import EXAMPLES, TEST_FUNCTIONS, Server


def _healthy(server: Server) -> None:
    assert server.request("GET", "/healthz").status == 200
    server.deploy_ok("hello", EXAMPLES / "hello.py")
    assert server.invoke("hello").status == 200


def test_timeout_kills_and_next_call_works(server: Server) -> None:
    server.deploy_ok("sleeper", TEST_FUNCTIONS / "sleeper.py", timeout_s=1)
    t0 = time.monotonic()
    resp = server.invoke("sleeper", "?s=10")
    elapsed = time.monotonic() - t0
    assert resp.status == 504
    assert "timed out after 1 s" in resp.json()["error"]
    assert elapsed < 1.5, elapsed
    ok = server.invoke("sleeper", "?s=0.01")
    assert ok.status == 200 and ok.headers["X-Cold-Start"] == "true"
    assert 0 < ok.json()["remaining_ms"] <= 1000
    metrics = server.request("GET", "/metrics").text
    assert 'faas_sandbox_kills_total{function_name="sleeper",reason="timeout"} 1.0' in metrics
    _healthy(server)


def test_memory_limit_is_502_naming_the_limit(server: Server) -> None:
    server.deploy_ok("memhog", TEST_FUNCTIONS / "memhog.py", memory_mb=64)
    resp = server.invoke("memhog", "?mb=200")
    assert resp.status == 502
    assert "memory limit of 64 MiB exceeded" in resp.json()["error"]
    small = server.invoke("memhog", "?mb=8")
    assert small.status == 200 and small.json() == {"allocated_mb": 8}
    _healthy(server)


def test_cpu_quota_holds_a_busy_loop(server: Server) -> None:
    server.deploy_ok("cpuburn", TEST_FUNCTIONS / "cpuburn.py", cpu=0.2)
    resp = server.invoke("cpuburn", "?s=2")
    assert resp.status == 200
    data = resp.json()
    share = data["cpu_s"] / data["wall_s"]
    # 20% of a core, plus at most one 50 ms burst over two seconds.
    assert 0.14 <= share <= 0.27, data


def test_exit_is_502_and_server_stays_healthy(server: Server) -> None:
    server.deploy_ok("exiter", TEST_FUNCTIONS / "exiter.py")
    resp = server.invoke("exiter")
    assert resp.status == 502
    assert "exited or crashed" in resp.json()["error"]
    assert server.invoke("exiter").status == 502  # a fresh sandbox, same fate
    _healthy(server)


def test_garbage_on_channel_is_502(server: Server) -> None:
    server.deploy_ok("garbage", TEST_FUNCTIONS / "garbage.py")
    resp = server.invoke("garbage")
    assert resp.status == 502
    assert "protocol" in resp.json()["error"]
    _healthy(server)


def test_init_failure_is_reported(server: Server) -> None:
    server.deploy_ok("badinit", "import no_such_module_xyz\ndef handle(e, c):\n    return 1\n")
    resp = server.invoke("badinit")
    assert resp.status == 500
    assert "no_such_module_xyz" in resp.json()["error"]
    lines = "\n".join(server.request("GET", "/system/logs?name=badinit").json()["lines"])
    assert "ModuleNotFoundError" in lines
    _healthy(server)
