"""Pre-warmed blank sandboxes and the warm-memory budget."""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path

from sandbox import procfs
from tests import leaks
from tests.helpers import EXAMPLES, TEST_FUNCTIONS, Server, wait_until

BUSY = 'faas_sandboxes{state="busy"}'


def metric(server: Server, name: str, labels: str = "") -> float:
    text = server.request("GET", "/metrics").text
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    assert match, f"{name}{labels} not in /metrics"
    return float(match.group(1))


def serve_with(tmp_path: Path, config: str) -> Server:
    path = tmp_path / "faas.toml"
    path.write_text(config)
    return Server(tmp_path / "data", extra_args=("--config", str(path))).start()


def test_cold_call_is_served_from_the_pool_which_refills(tmp_path: Path) -> None:
    srv = serve_with(tmp_path, "prewarm = 3\n")
    try:
        prewarmed = 'faas_sandboxes{state="prewarmed"}'
        wait_until(lambda: metric(srv, prewarmed) == 3, 10, "the pool to fill")
        srv.deploy_ok("hello", EXAMPLES / "hello.py")
        resp = srv.invoke("hello")
        assert resp.status == 200 and resp.headers["X-Cold-Start"] == "true"
        assert metric(srv, "faas_prewarm_hits_total") == 1
        assert metric(srv, "faas_prewarm_misses_total") == 0
        wait_until(lambda: metric(srv, prewarmed) == 3, 10, "the pool to refill")
        assert srv.invoke("hello").headers["X-Cold-Start"] == "false"
        assert metric(srv, "faas_prewarm_hits_total") == 1  # a warm call takes nothing from the pool
    finally:
        assert srv.stop() == 0


def test_without_a_pool_cold_calls_still_work(tmp_path: Path) -> None:
    srv = serve_with(tmp_path, "prewarm = 0\n")
    try:
        srv.deploy_ok("hello", EXAMPLES / "hello.py")
        assert srv.invoke("hello").text == "Hello, world!"
        assert metric(srv, "faas_prewarm_misses_total") == 1
        assert metric(srv, 'faas_sandboxes{state="prewarmed"}') == 0
    finally:
        assert srv.stop() == 0


# Each sandbox of this function holds ~24 MiB from its init on.
HOLDER = (
    "import time\n"
    "BLOCK = b'x' * (24 * 1024 * 1024)\n"
    "def handle(event, context):\n"
    "    time.sleep(float(event.query.get('s', '0')))\n"
    "    return context.function_name\n"
)


def test_budget_evicts_the_least_recently_used_idle_sandbox(tmp_path: Path) -> None:
    # A new sandbox is assumed to need 8 MiB until measured: starting a
    # second holder fits (~26 + 8 <= 45), starting a third does not (~52 + 8).
    srv = serve_with(tmp_path, "prewarm = 0\nwarm_memory_budget_mb = 45\n")
    try:
        for name in ("a", "b", "c"):
            srv.deploy_ok(name, HOLDER)
        assert srv.invoke("a").headers["X-Cold-Start"] == "true"
        assert srv.invoke("b").headers["X-Cold-Start"] == "true"
        assert srv.invoke("a").headers["X-Cold-Start"] == "false"  # now b is the least recently used
        assert srv.invoke("c").headers["X-Cold-Start"] == "true"  # needs room: b goes
        assert metric(srv, "faas_evictions_total", '{function_name="b"}') == 1
        assert srv.invoke("a").headers["X-Cold-Start"] == "false"
        assert srv.invoke("b").headers["X-Cold-Start"] == "true"  # evicted, so cold again
    finally:
        assert srv.stop() == 0


def test_busy_sandboxes_are_never_evicted(tmp_path: Path) -> None:
    srv = serve_with(tmp_path, "prewarm = 0\nwarm_memory_budget_mb = 45\n")
    try:
        for name in ("a", "b", "c"):
            srv.deploy_ok(name, HOLDER)
        srv.invoke("a")
        srv.invoke("b")  # a is now the least recently used...
        slow: list[int] = []
        busy = threading.Thread(target=lambda: slow.append(srv.invoke("a", "?s=1").status))
        busy.start()  # ...but busy
        wait_until(lambda: metric(srv, BUSY) == 1, 10, "a's call to start")
        assert srv.invoke("c").status == 200  # room is made by evicting b, the only idle one
        busy.join(10)
        assert slow == [200]
        assert metric(srv, "faas_evictions_total", '{function_name="b"}') == 1
        assert 'faas_evictions_total{function_name="a"}' not in srv.request("GET", "/metrics").text
        assert srv.invoke("a").headers["X-Cold-Start"] == "false"
    finally:
        assert srv.stop() == 0


def test_budget_full_of_busy_sandboxes_is_503(tmp_path: Path) -> None:
    srv = serve_with(tmp_path, "prewarm = 0\nwarm_memory_budget_mb = 25\n")
    try:
        srv.deploy_ok("a", HOLDER)
        srv.deploy_ok("b", HOLDER)
        srv.invoke("a")
        statuses: list[int] = []
        busy = threading.Thread(target=lambda: statuses.append(srv.invoke("a", "?s=1").status))
        busy.start()
        wait_until(lambda: metric(srv, BUSY) == 1, 10, "a's call to start")
        refused = srv.invoke("b")
        assert refused.status == 503 and "no capacity" in refused.json()["error"]
        busy.join(10)
        assert statuses == [200]
    finally:
        assert srv.stop() == 0


def test_sandbox_that_died_while_idle_is_replaced(server: Server) -> None:
    server.deploy_ok("sleeper", TEST_FUNCTIONS / "sleeper.py")
    assert server.invoke("sleeper", "?s=0").status == 200
    # Kill this server's idle sandboxes from outside (only this server's: the
    # machine may run others); the next call must still succeed.
    assert server.proc is not None
    victims = [pid for pid in leaks.sandbox_pids_of(server.proc.pid) if _uid(pid) >= 200_000]
    assert victims, "no sandbox process found"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    # Dead and reaped (by the zygote, a subreaper), or, frozen between calls
    # (a frozen task acts on SIGKILL only once thawed), holding the SIGKILL.
    wait_until(
        lambda: all(procfs.killed(pid) for pid in victims),
        10,
        "the killed sandboxes to be dead or dying",
        detail=lambda: [pid for pid in victims if not procfs.killed(pid)],
    )
    resp = server.invoke("sleeper", "?s=0")
    assert resp.status == 200, resp.text


def _uid(pid: int) -> int:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return -1
