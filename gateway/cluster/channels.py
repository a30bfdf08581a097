"""A gateway's WebSocket to each invoker (gateway/cluster/wire.py): opened
on first use with the cluster token, shared by every call to that invoker,
reopened after it closes.

A call that could not be handed over (no connection: refused, timed out,
the token refused) is NotSent, and may go to another invoker; one whose
connection closed before its answer came is Lost: it may have run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

import aiohttp

from invoker.model import Invocation

from .client import CONNECT_TIMEOUT_S, Lost, NotSent
from .wire import (
    GOODBYE_NUMBER,
    PATH,
    TOKEN_HEADER,
    Failure,
    RemoteResult,
    WireError,
    decode_reply,
    encode_call,
)

log = logging.getLogger("faas.cluster")

# Pings on an idle channel, so an invoker that vanished without a word (its
# host gone) fails its calls within about this long, not at their timeout.
HEARTBEAT_S = 5.0


class Channel:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.pending: dict[int, asyncio.Future[RemoteResult | Failure]] = {}
        # The invoker said goodbye (shutting down): no new call goes here.
        self.closing = False
        self._reader = asyncio.create_task(self._read(), name="cluster-channel")

    @property
    def usable(self) -> bool:
        return not self.closing and not self.ws.closed and not self._reader.done()

    async def call(self, number: int, message: bytes) -> RemoteResult | Failure:
        answer: asyncio.Future[RemoteResult | Failure] = asyncio.get_running_loop().create_future()
        self.pending[number] = answer
        try:
            await self.ws.send_bytes(message)
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            self.pending.pop(number, None)
            raise Lost(f"the channel broke while sending: {exc}") from None
        try:
            return await answer
        finally:
            self.pending.pop(number, None)

    async def _read(self) -> None:
        reason = "the invoker closed the channel"
        try:
            async for message in self.ws:
                if message.type is aiohttp.WSMsgType.BINARY:
                    try:
                        number, answer = decode_reply(message.data)
                    except WireError as exc:
                        reason = f"the invoker sent a malformed answer: {exc}"
                        break
                    if number == GOODBYE_NUMBER and isinstance(answer, Failure):
                        self._closing(int(answer.headers.get("last-read", "0")))
                        continue
                    waiting = self.pending.get(number)
                    if waiting is not None and not waiting.done():
                        waiting.set_result(answer)
                elif message.type is aiohttp.WSMsgType.ERROR:
                    reason = f"channel error: {self.ws.exception()}"
        except Exception as exc:  # the socket's own failure: every waiting call learns of it
            reason = f"channel failed: {exc}"
        finally:
            for waiting in self.pending.values():
                if not waiting.done():
                    waiting.set_exception(Lost(reason))
            with contextlib.suppress(Exception):
                await self.ws.close()

    def _closing(self, last_read: int) -> None:
        """The invoker is shutting down: no new call goes here, and those it
        never read go elsewhere (the ones it read are answered)."""
        self.closing = True
        for number, waiting in self.pending.items():
            if number > last_read and not waiting.done():
                waiting.set_exception(NotSent("the invoker began shutting down before it read the call"))

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Channels:
    def __init__(self, session: aiohttp.ClientSession, cluster_token: str, max_message_bytes: int) -> None:
        self._session = session
        self._token = cluster_token
        self._max_message_bytes = max_message_bytes
        self._channels: dict[str, Channel] = {}
        self._opening: dict[str, asyncio.Task[Channel]] = {}
        self._numbers = itertools.count(GOODBYE_NUMBER + 1)

    async def call(self, address: str, inv: Invocation) -> RemoteResult | Failure:
        channel = await self._channel(address)
        number = next(self._numbers)
        return await channel.call(number, encode_call(number, inv))

    async def _channel(self, address: str) -> Channel:
        channel = self._channels.get(address)
        if channel is not None and channel.usable:
            return channel
        # Calls arriving while it opens wait for the same handshake.
        opening = self._opening.get(address)
        if opening is None:
            opening = self._opening[address] = asyncio.create_task(self._open(address))
            opening.add_done_callback(lambda _t: self._opening.pop(address, None))
        return await asyncio.shield(opening)

    async def _open(self, address: str) -> Channel:
        try:
            ws = await self._session.ws_connect(
                f"http://{address}{PATH}",
                headers={TOKEN_HEADER: self._token},
                heartbeat=HEARTBEAT_S,
                max_msg_size=self._max_message_bytes,
                compress=0,
                timeout=aiohttp.ClientWSTimeout(ws_close=CONNECT_TIMEOUT_S),
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:
                log.error("invoker %s refused this gateway's cluster token", address)
            raise NotSent(f"invoker {address} refused the channel: {exc.status} {exc.message}") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise NotSent(f"cannot connect to {address}: {exc}") from None
        channel = self._channels[address] = Channel(ws)
        return channel

    async def aclose(self) -> None:
        for task in list(self._opening.values()):
            task.cancel()
        for channel in list(self._channels.values()):
            await channel.close()
        self._channels.clear()
