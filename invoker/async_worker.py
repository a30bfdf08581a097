"""Runs the queued asynchronous calls.

It claims due calls function by function, each function at most
`background_cap(max_instances)` at once (running or waiting for a sandbox),
and runs each attempt through the invoker as a background call, so
synchronous calls of the same function always find a slot or wait for at
most one call to end (invoker/pool.py). An attempt that ends in a 5xx or a
timeout is retried after 1, 2, 4 ... s, `async_retries` times, unless that
would pass the call's max_event_age_s; a call older than that when its turn
comes is dropped as failed. An attempt that never reached a sandbox (the
function's queue full, no capacity, the server stopping) does not count:
the call waits a second and tries again.

A call found running at start was interrupted by the previous server's end
(a crash, SIGKILL): that attempt counts as one that failed like a crashed
sandbox (502), so the call runs again only as a retry, if it has one left.
A restart alone never runs a call twice: at least once, through retries.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType

from .async_model import FAILED, SUCCEEDED, AsyncRequest, AsyncResult
from .async_queue import AsyncQueue, Claimed
from .callbacks import CallbackSender
from .errors import CallTimeout, FaasError, NotFound, SandboxDied, SpawnError, TooManyRequests, Unavailable
from .model import FunctionConfig, Invocation, InvocationResult
from .pool import background_cap

log = logging.getLogger("faas.async")

# Without a wake-up (a call accepted, an attempt ended) the worker still
# looks this often: retries come due, a server restarted with calls queued.
POLL_S = 1.0
# An attempt that did not reach a sandbox waits this long before the next try.
REQUEUE_DELAY_S = 1.0
FIRST_BACKOFF_S = 1.0
# Not retried: the call can never succeed as asked.
FINAL_ERRORS = (NotFound,)
# The attempt never reached a sandbox: it does not count.
NOT_AN_ATTEMPT = (TooManyRequests, CallTimeout, Unavailable, SpawnError)

StatusOf = Callable[[FaasError], int]


def backoff_s(attempt: int) -> float:
    """Delay before the retry that follows attempt `attempt` (1, 2, 4 ... s)."""
    return FIRST_BACKOFF_S * 2 ** (attempt - 1)


def error_result(status: int, message: str, call_id: str, duration_s: float = 0.0) -> AsyncResult:
    """What a call that got an error instead of the function's answer ends
    with: the gateway's error shape, {"error", "call_id"}."""
    body = json.dumps({"error": message, "call_id": call_id}).encode()
    return AsyncResult(status, (("Content-Type", "application/json"),), body, duration_s)


class AsyncWorker:
    def __init__(
        self,
        queue: AsyncQueue,
        callbacks: CallbackSender,
        invoke: Callable[[Invocation], Awaitable[InvocationResult]],
        function: Callable[[str], FunctionConfig],
        accepting: Callable[[], bool],
        max_event_age_s: float,
        status_of: StatusOf,
        on_retry: Callable[[str], None] = lambda function: None,
        on_end: Callable[[str, str], None] = lambda function, status: None,
    ) -> None:
        self.queue = queue
        self.callbacks = callbacks
        self._invoke = invoke
        self._function = function
        self._accepting = accepting
        self.max_event_age_s = max_event_age_s
        self._status_of = status_of
        self._on_retry = on_retry
        self._on_end = on_end
        self.in_flight: collections.Counter[str] = collections.Counter()
        self._attempts: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False

    async def __aenter__(self) -> AsyncWorker:
        for claimed in await self.queue.interrupted():
            why = f"the server stopped during attempt {claimed.attempt}"
            status = self._status_of(SandboxDied("crash", why))
            await self._settle(claimed, error_result(status, why, claimed.request.call_id), why)
        self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="async-worker")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop claiming (between two claims: a claim cut short would leave its
        calls running in the queue); attempts under way end as calls do (each
        by its timeout)."""
        self._stopping = True
        self.wake()
        if self._loop_task is not None:
            await self._loop_task
        if self._attempts:
            await asyncio.gather(*self._attempts, return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            if self._accepting():
                try:
                    await self._dispatch()
                except Exception:  # the queue failed: log it and keep the worker alive
                    log.exception("asynchronous dispatch failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_S):
                    await self._wake.wait()

    def _room(self, function: str) -> int:
        try:
            cap = background_cap(self._function(function).max_instances)
        except NotFound:
            cap = 1  # deleted: its calls fail fast, one at a time
        return cap - self.in_flight[function]

    async def _dispatch(self) -> None:
        now = time.time()
        for function in self.queue.queued_by_function():
            room = self._room(function)
            if room <= 0:
                continue
            for claimed in await self.queue.claim(function, now, room):
                self._start(claimed)

    def _start(self, claimed: Claimed) -> None:
        function = claimed.request.function
        self.in_flight[function] += 1
        task = asyncio.get_running_loop().create_task(self._attempt(claimed))
        self._attempts.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._attempts.discard(task)
            self.in_flight[function] -= 1
            self.wake()

        task.add_done_callback(done)

    def _max_age_s(self, function: str) -> float:
        try:
            return self._function(function).max_event_age_s or self.max_event_age_s
        except NotFound:
            return self.max_event_age_s

    async def _attempt(self, claimed: Claimed) -> None:
        request, attempt = claimed.request, claimed.attempt
        max_age = self._max_age_s(request.function)
        if time.time() - request.created_at > max_age:
            message = f"dropped: not run within max_event_age_s ({max_age:g} s) of being queued"
            result = error_result(self._status_of(CallTimeout(message)), message, request.call_id)
            await self._end(request, FAILED, message, result, counted=False)
            return
        started = time.monotonic()
        try:
            answer = await self._invoke(invocation(request, attempt))
            result = AsyncResult(answer.status, answer.headers, answer.body, answer.wall_ms / 1000)
        except NOT_AN_ATTEMPT as exc:
            await self.queue.retry_at(
                request.call_id, time.time() + REQUEUE_DELAY_S, exc.message, None, counted=False
            )
            self._wake_at(REQUEUE_DELAY_S)
            return
        except FaasError as exc:
            status = self._status_of(exc)
            result = error_result(status, exc.message, request.call_id, time.monotonic() - started)
            if isinstance(exc, FINAL_ERRORS):
                await self._end(request, FAILED, exc.message, result)
                return
        except Exception as exc:  # a bug: the call fails, the worker goes on
            log.exception("asynchronous call %s failed in the invoker", request.call_id)
            result = error_result(500, f"internal error: {type(exc).__name__}", request.call_id)
        await self._settle(claimed, result)

    async def _settle(self, claimed: Claimed, result: AsyncResult, why: str | None = None) -> None:
        """After an attempt: retry (a 5xx or a timeout, with retries and time
        left) or finish. `why`: what went wrong, if not the result's status."""
        request, attempt = claimed.request, claimed.attempt
        if result.status < 500:
            await self._end(request, SUCCEEDED, None, result)
            return
        try:
            retries = self._function(request.function).async_retries
        except NotFound:
            retries = 0
        when = time.time() + backoff_s(attempt)
        error = why or f"attempt {attempt} answered {result.status}"
        if attempt > retries:
            await self._end(request, FAILED, f"{error}; no retries left (async_retries={retries})", result)
        elif when - request.created_at > self._max_age_s(request.function):
            await self._end(request, FAILED, f"{error}; a retry would pass max_event_age_s", result)
        else:
            await self.queue.retry_at(request.call_id, when, error, result)
            self._on_retry(request.function)
            self._wake_at(when - time.time())

    async def _end(
        self, request: AsyncRequest, status: str, error: str | None, result: AsyncResult, counted: bool = True
    ) -> None:
        await self.queue.finish(request.call_id, status, error, result, counted)
        self._on_end(request.function, status)
        if request.callback_url is not None:
            self.callbacks.submit(request.call_id)

    def _wake_at(self, delay_s: float) -> None:
        asyncio.get_running_loop().call_later(max(0.0, delay_s), self.wake)


def invocation(request: AsyncRequest, attempt: int) -> Invocation:
    """The invocation of one attempt: its deadline counts from now."""
    return dataclasses.replace(request.invocation, received_at=time.monotonic(), attempt=attempt)
