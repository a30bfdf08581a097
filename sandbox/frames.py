"""Length-prefixed msgpack frames: a 4-byte big-endian length, then msgpack.

The pure part (encode, FrameDecoder) does no I/O; blocking helpers for the
sandbox side and the asyncio helper for the invoker side sit at the edges.
"""

from __future__ import annotations

import array
import os
import socket
import struct
from typing import Any

import msgpack

HEADER = struct.Struct(">I")
# Larger than any legal request or response (bodies are capped at 6 MiB,
# logs at 64 KiB), small enough that a garbage length is rejected before we
# allocate: a sandbox cannot make the server hold more than this per call.
MAX_FRAME_BYTES = 8 * 1024 * 1024
MAX_BODY_BYTES = 6 * 1024 * 1024


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


# Containers a legitimate message holds: a few keys, headers, a query.
# Without these bounds a small frame of many empty containers decodes into
# hundreds of MiB of Python objects (4 MiB of empty maps: ~300 MiB).
MAX_CONTAINER_LEN = 16384
# Strings are headers, paths, logs (capped at 64 KiB) and error messages;
# bodies are bytes. A longer string is a sandbox lying about its output.
MAX_STR_LEN = 256 * 1024


def decode_payload(payload: bytes) -> dict[str, Any]:
    try:
        message = msgpack.unpackb(
            payload,
            raw=False,
            max_array_len=MAX_CONTAINER_LEN,
            max_map_len=MAX_CONTAINER_LEN,
            max_str_len=MAX_STR_LEN,
        )
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


def recv_with_fds(sock: socket.socket, max_fds: int = 4) -> tuple[dict[str, Any], list[int]] | None:
    """Read one frame and the file descriptors sent with it (SCM_RIGHTS
    arrives with the frame's first bytes); None on EOF."""
    fds = array.array("i")
    header = b""
    while len(header) < HEADER.size:
        data, ancdata, _flags, _addr = sock.recvmsg(
            HEADER.size - len(header), socket.CMSG_SPACE(max_fds * fds.itemsize)
        )
        for level, kind, cmsg in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(cmsg[: len(cmsg) - (len(cmsg) % fds.itemsize)])
        if not data:
            for fd in fds:
                os.close(fd)
            if header:
                raise FrameError("EOF inside a frame")
            return None
        header += data
    (length,) = HEADER.unpack(header)
    payload = _recv_exactly(sock, check_length(length))
    if payload is None:
        raise FrameError("EOF inside a frame")
    return decode_payload(payload), list(fds)


def send_with_fds(fileno: int, message: dict[str, Any], fds: list[int]) -> None:
    """Send one frame with file descriptors on a socket's fd. For the
    invoker's non-blocking channel: the frame must fit in the socket buffer
    (a specialize message does, on a channel with nothing else in flight)."""
    sock = socket.socket(fileno=os.dup(fileno))
    try:
        data = encode(message)
        sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        if sent != len(data):
            raise FrameError(f"channel took {sent} of {len(data)} bytes")
    finally:
        sock.close()
