"""The queue of asynchronous calls: a call is durable before it is accepted
(202), claimed for one attempt at a time, retried at a set time or finished
with its result, kept `async_result_ttl_s` after that, then purged.

`AsyncQueue` is the interface; invoker/async_queue_sqlite.py keeps it in
SQLite under the data directory, and a cluster backs it with NATS JetStream
(a claim is a delivery, the attempt its delivery count; a call found running
when a queue opens was interrupted, which JetStream tells by redelivery
after its ack wait).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from .async_model import AsyncCall, AsyncQuery, AsyncRequest, AsyncResult
from .errors import TooManyRequests


class QueueFull(TooManyRequests):
    """max_async_queue calls are queued or running already."""


@dataclass(frozen=True)
class Claimed:
    """A call taken for one attempt; `attempt` counts from 1."""

    request: AsyncRequest
    attempt: int


class AsyncQueue(ABC):
    @property
    @abstractmethod
    def pending(self) -> int:
        """Calls queued or running."""

    @abstractmethod
    def queued_by_function(self) -> dict[str, int]:
        """Queued calls (due now or later) of each function that has any."""

    @abstractmethod
    async def enqueue(self, request: AsyncRequest) -> None:
        """Return once the call is durable; QueueFull past the bound."""

    @abstractmethod
    async def claim(self, function: str, now: float, limit: int) -> list[Claimed]:
        """Up to `limit` due calls of `function`, oldest first, now running."""

    @abstractmethod
    async def retry_at(
        self, call_id: str, when: float, error: str | None, result: AsyncResult | None, counted: bool = True
    ) -> None:
        """A running call goes back to the queue until `when`. Not `counted`:
        its attempt never reached a sandbox and does not count."""

    @abstractmethod
    async def finish(
        self, call_id: str, status: str, error: str | None, result: AsyncResult | None, counted: bool = True
    ) -> None:
        """A running call ends (succeeded or failed); its callback, if any, is
        now pending. Not `counted`: it ends without its claimed attempt
        (dropped, too old)."""

    @abstractmethod
    async def set_callback_status(self, call_id: str, status: str) -> None: ...

    @abstractmethod
    async def cancel(self, call_id: str) -> AsyncCall:
        """Cancel a queued call; NotFound, or Conflict when it is not queued."""

    @abstractmethod
    async def get(self, call_id: str, with_request: bool = False) -> tuple[AsyncCall, AsyncRequest | None]:
        """A call (NotFound once purged) and, if asked, its request."""

    @abstractmethod
    async def list(self, query: AsyncQuery, after: int, limit: int) -> list[tuple[int, AsyncCall]]: ...

    @abstractmethod
    async def interrupted(self) -> list[Claimed]:
        """Calls that were running when the previous server ended."""

    @abstractmethod
    async def pending_callbacks(self) -> list[str]: ...

    @abstractmethod
    async def purge(self, finished_before: float) -> int:
        """Forget calls that ended before this time; how many went."""

    @abstractmethod
    def oldest_queued_at(self) -> float | None: ...

    @abstractmethod
    async def aclose(self) -> None: ...
