"""The Invoker's public methods for asynchronous calls (a base class of
Invoker, so that invoker/invoker.py stays about running calls): thin doors
to AsyncCalls (invoker/async_calls.py), which does the work."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .async_calls import AsyncCalls
from .async_model import AsyncCall, AsyncQuery
from .config import InvokerConfig
from .errors import FaasError
from .logs import LogStore
from .metrics import Metrics
from .model import FunctionConfig, Invocation, InvocationResult


class AsyncInvocations:
    # Provided by the Invoker.
    ready: bool
    draining: bool
    _async: AsyncCalls

    def _admit(self, name: str) -> Any:
        raise NotImplementedError

    async def invoke(self, inv: Invocation, *, background: bool = False) -> InvocationResult:
        raise NotImplementedError

    def get(self, name: str) -> FunctionConfig:
        raise NotImplementedError

    def _make_async_calls(
        self,
        config: InvokerConfig,
        metrics: Metrics,
        logs: LogStore,
        http_status: Callable[[FaasError], int] | None,
    ) -> AsyncCalls:
        """`http_status`: the gateway's mapping of errors to HTTP statuses, for
        the results of asynchronous calls (without one, every error is a 500)."""
        return AsyncCalls(
            config,
            metrics,
            functools.partial(self.invoke, background=True),
            self.get,
            lambda: self.ready and not self.draining,
            http_status or (lambda exc: 500),
            logs.append,
        )

    async def enqueue_async(self, inv: Invocation, callback_url: str | None = None) -> str:
        """Queue a call durably; its call id. 404 for no such function, 400
        for a callback URL the policy refuses, 429 past max_async_queue."""
        self._admit(inv.function)
        return await self._async.enqueue(inv, callback_url)

    async def async_call(self, call_id: str) -> AsyncCall:
        return await self._async.get(call_id)

    async def async_calls(self, query: AsyncQuery, cursor: int, limit: int) -> list[tuple[int, AsyncCall]]:
        return await self._async.list(query, cursor, limit)

    async def cancel_async(self, call_id: str) -> AsyncCall:
        """Cancel a queued call: 404 for none, 409 when it is no longer queued."""
        return await self._async.cancel(call_id)
