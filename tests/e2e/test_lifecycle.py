"""Sandbox lifetimes: keep-alive, redeploy, concurrency limits and the FIFO, shutdown."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests import leaks
from tests.helpers import EXAMPLES, TEST_FUNCTIONS, Response, Server, wait_until

TOKEN_FN = """\
import os

TOKEN = os.urandom(8).hex()


def handle(event, context):
    return {"token": TOKEN, "cold": context.cold_start}
"""


def instances(server: Server, name: str) -> int:
    resp = server.request("GET", f"/system/functions/{name}")
    assert resp.status == 200, resp.text
    return resp.json()["instances"]


def busy_sandboxes(server: Server) -> float:
    match = re.search(r'^faas_sandboxes\{state="busy"\} (\S+)$', server.request("GET", "/metrics").text, re.M)
    assert match, "faas_sandboxes not in /metrics"
    return float(match.group(1))


def ready(server: Server) -> bool:
    """Whether /readyz answers 200 (a draining server refuses or answers 503)."""
    try:
        return server.request("GET", "/readyz", timeout=5).status == 200
    except OSError:
        return False


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _cgroup_paths(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return f.read()
    except OSError:
        return ""


class Tracker:
    """leaks.snapshot/leftovers scoped to the servers this test starts: a developer's own
    `faas serve` or benchmark running meanwhile must not fail these tests."""

    def __init__(self) -> None:
        self.before = leaks.snapshot()
        self.server_pids: set[int] = set()
        self.zygote_pids: set[int] = set()

    def watch(self, srv: Server) -> Server:
        assert srv.proc is not None
        self.server_pids.add(srv.proc.pid)
        # The zygote is started before /readyz answers 200.
        for entry in os.listdir("/proc"):
            if (
                entry.isdigit()
                and _ppid(int(entry)) == srv.proc.pid
                and "sandbox.zygote" in _cmdline(int(entry))
            ):
                self.zygote_pids.add(int(entry))
        if not self.zygote_pids:
            srv.stop()
            raise AssertionError(f"no zygote found under the server:\n{srv.log()[-2000:]}")
        return srv

    def _ours(self, pid: int) -> bool:
        if pid in self.zygote_pids or pid in self.server_pids:
            return True
        cgroups = _cgroup_paths(pid)
        if any(f"/faas-{sp}/" in cgroups for sp in self.server_pids):
            return True
        ancestor = _ppid(pid)
        while ancestor > 1:
            if ancestor in self.server_pids or ancestor in self.zygote_pids:
                return True
            ancestor = _ppid(ancestor)
        return False

    def leftovers(self) -> dict[str, set[str]]:
        found = leaks.leftovers(self.before)
        names = {f"faas-{sp}" for sp in self.server_pids}
        scoped = {
            "cgroups": {c for c in found.get("cgroups", set()) if os.path.basename(c) in names},
            "processes": {p for p in found.get("processes", set()) if self._ours(int(p.split()[1]))},
            "mounts": found.get("mounts", set()),
        }
        return {k: v for k, v in scoped.items() if v}

    def sandbox_processes(self) -> set[str]:
        """Our processes in the sandbox uid range (not the zygote, which runs as root)."""
        return {
            p
            for p in self.leftovers().get("processes", set())
            if int(p.split()[3].rstrip(":")) >= leaks.SANDBOX_UID_MIN
        }


def sandbox_cgroups(server_pid: int) -> set[str]:
    """The sandbox cgroups (`sb-*`) under the server's `faas-<pid>`, in any hierarchy."""
    found: set[str] = set()
    for parent in leaks.snapshot()["cgroups"]:
        if os.path.basename(parent) != f"faas-{server_pid}":
            continue
        try:
            found |= {e.name for e in os.scandir(parent) if e.is_dir() and e.name.startswith("sb-")}
        except OSError:
            continue
    return found


def concurrent(calls: list[Callable[[], Response]], stagger_s: float = 0.0) -> list[tuple[Response, float]]:
    """Run the calls in threads, started together (or `stagger_s` apart); (response, seconds) each."""
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        barrier.wait()
        time.sleep(i * stagger_s)
        t0 = time.monotonic()
        try:
            resp = calls[i]()
        except BaseException as exc:  # surfaced by the assertion below
            results[i] = exc
            return
        results[i] = (resp, time.monotonic() - t0)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for r in results:
        assert isinstance(r, tuple), f"a call failed: {r!r}"
    return results


# ---------------------------------------------------------------- keep-alive


def test_keepalive_retires_idle_sandboxes(tmp_path: Path) -> None:
    tracker = Tracker()
    # No pre-warmed blanks: every sandbox cgroup below is the function's own.
    config = tmp_path / "faas.toml"
    config.write_text("prewarm = 0\n")
    srv = tracker.watch(
        Server(tmp_path / "data", extra_args=("--keepalive", "0.5", "--config", str(config))).start()
    )
    try:
        srv.deploy_ok("hello", EXAMPLES / "hello.py")
        first = srv.invoke("hello")
        assert first.status == 200 and first.headers["X-Cold-Start"] == "true"
        assert instances(srv, "hello") == 1
        assert len(sandbox_cgroups(srv.proc.pid)) == 1
        assert tracker.sandbox_processes(), "a warm sandbox should have a process in the sandbox uid range"

        wait_until(lambda: instances(srv, "hello") == 0, 5, "the idle sandbox to be retired")
        metrics = srv.request("GET", "/metrics").text
        assert 'gateway_service_count{function_name="hello"} 0.0' in metrics, metrics
        # Retired means destroyed: its processes and cgroup are gone, not just uncounted.
        wait_until(
            lambda: not tracker.sandbox_processes(),
            5,
            "the retired sandbox's processes to go",
            detail=tracker.sandbox_processes,
        )
        assert sandbox_cgroups(srv.proc.pid) == set()

        again = srv.invoke("hello")
        assert again.status == 200 and again.text == "Hello, world!"
        assert again.headers["X-Cold-Start"] == "true"
    finally:
        code = srv.stop()
    assert code == 0, srv.log()[-4000:]
    assert not tracker.leftovers()


# ---------------------------------------------------------------- redeploy


def test_redeploy_runs_a_new_sandbox_and_keeps_the_old_one_warm(server: Server) -> None:
    server.deploy_ok("token", TOKEN_FN)
    one = server.invoke("token")
    two = server.invoke("token")
    assert one.status == two.status == 200, (one.text, two.text)
    assert one.json()["cold"] is True and one.headers["X-Cold-Start"] == "true"
    assert two.json() == {"token": one.json()["token"], "cold": False}
    assert two.headers["X-Cold-Start"] == "false"
    assert instances(server, "token") == 1

    version = server.request("GET", "/system/functions/token").json()["version"]
    same = server.deploy("token", TOKEN_FN)  # identical: no new version, the sandbox stays
    assert same.status == 200 and same.json()["version"] == version and same.json()["changed"] is False
    assert server.invoke("token").json() == {"token": one.json()["token"], "cold": False}
    resp = server.deploy("token", TOKEN_FN, env={"ROUND": "2"})
    assert resp.status == 200 and resp.json()["version"] == version + 1, resp.text

    three = server.invoke("token")
    assert three.status == 200
    assert three.headers["X-Cold-Start"] == "true"
    assert three.json()["cold"] is True
    assert three.json()["token"] != one.json()["token"], "the old version's sandbox answered"
    # The old version's sandbox stays warm next to the new one (for a rollback), no more.
    assert instances(server, "token") == 2
    four = server.invoke("token")
    assert four.json() == {"token": three.json()["token"], "cold": False}
    old = server.invoke(f"token@{version}")
    assert old.json() == {"token": one.json()["token"], "cold": False}
    assert instances(server, "token") == 2


# ---------------------------------------------------------------- concurrency


def test_queue_full_is_429_with_retry_after(server: Server) -> None:
    server.deploy_ok("sleep-q", TEST_FUNCTIONS / "sleeper.py", max_instances=1, max_queue=1, timeout_s=5)
    results = concurrent([lambda: server.invoke("sleep-q", "?s=0.5")] * 3)
    statuses = sorted(r.status for r, _ in results)
    assert statuses == [200, 200, 429], [(r.status, r.text) for r, _ in results]
    rejected, elapsed = next((r, t) for r, t in results if r.status == 429)
    assert rejected.headers["Retry-After"], dict(rejected.headers)
    assert int(rejected.headers["Retry-After"]) >= 1
    assert rejected.headers["Content-Type"].startswith("application/json")
    err = rejected.json()
    assert err["error"] and err["call_id"] == rejected.headers["X-Call-Id"]
    # At once: before either call that got the sandbox or the queue's place (0.5 s of sleep each) is done.
    served_s = min(t for r, t in results if r.status == 200)
    assert elapsed < served_s, f"the 429 took {elapsed:.2f} s, a served call {served_s:.2f} s"
    assert instances(server, "sleep-q") == 1


def test_max_instances_runs_calls_in_parallel(server: Server) -> None:
    server.deploy_ok("sleep-c", TEST_FUNCTIONS / "sleeper.py", max_instances=2, timeout_s=5)
    results = concurrent([lambda: server.invoke("sleep-c", "?s=0.5")] * 4)
    assert [r.status for r, _ in results] == [200] * 4, [(r.status, r.text) for r, _ in results]
    # When each call slept (the sandboxes' clock is the host's): two at once, never three.
    sleeps = [(r.json()["began"], r.json()["ended"]) for r, _ in results]
    most_at_once = max(sum(began <= t < ended for began, ended in sleeps) for t, _ in sleeps)
    assert most_at_once == 2, sleeps
    cold = sorted(r.headers["X-Cold-Start"] for r, _ in results)
    assert cold == ["false", "false", "true", "true"], cold
    assert instances(server, "sleep-c") == 2


def test_timeout_covers_the_wait_for_a_sandbox(server: Server) -> None:
    server.deploy_ok("sleep-t", TEST_FUNCTIONS / "sleeper.py", max_instances=1, max_queue=10, timeout_s=1)
    warm = server.invoke("sleep-t", "?s=0")  # a cold start must not eat into the first call's second
    assert warm.status == 200, warm.text
    results = concurrent(
        [lambda: server.invoke("sleep-t", "?s=0.9"), lambda: server.invoke("sleep-t", "?s=0.9")],
        stagger_s=0.05,
    )
    (first, _), (second, second_s) = results
    assert first.status == 200, first.text
    assert second.status == 504, second.text
    assert "timed out after 1 s" in second.json()["error"]
    assert 0.85 <= second_s <= 1.5, second_s
    after = server.invoke("sleep-t", "?s=0")
    assert after.status == 200, after.text


# ---------------------------------------------------------------- shutdown


def test_sigterm_lets_the_call_in_flight_finish(tmp_path: Path) -> None:
    tracker = Tracker()
    srv = tracker.watch(Server(tmp_path / "data").start())
    try:
        srv.deploy_ok("sleeper", TEST_FUNCTIONS / "sleeper.py", timeout_s=5)
        outcome: list[Any] = []

        def call() -> None:
            try:
                outcome.append(srv.invoke("sleeper", "?s=1.5", timeout=10))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=call)
        thread.start()
        wait_until(lambda: busy_sandboxes(srv) == 1, 10, "the call to reach its sandbox")
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: not ready(srv), 10, "the server to stop being ready after SIGTERM")
        # A new call while draining is refused (connection refused or 503), never served.
        try:
            late = srv.invoke("sleeper", "?s=0", timeout=5)
        except OSError:
            pass
        else:
            assert late.status == 503, (late.status, late.text)
        thread.join(10)
        assert outcome, "the call in flight did not return"
        resp = outcome[0]
        assert isinstance(resp, Response), f"the call in flight failed: {resp!r}"
        assert resp.status == 200, resp.text
        assert resp.json()["slept"] == 1.5
        code = srv.proc.wait(10)
        assert code == 0, srv.log()[-4000:]
    finally:
        srv.stop()
    assert not tracker.leftovers()


def test_sigkill_then_restart_cleans_up(tmp_path: Path) -> None:
    tracker = Tracker()
    data = tmp_path / "data"
    srv = tracker.watch(Server(data).start())
    try:
        srv.deploy_ok("hello", EXAMPLES / "hello.py")
        assert srv.invoke("hello").status == 200
        assert tracker.sandbox_processes(), "a warm sandbox should have a process in the sandbox uid range"
        assert srv.proc is not None
        dead_pid = srv.proc.pid
        srv.proc.kill()
        srv.proc.wait(10)
    finally:
        srv.stop()
    # The zygote sees its control socket close, kills its sandboxes and exits.
    wait_until(
        lambda: not tracker.leftovers().get("processes"),
        5,
        "the zygote to kill its sandboxes",
        detail=tracker.leftovers,
    )
    assert not tracker.leftovers().get("mounts")

    again = tracker.watch(Server(data).start())
    try:
        # The dead server's cgroups are removed when the next one starts.
        stale = {c for c in leaks.snapshot()["cgroups"] if os.path.basename(c) == f"faas-{dead_pid}"}
        assert not stale, stale
        resp = again.invoke("hello")
        assert resp.status == 200 and resp.text == "Hello, world!"
        assert resp.headers["X-Cold-Start"] == "true"
    finally:
        code = again.stop()
    assert code == 0, again.log()[-4000:]
    assert not tracker.leftovers()
