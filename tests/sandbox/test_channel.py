"""FrameChannel over a real socketpair: frames cut wherever the bytes split,
lengths over the cap refused, reading paused while the host reads nothing."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sandbox import protocol
from sandbox.channel import HIGH_WATER_BYTES, ChannelClosed, FrameChannel


async def _channel() -> tuple[FrameChannel, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.setblocking(False)
    _, channel = await asyncio.get_running_loop().create_unix_connection(FrameChannel, sock=ours)
    return channel, theirs


async def _send(sock: socket.socket, data: bytes) -> None:
    await asyncio.get_running_loop().sock_sendall(sock, data)


def _frame(message: dict[str, object]) -> bytes:
    return protocol.encode(message)


async def test_frames_split_anywhere_and_several_in_one_chunk() -> None:
    channel, theirs = await _channel()
    try:
        frames = [_frame({"t": "result", "n": i, "body": b"x" * (i * 1000)}) for i in range(5)]
        stream = b"".join(frames)
        # One byte, then the rest of the first header, then chunks that cut frames and headers.
        cuts = [1, 4, 7, 1500, len(stream) - 3, len(stream)]
        start = 0
        for end in cuts:
            await _send(theirs, stream[start:end])
            start = end
            await asyncio.sleep(0.01)
        got = [protocol.decode_payload(await channel.receive()) for _ in frames]
        assert [m["n"] for m in got] == list(range(5))
        assert [len(m["body"]) for m in got] == [i * 1000 for i in range(5)]
        await _send(theirs, b"".join(frames[:2]))
        assert protocol.decode_payload(await channel.receive())["n"] == 0
        assert protocol.decode_payload(await channel.receive())["n"] == 1
    finally:
        channel.close()
        theirs.close()


async def test_a_length_over_the_cap_is_a_protocol_error() -> None:
    channel, theirs = await _channel()
    try:
        await _send(theirs, protocol.HEADER.pack(protocol.MAX_FRAME_BYTES + 1) + b"x" * 16)
        with pytest.raises(protocol.ProtocolError, match="exceeds"):
            await asyncio.wait_for(channel.receive(), 5)
    finally:
        channel.close()
        theirs.close()


async def test_eof_ends_the_channel_after_the_frames_before_it() -> None:
    channel, theirs = await _channel()
    await _send(theirs, _frame({"t": "blank"}) + b"\x00\x00")  # a whole frame, then a cut header
    theirs.close()
    assert protocol.decode_payload(await channel.receive())["t"] == "blank"
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(channel.receive(), 5)
    assert channel.at_eof()
    channel.close()


async def test_reading_pauses_while_frames_pile_up_unread() -> None:
    channel, theirs = await _channel()
    try:
        big = _frame({"t": "result", "body": b"y" * (2 * 1024 * 1024)})
        sent = 0

        async def flood() -> None:
            nonlocal sent
            while True:
                await _send(theirs, big)
                sent += len(big)

        flooder = asyncio.create_task(flood())
        await asyncio.sleep(1.0)
        # The socket buffers hold a little; the channel at most its high-water mark and one chunk.
        assert channel._queued_bytes + len(channel._partial) <= HIGH_WATER_BYTES + len(big)
        assert sent < 4 * HIGH_WATER_BYTES
        received = 0
        for _ in range(8):
            received += len(await asyncio.wait_for(channel.receive(), 5))
        assert received == 8 * (len(big) - protocol.HEADER.size)
        flooder.cancel()
    finally:
        channel.close()
        theirs.close()


async def test_a_write_reaches_the_other_end() -> None:
    channel, theirs = await _channel()
    try:
        channel.write(_frame({"t": "call", "id": "a"}))
        await channel.drain()
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(theirs, 1024), 5)
        assert protocol.decode_payload(data[protocol.HEADER.size :])["id"] == "a"
    finally:
        channel.close()
        theirs.close()
