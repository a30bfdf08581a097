"""Work a call leaves running after its response neither runs, uses CPU
nor grows while its sandbox waits for the next call (the sandbox's cgroup
is frozen between calls), and what it used is billed."""

from __future__ import annotations

import time

from tests.helpers import Server
from tests.security.common import assert_healthy, deploy_hostile

IDLE_S = 1.0


def usage_records(server: Server, fn: str) -> list[dict[str, object]]:
    resp = server.request("GET", f"/system/usage?function={fn}&records=1")
    assert resp.status == 200, resp.text
    return resp.json()["records"]


def test_a_thread_left_running_does_not_run_between_calls(server: Server) -> None:
    fn = deploy_hostile(server, "between")
    first = server.invoke(fn, "?start=ticker").json()
    time.sleep(IDLE_S)  # the time under test, not a synchronisation
    second = server.invoke(fn).json()
    # Running, the thread would tick about 1000 times in that second; frozen,
    # it ticks only while the two calls run.
    assert second["ticks"] - first["ticks"] < 100, (first, second)
    assert_healthy(server)


def test_cpu_burnt_after_the_response_is_not_burnt_while_idle(server: Server) -> None:
    fn = deploy_hostile(server, "between", cpu=1.0)
    server.invoke(fn, "?start=spin")
    time.sleep(IDLE_S)
    server.invoke(fn)
    records = usage_records(server, fn)
    # Unfrozen, the spinning thread would burn up to a whole core for the
    # second of idle time (billed to the next call); frozen, it burns only
    # while a call runs, a few ms.
    second = records[-1]
    assert second["cpu_ms"] < 0.3 * IDLE_S * 1000, records
    assert second["cpu_ms"] <= second["wall_ms"] * 1.0 + 50, records
    assert_healthy(server)


def test_memory_allocated_after_the_response_stops_growing(server: Server) -> None:
    fn = deploy_hostile(server, "between", memory_mb=256)
    server.invoke(fn, "?start=grow")
    time.sleep(IDLE_S)
    answer = server.invoke(fn).json()
    # Unfrozen, the thread would hold its full 180 MiB by now.
    assert answer["grown_mb"] < 60, answer
    assert_healthy(server)
