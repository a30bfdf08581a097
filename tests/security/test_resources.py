"""Resource attacks (docs/SANDBOX.md): each is bounded by the sandbox's limits,
the call ends, nothing of the sandbox outlives it where it should not, and the
server and the other functions stay healthy. tests/e2e/test_limits.py holds
the plain cases (a sleeping timeout, one big allocation, exit, garbage)."""

from __future__ import annotations

import threading
import time

from tests.helpers import Server
from tests.security.common import (
    assert_healthy,
    deploy_hostile,
    disk_free_mib,
    pids_where,
    reset_server_peak,
    server_peak_mib,
    server_rss_mib,
    wait_until,
)

PIDS_MAX = 128  # the server's default pids_max


def _named(name: str) -> list[int]:
    return pids_where(lambda p: p["name"] == name)


def test_fork_bomb_is_bounded_and_cleaned_up(server: Server) -> None:
    fn = deploy_hostile(server, "forkbomb", timeout_s=2)
    seen: list[int] = []
    done = threading.Event()

    def count() -> None:
        while not done.is_set():
            seen.append(len(_named("hx-forkbomb")))
            time.sleep(0.05)

    sampler = threading.Thread(target=count)
    sampler.start()
    t0 = time.monotonic()
    try:
        resp = server.invoke(fn, timeout=30)
    finally:
        done.set()
        sampler.join()
    elapsed = time.monotonic() - t0
    print(f"fork bomb: {resp.status} after {elapsed:.2f} s, at most {max(seen)} processes seen")
    assert resp.status == 504, resp.text
    assert elapsed < 4, elapsed
    assert 10 <= max(seen) <= PIDS_MAX, seen  # it did bomb, and the pids limit held
    assert wait_until(lambda: not _named("hx-forkbomb"), 3), _named("hx-forkbomb")
    assert_healthy(server)


def test_memory_blowup_is_502_naming_the_limit(server: Server) -> None:
    fn = deploy_hostile(server, "memory", memory_mb=64)
    before = reset_server_peak(server)
    resp = server.invoke(fn)
    assert resp.status == 502, resp.text
    assert "memory limit of 64 MiB exceeded" in resp.json()["error"]
    # In a child: the OOM killer takes the child; the sandbox and the call live on.
    child = server.invoke(fn, "?where=child")
    assert child.status == 200, child.text
    assert child.json() == {"child_signal": 9}
    assert server_peak_mib(server) - before < 30
    assert_healthy(server)


def test_endless_loop_resisting_signals_is_killed(server: Server) -> None:
    fn = deploy_hostile(server, "spin", timeout_s=1)
    t0 = time.monotonic()
    resp = server.invoke(fn, "?children=3")
    elapsed = time.monotonic() - t0
    print(f"endless loop: {resp.status} after {elapsed:.2f} s")
    assert resp.status == 504, resp.text
    assert "timed out after 1 s" in resp.json()["error"]
    assert elapsed < 2, elapsed
    assert wait_until(lambda: not _named("hx-spin"), 2), _named("hx-spin")
    assert_healthy(server)


def test_filling_tmp_is_bounded(server: Server) -> None:
    fn = deploy_hostile(server, "tmpfill", memory_mb=64)
    free_before = {p: disk_free_mib(p) for p in (server.data_dir, "/")}
    resp = server.invoke(fn)
    print(f"filling /tmp: {resp.status} {resp.text}")
    if resp.status == 200:
        out = resp.json()
        assert out["error"] in ("No space left on device", "File too large"), out
        assert out["written_mb"] <= 64, out
    else:
        assert resp.status == 502, resp.text
        assert "memory limit of 64 MiB exceeded" in resp.json()["error"]
    for path, before in free_before.items():
        assert before - disk_free_mib(path) < 16, f"{path}: {before} -> {disk_free_mib(path)} MiB free"
    # A new sandbox of the same function starts with an empty /tmp.
    assert_healthy(server)


def _call_lines(server: Server, fn: str, call_id: str) -> list[str]:
    lines = server.request("GET", f"/system/logs?name={fn}&tail=5000").json()["lines"]
    prefix_len = len("2026-01-01T00:00:00.000Z ") + len(call_id) + 1
    return [line[prefix_len:] for line in lines if f" {call_id} " in line and "REPORT RequestId" not in line]


def _flood(server: Server, fn: str, query: str, refusal_ok: bool = False) -> tuple[list[str], float]:
    reset_server_peak(server)
    rss_before = server_rss_mib(server)
    resp = server.invoke(fn, query, timeout=60)
    if refusal_ok and resp.status == 502:
        # Output past what the runtime may send is refused (the frame breaks
        # the protocol, or the tampered runtime dies sending it).
        assert "sandbox" in resp.json()["error"], resp.text
    else:
        assert resp.status == 200, resp.text
        assert resp.text == "flooded"
    lines = _call_lines(server, fn, resp.headers["X-Call-Id"])
    growth = server_peak_mib(server) - rss_before
    size = sum(len(line.encode()) + 1 for line in lines)
    print(f"flood {query}: {len(lines)} log lines, {size} bytes kept, server peak RSS +{growth:.1f} MiB")
    return lines, growth


def test_stdout_flood_is_capped(server: Server) -> None:
    fn = deploy_hostile(server, "stdout", memory_mb=128)
    lines, growth = _flood(server, fn, "?mb=10")
    marker = [line for line in lines if "truncated" in line]
    assert len(marker) == 1, marker
    kept = sum(len(line.encode()) + 1 for line in lines if line not in marker)
    assert kept <= 64 * 1024, kept
    assert growth < 30, f"server RSS grew by {growth:.1f} MiB"
    assert_healthy(server)


def test_stdout_flood_cap_holds_when_the_function_tampers_with_it(server: Server) -> None:
    """The 64 KiB cap is applied inside the sandbox, by code the function can
    reach; the server must not take whatever the sandbox sends as logs."""
    fn = deploy_hostile(server, "stdout", memory_mb=256)
    lines, growth = _flood(server, fn, "?mb=16&tamper=1", refusal_ok=True)
    kept = sum(len(line.encode()) + 1 for line in lines)
    log_file = server.data_dir / "logs" / f"{fn}.log"
    on_disk = log_file.stat().st_size if log_file.exists() else 0
    print(f"log file on the host: {on_disk} bytes")
    problems = []
    if kept > 64 * 1024 + 200:
        problems.append(f"the server kept {kept} bytes of one call's output")
    if growth >= 30:
        problems.append(f"server peak RSS grew by {growth:.1f} MiB")
    if on_disk >= 1 << 20:
        problems.append(f"{on_disk} bytes of logs written to the host's disk for one call")
    assert not problems, problems
    assert_healthy(server)


def test_open_files_until_the_limit(server: Server) -> None:
    fn = deploy_hostile(server, "fds")
    first = server.invoke(fn)
    assert first.status == 200, first.text
    out = first.json()
    print(f"open files: {out}")
    assert out["error"] == "Too many open files"
    assert 1000 <= out["opened"] <= 1024, out
    assert out["limit"] == [1024, 1024]
    # Still holding every fd: the same sandbox answers the next call.
    again = server.invoke(fn)
    assert again.status == 200, again.text
    assert again.headers["X-Cold-Start"] == "false"
    assert again.json()["opened"] == 0 and again.json()["held"] == out["held"]
    assert_healthy(server)


def test_thread_sleeping_after_the_answer(server: Server) -> None:
    fn = deploy_hostile(server, "linger")
    first = server.invoke(fn)
    assert first.status == 200, first.text
    second = server.invoke(fn, timeout=10)
    assert second.status == 200, second.text
    assert second.headers["X-Cold-Start"] == "false"
    # The first call's thread still sleeps in the same sandbox; it did not block the call.
    assert second.json()["threads"] == first.json()["threads"] + 1
    assert_healthy(server)


def test_background_process_lives_until_the_sandbox_goes(server: Server) -> None:
    """A child forked by a call outlives the call: it lives on inside the
    (warm) sandbox, frozen with it between calls, and the next call of the
    function sees it. Deleting the function destroys the sandbox, and the
    child with it."""
    fn = deploy_hostile(server, "orphan")
    first = server.invoke(fn)
    assert first.status == 200, first.text
    out = first.json()
    uid = out["uid"]
    assert uid >= 200_000
    host_pids = pids_where(lambda p: p["uid"] == uid)
    assert len(host_pids) == 2, host_pids  # the sandbox's PID 1 and the child
    time.sleep(0.5)  # running, the child would write about 5 lines meanwhile
    second = server.invoke(fn, f"?check={out['child']}")
    assert second.status == 200, second.text
    assert second.headers["X-Cold-Start"] == "false"
    seen = second.json()
    print(f"background process: first call {out}, next call sees {seen}")
    assert seen["alive"] is True and seen["comm"] == "hx-orphan"
    # Frozen between the calls: at most the line it writes as the next call thaws it.
    assert seen["marker_lines"] - out["marker_lines"] <= 1, (out, seen)
    assert server.request("DELETE", f"/system/functions/{fn}").status in (200, 204)
    assert wait_until(lambda: not pids_where(lambda p: p["uid"] == uid), 3), pids_where(
        lambda p: p["uid"] == uid
    )
    assert not _named("hx-orphan")
    assert_healthy(server)
