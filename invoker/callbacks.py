"""Delivering the results of asynchronous calls to their X-Callback-Url.

A POST of the function's response body with its headers plus X-Call-Id,
X-Function-Name, X-Function-Status and X-Duration-Seconds, to an address
the callback policy allows (invoker/callback_policy.py): names are resolved
once per connection by CheckedResolver and the connection goes to an
address it checked. A delivery that fails (no connection, a timeout, 408,
429 or 5xx) is tried again after 1, 2, 4 ... s, `retries` times, then
recorded as failed; other answers (3xx, 4xx) are final. Each delivery is a
task of its own (at most `concurrency` connections at once): a slow or dead
receiver never holds up another callback or any call. A callback still
pending when the server stops is sent at the next start.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from types import TracebackType

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from .async_model import CALLBACK_DELIVERED, CALLBACK_FAILED, AsyncCall
from .async_queue import AsyncQueue
from .callback_policy import CallbackPolicy, as_address
from .errors import BadRequest, NotFound

log = logging.getLogger("faas.callbacks")

# Not passed on from the function's answer: the connection's own business.
HOP_BY_HOP = frozenset(
    {"connection", "content-length", "transfer-encoding", "keep-alive", "upgrade", "host", "te", "trailer"}
)
RETRYABLE_STATUSES = frozenset({408, 429})
FIRST_BACKOFF_S = 1.0


class CallbackRefused(OSError):
    """The target resolves only to addresses the policy refuses."""


class CheckedResolver(AbstractResolver):
    """Resolves a name once and gives the connector only the addresses the
    policy allows: what is checked is what is connected to."""

    def __init__(self, policy: CallbackPolicy) -> None:
        self._policy = policy
        self._resolver = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        allowed, refused = [], []
        for info in await self._resolver.resolve(host, port, family):
            address = as_address(info["host"])
            reason = self._policy.refusal(address) if address is not None else "not an address"
            (refused if reason else allowed).append(reason or info)
        if not allowed:
            raise CallbackRefused(
                f"callback to {host} refused: {'; '.join(map(str, refused)) or 'no address'}"
            )
        return allowed  # type: ignore[return-value]

    async def close(self) -> None:
        await self._resolver.close()


class CallbackSender:
    def __init__(
        self,
        queue: AsyncQueue,
        policy: CallbackPolicy,
        timeout_s: float,
        retries: int,
        on_failure: Callable[[AsyncCall, str], None],
        concurrency: int = 32,
    ) -> None:
        self.queue = queue
        self.policy = policy
        self.timeout_s = timeout_s
        self.retries = retries
        self.on_failure = on_failure
        self._limit = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> CallbackSender:
        connector = aiohttp.TCPConnector(
            resolver=CheckedResolver(self.policy), use_dns_cache=False, limit=self._concurrency
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout_s), trust_env=False
        )
        for call_id in await self.queue.pending_callbacks():
            self.submit(call_id)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop: pending callbacks stay pending in the queue, for the next start."""
        for timer in self._timers:
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    @property
    def in_flight(self) -> int:
        """Deliveries under way or waiting to be retried."""
        return len(self._tasks) + len(self._timers)

    def submit(self, call_id: str, attempt: int = 1) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(call_id, attempt))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _later(self, delay_s: float, call_id: str, attempt: int) -> None:
        def fire() -> None:
            self._timers.discard(handle)
            self.submit(call_id, attempt)

        handle = asyncio.get_running_loop().call_later(delay_s, fire)
        self._timers.add(handle)

    async def _deliver(self, call_id: str, attempt: int) -> None:
        try:
            call, _ = await self.queue.get(call_id)
        except NotFound:
            return  # purged meanwhile: nothing to deliver
        if call.callback_url is None or call.result is None:
            return
        async with self._limit:
            retry, reason = await self._post(call)
        if reason is None:
            await self.queue.set_callback_status(call_id, CALLBACK_DELIVERED)
        elif retry and attempt <= self.retries:
            log.info("callback of %s failed (%s); retrying", call_id, reason)
            self._later(FIRST_BACKOFF_S * 2 ** (attempt - 1), call_id, attempt + 1)
        else:
            await self.queue.set_callback_status(call_id, CALLBACK_FAILED)
            self.on_failure(call, f"callback to {call.callback_url} failed after {attempt} tries: {reason}")

    async def _post(self, call: AsyncCall) -> tuple[bool, str | None]:
        """(worth retrying, why it failed), or (False, None) when delivered."""
        assert self._session is not None and call.callback_url is not None and call.result is not None
        result = call.result
        try:
            parts = self.policy.check_url(call.callback_url)  # an address literal is checked here
        except BadRequest as exc:
            return False, exc.message
        headers = [(k, v) for k, v in result.headers if k.lower() not in HOP_BY_HOP]
        headers += [
            ("X-Call-Id", call.call_id),
            ("X-Function-Name", call.function),
            ("X-Function-Status", str(result.status)),
            ("X-Duration-Seconds", f"{result.duration_s:.6f}"),
        ]
        try:
            async with self._session.post(
                parts.geturl(), data=result.body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                status = response.status
        except aiohttp.ClientConnectorError as exc:
            refused = isinstance(exc.os_error, CallbackRefused)
            return not refused, str(exc.os_error) if refused else f"{type(exc).__name__}: {exc}"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return True, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if status < 300:
            return False, None
        return status >= 500 or status in RETRYABLE_STATUSES, f"the receiver answered {status}"
