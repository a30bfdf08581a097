"""Protocol attacks: the function writes to its own channel (fd 3). Each is a
502 (or a 504 for silence), never a forged answer, never harm to the server;
the function's next call gets a fresh sandbox and works.
tests/e2e/test_limits.py covers a 4 GiB header followed by junk."""

from __future__ import annotations

import socket
import time

import pytest

from tests.helpers import Server
from tests.security.common import (
    assert_healthy,
    deploy_hostile,
    invoke_status_only,
    reset_server_peak,
    server_peak_mib,
)


@pytest.fixture
def fresh_fn(server: Server) -> str:
    """hostile_frames, redeployed for each test: no warm sandbox holds a
    stale frame of an earlier test (a result forged with the call's own id
    leaves the genuine one unread in the channel)."""
    return deploy_hostile(server, "frames", timeout_s=2, memory_mb=256)


def _recovers(server: Server, fn: str, stale: bool = False) -> None:
    """The function's next call works; with `stale`, one 502 first is the
    function's own doing (the genuine result it left in its channel)."""
    ok = server.invoke(fn, "?kind=ok", timeout=10)
    if stale and ok.status == 502:
        assert "protocol" in ok.json()["error"], ok.text
        ok = server.invoke(fn, "?kind=ok", timeout=10)
    assert ok.status == 200 and ok.text == "ok", (ok.status, ok.text)
    assert_healthy(server)


def _status_line(server: Server, fn: str, query: str) -> bytes:
    """The raw first line of the server's answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(f"GET /function/{fn}{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0]


@pytest.mark.parametrize(
    ("kind", "status", "error"),
    [
        ("header_4gib", 502, "protocol"),
        ("not_a_map", 502, "protocol"),
        ("no_type", 502, "protocol"),
        ("unexpected_type", 502, "protocol"),
        ("forged_other_id", 502, "protocol"),
        ("bad_status", 502, "protocol"),
        ("header_control", 502, "protocol"),
        ("too_many_headers", 502, "protocol"),
        ("nothing_then_exit", 502, "exited or crashed"),
        ("half_frame_then_exit", 502, "exited or crashed"),
        ("close_then_sleep", 502, "exited or crashed"),
        ("header_then_silence", 504, "timed out after 2 s"),
    ],
)
def test_broken_channel(server: Server, fresh_fn: str, kind: str, status: int, error: str) -> None:
    t0 = time.monotonic()
    resp = server.invoke(fresh_fn, f"?kind={kind}", timeout=30)
    elapsed = time.monotonic() - t0
    print(f"{kind}: {resp.status} {resp.text} in {elapsed:.2f} s")
    assert b"forged" not in resp.body and b"genuine" not in resp.body
    assert resp.status == status, resp.text
    assert error in resp.json()["error"]
    assert elapsed < 3, elapsed
    _recovers(server, fresh_fn)


def test_status_out_of_range_is_not_served(server: Server, fresh_fn: str) -> None:
    """A result with the call's own id and status 99999: the runtime itself
    never sends that (statusCode must be 200-599), so the server must not
    pass it on as an HTTP status line."""
    line = _status_line(server, fresh_fn, "?kind=status_out_of_range")
    print(f"status 99999: the server answered {line!r}")
    assert line.startswith(b"HTTP/1.1 502 "), line
    _recovers(server, fresh_fn, stale=True)


@pytest.mark.parametrize("status", [100, 101, 103, 199, 600])
def test_non_final_status_is_a_protocol_error(server: Server, fresh_fn: str, status: int) -> None:
    """A forged result with the call's own id and an interim (1xx) or
    out-of-range status: sent on, a 101 would look like a protocol switch
    and a 1xx leaves the client waiting for the real answer."""
    resp = server.invoke(fresh_fn, f"?kind=status&status={status}", timeout=10)
    assert resp.status == 502, (resp.status, resp.text)
    assert "protocol" in resp.json()["error"], resp.text
    _recovers(server, fresh_fn, stale=True)


def test_numeric_body_does_not_make_the_server_allocate(server: Server, fresh_fn: str) -> None:
    """A result whose body is the number N: the server must refuse it, not
    build N bytes (256 MiB here) from a 100-byte frame."""
    before = reset_server_peak(server)
    status, head, length = invoke_status_only(server, fresh_fn, "?kind=body_is_a_number")
    growth = server_peak_mib(server) - before
    print(f"numeric body: {status} {head[:40]!r}, Content-Length {length}, server peak RSS +{growth:.1f} MiB")
    problems = []
    if status != 502:
        problems.append(f"answered {status} with a body of {length} bytes")
    if growth >= 30:
        problems.append(f"server peak RSS grew by {growth:.1f} MiB")
    assert not problems, problems
    _recovers(server, fresh_fn, stale=True)


def test_small_frame_cannot_blow_up_the_server(server: Server, fresh_fn: str) -> None:
    """A 4 MiB frame of 4 Mi empty msgpack maps decodes to 4 Mi Python dicts
    (~300 MiB) before anything checks its shape: the cost to the server of a
    frame must stay near the frame's size."""
    before = reset_server_peak(server)
    t0 = time.monotonic()
    resp = server.invoke(fresh_fn, "?kind=amplifying_frame", timeout=30)
    elapsed = time.monotonic() - t0
    growth = server_peak_mib(server) - before
    print(f"amplifying frame: {resp.status} in {elapsed:.2f} s, server peak RSS +{growth:.1f} MiB")
    assert resp.status == 502, resp.text
    assert growth < 64, f"a 4 MiB frame cost the server {growth:.1f} MiB"
    _recovers(server, fresh_fn)


def test_two_processes_answering_the_same_call(server: Server, fresh_fn: str) -> None:
    """fork() in the handler with both processes returning: two results for
    one call id. The first is served; the second must not be served to the
    next call, which fails (502) or works, and the call after it works."""
    first = server.invoke(fresh_fn, "?kind=answer_from_two_processes", timeout=10)
    assert first.status == 200 and first.text == "genuine", first.text
    second = server.invoke(fresh_fn, "?kind=ok", timeout=10)
    print(f"after two answers: next call {second.status} {second.text}")
    assert second.status in (200, 502), second.text
    if second.status == 200:
        assert second.text == "ok"
    else:
        assert "protocol" in second.json()["error"]
    # A 200 means the duplicate was not written yet when the second call was
    # answered: it lands in the channel later, and the next call reads it (502).
    _recovers(server, fresh_fn, stale=second.status == 200)
