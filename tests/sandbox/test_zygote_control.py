"""The zygote's end of its control socket: a server that dies with replies
it never read leaves ECONNRESET rather than EOF, and that must end the
zygote's loop the same way (so it still kills its sandboxes), never crash it."""

from __future__ import annotations

import socket

from sandbox.zygote import _recv_request


def test_a_server_gone_with_unread_replies_reads_as_gone() -> None:
    server, zygote = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    zygote.send(b"a reply the server never reads")
    server.close()
    try:
        assert _recv_request(zygote) is None
    finally:
        zygote.close()


def test_a_clean_close_reads_as_gone_and_a_request_as_itself() -> None:
    server, zygote = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.send(b"request")
    assert _recv_request(zygote) == (b"request", [])
    server.close()
    try:
        assert _recv_request(zygote) is None
    finally:
        zygote.close()
