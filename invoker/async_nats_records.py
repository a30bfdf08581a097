"""The records of the NATS asynchronous queue (invoker/async_queue_nats.py):
each call's state as a value of the JetStream KeyValue bucket, and each
invoker's view of the whole bucket, kept current by a watch.

The view holds every call less its result, so listing, counting (the
max_async_queue bound, the queue depth metrics) and purging read memory;
`get` reads the bucket itself, for the result and the freshest state.
"""

from __future__ import annotations

import base64
import collections
import re
import time
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from .async_model import (
    CALLBACK_PENDING,
    FINAL_STATUSES,
    QUEUED,
    RUNNING,
    AsyncCall,
    AsyncQuery,
    AsyncRequest,
    AsyncResult,
)

# What a KeyValue key may hold (nats-server's rule); other call ids are encoded.
KEY_RE = re.compile(r"^[-_=.a-zA-Z0-9]+$")


def kv_key(call_id: str) -> str:
    if KEY_RE.match(call_id) and not call_id.startswith(("b64_", ".")) and not call_id.endswith("."):
        return call_id
    return "b64_" + base64.urlsafe_b64encode(call_id.encode()).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class CallRecord:
    """A call's state in the bucket; `seq` is the sequence of its message in
    the work stream, unique and increasing: the listing's cursor."""

    seq: int
    call: AsyncCall
    not_before: float

    @property
    def status(self) -> str:
        return self.call.status

    def pack(self) -> bytes:
        c = self.call
        result = None
        if c.result is not None:
            r = c.result
            result = [r.status, [list(h) for h in r.headers], r.body, r.duration_s]
        data = {
            "seq": self.seq, "call_id": c.call_id, "function": c.function, "status": c.status,
            "attempts": c.attempts, "created_at": c.created_at, "updated_at": c.updated_at,
            "not_before": self.not_before, "callback_url": c.callback_url,
            "callback_status": c.callback_status, "error": c.error, "result": result,
            "result_status": c.result_status,
        }  # fmt: skip
        return msgpack.packb(data, use_bin_type=True)  # type: ignore[no-any-return]

    @classmethod
    def unpack(cls, blob: bytes) -> CallRecord:
        d = msgpack.unpackb(blob)
        result = None
        if d["result"] is not None:
            status, headers, body, duration_s = d["result"]
            result = AsyncResult(status, tuple((k, v) for k, v in headers), body, duration_s)
        call = AsyncCall(
            call_id=d["call_id"], function=d["function"], status=d["status"], attempts=d["attempts"],
            created_at=d["created_at"], updated_at=d["updated_at"], callback_url=d["callback_url"],
            callback_status=d["callback_status"], error=d["error"], result=result,
            next_attempt_at=d["not_before"] if d["status"] == QUEUED and d["attempts"] > 0 else None,
            result_status=d["result_status"],
        )  # fmt: skip
        return cls(d["seq"], call, d["not_before"])

    @classmethod
    def accepted(cls, seq: int, request: AsyncRequest) -> CallRecord:
        call = AsyncCall(
            call_id=request.call_id,
            function=request.function,
            status=QUEUED,
            attempts=0,
            created_at=request.created_at,
            updated_at=request.created_at,
            callback_url=request.callback_url,
        )
        return cls(seq, call, request.created_at)

    def changed(self, not_before: float | None = None, **changes: Any) -> CallRecord:
        """This record with `changes` to its call (updated now; the next
        attempt's time follows the status)."""
        not_before = self.not_before if not_before is None else not_before
        call = replace(self.call, updated_at=time.time(), **changes)
        waiting = call.status == QUEUED and call.attempts > 0
        call = replace(call, next_attempt_at=not_before if waiting else None)
        if call.result is not None:
            call = replace(call, result_status=call.result.status)
        return CallRecord(self.seq, call, not_before)

    def packed_within(self, max_payload: int) -> bytes:
        """The record packed, its result's body left out if the record would
        not fit in one NATS message (the error says why)."""
        packed = self.pack()
        if len(packed) <= max_payload - 1024 or self.call.result is None:
            return packed
        result = self.call.result
        why = f"the result ({len(result.body)} bytes) is too large for the NATS queue (max_payload {max_payload})"
        lean = replace(self.call, result=replace(result, body=b""), error=self.call.error or why)
        return CallRecord(self.seq, lean, self.not_before).pack()

    def finished(
        self, status: str, error: str | None, result: AsyncResult | None, counted: bool
    ) -> CallRecord:
        return self.changed(
            status=status,
            error=error,
            result=result,
            result_status=result.status if result is not None else None,
            callback_status=CALLBACK_PENDING if self.call.callback_url is not None else None,
            attempts=self.call.attempts - (0 if counted else 1),
        )


def pack_request(request: AsyncRequest) -> bytes:
    """A call's message in the work stream: all of its request."""
    data = {
        "call_id": request.call_id,
        "function": request.function,
        "created_at": request.created_at,
        "callback_url": request.callback_url,
        "request": request.to_wire(),
    }
    return msgpack.packb(data, use_bin_type=True)  # type: ignore[no-any-return]


def unpack_request(blob: bytes) -> AsyncRequest:
    d = msgpack.unpackb(blob)
    return AsyncRequest.from_wire(
        d["call_id"], d["function"], d["created_at"], d["callback_url"], d["request"]
    )


class CallView:
    """Every call of the bucket (less results) as this invoker last heard of
    it, with the counts the bound and the metrics read."""

    def __init__(self) -> None:
        self._records: dict[str, tuple[int, CallRecord]] = {}
        self._queued: collections.Counter[str] = collections.Counter()
        self._running: dict[str, CallRecord] = {}

    def apply(self, key: str, revision: int, record: CallRecord | None) -> None:
        """A put (or, with no record, a delete) of `key` at `revision`; an
        older revision than the one held is ignored (a local write already
        applied its newer one)."""
        held = self._records.get(key)
        if held is not None:
            if held[0] >= revision:
                return
            self._count(held[1], -1)
        if record is None:
            self._records.pop(key, None)
            return
        record = replace(record, call=replace(record.call, result=None))
        self._records[key] = (revision, record)
        self._count(record, +1)

    def forget(self, key: str) -> None:
        held = self._records.pop(key, None)
        if held is not None:
            self._count(held[1], -1)

    def _count(self, record: CallRecord, sign: int) -> None:
        if record.status == QUEUED:
            self._queued[record.call.function] += sign
            if self._queued[record.call.function] <= 0:
                del self._queued[record.call.function]
        elif record.status == RUNNING:
            if sign > 0:
                self._running[record.call.call_id] = record
            else:
                self._running.pop(record.call.call_id, None)

    @property
    def pending(self) -> int:
        return sum(self._queued.values()) + len(self._running)

    def queued_by_function(self, stale_before: float, held: set[str]) -> dict[str, int]:
        """Queued calls of each function, and the calls another invoker
        claimed before `stale_before`: their invoker may have died, and
        their redelivery is claimed like a queued call."""
        counts = dict(self._queued)
        for call_id, record in self._running.items():
            if record.call.updated_at < stale_before and call_id not in held:
                counts[record.call.function] = counts.get(record.call.function, 0) + 1
        return counts

    def get(self, key: str) -> tuple[int, CallRecord] | None:
        return self._records.get(key)

    def revisions(self) -> list[tuple[str, int, CallRecord]]:
        return [(key, revision, record) for key, (revision, record) in self._records.items()]

    def records(self) -> list[CallRecord]:
        return [record for _, record in self._records.values()]

    def list(
        self, query: AsyncQuery, after: int, limit: int, kept_after: float
    ) -> list[tuple[int, AsyncCall]]:
        found = [
            r
            for r in self.records()
            if r.seq > after
            and (query.function is None or r.call.function == query.function)
            and (query.status is None or r.status == query.status)
            and not (r.status in FINAL_STATUSES and r.call.updated_at < kept_after)
        ]
        found.sort(key=lambda r: r.seq)
        return [(r.seq, r.call) for r in found[:limit]]

    def oldest_queued_at(self) -> float | None:
        queued = [r.call.created_at for r in self.records() if r.status == QUEUED]
        return min(queued) if queued else None
