"""Changes made on another server of a cluster, applied here: every change
to the PostgreSQL registry NOTIFYs `faas_registry` with the function's name
(invoker/pg_registry.py), every change to a secret `faas_secrets` with the
secret's name (invoker/pg_secrets.py); this server LISTENs to both and
brings that function's versions and aliases, or that secret, in line with
the database, usually within milliseconds of the commit.

A change made here is heard here too; it then finds nothing to do. Nothing
a handler does writes to the database, so servers never echo each other's
changes. Once listening, and again after every reconnect, everything is
re-read: notifications sent before (between the server's start reading
the database and its LISTEN, or while the connection was lost) are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

import psycopg

from .pg_schema import CONNECT_TIMEOUT_S

log = logging.getLogger("faas.cluster")

RECONNECT_S = 0.5

Handler = Callable[[str | None], Awaitable[None]]


class ClusterListener:
    """For each notification on a channel of `handlers`, calls that
    channel's handler with its payload (the name changed), one at a time, in
    order; every handler with None once listening (re-read all)."""

    def __init__(self, url: str, handlers: Mapping[str, Handler]) -> None:
        self._url = url
        self._handlers = dict(handlers)
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    async def __aenter__(self) -> ClusterListener:
        self._task = asyncio.create_task(self._listen(), name="cluster-listener")
        return self

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
                ) as conn:
                    for channel in self._handlers:
                        await conn.execute(f"LISTEN {channel}")
                    for channel in self._handlers:
                        await self._apply(channel, None)
                    self.listening.set()
                    async for note in conn.notifies():
                        await self._apply(note.channel, note.payload)
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                log.warning("cluster listener lost its connection (%s); reconnecting", exc)
                await asyncio.sleep(RECONNECT_S)

    async def _apply(self, channel: str, name: str | None) -> None:
        handler = self._handlers.get(channel)
        if handler is None:
            return
        try:
            await handler(name)
        except (psycopg.OperationalError, OSError):
            raise  # the connection's trouble: reconnect and re-read
        except Exception:  # one name's trouble must not stop the others'
            log.exception("applying a change (%s %s) failed", channel, name)

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
