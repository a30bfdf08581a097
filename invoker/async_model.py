"""Frozen records of asynchronous calls (docs/HTTP-API.md, "Asynchronous
calls"): what was asked, what became of it, and the listing query. They
cross from the queue to the gateway, like the records of invoker/model.py."""

from __future__ import annotations

import base64
from dataclasses import dataclass, fields
from typing import Any

from .metering import iso
from .model import Invocation

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINAL_STATUSES = frozenset({SUCCEEDED, FAILED, CANCELLED})

# What became of a call's callback.
CALLBACK_PENDING, CALLBACK_DELIVERED, CALLBACK_FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class AsyncRequest:
    """An asynchronous call as it was accepted: its invocation (received_at
    and attempt are set again for each attempt), when, and where its result goes."""

    invocation: Invocation
    # Unix seconds when it was accepted: max_event_age_s counts from here.
    created_at: float
    callback_url: str | None = None

    @property
    def call_id(self) -> str:
        return self.invocation.call_id

    @property
    def function(self) -> str:
        return self.invocation.function

    def to_wire(self) -> dict[str, Any]:
        """The invocation as stored (msgpack-friendly), less what the queue
        keeps in columns of its own and what each attempt sets again."""
        return {
            f.name: getattr(self.invocation, f.name) for f in fields(Invocation) if f.name not in NOT_STORED
        }

    @classmethod
    def from_wire(
        cls, call_id: str, function: str, created_at: float, callback_url: str | None, data: dict[str, Any]
    ) -> AsyncRequest:
        known = {f.name for f in fields(Invocation)} - NOT_STORED
        stored = {k: v for k, v in data.items() if k in known}
        stored["headers"] = tuple((k, v) for k, v in stored.get("headers", ()))
        return cls(Invocation(function=function, call_id=call_id, **stored), created_at, callback_url)


# Fields of an Invocation a stored call does not carry: the queue's own
# columns, and what each attempt sets again.
NOT_STORED = frozenset({"function", "call_id", "received_at", "attempt"})


@dataclass(frozen=True)
class AsyncResult:
    """A finished attempt's answer: the function's, or the error the call got."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    # Wall time of the attempt that gave it.
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        headers: dict[str, str] = {}
        for name, value in self.headers:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return {
            "status": self.status,
            "headers": headers,
            "body": base64.b64encode(self.body).decode("ascii"),
            "duration_s": round(self.duration_s, 6),
        }


@dataclass(frozen=True)
class AsyncCall:
    """An asynchronous call's state, as GET /system/async/CALL_ID shows it."""

    call_id: str
    function: str
    status: str
    attempts: int
    created_at: float
    updated_at: float
    callback_url: str | None = None
    callback_status: str | None = None
    # Why it failed (or was given up on), when it did not end with a result of its own.
    error: str | None = None
    result: AsyncResult | None = None
    # Unix seconds of the next attempt, while it waits for one.
    next_attempt_at: float | None = None
    # The status of `result` (known without reading the result itself).
    result_status: int | None = None

    def to_json(self, with_result: bool = True) -> dict[str, Any]:
        """The call as the API shows it; a listing leaves the result's body out."""
        data = {
            "call_id": self.call_id,
            "function": self.function,
            "status": self.status,
            "attempts": self.attempts,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "next_attempt_at": iso(self.next_attempt_at) if self.next_attempt_at is not None else None,
            "callback_url": self.callback_url,
            "callback_status": self.callback_status,
            "error": self.error,
            "result_status": self.result_status,
        }
        if with_result:
            data["result"] = self.result.to_json() if self.result is not None else None
        return data


@dataclass(frozen=True)
class AsyncQuery:
    """Which asynchronous calls to list: of one function, in one status, or all."""

    function: str | None = None
    status: str | None = None
