"""Asynchronous calls in process, on the fake sandbox factory: they run,
are retried with backoff for 5xx and timeouts (each attempt metered with its
number), dropped when too old, cancelled while queued, recovered after the
server's end, and share max_instances with synchronous calls without
starving them."""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import http_status
from invoker import async_worker
from invoker.async_model import CANCELLED, FAILED, RUNNING, SUCCEEDED, AsyncCall, AsyncRequest
from invoker.async_queue_sqlite import SqliteAsyncQueue
from invoker.config import InvokerConfig
from invoker.errors import CallTimedOut, Conflict, NotFound, TooManyRequests
from invoker.invoker import Invoker
from invoker.metrics import Metrics
from invoker.model import Invocation, UsageQuery
from sandbox.protocol import Call, Result

from .fakes import FakeFactory, FakeSandbox

HANDLER = base64.b64encode(b"def handle(event, context):\n    return 'hi'\n").decode()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries after 10, 20, 40 ms rather than 1, 2, 4 s: the order of
    things is what is tested here (the e2e tests keep the real delays)."""
    monkeypatch.setattr(async_worker, "FIRST_BACKOFF_S", 0.01)
    monkeypatch.setattr(async_worker, "REQUEUE_DELAY_S", 0.01)


def make_invoker(tmp_path: Path, factory: FakeFactory, **settings: Any) -> Invoker:
    config = InvokerConfig(data_dir=str(tmp_path), **settings)
    return Invoker(config, Metrics(), factory=factory, http_status=http_status)


@pytest.fixture
def factory() -> FakeFactory:
    return FakeFactory()


@pytest.fixture
async def invoker(tmp_path: Path, factory: FakeFactory) -> AsyncIterator[Invoker]:
    async with make_invoker(tmp_path, factory) as inv:
        yield inv


def deploy_body(name: str = "f", **settings: Any) -> dict[str, Any]:
    return {"name": name, "files": {"handler.py": HANDLER}, **settings}


def invocation(call_id: str, name: str = "f", body: bytes = b"") -> Invocation:
    return Invocation(
        function=name, call_id=call_id, method="POST", path="/", query={}, headers=(), body=body
    )


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20) -> None:
    """Poll an asynchronous condition until it holds, or fail saying what did not happen."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}")
        await asyncio.sleep(0.01)


async def ended(invoker: Invoker, call_id: str) -> AsyncCall:
    async def done() -> bool:
        return (await invoker.async_call(call_id)).status in (SUCCEEDED, FAILED, CANCELLED)

    await eventually(done, f"call {call_id} to end")
    return await invoker.async_call(call_id)


def answering(statuses: list[int]) -> Callable[[FakeSandbox, Call], Awaitable[Result]]:
    """A behaviour answering each call with the next status of `statuses` (then 200)."""
    left = collections.deque(statuses)

    async def behaviour(sandbox: FakeSandbox, call: Call) -> Result:
        status = left.popleft() if left else 200
        return Result(call.id, status, (("Content-Type", "text/plain"),), f"answer {status}".encode())

    return behaviour


async def attempts_metered(invoker: Invoker, call_id: str) -> list[tuple[int, str]]:
    records = await invoker.usage_records(UsageQuery(function="f"), 0, 100)
    return [(r.attempt, r.status) for _, r in records if r.call_id == call_id]


async def test_a_queued_call_runs_and_keeps_its_result(invoker: Invoker) -> None:
    await invoker.deploy(deploy_body())
    call_id = await invoker.enqueue_async(invocation("a-1", body=b"payload"))
    call = await ended(invoker, call_id)
    assert (call.status, call.attempts, call.error) == (SUCCEEDED, 1, None)
    assert call.result is not None and call.result.status == 200 and call.result.body == b"hello from fake-1"
    assert await attempts_metered(invoker, call_id) == [(1, "ok")]


async def test_5xx_is_retried_with_each_attempt_metered(invoker: Invoker, factory: FakeFactory) -> None:
    factory.behaviour = answering([500, 503])
    await invoker.deploy(deploy_body(async_retries=2))
    call = await ended(invoker, await invoker.enqueue_async(invocation("a-1")))
    assert (call.status, call.attempts) == (SUCCEEDED, 3)
    assert await attempts_metered(invoker, "a-1") == [(1, "ok"), (2, "ok"), (3, "ok")]


async def test_retries_stop_at_async_retries_and_4xx_is_never_retried(
    invoker: Invoker, factory: FakeFactory
) -> None:
    factory.behaviour = answering([502, 502, 502, 404])
    await invoker.deploy(deploy_body(async_retries=1))
    failed = await ended(invoker, await invoker.enqueue_async(invocation("a-1")))
    assert (failed.status, failed.attempts) == (FAILED, 2)
    assert failed.result is not None and failed.result.status == 502
    assert "no retries left" in (failed.error or "")
    factory.behaviour = answering([404])
    client_error = await ended(invoker, await invoker.enqueue_async(invocation("a-2")))
    assert (client_error.status, client_error.attempts, client_error.result.status) == (SUCCEEDED, 1, 404)  # type: ignore[union-attr]


async def test_a_timeout_is_retried_and_recorded_as_one(invoker: Invoker, factory: FakeFactory) -> None:
    failures = collections.deque([CallTimedOut("timed out after 1 s")])

    async def behaviour(sandbox: FakeSandbox, call: Call) -> Result:
        if failures:
            raise failures.popleft()
        return Result(call.id, 200, (), b"done")

    factory.behaviour = behaviour
    await invoker.deploy(deploy_body())
    call = await ended(invoker, await invoker.enqueue_async(invocation("a-1")))
    assert (call.status, call.attempts) == (SUCCEEDED, 2)
    assert await attempts_metered(invoker, "a-1") == [(1, "timeout"), (2, "ok")]


async def test_no_retry_that_would_pass_the_events_max_age(
    invoker: Invoker, factory: FakeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory.behaviour = answering([500])
    monkeypatch.setattr(async_worker, "FIRST_BACKOFF_S", 10.0)  # a retry would come past the 1 s allowed
    await invoker.deploy(deploy_body(async_retries=5, max_event_age_s=1))
    call = await ended(invoker, await invoker.enqueue_async(invocation("a-1")))
    assert (call.status, call.attempts) == (FAILED, 1)
    assert "max_event_age_s" in (call.error or "")


async def test_a_call_older_than_max_event_age_is_dropped_without_running(
    tmp_path: Path, factory: FakeFactory
) -> None:
    queue = SqliteAsyncQueue(str(tmp_path / "async.db"), 10, 3600)
    old = time.time() - 120
    await queue.enqueue(AsyncRequest(invocation("old-1"), created_at=old))
    await queue.aclose()
    async with make_invoker(tmp_path, factory, max_event_age_s=60) as invoker:
        await invoker.deploy(deploy_body())
        call = await ended(invoker, "old-1")
    assert (call.status, call.attempts) == (FAILED, 0)
    assert "max_event_age_s" in (call.error or "") and call.result is not None and call.result.status == 504
    assert factory.made == []


async def test_cancel_a_queued_call_but_not_a_running_one(invoker: Invoker, factory: FakeFactory) -> None:
    gate = factory.gate = asyncio.Event()
    await invoker.deploy(deploy_body(max_instances=1))
    await invoker.enqueue_async(invocation("a-1"))
    await invoker.enqueue_async(invocation("a-2"))

    async def first_running() -> bool:
        return (await invoker.async_call("a-1")).status == RUNNING

    await eventually(first_running, "the first call to run")
    assert (await invoker.cancel_async("a-2")).status == CANCELLED
    with pytest.raises(Conflict):
        await invoker.cancel_async("a-1")
    gate.set()
    assert (await ended(invoker, "a-1")).status == SUCCEEDED
    assert (await invoker.async_call("a-2")).status == CANCELLED
    assert len(factory.made) == 1 and factory.made[0].calls == 1


async def test_unknown_function_and_full_queue_are_refused_up_front(
    tmp_path: Path, factory: FakeFactory
) -> None:
    factory.gate = asyncio.Event()
    async with make_invoker(tmp_path, factory, max_async_queue=2) as invoker:
        with pytest.raises(NotFound):
            await invoker.enqueue_async(invocation("x", name="nope"))
        await invoker.deploy(deploy_body())
        await invoker.enqueue_async(invocation("a-1"))
        await invoker.enqueue_async(invocation("a-2"))
        with pytest.raises(TooManyRequests, match="max_async_queue"):
            await invoker.enqueue_async(invocation("a-3"))
        factory.gate.set()


async def test_an_interrupted_attempt_counts_and_is_retried_only_as_a_retry(
    tmp_path: Path, factory: FakeFactory
) -> None:
    """The server died during attempt 1 of two calls: the one with retries
    runs again as attempt 2; the one without fails, never run twice."""
    async with make_invoker(tmp_path, factory) as invoker:
        await invoker.deploy(deploy_body("f", async_retries=1))
        await invoker.deploy(deploy_body("g", async_retries=0))
    queue = SqliteAsyncQueue(str(tmp_path / "async.db"), 10, 3600)
    for call_id, name in (("a-f", "f"), ("a-g", "g")):
        await queue.enqueue(AsyncRequest(invocation(call_id, name), created_at=time.time()))
        await queue.claim(name, time.time(), 1)
    await queue.aclose()  # both running: the server "dies" here
    async with make_invoker(tmp_path, factory) as invoker:
        retried, failed = await ended(invoker, "a-f"), await ended(invoker, "a-g")
    assert (retried.status, retried.attempts) == (SUCCEEDED, 2)
    assert (failed.status, failed.attempts) == (FAILED, 1)
    assert failed.result is not None and failed.result.status == 502
    assert "server stopped during attempt 1" in json.loads(failed.result.body)["error"]
    assert sum(s.calls for s in factory.made) == 1


async def test_a_sync_call_is_not_starved_by_a_flood_of_async_calls(
    invoker: Invoker, factory: FakeFactory
) -> None:
    """max_instances=3: async calls hold at most 2 sandboxes, so a sync call
    gets the third at once while 200 async calls are queued."""
    release = asyncio.Event()

    async def behaviour(sandbox: FakeSandbox, call: Call) -> Result:
        if call.id.startswith("async-"):
            await release.wait()
        return Result(call.id, 200, (), call.id.encode())

    factory.behaviour = behaviour
    await invoker.deploy(deploy_body(max_instances=3))
    for i in range(200):
        await invoker.enqueue_async(invocation(f"async-{i}"))
    await eventually(_async_true(lambda: len(factory.in_flight) == 2), "two async calls to run")
    answer = await asyncio.wait_for(invoker.invoke(invocation("sync-1")), 10)
    assert answer.body == b"sync-1"
    assert len(factory.in_flight) == 2  # the async calls were neither stopped nor joined by a third
    release.set()
    await ended(invoker, "async-199")


async def test_with_one_instance_a_sync_call_waits_for_one_async_call_at_most(
    invoker: Invoker, factory: FakeFactory
) -> None:
    releases: dict[str, asyncio.Event] = collections.defaultdict(asyncio.Event)
    order: list[str] = []

    async def behaviour(sandbox: FakeSandbox, call: Call) -> Result:
        order.append(call.id)
        if call.id.startswith("async-"):
            await releases[call.id].wait()
        return Result(call.id, 200, (), b"")

    factory.behaviour = behaviour
    await invoker.deploy(deploy_body(max_instances=1))
    for i in range(20):
        await invoker.enqueue_async(invocation(f"async-{i}"))
    await eventually(_async_true(lambda: order == ["async-0"]), "the first async call to run")
    sync_call = asyncio.create_task(invoker.invoke(invocation("sync-1")))
    await eventually(_async_true(lambda: waiting(invoker) == 1), "the sync call to wait")
    releases["async-0"].set()  # one async call ends: the sync call is next, not async-1
    await asyncio.wait_for(sync_call, 10)
    assert order[:2] == ["async-0", "sync-1"]
    for event in (releases[f"async-{i}"] for i in range(20)):
        event.set()
    await ended(invoker, "async-19")
    assert order[2:] == [f"async-{i}" for i in range(1, 20)]  # and the async calls went on


def waiting(invoker: Invoker) -> int:
    return sum(len(state.pool.waiters) for state in invoker.catalog.get("f").states.values())


def _async_true(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return predicate()

    return check
