"""The asynchronous queue in NATS JetStream, on a real nats-server: the
AsyncQueue contract (the same tests run on SQLite), two invokers sharing
the queue, redelivery of a call whose invoker stopped, and the ack wait
extended while a call runs."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from invoker.async_model import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    AsyncQuery,
    AsyncRequest,
    AsyncResult,
)
from invoker.async_queue import AsyncQueue, Claimed, QueueFull
from invoker.async_queue_nats import NatsAsyncQueue
from invoker.async_queue_sqlite import SqliteAsyncQueue
from invoker.errors import Conflict, NotFound, PayloadTooLarge, Unavailable
from invoker.model import Invocation
from tests.services import nats_server

_namespaces = itertools.count()
OpenQueue = Callable[..., Awaitable[AsyncQueue]]


def request(i: int, function: str = "f", callback: str | None = None) -> AsyncRequest:
    inv = Invocation(
        function=function, call_id=f"call-{i}", method="POST", path="/p", query={"a": "2"},
        headers=(("X-H", "1"), ("X-H", "2")), body=bytes([i % 256]) * 100, raw_query="a=1&a=2", received_at=0.0,
    )  # fmt: skip
    return AsyncRequest(inv, created_at=time.time(), callback_url=callback)


async def claim_within(queue: AsyncQueue, function: str, limit: int, timeout_s: float) -> list[Claimed]:
    """What `queue` claims of `function`, waiting up to `timeout_s` for any."""
    deadline = time.monotonic() + timeout_s
    while True:
        claimed = await queue.claim(function, time.time(), limit)
        if claimed or time.monotonic() > deadline:
            return claimed
        await asyncio.sleep(0.05)


@pytest.fixture(params=["sqlite", "nats"])
async def open_queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenQueue]:
    """Opens queues of one backend (each NATS test in a namespace of its own), closed after the test."""
    opened: list[AsyncQueue] = []
    namespace = f"t{next(_namespaces)}"

    async def open_one(max_pending: int = 100, ttl: float = 3600, ack_wait_s: float = 30.0) -> AsyncQueue:
        queue: AsyncQueue
        if request.param == "sqlite":
            queue = SqliteAsyncQueue(str(tmp_path / "async.db"), max_pending, ttl)
        else:
            url = request.getfixturevalue("nats_url")
            queue = await NatsAsyncQueue.open(url, max_pending, ttl, ack_wait_s, namespace=namespace)
        opened.append(queue)
        return queue

    open_one.backend = request.param  # type: ignore[attr-defined]
    yield open_one
    for queue in reversed(opened):
        await queue.aclose()


async def test_a_call_is_claimed_once_with_its_whole_request_and_finished(open_queue: OpenQueue) -> None:
    queue = await open_queue()
    for i in range(3):
        await queue.enqueue(request(i, callback="http://127.0.0.1:9/cb" if i == 0 else None))
    await queue.enqueue(request(9, "g"))
    assert queue.queued_by_function() == {"f": 3, "g": 1} and queue.pending == 4
    claimed = await claim_within(queue, "f", 2, 5)
    assert [c.request.call_id for c in claimed] == ["call-0", "call-1"]
    assert [c.attempt for c in claimed] == [1, 1]
    sent = request(0, callback="http://127.0.0.1:9/cb")
    got = claimed[0].request
    assert (got.invocation.body, got.invocation.headers, got.callback_url) == (
        sent.invocation.body, sent.invocation.headers, sent.callback_url,
    )  # fmt: skip
    assert (await queue.get("call-0"))[0].status == RUNNING
    result = AsyncResult(201, (("Content-Type", "text/plain"),), b"made", 0.25)
    await queue.finish("call-0", SUCCEEDED, None, result)
    call, _ = await queue.get("call-0")
    assert (call.status, call.attempts, call.result, call.callback_status) == (
        SUCCEEDED,
        1,
        result,
        "pending",
    )
    assert (await queue.get("call-0", with_request=True))[1] is None  # not kept once the call ended
    queued, kept = await queue.get("call-2", with_request=True)
    assert queued.status == QUEUED and kept is not None and kept.invocation.body == request(2).invocation.body
    assert await queue.pending_callbacks() == ["call-0"]
    await queue.set_callback_status("call-0", "delivered")
    assert await queue.pending_callbacks() == []
    assert queue.pending == 3 and queue.queued_by_function() == {"f": 1, "g": 1}


async def test_the_bound_refuses_past_max_pending_and_frees_as_calls_end(open_queue: OpenQueue) -> None:
    queue = await open_queue(max_pending=2)
    await queue.enqueue(request(1))
    await queue.enqueue(request(2))
    with pytest.raises(QueueFull, match="max_async_queue"):
        await queue.enqueue(request(3))
    (claimed, _) = await claim_within(queue, "f", 2, 5)
    with pytest.raises(QueueFull):  # running calls count too
        await queue.enqueue(request(3))
    await queue.finish(claimed.request.call_id, SUCCEEDED, None, AsyncResult(200, (), b"ok"))
    await queue.enqueue(request(3))


async def test_a_retry_waits_its_time_and_counts_unless_told_not_to(open_queue: OpenQueue) -> None:
    queue = await open_queue()
    await queue.enqueue(request(1))
    await queue.enqueue(request(2))
    first, second = await claim_within(queue, "f", 2, 5)
    await queue.retry_at("call-1", time.time() + 1.0, "attempt 1 answered 500", AsyncResult(500, (), b""))
    await queue.retry_at("call-2", time.time(), "no sandbox free", None, counted=False)
    (again,) = await claim_within(queue, "f", 5, 5)
    assert (again.request.call_id, again.attempt) == ("call-2", 1)  # call-1 is not due yet
    waiting, _ = await queue.get("call-1")
    assert waiting.status == QUEUED and waiting.next_attempt_at is not None and waiting.error
    (retry,) = await claim_within(queue, "f", 5, 5)
    assert (retry.request.call_id, retry.attempt) == ("call-1", 2)
    await queue.finish("call-2", FAILED, "too old", AsyncResult(504, (), b""), counted=False)
    call, _ = await queue.get("call-2")
    assert (call.status, call.attempts, call.error) == (FAILED, 0, "too old")


async def test_only_a_queued_call_can_be_cancelled_and_it_never_runs(open_queue: OpenQueue) -> None:
    queue = await open_queue()
    await queue.enqueue(request(1))
    await queue.enqueue(request(2))
    cancelled = await queue.cancel("call-2")
    assert cancelled.status == CANCELLED and queue.queued_by_function() == {"f": 1}
    assert [c.request.call_id for c in await claim_within(queue, "f", 5, 5)] == ["call-1"]
    with pytest.raises(Conflict, match="running"):
        await queue.cancel("call-1")
    with pytest.raises(Conflict, match="cancelled"):
        await queue.cancel("call-2")
    with pytest.raises(NotFound):
        await queue.cancel("nope")
    assert await queue.claim("f", time.time(), 5) == []


async def test_listing_pages_by_cursor_and_filters(open_queue: OpenQueue) -> None:
    queue = await open_queue()
    for i in range(5):
        await queue.enqueue(request(i, "f" if i % 2 == 0 else "g"))
    await claim_within(queue, "f", 1, 5)
    page = await queue.list(AsyncQuery(function="f"), after=0, limit=2)
    assert [call.call_id for _, call in page] == ["call-0", "call-2"]
    rest = await queue.list(AsyncQuery(function="f"), after=page[-1][0], limit=2)
    assert [call.call_id for _, call in rest] == ["call-4"]
    running = await queue.list(AsyncQuery(status=RUNNING), after=0, limit=10)
    assert [(call.call_id, call.status) for _, call in running] == [("call-0", RUNNING)]
    queued = await queue.list(AsyncQuery(function="g", status=QUEUED), after=0, limit=10)
    assert [call.call_id for _, call in queued] == ["call-1", "call-3"]


async def test_finished_calls_expire_after_the_ttl_and_are_purged(open_queue: OpenQueue) -> None:
    queue = await open_queue(ttl=60)
    await queue.enqueue(request(1))
    await queue.enqueue(request(2))
    await claim_within(queue, "f", 1, 5)
    await queue.finish("call-1", SUCCEEDED, None, AsyncResult(200, (), b""))
    assert await queue.purge(finished_before=time.time() - 60) == 0
    assert await queue.purge(finished_before=time.time() + 1) == 1
    with pytest.raises(NotFound):
        await queue.get("call-1")
    assert (await queue.get("call-2"))[0].status == QUEUED  # never purged while queued
    assert [call.call_id for _, call in await queue.list(AsyncQuery(), 0, 10)] == ["call-2"]


# -- NATS only: invokers sharing the queue ------------------------------------


@pytest.fixture
def nats_queues(nats_url: str) -> Callable[..., Awaitable[list[NatsAsyncQueue]]]:
    namespace = f"two{next(_namespaces)}"

    async def open_two(ack_wait_s: float) -> list[NatsAsyncQueue]:
        return [await NatsAsyncQueue.open(nats_url, 100, 3600, ack_wait_s, namespace) for _ in range(2)]

    return open_two


async def test_two_invokers_claim_disjoint_calls_and_see_each_others_states(
    nats_queues: Callable[..., Awaitable[list[NatsAsyncQueue]]],
) -> None:
    a, b = await nats_queues(30.0)
    try:
        await asyncio.gather(*(a.enqueue(request(i)) for i in range(20)))
        claims = await asyncio.gather(*(q.claim("f", time.time(), 8) for q in (a, b, a, b)))
        ids = [c.request.call_id for batch in claims for c in batch]
        assert len(ids) == len(set(ids)) == 20 and all(c.attempt == 1 for b_ in claims for c in b_)
        for batch, queue in zip(claims, (a, b, a, b), strict=True):
            for c in batch:
                await queue.finish(c.request.call_id, SUCCEEDED, None, AsyncResult(200, (), b""))
        # Each sees what the other finished, within the watch's delay.
        deadline = time.monotonic() + 5
        while (a.pending, b.pending) != (0, 0) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert (a.pending, b.pending) == (0, 0)
        assert (await b.get("call-0"))[0].status == SUCCEEDED
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_call_whose_invoker_stopped_is_redelivered_to_another_with_its_attempt_counted(
    nats_queues: Callable[..., Awaitable[list[NatsAsyncQueue]]],
) -> None:
    a, b = await nats_queues(1.0)
    try:
        await a.enqueue(request(1))
        (claimed,) = await claim_within(a, "f", 1, 5)
        await a._held.stop()  # as if `a` died: no ack, no in_progress any more
        assert await b.claim("f", time.time(), 1) == []  # not before the ack wait
        t0 = time.monotonic()
        assert "f" in await wait_for_queued(b, "f")  # b sees a stale claim to pick up
        (again,) = await claim_within(b, "f", 1, 5)
        assert time.monotonic() - t0 < 5
        assert (again.request.call_id, again.attempt) == ("call-1", 2)
        await b.finish("call-1", SUCCEEDED, None, AsyncResult(200, (), b""))
        assert (await a.get("call-1"))[0].attempts == 2
    finally:
        await a.aclose()
        await b.aclose()


async def wait_for_queued(queue: AsyncQueue, function: str) -> dict[str, int]:
    deadline = time.monotonic() + 5
    while function not in queue.queued_by_function() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return queue.queued_by_function()


async def test_in_progress_keeps_a_long_call_from_being_redelivered(
    nats_queues: Callable[..., Awaitable[list[NatsAsyncQueue]]],
) -> None:
    a, b = await nats_queues(1.5)
    try:
        await a.enqueue(request(1))
        await claim_within(a, "f", 1, 5)
        # Three ack waits pass while the call runs on `a`: b never gets it.
        stolen = await claim_within(b, "f", 1, 4.5)
        assert stolen == []
        await a.finish("call-1", SUCCEEDED, None, AsyncResult(200, (), b""))
        assert (await b.get("call-1"))[0].attempts == 1
    finally:
        await a.aclose()
        await b.aclose()


async def test_an_unreachable_nats_is_unavailable_not_a_hang() -> None:
    from tests.helpers import free_port

    t0 = time.monotonic()
    with pytest.raises(Unavailable, match="NATS"):
        await NatsAsyncQueue.open(f"nats://127.0.0.1:{free_port()}", 10, 60)
    assert time.monotonic() - t0 < 10


async def test_a_call_larger_than_a_nats_message_is_refused_as_too_large(nats_url: str) -> None:
    queue = await NatsAsyncQueue.open(nats_url, 10, 60, namespace=f"big{next(_namespaces)}")
    try:
        big = request(1)
        big = AsyncRequest(replace(big.invocation, body=b"x" * 2_000_000), big.created_at)
        with pytest.raises(PayloadTooLarge, match="max_payload"):
            await queue.enqueue(big)
        assert queue.pending == 0
    finally:
        await queue.aclose()


async def test_a_queue_rides_out_a_nats_restart_and_answers_unavailable_meanwhile(tmp_path: Path) -> None:
    from tests.helpers import free_port

    port, store = free_port(), str(tmp_path / "nats")
    os.makedirs(store)
    with nats_server(port, store) as url:
        a = await NatsAsyncQueue.open(url, 100, 3600, 30.0, namespace="restart")
        b = await NatsAsyncQueue.open(url, 100, 3600, 30.0, namespace="restart")
        await a.enqueue(request(1))
    try:
        t0 = time.monotonic()
        with pytest.raises(Unavailable, match="NATS"):
            await a.enqueue(request(2))
        assert time.monotonic() - t0 < 15  # a deadline, not a hang
        with nats_server(port, store):
            # Reconnected by itself; what was stored before is there, and b's
            # view follows a's writes again.
            deadline = time.monotonic() + 15
            while True:
                try:
                    await a.enqueue(request(3))
                    break
                except Unavailable:
                    assert time.monotonic() < deadline, "no reconnection within 15 s"
                    await asyncio.sleep(0.2)
            assert [c.request.call_id for c in await claim_within(b, "f", 5, 5)] == ["call-1", "call-3"]
            deadline = time.monotonic() + 10
            while a.queued_by_function() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert a.queued_by_function() == {} and a.pending == 2
    finally:
        await b.aclose()
        await a.aclose()
