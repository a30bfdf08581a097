"""Frames over sockets: the blocking helpers of the sandbox side and the
file-descriptor passing both sides use. What a frame is, and the messages
in it, is sandbox/protocol.py."""

from __future__ import annotations

import array
import os
import socket
from typing import Any

from .protocol import HEADER, ProtocolError, check_length, decode_payload, encode


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
        raise ProtocolError("EOF inside a frame")
    return decode_payload(payload)


class FrameReceiver:
    """Blocking reads of whole frames with one recv() for a frame that fits
    the buffer (the usual call), not one for the header and one for the
    payload: in a sandbox every syscall is paid on every call."""

    def __init__(self, sock: socket.socket, buffer_bytes: int = 64 * 1024) -> None:
        self._sock = sock
        self._buffer = bytearray(buffer_bytes)
        self._view = memoryview(self._buffer)
        self._start = 0  # the next frame begins here
        self._end = 0  # bytes received up to here

    def _compact(self) -> None:
        """Move a partial frame to the front of the buffer."""
        if self._start:
            self._buffer[: self._end - self._start] = bytes(self._view[self._start : self._end])
            self._end -= self._start
            self._start = 0

    def _fill(self) -> bool:
        """Receive more into the free end of the buffer; False on EOF."""
        n = self._sock.recv_into(self._view[self._end :])
        self._end += n
        return n > 0

    def recv(self) -> dict[str, Any] | None:
        """The next frame, decoded; None on a clean EOF before a frame starts."""
        while self._end - self._start < HEADER.size:
            self._compact()
            if not self._fill():
                if self._end != self._start:
                    raise ProtocolError("EOF inside a frame")
                return None
        (length,) = HEADER.unpack_from(self._buffer, self._start)
        total = HEADER.size + check_length(length)
        while self._end - self._start < total:
            self._compact()
            if self._end == len(self._buffer):
                # Larger than the buffer: the rest straight from the socket.
                head = bytes(self._view[HEADER.size : self._end])
                rest = _recv_exactly(self._sock, total - self._end)
                self._start = self._end = 0
                if rest is None:
                    raise ProtocolError("EOF inside a frame")
                return decode_payload(head + rest)
            if not self._fill():
                raise ProtocolError("EOF inside a frame")
        start = self._start + HEADER.size
        self._start += total
        message = decode_payload(self._view[start : self._start])
        if self._start == self._end:
            self._start = self._end = 0
        return message


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
                raise ProtocolError("EOF inside a frame")
            return None
        header += data
    (length,) = HEADER.unpack(header)
    payload = _recv_exactly(sock, check_length(length))
    if payload is None:
        raise ProtocolError("EOF inside a frame")
    return decode_payload(payload), list(fds)


def send_with_fds(fileno: int, frame: bytes, fds: list[int]) -> int:
    """Send the start of one encoded frame with file descriptors on a
    socket's fd; how many bytes went. For the invoker's non-blocking
    channel: what does not fit in the socket buffer (a frame carrying large
    secrets) the caller writes after it."""
    sock = socket.socket(fileno=os.dup(fileno))
    try:
        sent = sock.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        if sent <= 0:
            raise ProtocolError(f"channel took none of {len(frame)} bytes")
        return sent
    finally:
        sock.close()


def recv_datagram_with_fds(
    sock: socket.socket, max_bytes: int, max_fds: int = 4
) -> tuple[bytes, list[int]] | None:
    """One datagram of a SEQPACKET control socket (a zygote's) and the file
    descriptors sent with it; None on EOF."""
    fds = array.array("i")
    msg, ancdata, _flags, _addr = sock.recvmsg(max_bytes, socket.CMSG_SPACE(max_fds * fds.itemsize))
    if not msg:
        return None
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    return msg, list(fds)
