"""GET /internal/channel on an invoker: a gateway's WebSocket, many calls at
once on it (gateway/cluster/wire.py). Each call runs in a task of its own
and is answered when it ends; a call whose gateway went away still runs to
its end and is metered, its answer dropped.

Closing for a shutdown: once aiohttp begins one it reads nothing more from
any connection, so a call on its way then is never read. The goodbye each
channel gets names the last call this invoker read on it: the gateway sends
nothing more there and takes every later one as not sent (it goes to the
next invoker); the calls read end, are answered, and then the channel closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import WSMsgType, web

from invoker.errors import FaasError
from invoker.invoker import Invoker
from invoker.metrics import Metrics
from invoker.model import Invocation

from ..errors import http_status
from .wire import WireError, decode_call, encode_answer, encode_failure, goodbye

log = logging.getLogger("faas.cluster")


class _Channel:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.send_lock = asyncio.Lock()
        self.calls: set[asyncio.Task[None]] = set()
        self.last_read = 0  # the number of the last call read

    async def send(self, message: bytes) -> None:
        if self.ws.closed:
            return
        async with self.send_lock:  # one message at a time on the socket
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_bytes(message)

    async def close(self) -> None:
        await self.send(goodbye(self.last_read))
        while self.calls:  # every call read ends and is answered
            await asyncio.gather(*list(self.calls), return_exceptions=True)
        await self.ws.close()


class ChannelServer:
    def __init__(self, invoker: Invoker, metrics: Metrics, max_message_bytes: int) -> None:
        self.invoker = invoker
        self.metrics = metrics
        self.max_message_bytes = max_message_bytes
        self._open: set[_Channel] = set()

    async def channel(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=self.max_message_bytes, compress=False, autoping=True)
        await ws.prepare(request)
        channel = _Channel(ws)
        self._open.add(channel)
        try:
            async for message in ws:
                if message.type is not WSMsgType.BINARY:
                    continue
                try:
                    number, inv = decode_call(message.data, time.monotonic())
                except WireError as exc:
                    log.warning("a gateway sent a malformed call: %s", exc)
                    continue
                channel.last_read = number
                task = asyncio.create_task(self._serve(channel, number, inv))
                channel.calls.add(task)
                task.add_done_callback(channel.calls.discard)
        finally:
            self._open.discard(channel)
        return ws

    async def _serve(self, channel: _Channel, number: int, inv: Invocation) -> None:
        received = inv.received_at
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
        await channel.send(answer)

    async def close(self, app: web.Application) -> None:
        """On shutdown, after the invoker's drain (new calls get 503)."""
        await asyncio.gather(*(channel.close() for channel in list(self._open)))
