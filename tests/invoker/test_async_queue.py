"""The SQLite asynchronous queue: durable acceptance (group commit), claims
on a clock of the test's, finishing, and what survives a reopen. The
contract both queues keep (the bound, cancelling, listing, expiry) is
tested on SQLite and NATS JetStream alike in tests/cluster/test_nats_queue.py."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

from invoker.async_model import (
    FAILED,
    SUCCEEDED,
    AsyncRequest,
    AsyncResult,
)
from invoker.async_queue_sqlite import SqliteAsyncQueue
from invoker.model import Invocation


def request(i: int, function: str = "f", callback: str | None = None, body: bytes = b"x") -> AsyncRequest:
    inv = Invocation(
        function=function, call_id=f"call-{i}", method="POST", path="/p", query={"a": "2"},
        headers=(("X-H", "1"), ("X-H", "2")), body=body, raw_query="a=1&a=2", received_at=0.0,
    )  # fmt: skip
    return AsyncRequest(inv, created_at=1000.0 + i, callback_url=callback)


def open_queue(tmp_path: Path, max_pending: int = 100, ttl: float = 3600) -> SqliteAsyncQueue:
    return SqliteAsyncQueue(str(tmp_path / "async.db"), max_pending, ttl)


async def test_accepted_calls_are_committed_together_and_survive_a_reopen(tmp_path: Path) -> None:
    queue = open_queue(tmp_path)
    await asyncio.gather(*(queue.enqueue(request(i, body=bytes([i]) * 1000)) for i in range(50)))
    # Durable once enqueue returned: another connection sees every one now.
    count = sqlite3.connect(tmp_path / "async.db").execute("SELECT COUNT(*) FROM calls").fetchone()
    assert count == (50,)
    await queue.aclose()
    reopened = open_queue(tmp_path)
    assert reopened.queued_by_function() == {"f": 50} and reopened.pending == 50
    (claimed,) = await reopened.claim("f", now=2000, limit=1)
    stored = claimed.request
    # All of the invocation comes back but when it arrived, which each attempt sets anew.
    assert claimed.attempt == 1 and (stored.created_at, stored.callback_url) == (1000.0, None)
    assert (
        dataclasses.replace(stored.invocation, received_at=0.0)
        == request(0, body=bytes([0]) * 1000).invocation
    )
    await reopened.aclose()


async def test_claims_are_per_function_oldest_first_and_not_before_due(tmp_path: Path) -> None:
    queue = open_queue(tmp_path)
    for i in range(3):
        await queue.enqueue(request(i, "f"))
    await queue.enqueue(request(9, "g"))
    first = await queue.claim("f", now=2000, limit=2)
    assert [c.request.call_id for c in first] == ["call-0", "call-1"]
    await queue.retry_at(
        "call-0", when=3000, error="attempt 1 answered 500", result=AsyncResult(500, (), b"")
    )
    assert [c.request.call_id for c in await queue.claim("f", now=2000, limit=5)] == ["call-2"]
    (retry,) = await queue.claim("f", now=3000, limit=5)
    assert (retry.request.call_id, retry.attempt) == ("call-0", 2)
    assert queue.queued_by_function() == {"g": 1}
    await queue.aclose()


async def test_an_attempt_that_did_not_count_leaves_attempts_as_they_were(tmp_path: Path) -> None:
    queue = open_queue(tmp_path)
    await queue.enqueue(request(1))
    await queue.claim("f", now=2000, limit=1)
    await queue.retry_at("call-1", when=2000, error="no sandbox free", result=None, counted=False)
    (again,) = await queue.claim("f", now=2000, limit=1)
    assert again.attempt == 1
    await queue.finish("call-1", FAILED, "too old", AsyncResult(504, (), b""), counted=False)
    call, _ = await queue.get("call-1")
    assert (call.status, call.attempts, call.error) == (FAILED, 0, "too old")
    await queue.aclose()


async def test_finish_keeps_the_result_and_makes_the_callback_pending(tmp_path: Path) -> None:
    queue = open_queue(tmp_path)
    await queue.enqueue(request(1, callback="http://127.0.0.1:9/cb"))
    await queue.enqueue(request(2))
    for claimed in await queue.claim("f", now=2000, limit=2):
        result = AsyncResult(201, (("Content-Type", "text/plain"),), b"made", 0.25)
        await queue.finish(claimed.request.call_id, SUCCEEDED, None, result)
    call, req = await queue.get("call-1", with_request=True)
    assert call.status == SUCCEEDED and call.attempts == 1 and call.callback_status == "pending"
    assert call.result == AsyncResult(201, (("Content-Type", "text/plain"),), b"made", 0.25)
    assert req is None  # the request is not kept once the call ended
    assert await queue.pending_callbacks() == ["call-1"]
    await queue.set_callback_status("call-1", "delivered")
    assert await queue.pending_callbacks() == []
    assert (await queue.get("call-2"))[0].callback_status is None
    await queue.aclose()


async def test_calls_running_when_the_queue_closed_are_found_interrupted(tmp_path: Path) -> None:
    queue = open_queue(tmp_path)
    await queue.enqueue(request(1))
    await queue.enqueue(request(2))
    await queue.claim("f", now=2000, limit=1)
    await queue.aclose()  # as if the server died with call-1 running
    reopened = open_queue(tmp_path)
    (interrupted,) = await reopened.interrupted()
    assert (interrupted.request.call_id, interrupted.attempt) == ("call-1", 1)
    assert reopened.pending == 2 and reopened.queued_by_function() == {"f": 1}
    await reopened.aclose()
