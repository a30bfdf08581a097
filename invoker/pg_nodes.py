"""Invokers of a cluster in the shared database: each keeps a row alive with
a heartbeat lease (its address, cores, memory, calls in flight, sandboxes,
readiness); a row whose lease has run out is a dead invoker. Times are the
database's own clock (now()), so hosts' clocks need not agree.

With HEARTBEAT_S = 0.5 and LEASE_S = 1.5, an invoker killed with SIGKILL
leaves the live set at most 1.5 s later; a gateway reading it every 0.5 s
stops routing to it within 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from .pg_schema import CONNECT_TIMEOUT_S, STATEMENT_TIMEOUT_MS

log = logging.getLogger("faas.cluster")

HEARTBEAT_S = 0.5
LEASE_S = 1.5


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    address: str  # HOST:PORT the gateways call
    cores: int
    memory_mb: int
    in_flight: int = 0
    sandboxes: int = 0
    ready: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


async def _connect(url: str) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(
        url,
        connect_timeout=CONNECT_TIMEOUT_S,
        autocommit=True,
        options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        application_name=f"faas-nodes-{os.getpid()}",
    )


class _Periodic:
    """A connection of its own and a task repeating one action on it."""

    _url: str
    _conn: psycopg.AsyncConnection | None = None
    _task: asyncio.Task[None] | None = None

    async def _reconnect(self) -> None:
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self._conn = await _connect(self._url)

    async def _stop_task(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class NodeLease(_Periodic):
    """This invoker's row, kept alive while the context is open; removed on a
    clean exit (a killed invoker's row just runs out)."""

    def __init__(
        self,
        url: str,
        describe: Callable[[], NodeInfo],
        heartbeat_s: float = HEARTBEAT_S,
        lease_s: float = LEASE_S,
    ) -> None:
        self._url = url
        self._describe = describe
        self._heartbeat_s = heartbeat_s
        self._lease_s = lease_s
        self._conn: psycopg.AsyncConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self.node_id = describe().node_id

    async def __aenter__(self) -> NodeLease:
        self._conn = await _connect(self._url)
        await self.beat()
        self._task = asyncio.create_task(self._beats(), name="node-heartbeat")
        return self

    async def beat(self) -> None:
        assert self._conn is not None
        node = self._describe()
        async with asyncio.timeout(self._lease_s):
            await self._conn.execute(
                "INSERT INTO nodes (node_id, address, cores, memory_mb, in_flight, sandboxes, ready, lease_until)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s))"
                " ON CONFLICT (node_id) DO UPDATE SET address = EXCLUDED.address, cores = EXCLUDED.cores,"
                " memory_mb = EXCLUDED.memory_mb, in_flight = EXCLUDED.in_flight,"
                " sandboxes = EXCLUDED.sandboxes, ready = EXCLUDED.ready, lease_until = EXCLUDED.lease_until",
                (node.node_id, node.address, node.cores, node.memory_mb, node.in_flight, node.sandboxes,
                 node.ready, self._lease_s),
            )  # fmt: skip

    async def _beats(self) -> None:
        # A lease that keeps failing runs out: gateways stop routing here, as they should.
        await _every(self._heartbeat_s, self.beat, "heartbeat", self._reconnect)

    async def __aexit__(self, *exc: object) -> None:
        await self._stop_task()
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error, TimeoutError):
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    await self._conn.execute("DELETE FROM nodes WHERE node_id = %s", (self.node_id,))
            await self._conn.close()


async def live_nodes(conn: psycopg.AsyncConnection) -> list[NodeInfo]:
    """Invokers whose lease has not run out, by id."""
    cur = await conn.execute(
        "SELECT node_id, address, cores, memory_mb, in_flight, sandboxes, ready FROM nodes"
        " WHERE lease_until > now() ORDER BY node_id"
    )
    return [NodeInfo(*row) for row in await cur.fetchall()]


class NodeWatch(_Periodic):
    """A gateway's view of the live invokers, read every `period_s`."""

    def __init__(self, url: str, period_s: float = HEARTBEAT_S) -> None:
        self._url = url
        self._period_s = period_s
        self._conn: psycopg.AsyncConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self.nodes: dict[str, NodeInfo] = {}

    async def __aenter__(self) -> NodeWatch:
        self._conn = await _connect(self._url)
        await self.refresh()
        self._task = asyncio.create_task(self._watch(), name="node-watch")
        return self

    async def refresh(self) -> None:
        assert self._conn is not None
        async with asyncio.timeout(max(self._period_s * 2, 1.0)):
            self.nodes = {node.node_id: node for node in await live_nodes(self._conn)}

    async def _watch(self) -> None:
        await _every(self._period_s, self.refresh, "reading the invokers", self._reconnect)

    async def __aexit__(self, *exc: object) -> None:
        await self._stop_task()
        if self._conn is not None:
            await self._conn.close()


async def _every(
    period_s: float,
    action: Callable[[], Awaitable[None]],
    what: str,
    reconnect: Callable[[], Awaitable[None]],
) -> None:
    """Run `action` every `period_s` until cancelled; a failure is logged and
    the connection made again if it broke, and the next round tries again."""
    while True:
        await asyncio.sleep(period_s)
        try:
            await action()
        except (psycopg.Error, TimeoutError) as exc:
            log.warning("%s failed: %s", what, exc)
            with contextlib.suppress(psycopg.Error, OSError):
                await reconnect()
