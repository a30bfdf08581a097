"""The zygote's end of its control socket: a server that dies with replies
it never read leaves ECONNRESET rather than EOF, and that must end the
zygote's loop the same way (so it still kills its sandboxes), never crash it."""

from __future__ import annotations

import socket

from sandbox import frames
from sandbox.protocol import MAX_CONTROL_BYTES
from sandbox.zygote import ThawCommands, _serve_requests


def test_a_server_gone_with_unread_replies_ends_the_loop() -> None:
    server, zygote = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    zygote.send(b"a reply the server never reads")
    server.close()
    try:
        _serve_requests(zygote, None, ThawCommands())  # type: ignore[arg-type]  # returns, no exception
    finally:
        zygote.close()


def test_a_clean_close_reads_as_gone_and_a_request_as_itself() -> None:
    server, zygote = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.send(b"request")
    assert frames.recv_datagram_with_fds(zygote, MAX_CONTROL_BYTES) == (b"request", [])
    server.close()
    try:
        assert frames.recv_datagram_with_fds(zygote, MAX_CONTROL_BYTES) is None
    finally:
        zygote.close()
