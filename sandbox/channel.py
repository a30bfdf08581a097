"""The host's end of a sandbox's channel: an asyncio protocol that cuts the
bytes into frames as they arrive (sandbox/protocol.py's framing), so a warm
call's answer costs one wake-up of one future, not a StreamReader's two
reads (header, then payload) with their buffer copies and waiters.

The sandbox is not trusted: a length over MAX_FRAME_BYTES breaks the
channel at once, and reading from the socket pauses while more than one
frame's worth of bytes waits unread, so a sandbox that floods its channel
cannot grow the server's memory.
"""

from __future__ import annotations

import asyncio
import collections

from .protocol import HEADER, MAX_FRAME_BYTES, ProtocolError, check_length

# Bytes kept unread (whole frames and a partial one) before reading pauses.
HIGH_WATER_BYTES = MAX_FRAME_BYTES + HEADER.size


class ChannelClosed(ConnectionError):
    """The sandbox closed its end (or died), or the channel was cut."""


class FrameChannel(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._partial = bytearray()
        # Payloads of whole frames not yet received (views of what arrived: no copy).
        self._frames: collections.deque[bytes | memoryview] = collections.deque()
        self._queued_bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._error: Exception | None = None
        self._paused = False
        # Set while the transport's write buffer is over its high-water mark.
        self._drained: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._error is not None:
            return
        size = HEADER.size
        if not self._partial and len(data) >= size:
            # The common case: the chunk starts a frame (often it is exactly one).
            (length,) = HEADER.unpack_from(data)
            if length <= MAX_FRAME_BYTES and len(data) == size + length:
                self._queue(memoryview(data)[size:])
                self._pause_if_full()
                self._wake()
                return
        buffer = self._partial
        buffer += data
        start = 0
        while len(buffer) - start >= size:
            (length,) = HEADER.unpack_from(buffer, start)
            try:
                check_length(length)
            except ProtocolError as exc:
                self._fail(exc)
                return
            end = start + size + length
            if len(buffer) < end:
                break
            self._queue(bytes(memoryview(buffer)[start + size : end]))
            start = end
        if start:
            del buffer[:start]
        self._pause_if_full()
        self._wake()

    def _pause_if_full(self) -> None:
        if not self._paused and self._queued_bytes + len(self._partial) > HIGH_WATER_BYTES:
            self._paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def pause_writing(self) -> None:
        self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def eof_received(self) -> bool:
        self._closed = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._wake()
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_exception(ChannelClosed("the channel closed"))

    # -- the host's side ------------------------------------------------------------

    def _queue(self, payload: bytes | memoryview) -> None:
        self._frames.append(payload)
        self._queued_bytes += len(payload)

    def _fail(self, exc: Exception) -> None:
        self._error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def at_eof(self) -> bool:
        """Closed by the other end (or cut), with nothing left to read."""
        return self._closed and not self._frames

    async def receive(self) -> bytes | memoryview:
        """The next frame's payload. ProtocolError for a length over the cap,
        ChannelClosed when the channel ends first."""
        while not self._frames:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise ChannelClosed("the channel closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        payload = self._frames.popleft()
        self._queued_bytes -= len(payload)
        if self._paused and self._queued_bytes + len(self._partial) <= HIGH_WATER_BYTES:
            self._paused = False
            if self.transport is not None:
                self.transport.resume_reading()
        return payload

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        """Until what was written has (mostly) gone to the socket."""
        if self._closed:
            raise ChannelClosed("the channel closed")
        if self._drained is not None:
            await asyncio.shield(self._drained)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
