"""Length-prefixed msgpack frames: a 4-byte big-endian length, then msgpack.

The pure part (encode, FrameDecoder) does no I/O; blocking helpers for the
sandbox side and the asyncio helper for the invoker side sit at the edges.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import msgpack

HEADER = struct.Struct(">I")
# Larger than any legal request or response (bodies are capped at a few MiB),
# small enough that a garbage length is rejected before we allocate.
MAX_FRAME_BYTES = 64 * 1024 * 1024


class FrameError(Exception):
    """The peer broke the protocol: bad length, bad msgpack, or not a map."""


def encode(message: dict[str, Any]) -> bytes:
    payload = msgpack.packb(message, use_bin_type=True)
    if len(payload) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    return HEADER.pack(len(payload)) + payload


def check_length(length: int) -> int:
    if length > MAX_FRAME_BYTES:
        raise FrameError(f"frame length {length} exceeds {MAX_FRAME_BYTES}")
    return length


def decode_payload(payload: bytes) -> dict[str, Any]:
    try:
        message = msgpack.unpackb(payload, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise FrameError(f"undecodable frame: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise FrameError("frame is not a message map")
    return message


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            return None
        got += n
    return bytes(buf)


def recv_blocking(sock: socket.socket) -> dict[str, Any] | None:
    """Read one frame; None on a clean EOF before a frame starts."""
    header = _recv_exactly(sock, HEADER.size)
    if header is None:
        return None
    (length,) = HEADER.unpack(header)
    payload = _recv_exactly(sock, check_length(length))
    if payload is None:
        raise FrameError("EOF inside a frame")
    return decode_payload(payload)


def send_blocking(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(encode(message))
