"""The asynchronous queue in NATS JetStream, shared by every invoker of a
cluster (docs/CLUSTER.md, "Async queue in NATS JetStream").

- The work stream `NS_async` (work-queue retention) holds each queued or
  running call's request as one message on `NS.async.FUNCTION`; a durable
  pull consumer per function (`NS_async_FUNCTION`, explicit acks) hands
  each message to one invoker at a time. A claim is a delivery; finishing
  acks it (the stream forgets it); a retry naks it with the delay; while a
  call runs its invoker sends `in_progress` so the ack wait does not run
  out. An invoker that dies stops sending them: after the ack wait the
  call is redelivered to another invoker, whose claim counts a new attempt.
- The KeyValue bucket `NS_async_calls` holds every call's state (status,
  attempts, result, callback status), changed by compare-and-set, so a
  cancel and a claim never both win. `get` reads it; listing, counts and
  purging read this invoker's view of it (invoker/async_nats_records.py).

Every NATS request has a deadline; one that fails or times out (NATS down,
reconnecting) is Unavailable (503), never a hang.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from .async_model import (
    CANCELLED,
    FINAL_STATUSES,
    QUEUED,
    RUNNING,
    AsyncCall,
    AsyncQuery,
    AsyncRequest,
    AsyncResult,
)
from .async_nats_pull import Held, Puller
from .async_nats_records import CallRecord, kv_key, pack_request, unpack_request
from .async_nats_setup import REQUEST_TIMEOUT_S, connect, function_consumer, nats_errors, stream_and_bucket
from .async_nats_watch import BucketWatch
from .async_queue import AsyncQueue, Claimed, QueueFull
from .errors import Conflict, NotFound, PayloadTooLarge, Unavailable

log = logging.getLogger("faas.async")
T = TypeVar("T")

# How long a pull waits for what the server has now.
PULL_TIMEOUT_S = 1.0
# A call is redelivered this long after its invoker's last sign of life.
ACK_WAIT_S = 30.0
# A delivered message whose record is missing was published by an enqueue
# that has not written the record yet (or failed to): wait this long for it.
RECORD_GRACE_S = 30.0
# A delete marker is kept this long (every invoker's watch sees it), then purged.
MARKER_KEPT_S = 60.0
# Tries of a compare-and-set that another invoker's write got in before.
CAS_TRIES = 5


class NatsAsyncQueue(AsyncQueue):
    def __init__(
        self, nc: Client, js: JetStreamContext, kv: KeyValue, namespace: str, max_pending: int,
        result_ttl_s: float, ack_wait_s: float, reconnected: asyncio.Event,
    ) -> None:  # fmt: skip
        self._nc, self._js, self._kv = nc, js, kv
        self.max_pending = max_pending
        self.result_ttl_s = result_ttl_s
        self.ack_wait_s = ack_wait_s
        self._stream = f"{namespace}_async"
        self._subject = f"{namespace}.async"
        self._consumer_prefix = f"{namespace}_async_"
        self._bucket = f"{namespace}_async_calls"
        self._consumers: set[str] = set()
        self._markers: collections.deque[tuple[float, str]] = collections.deque()
        self._watch = BucketWatch(kv, reconnected)
        self._held = Held(ack_wait_s)
        self._puller = Puller(nc, self._stream)
        self._accepting = 0

    @classmethod
    async def open(
        cls, url: str, max_pending: int, result_ttl_s: float, ack_wait_s: float = ACK_WAIT_S,
        namespace: str = "faas",
    ) -> NatsAsyncQueue:  # fmt: skip
        """Connect (reconnecting for as long as it runs), create the stream and
        bucket if they are missing, and read the bucket into the view."""
        reconnected = asyncio.Event()
        nc = await connect(url, reconnected.set)
        try:
            js = nc.jetstream(timeout=REQUEST_TIMEOUT_S)
            kv = await stream_and_bucket(js, namespace)
        except BaseException:
            await nc.close()
            raise
        queue = cls(nc, js, kv, namespace, max_pending, result_ttl_s, ack_wait_s, reconnected)
        try:
            await queue._start()
        except BaseException:
            await queue.aclose()
            raise
        return queue

    async def _start(self) -> None:
        await self._watch.start()
        self._held.start()

    @property
    def pending(self) -> int:
        return self._watch.view.pending + self._accepting

    def queued_by_function(self) -> dict[str, int]:
        return self._watch.view.queued_by_function(time.time() - self.ack_wait_s, self._held.ids())

    # -- accepting -------------------------------------------------------------

    async def enqueue(self, request: AsyncRequest) -> None:
        if self.pending >= self.max_pending:
            raise QueueFull(f"{self.pending} asynchronous calls are queued or running (max_async_queue)")
        message = pack_request(request)
        if len(message) > self._nc.max_payload - 1024:
            raise PayloadTooLarge(
                f"the asynchronous call ({len(message)} bytes) is larger than the NATS queue takes"
                f" (max_payload {self._nc.max_payload} bytes)"
            )
        self._accepting += 1  # counted now, so the bound holds while the call is stored
        try:
            async with nats_errors("store the call"):
                ack = await self._js.publish(
                    f"{self._subject}.{request.function}", message, timeout=REQUEST_TIMEOUT_S,
                    stream=self._stream, headers={"Nats-Msg-Id": request.call_id},
                )  # fmt: skip
                record = CallRecord.accepted(ack.seq, request)
                revision = await self._kv.create(kv_key(request.call_id), record.pack())
            self._watch.view.apply(kv_key(request.call_id), revision, record)
        except nats.js.errors.KeyWrongLastSequenceError:
            raise Conflict(f"asynchronous call {request.call_id!r} exists already") from None
        finally:
            self._accepting -= 1

    # -- running ---------------------------------------------------------------

    async def _consumer(self, function: str) -> str:
        name = self._consumer_prefix + function
        if name not in self._consumers:
            await function_consumer(
                self._js, self._stream, name, f"{self._subject}.{function}", self.ack_wait_s
            )
            self._consumers.add(name)
        return name

    async def claim(self, function: str, now: float, limit: int) -> list[Claimed]:
        consumer = await self._consumer(function)
        async with nats_errors("fetch calls"):
            msgs = await self._puller.pull(consumer, limit, PULL_TIMEOUT_S)
        claimed = await asyncio.gather(*(self._claim_one(msg) for msg in msgs), return_exceptions=True)
        for outcome in claimed:
            if isinstance(outcome, BaseException):  # not held: redelivered after the ack wait
                log.warning("could not claim an asynchronous call: %s", outcome)
        return [c for c in claimed if isinstance(c, Claimed)]

    async def _claim_one(self, msg: Msg) -> Claimed | None:
        request = unpack_request(msg.data)

        def running(record: CallRecord) -> CallRecord | None:
            if record.status in FINAL_STATUSES:
                return None
            return record.changed(status=RUNNING, attempts=record.call.attempts + 1)

        try:
            _, claimed = await self._change(request.call_id, running, "claim a call")
        except NotFound:
            async with nats_errors("put a call back"):
                if time.time() - msg.metadata.timestamp.timestamp() < RECORD_GRACE_S:
                    await msg.nak(delay=0.2)
                else:
                    await msg.term()
            return None
        if claimed is None:  # cancelled, or ended by an invoker that died before its ack
            async with nats_errors("acknowledge a call"):
                await msg.ack()
            return None
        self._held.hold(request.call_id, msg)
        return Claimed(request, claimed.call.attempts)

    async def _change(
        self, call_id: str, change: Callable[[CallRecord], CallRecord | None], what: str = "update a call"
    ) -> tuple[CallRecord, CallRecord | None]:
        """Compare-and-set `change` of a call's record (None: leave it): the
        record before and after. The first try starts from this invoker's
        view when the view holds all of the record (no result), which saves
        a read whenever this invoker wrote last."""
        key = kv_key(call_id)
        seen = self._watch.view.get(key)
        for attempt in range(CAS_TRIES):
            async with nats_errors(what):
                if attempt == 0 and seen is not None and seen[1].call.result_status is None:
                    revision, record = seen
                else:
                    try:
                        entry = await self._kv.get(key)
                    except nats.js.errors.NotFoundError:
                        raise NotFound(f"asynchronous call {call_id!r} not found") from None
                    revision, record = entry.revision, CallRecord.unpack(entry.value or b"")
                changed = change(record)
                if changed is None:
                    return record, None
                try:
                    written = await self._kv.update(
                        key, changed.packed_within(self._nc.max_payload), revision
                    )
                except nats.js.errors.KeyWrongLastSequenceError:
                    continue
            self._watch.view.apply(key, written, changed)
            return record, changed
        raise Unavailable(f"asynchronous call {call_id!r} kept changing while it was updated")

    async def retry_at(
        self, call_id: str, when: float, error: str | None, result: AsyncResult | None, counted: bool = True
    ) -> None:
        def back(record: CallRecord) -> CallRecord:
            attempts = record.call.attempts - (0 if counted else 1)
            return record.changed(
                not_before=when, status=QUEUED, attempts=attempts, error=error, result=result
            )

        # Released first: if the record cannot be written, the call is
        # redelivered after the ack wait instead of being extended forever.
        msg = self._held.release(call_id)
        await self._change(call_id, back)
        if msg is not None:
            async with nats_errors("requeue a call"):
                await msg.nak(delay=max(0.0, when - time.time()))

    async def finish(
        self, call_id: str, status: str, error: str | None, result: AsyncResult | None, counted: bool = True
    ) -> None:
        msg = self._held.release(call_id)  # first, as in retry_at
        await self._change(call_id, lambda record: record.finished(status, error, result, counted))
        if msg is not None:
            # Not waited for: an ack lost with the connection redelivers the
            # call, and its claim finds it finished and acks it again.
            async with nats_errors("acknowledge a call"):
                await msg.ack()

    async def set_callback_status(self, call_id: str, status: str) -> None:
        await self._change(call_id, lambda record: record.changed(callback_status=status))

    async def cancel(self, call_id: str) -> AsyncCall:
        def cancelled(record: CallRecord) -> CallRecord | None:
            return record.changed(status=CANCELLED) if record.status == QUEUED else None

        before, record = await self._change(call_id, cancelled)
        if record is None:
            if before.status in FINAL_STATUSES and before.call.updated_at < time.time() - self.result_ttl_s:
                raise NotFound(f"asynchronous call {call_id!r} not found")
            raise Conflict(
                f"asynchronous call {call_id!r} is {before.status}: only a queued call can be cancelled"
            )
        # Out of the stream now (best effort: a claim that gets it anyway acks it unrun).
        with contextlib.suppress(Unavailable, nats.js.errors.NotFoundError):
            async with nats_errors("drop a cancelled call"):
                await self._js.delete_msg(self._stream, record.seq)
        return record.call

    # -- reading ---------------------------------------------------------------

    async def get(self, call_id: str, with_request: bool = False) -> tuple[AsyncCall, AsyncRequest | None]:
        async with nats_errors("read a call"):
            try:
                entry = await self._kv.get(kv_key(call_id))
            except nats.js.errors.NotFoundError:
                entry = None
        record = CallRecord.unpack(entry.value) if entry is not None and entry.value else None
        expired = (
            record
            and record.status in FINAL_STATUSES
            and record.call.updated_at < time.time() - self.result_ttl_s
        )
        if record is None or expired:
            raise NotFound(f"asynchronous call {call_id!r} not found (or its result has expired)")
        request = None
        if with_request and record.status not in FINAL_STATUSES:
            async with nats_errors("read a call's request"):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    request = unpack_request((await self._js.get_msg(self._stream, record.seq)).data or b"")
        return record.call, request

    async def list(self, query: AsyncQuery, after: int, limit: int) -> list[tuple[int, AsyncCall]]:
        return self._watch.view.list(query, after, limit, time.time() - self.result_ttl_s)

    async def interrupted(self) -> list[Claimed]:
        """None: a call whose invoker stopped is redelivered after the ack wait."""
        return []

    async def pending_callbacks(self) -> list[str]:
        records = sorted(self._watch.view.records(), key=lambda r: r.seq)
        return [r.call.call_id for r in records if r.call.callback_status == "pending"]

    async def purge(self, finished_before: float) -> int:
        """Delete the calls that ended before then (each by compare-and-set,
        so of the invokers purging together one deletes it), and the delete
        markers of this invoker's deletes older than a minute (every
        invoker's watch has seen them by then)."""
        gone = 0
        for key, revision, record in self._watch.view.revisions():
            if record.status in FINAL_STATUSES and record.call.updated_at < finished_before:
                async with nats_errors("purge a call"):
                    with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
                        await self._kv.delete(key, last=revision)
                        self._markers.append((time.monotonic(), key))
                        self._watch.view.forget(key)
                        gone += 1
        while self._markers and self._markers[0][0] < time.monotonic() - MARKER_KEPT_S:
            _, key = self._markers.popleft()
            async with nats_errors("purge a delete marker"):
                await self._js.purge_stream(f"KV_{self._bucket}", subject=f"$KV.{self._bucket}.{key}")
        return gone

    def oldest_queued_at(self) -> float | None:
        return self._watch.view.oldest_queued_at()

    async def aclose(self) -> None:
        """Stop extending (calls still held are redelivered after the ack
        wait: the worker has let its attempts end before this), then close."""
        await self._held.stop()
        await self._watch.stop()
        await self._puller.stop()
        try:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    await self._nc.drain()
            if not self._nc.is_closed:
                with contextlib.suppress(Exception):
                    await self._nc.close()
        except asyncio.CancelledError:
            # nats-py lets the cancelled close-waiter of a dead socket out as
            # CancelledError; only a cancellation of this task goes on.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
