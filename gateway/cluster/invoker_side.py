"""An invoker's side of a cluster (`role = "invoker"`): the cluster token
required of every request but the probes (the gateways' calls arrive on
gateway/cluster/channel_server.py), and this invoker's row in the database's node
table, kept alive while it serves (invoker/pg_nodes.py)."""

from __future__ import annotations

import hmac
import os
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from invoker.errors import Unauthorized
from invoker.invoker import Invoker
from invoker.pg_nodes import NodeInfo, NodeLease
from invoker.validate import host_cores

from ..errors import Handler
from .wire import TOKEN_HEADER

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
