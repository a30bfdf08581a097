"""Deploys made on another server of a cluster, applied here: every change
to the PostgreSQL registry NOTIFYs `faas_registry` with the function's name
(invoker/pg_registry.py); this server LISTENs and brings that function's
versions, code and aliases in line with the database, usually within
milliseconds of the commit.

A change made here is heard here too; it then finds nothing to do. Nothing
here writes to the registry, so servers never echo each other's changes.
A lost connection is made again and every function re-read, since
notifications sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import psycopg

from .pg_registry import CHANNEL
from .pg_schema import CONNECT_TIMEOUT_S

log = logging.getLogger("faas.cluster")

RECONNECT_S = 0.5


class RegistryListener:
    """Calls `changed(name)` for every function another server changed, one
    at a time, in order; `changed(None)` after a reconnect (re-read all)."""

    def __init__(self, url: str, changed: Callable[[str | None], Awaitable[None]]) -> None:
        self._url = url
        self._changed = changed
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    async def __aenter__(self) -> RegistryListener:
        self._task = asyncio.create_task(self._listen(), name="registry-listener")
        return self

    async def _listen(self) -> None:
        first = True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    if not first:
                        await self._changed(None)
                    first = False
                    async for note in conn.notifies():
                        try:
                            await self._changed(note.payload)
                        except Exception:  # one function's trouble must not stop the others'
                            log.exception("applying a change to function %s failed", note.payload)
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                log.warning("registry listener lost its connection (%s); reconnecting", exc)
                await asyncio.sleep(RECONNECT_S)

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
