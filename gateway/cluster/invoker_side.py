"""An invoker's side of a cluster (`role = "invoker"`): the cluster token
required of every request but the probes, the call endpoint gateways use
(gateway/cluster/wire.py), and this invoker's row in the database's node
table, kept alive while it serves (invoker/pg_nodes.py)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import WSMsgType, web

from invoker.errors import FaasError, Unauthorized
from invoker.invoker import Invoker
from invoker.metrics import Metrics
from invoker.pg_nodes import NodeInfo, NodeLease
from invoker.validate import host_cores

from ..errors import Handler, http_status
from .wire import TOKEN_HEADER, WireError, decode_call, encode_answer, encode_failure

log = logging.getLogger("faas.cluster")

# Probes and scrapers reach these under no token: they say nothing about functions' data.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def make_cluster_auth_middleware(token: str) -> web.Middleware:  # type: ignore[name-defined]
    """Only a gateway of the cluster may call an invoker. The gateway has
    applied the user's checks (token, Host, Origin) before forwarding, so
    they are not repeated here."""
    expected = token.encode()

    @web.middleware
    async def cluster_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS:
            given = request.headers.get(TOKEN_HEADER, "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, expected):
                raise Unauthorized(f"missing or wrong cluster token ({TOKEN_HEADER})")
        return await handler(request)

    return cluster_auth


class ChannelServer:
    """GET /internal/channel: a gateway's WebSocket, many calls at once on it
    (gateway/cluster/wire.py). Each call runs in a task of its own and is
    answered when it ends; a call whose gateway went away still runs to its
    end and is metered, its answer dropped."""

    def __init__(self, invoker: Invoker, metrics: Metrics, max_message_bytes: int) -> None:
        self.invoker = invoker
        self.metrics = metrics
        self.max_message_bytes = max_message_bytes
        self._open: set[web.WebSocketResponse] = set()
        self._calls: set[asyncio.Task[None]] = set()

    async def channel(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=self.max_message_bytes, compress=False, autoping=True)
        await ws.prepare(request)
        self._open.add(ws)
        send_lock = asyncio.Lock()
        try:
            async for message in ws:
                if message.type is not WSMsgType.BINARY:
                    continue
                task = asyncio.create_task(self._serve(ws, send_lock, message.data))
                self._calls.add(task)
                task.add_done_callback(self._calls.discard)
        finally:
            self._open.discard(ws)
        return ws

    async def _serve(self, ws: web.WebSocketResponse, send_lock: asyncio.Lock, message: bytes) -> None:
        received = time.monotonic()
        try:
            number, inv = decode_call(message, received)
        except WireError as exc:
            log.warning("a gateway sent a malformed call: %s", exc)
            return
        function, code = inv.function, 500
        try:
            function = (await self.invoker.admit_current(inv.function)).name
            result = await self.invoker.invoke(inv)
            code = result.status
            answer = encode_answer(number, result)
        except FaasError as exc:
            code = http_status(exc)
            answer = encode_failure(number, code, exc.message, dict(exc.headers))
        finally:
            if code != 404:
                self.metrics.invocation_done(function, code, time.monotonic() - received)
        if ws.closed:
            return
        async with send_lock:  # one message at a time on the socket
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_bytes(answer)

    async def close(self, app: web.Application) -> None:
        """On shutdown, after the invoker's drain (new calls get 503): the
        calls running end, their answers go out, then the channels close."""
        if self._calls:
            await asyncio.gather(*self._calls, return_exceptions=True)
        for ws in list(self._open):
            await ws.close()


def memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)


def describer(invoker: Invoker, address: str) -> Callable[[], NodeInfo]:
    """What this invoker's heartbeat says of it; its id is its address, so a
    restarted invoker keeps its place on the gateways' ring."""
    cores, memory = int(host_cores()), memory_mb()

    def describe() -> NodeInfo:
        pools, _ = invoker.pool_snapshot()
        return NodeInfo(
            node_id=address,
            address=address,
            cores=cores,
            memory_mb=memory,
            in_flight=pools["busy"],
            sandboxes=pools["busy"] + pools["idle"],
            ready=invoker.ready and not invoker.draining,
        )

    return describe


def node_lease_context(
    invoker: Invoker, database: str, address: str
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context registering this invoker once it is ready, and
    removing its row before it tears down."""

    async def registered(app: web.Application) -> AsyncIterator[None]:
        async with NodeLease(database, describer(invoker, address)):
            yield

    return registered
