"""Each invoker's view of the NATS queue's bucket of calls
(invoker/async_nats_records.py's CallView), kept current by a watch of
the whole bucket: every put and delete, from every invoker."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js.kv import KeyValue

from .async_nats_records import CallRecord, CallView
from .async_nats_setup import REQUEST_TIMEOUT_S, nats_errors
from .tasks import cancel_and_wait

log = logging.getLogger("faas.async")


class BucketWatch:
    """`view` is the bucket as last heard of. After a reconnection (a
    restarted server has lost the watch's consumer) or a failure, the watch
    starts again into a fresh view (deletes it missed would linger in the
    old one), swapped in once the bucket is read."""

    def __init__(self, kv: KeyValue, reconnected: asyncio.Event) -> None:
        self._kv = kv
        self._reconnected = reconnected
        self.view = CallView()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Return once the bucket is read."""
        loop = asyncio.get_running_loop()
        loaded: asyncio.Future[None] = loop.create_future()
        self._task = loop.create_task(self._watch(loaded), name="async-nats-watch")
        async with nats_errors("read the calls"), asyncio.timeout(REQUEST_TIMEOUT_S * 6):
            await asyncio.shield(loaded)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)

    async def _watch(self, loaded: asyncio.Future[None]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._reconnected.clear()
            session = loop.create_task(self._watch_once(loaded), name="async-nats-watch-session")
            reconnected = loop.create_task(self._reconnected.wait())
            try:
                await asyncio.wait({session, reconnected}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await cancel_and_wait(session)
                await cancel_and_wait(reconnected)
            failure = None if session.cancelled() else session.exception()
            if failure is not None:
                if not loaded.done():
                    loaded.set_exception(failure)
                    return
                log.warning("watch of the asynchronous calls failed (%s): starting it again", failure)
                await asyncio.sleep(1.0)
            else:
                log.info("reconnected to NATS: reading the asynchronous calls again")

    async def _watch_once(self, loaded: asyncio.Future[None]) -> None:
        watcher = await self._kv.watchall()
        try:
            view = self.view if not loaded.done() else CallView()
            async for entry in watcher:
                if entry is None:  # the bucket as it was is read
                    self.view = view
                    if not loaded.done():
                        loaded.set_result(None)
                    continue
                if entry.operation in ("DEL", "PURGE") or not entry.value:
                    view.apply(entry.key, entry.revision, None)
                else:
                    view.apply(entry.key, entry.revision, CallRecord.unpack(entry.value))
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()
