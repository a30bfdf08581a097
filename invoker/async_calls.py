"""The asynchronous calls of an invoker: the queue, the sender of callbacks
and the worker that runs the calls, opened in that order and closed in
reverse (the worker lets its attempts end, the sender keeps what it has not
delivered for the next start, the queue commits what it was accepting);
and what the invoker's public methods for them do. Its metrics are the
`faas_async_*` of docs/METRICS.md."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .async_model import AsyncCall, AsyncQuery, AsyncRequest
from .async_queue import AsyncQueue
from .async_queue_nats import NatsAsyncQueue
from .async_queue_sqlite import SqliteAsyncQueue
from .async_worker import AsyncWorker, StatusOf
from .callback_policy import CallbackPolicy
from .callbacks import CallbackSender
from .config import InvokerConfig
from .errors import Unavailable
from .metrics import Metrics
from .model import FunctionConfig, Invocation, InvocationResult
from .tasks import cancel_and_wait

QUEUE_FILE = "async.db"
# How often finished calls past async_result_ttl_s are purged, at most.
PURGE_EVERY_S = 60.0


class AsyncMetrics(Collector):
    """faas_async_*: counters as events happen, gauges read from the queue at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.accepted = Counter(
            "faas_async_accepted", "Asynchronous calls accepted", ["function_name"], registry=r
        )
        self.completed = Counter(
            "faas_async_completed", "Asynchronous calls ended", ["function_name", "status"], registry=r
        )
        self.retries = Counter(
            "faas_async_retries", "Asynchronous attempts retried", ["function_name"], registry=r
        )
        self.callback_failures = Counter(
            "faas_async_callback_failures", "Callbacks given up on", ["function_name"], registry=r
        )
        self.calls: AsyncCalls | None = None
        r.register(self)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "faas_async_queue_depth", "Asynchronous calls queued", labels=["function_name"]
        )
        running = GaugeMetricFamily(
            "faas_async_running", "Asynchronous calls running", labels=["function_name"]
        )
        age = GaugeMetricFamily(
            "faas_async_oldest_queued_seconds", "Age of the oldest queued asynchronous call"
        )
        queue = self.calls.queue if self.calls is not None else None
        if queue is not None and self.calls is not None:
            for name, count in sorted(queue.queued_by_function().items()):
                depth.add_metric([name], count)
            if self.calls.worker is not None:
                for name, count in sorted(self.calls.worker.in_flight.items()):
                    running.add_metric([name], count)
            oldest = queue.oldest_queued_at()
            age.add_metric([], max(0.0, time.time() - oldest) if oldest is not None else 0.0)
        yield from (depth, running, age)


class AsyncCalls:
    def __init__(
        self,
        config: InvokerConfig,
        metrics: Metrics,
        invoke: Callable[[Invocation], Awaitable[InvocationResult]],
        function: Callable[[str], FunctionConfig],
        accepting: Callable[[], bool],
        status_of: StatusOf,
        log_line: Callable[[str, str, str], None],
    ) -> None:
        self.config = config
        self.policy = CallbackPolicy(config.callback_allow)
        self.metrics = AsyncMetrics(metrics)
        self.metrics.calls = self
        self._invoke = invoke
        self._function = function
        self._accepting = accepting
        self._status_of = status_of
        self._log_line = log_line
        self.queue: AsyncQueue | None = None
        self.worker: AsyncWorker | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> AsyncCalls:
        config = self.config
        try:
            queue = await self._open_queue_store()
            self._stack.push_async_callback(queue.aclose)
            sender = await self._stack.enter_async_context(
                CallbackSender(
                    queue, self.policy, config.callback_timeout_s, config.callback_retries, self._failed
                )
            )
            self.worker = await self._stack.enter_async_context(
                AsyncWorker(
                    queue,
                    sender,
                    self._invoke,
                    self._function,
                    self._accepting,
                    config.max_event_age_s,
                    self._status_of,
                    on_retry=lambda name: self.metrics.retries.labels(name).inc(),
                    on_end=lambda name, status: self.metrics.completed.labels(name, status).inc(),
                )
            )
            purger = asyncio.get_running_loop().create_task(self._purge_loop(queue), name="async-purge")
            self._stack.push_async_callback(cancel_and_wait, purger)
        except BaseException:
            await self._stack.aclose()
            raise
        self.queue = queue
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.queue = None
        await self._stack.aclose()

    async def _open_queue_store(self) -> AsyncQueue:
        """NATS JetStream when `queue` names a server (a cluster's), else SQLite under data_dir."""
        config = self.config
        if config.queue is not None:
            return await NatsAsyncQueue.open(
                config.queue, config.max_async_queue, config.async_result_ttl_s, config.queue_ack_wait_s
            )
        return SqliteAsyncQueue(
            os.path.join(config.data_dir, QUEUE_FILE),
            config.max_async_queue,
            config.async_result_ttl_s,
            synchronous=config.ledger_sync.upper(),
        )

    def _failed(self, call: AsyncCall, reason: str) -> None:
        self.metrics.callback_failures.labels(call.function).inc()
        self._log_line(call.function, call.call_id, reason)

    async def _purge_loop(self, queue: AsyncQueue) -> None:
        ttl = self.config.async_result_ttl_s
        while True:
            await queue.purge(time.time() - ttl)
            await asyncio.sleep(min(PURGE_EVERY_S, max(0.5, ttl / 2)))

    def _open_queue(self) -> AsyncQueue:
        if self.queue is None:
            raise Unavailable("asynchronous calls are not available: the invoker is not running")
        return self.queue

    # -- what the invoker's public methods do ---------------------------------

    async def enqueue(self, inv: Invocation, callback_url: str | None) -> str:
        """Queue `inv` durably (its function must exist); its call id."""
        queue = self._open_queue()
        self._function(inv.function)
        if callback_url is not None:
            self.policy.check_url(callback_url)
        request = AsyncRequest(inv, created_at=time.time(), callback_url=callback_url)
        await queue.enqueue(request)
        self.metrics.accepted.labels(inv.function).inc()
        if self.worker is not None:
            self.worker.wake()
        return inv.call_id

    async def get(self, call_id: str) -> AsyncCall:
        call, _ = await self._open_queue().get(call_id)
        return call

    async def list(self, query: AsyncQuery, cursor: int, limit: int) -> list[tuple[int, AsyncCall]]:
        return await self._open_queue().list(query, cursor, limit)

    async def cancel(self, call_id: str) -> AsyncCall:
        call = await self._open_queue().cancel(call_id)
        self.metrics.completed.labels(call.function, call.status).inc()
        return call
