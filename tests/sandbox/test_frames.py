from __future__ import annotations

import socket

import pytest

from sandbox import frames, protocol


def test_round_trip_over_a_socket() -> None:
    a, b = socket.socketpair()
    with a, b:
        frames.send_blocking(a, {"t": "call", "body": b"\x00" * 100000})
        assert frames.recv_blocking(b) == {"t": "call", "body": b"\x00" * 100000}
        a.close()
        assert frames.recv_blocking(b) is None


def test_rejects_huge_length_before_reading() -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.check_length(protocol.MAX_FRAME_BYTES + 1)


@pytest.mark.parametrize("payload", [b"\xc1", b"\x93\x01\x02\x03", b"\x81\xa1x\x01"])
def test_rejects_garbage_and_non_messages(payload: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_payload(payload)


def test_eof_inside_a_frame() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(protocol.HEADER.pack(10) + b"abc")
        a.close()
        with pytest.raises(protocol.ProtocolError):
            frames.recv_blocking(b)
