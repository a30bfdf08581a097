"""A gateway's way of sending work to the cluster's invokers: a call to its
function's home (or the next invoker along the ring when the home is full,
not ready or unreachable), any other request to the invoker of the
function it names. 502 when an invoker fails during a call; the call is
never sent twice, as it may have run."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import aclosing
from typing import TypeVar
from urllib.parse import unquote

from multidict import CIMultiDict

from invoker.errors import FaasError, Unavailable
from invoker.model import Invocation
from invoker.pg_nodes import NodeInfo

from ..errors import BadGateway, Relayed
from .channels import Channels
from .client import InvokerClient, Lost, NotSent, end_to_end
from .metrics import ClusterMetrics
from .router import Router
from .wire import Failure, RemoteResult

# Answers after which the next invoker is tried: the call did not run there
# (full: 429; shutting down, not ready or unable to start a sandbox: 503).
TRY_NEXT = frozenset({429, 503})
# How long a question asked of every invoker (Cluster.gather) waits for each.
GATHER_TIMEOUT_S = 5.0
LAMBDA_FUNCTIONS = "/2015-03-31/functions/"
T = TypeVar("T")


class Cluster:
    def __init__(
        self, router: Router, client: InvokerClient, channels: Channels, metrics: ClusterMetrics
    ) -> None:
        self.router = router
        self.client = client
        self.channels = channels
        self.metrics = metrics

    async def call(self, inv: Invocation) -> tuple[RemoteResult, str]:
        """Run a call on the cluster; its answer and the id of the invoker that ran it."""
        failure: Failure | None = None
        key = inv.function.partition("@")[0]
        async with aclosing(self._each(key, lambda n: self.channels.call(n.address, inv))) as answers:
            async for node, answer in answers:
                if isinstance(answer, RemoteResult):
                    self.metrics.sent(node.node_id, "answered")
                    return answer, node.node_id
                failure = answer
                self.metrics.sent(node.node_id, "full" if answer.status in TRY_NEXT else "answered")
                if answer.status not in TRY_NEXT:
                    break
        if failure is None:
            raise Unavailable("no invoker of the cluster could be reached")
        # Every invoker was full, or the call failed: the last answer.
        raise Relayed(failure.status, failure.message, failure.headers)

    async def forward(
        self, method: str, path_qs: str, headers: Iterable[tuple[str, str]], body: bytes, key: str
    ) -> tuple[int, CIMultiDict[str], bytes, str]:
        """Any other request, to the invoker `key` (a function's name, or "")
        maps to: its status, end-to-end headers and body, and the invoker's id."""
        sent = end_to_end(headers)
        last: tuple[int, CIMultiDict[str], bytes, str] | None = None
        request = self._each(key, lambda n: self.client.send(n.address, method, path_qs, sent, body))
        async with aclosing(request) as answers:
            async for node, (status, answer_headers, data) in answers:
                self.metrics.sent(node.node_id, "full" if status in TRY_NEXT else "answered")
                last = (status, end_to_end(answer_headers.items()), data, node.node_id)
                if status not in TRY_NEXT:
                    break
        if last is None:
            raise Unavailable("no invoker of the cluster could be reached")
        return last  # the answer, or every invoker was full: the last one's

    async def gather(
        self, method: str, path_qs: str, headers: Iterable[tuple[str, str]]
    ) -> list[tuple[str, int, CIMultiDict[str], bytes]]:
        """The same request to every reachable invoker at once, for what is
        spread over them (a function's logs: each invoker keeps those of the
        calls it served): (invoker id, status, headers, body) of each that
        answered. One not reached, failing, or slower than GATHER_TIMEOUT_S
        is left out: one stuck invoker must not stall the question."""
        sent = end_to_end(headers)

        async def ask(node: NodeInfo) -> tuple[str, int, CIMultiDict[str], bytes] | None:
            try:
                status, answer_headers, body = await self.client.send(
                    node.address, method, path_qs, sent, b"", GATHER_TIMEOUT_S
                )
            except NotSent:
                self.router.unreachable(node.node_id, time.monotonic())
                self.metrics.sent(node.node_id, "unreachable")
                return None
            except Lost:
                self.metrics.sent(node.node_id, "lost")
                return None
            self.metrics.sent(node.node_id, "answered")
            return node.node_id, status, answer_headers, body

        answers = await asyncio.gather(*(ask(node) for node in self.router.reachable(time.monotonic())))
        return [answer for answer in answers if answer is not None]

    async def _each(
        self, key: str, send: Callable[[NodeInfo], Awaitable[T]]
    ) -> AsyncIterator[tuple[NodeInfo, T]]:
        """`send` to the invokers for `key` in order, yielding each answer
        (the caller stops when it has what it wants); one not reached is
        skipped, one that failed after the request left ends it with 502."""
        order = self.router.order(key, time.monotonic())
        if not order:
            raise Unavailable("no invoker of the cluster is ready")
        for node in order:
            self.router.started(node.node_id)
            self.metrics.in_flight(node.node_id, self.router.in_flight[node.node_id])
            try:
                answer = await send(node)
            except NotSent:
                self.router.unreachable(node.node_id, time.monotonic())
                self.metrics.sent(node.node_id, "unreachable")
                continue
            except Lost as exc:
                self.metrics.sent(node.node_id, "lost")
                raise BadGateway(f"invoker {node.node_id} failed during the request: {exc}") from None
            finally:
                self.router.finished(node.node_id)
                self.metrics.in_flight(node.node_id, self.router.in_flight.get(node.node_id, 0))
            yield node, answer


def relayed_error(status: int, headers: CIMultiDict[str], body: bytes) -> FaasError:
    """An invoker's error answer, as the error the gateway answers with."""
    try:
        message = str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", "replace")[:500] or f"invoker answered {status}"
    kept = {name: headers[name] for name in ("Retry-After", "Allow") if name in headers}
    return Relayed(status, message, kept)


def function_of(path: str, query: dict[str, str]) -> str:
    """The function a request is about, to route it to that function's home
    invoker (where its sandboxes, logs and layer are); "" for none."""
    parts = path.split("/")
    name = ""
    if path.startswith("/async-function/"):
        name = parts[2]
    elif path.startswith(("/system/functions/", "/system/function/")):
        name = parts[3]
    elif path.startswith(LAMBDA_FUNCTIONS) and len(parts) > 3:
        name = unquote(parts[3])
        if ":function:" in name:  # an ARN
            name = name.split(":function:", 1)[1]
        name = name.split(":", 1)[0]
    elif path.startswith("/system/"):
        name = query.get("name", "") or query.get("function", "")
    return name.partition("@")[0]
