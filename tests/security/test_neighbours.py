"""Neighbours: one function's attack must not reach another function, nor
slow the calls of others beyond generous bounds. Latency figures are
printed (pytest -s shows them)."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from tests.helpers import EXAMPLES, Server
from tests.helpers import Response as HttpResponse
from tests.security.common import assert_healthy, deploy_hostile, hostile, pids_where, wait_until

CALLS = 100


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


def _hello_latencies(server: Server, n: int = CALLS) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        resp = server.invoke("hello", timeout=10)
        out.append((time.perf_counter() - t0) * 1000)
        assert resp.status == 200, resp.text
    return out


def _under_attack(server: Server, fn: str, started: Any, what: str) -> None:
    """Quiet p99 of `hello`, then p99 while `fn` runs its attack (a call
    that lasts until its timeout); compare."""
    server.deploy_ok("hello", EXAMPLES / "hello.py")
    _hello_latencies(server, 20)  # warm
    quiet = _hello_latencies(server)
    result: dict[str, HttpResponse] = {}
    attack = threading.Thread(target=lambda: result.setdefault("resp", server.invoke(fn, timeout=30)))
    attack.start()
    try:
        assert wait_until(started, 5), f"{what}: the attack did not start"
        loud = _hello_latencies(server)
        still_running = attack.is_alive()
    finally:
        attack.join()
    q99, l99 = _p99(quiet), _p99(loud)
    bound = max(5 * q99, q99 + 50)
    print(
        f"\n{what}: hello p99 quiet {q99:.2f} ms (median {sorted(quiet)[CALLS // 2]:.2f}), "
        f"under attack {l99:.2f} ms (median {sorted(loud)[CALLS // 2]:.2f}, max {max(loud):.2f}); "
        f"bound {bound:.2f} ms; attack call ended {result['resp'].status}"
    )
    assert still_running, f"{what}: the attack ended before the measurement did; lengthen its timeout"
    assert l99 <= bound, f"{what}: p99 {l99:.2f} ms under attack vs {q99:.2f} ms quiet"
    assert result["resp"].status == 504, result["resp"].text
    assert_healthy(server)


def test_busy_loop_neighbour(server: Server) -> None:
    fn = deploy_hostile(server, "spin", cpu=1, timeout_s=3)
    _under_attack(
        server,
        fn + "?children=0",
        lambda: bool(pids_where(lambda p: p["name"] == "hx-spin")),
        "busy loop (cpu=1)",
    )


def test_fork_bomb_neighbour(server: Server) -> None:
    fn = deploy_hostile(server, "forkbomb", timeout_s=3)
    _under_attack(
        server,
        fn,
        lambda: len(pids_where(lambda p: p["name"] == "hx-forkbomb")) >= 100,
        "fork bomb",
    )
    assert wait_until(lambda: not pids_where(lambda p: p["name"] == "hx-forkbomb"), 3)


def test_no_channel_between_neighbours(server: Server) -> None:
    """An abstract unix socket, a SysV shared-memory segment and a /tmp file
    of one function are invisible to another, which cannot kill it either."""
    planter = deploy_hostile(server, "ipc")
    server.deploy_ok("hostile-ipc-seeker", hostile("ipc"))
    planted = server.invoke(planter, "?role=plant")
    assert planted.status == 200, planted.text
    uid = planted.json()["uid"]
    assert planted.json()["shm"] >= 0, planted.json()  # the segment exists on its side
    host_pids = pids_where(lambda p: p["uid"] == uid)
    assert len(host_pids) == 1, host_pids
    seek = server.invoke("hostile-ipc-seeker", f"?role=seek&pid={host_pids[0]}")
    assert seek.status == 200, seek.text
    out = seek.json()
    print(out)
    assert out == {
        "socket": "Connection refused",
        "shm": "No such file or directory",
        "tmp": "absent",
        "kill": "No such process",
    }
    again = server.invoke(planter, "?role=plant")
    assert again.status == 200 and again.headers["X-Cold-Start"] == "false", again.text
    assert pids_where(lambda p: p["uid"] == uid) == host_pids
    assert_healthy(server)
