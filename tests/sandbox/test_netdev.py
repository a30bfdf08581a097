"""Reading a device's byte counters from /proc/PID/net/dev (sandbox/netdev.py)."""

from __future__ import annotations

import os
import socket

from sandbox import netdev

NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0
  eth0: 4218842    1103    0    0    0     0          0         0  2107990     800    0    0    0     0       0          0
"""


def test_device_bytes_are_received_then_sent() -> None:
    assert netdev.device_bytes(NET_DEV, "eth0") == (4218842, 2107990)
    assert netdev.device_bytes(NET_DEV, "lo") == (140, 140)
    assert netdev.device_bytes(NET_DEV, "eth1") is None


def test_counters_are_read_again_through_one_fd() -> None:
    fd = netdev.open_counters(os.getpid())
    try:
        rx_before, tx_before = netdev.bytes_of(fd, "lo")
        # 100 KB through loopback: both counters of lo grow by at least that.
        with socket.create_server(("127.0.0.1", 0)) as server:
            client = socket.create_connection(server.getsockname())
            peer, _ = server.accept()
            client.sendall(b"x" * 100_000)
            received = 0
            while received < 100_000:
                received += len(peer.recv(65536))
            client.close()
            peer.close()
        rx_after, tx_after = netdev.bytes_of(fd, "lo")
        assert rx_after - rx_before >= 100_000 and tx_after - tx_before >= 100_000
        assert netdev.bytes_of(fd, "no-such-device") == (0, 0)
    finally:
        os.close(fd)
    assert netdev.bytes_of(fd, "lo") == (0, 0)  # closed: nothing more to read
