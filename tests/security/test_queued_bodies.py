"""Request bodies of calls to a busy function: a call that would be refused
is refused before its body is read, all bodies held together are bounded,
and their memory goes back once they are answered."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import TEST_FUNCTIONS, Server, server_with_config, wait_until
from tests.security.common import assert_healthy

MIB = 1024 * 1024
BUFFER_LIMIT = 100 * MIB


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = server_with_config(tmp_path_factory.mktemp("bodies"), f"max_buffered_bytes = {BUFFER_LIMIT}\n")
    server.start()
    yield server
    assert server.stop() == 0


def rss_kib(server: Server) -> int:
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def busy(server: Server, fn: str, seconds: float) -> threading.Thread:
    """A call that holds the function's one sandbox for `seconds`."""
    thread = threading.Thread(target=lambda: server.invoke(fn, f"?s={seconds}", timeout=60))
    thread.start()
    wait_until(lambda: b'busy"} 1' in server.request("GET", "/metrics").body, 20, "the sandbox to be busy")
    return thread


def test_a_call_to_a_full_function_is_429_before_its_body_is_read(srv: Server) -> None:
    srv.deploy_ok("full", TEST_FUNCTIONS / "sleeper.py", max_instances=1, max_queue=0)
    holder = busy(srv, "full", 3)
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
            # Headers promising 6 MiB and not a byte of it: a server that read
            # the body first would wait for it (408 after body_timeout_s).
            sock.sendall(
                b"POST /function/full HTTP/1.1\r\nHost: x\r\nContent-Length: 6291456\r\n"
                b"Connection: close\r\n\r\n"
            )
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 429"), answer[:200]
        assert b"concurrency limit" in answer
    finally:
        holder.join(30)
    assert_healthy(srv)


def test_bodies_held_by_waiting_calls_are_bounded_and_given_back(srv: Server) -> None:
    srv.deploy_ok("slow", TEST_FUNCTIONS / "sleeper.py", max_instances=1, max_queue=1000, timeout_s=60)
    srv.invoke("slow", "?s=0")
    before = rss_kib(srv)
    holder = busy(srv, "slow", 4)
    statuses: list[int] = []
    body = b"x" * (6 * MIB)

    def send() -> None:
        statuses.append(srv.invoke("slow", "?s=0", method="POST", body=body, timeout=120).status)

    senders = [threading.Thread(target=send) for _ in range(24)]
    for t in senders:
        t.start()
    for t in senders:
        t.join(120)
    holder.join(60)
    # 24 x 6 MiB waiting for one sandbox: only what fits in 100 MiB is held.
    assert sorted(set(statuses)) == [200, 503], statuses
    assert 1 <= statuses.count(200) <= BUFFER_LIMIT // (6 * MIB), statuses
    # Answered, their memory goes back to the system.
    wait_until(
        lambda: rss_kib(srv) < before + 24 * 1024,
        15,
        "the server's memory to come back down",
        detail=lambda: f"RSS {rss_kib(srv)} KiB, {before} KiB before",
    )
    assert_healthy(srv)
