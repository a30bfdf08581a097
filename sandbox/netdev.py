"""Small network-device operations without netlink: an IPv4 address, up,
a default route (ioctls, tens of microseconds each against about a
millisecond through pyroute2), per-device sysctls, byte counters, and
entering a sandbox's network namespace from a thread of the server.

The sysctls and the ioctls act in the network namespace of the calling
thread (`in_netns_of`); the counters are read through /proc/PID/net/dev.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator

SIOCADDRT = 0x890B
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C
IFF_UP = 0x1
RTF_UP = 0x1
RTF_GATEWAY = 0x2
CLONE_NEWNET = 0x40000000
_IFREQ_ADDR = struct.Struct("16sH2s4s16x")
_IFREQ_FLAGS = struct.Struct("16sH22x")

_libc = ctypes.CDLL(None, use_errno=True)


class _RtEntry(ctypes.Structure):
    """struct rtentry of <linux/route.h>: ctypes lays it out as the C
    compiler does (the longs and pointers are 8 bytes on 64-bit)."""

    _fields_ = [
        ("rt_pad1", ctypes.c_ulong),
        ("rt_dst", ctypes.c_ubyte * 16),
        ("rt_gateway", ctypes.c_ubyte * 16),
        ("rt_genmask", ctypes.c_ubyte * 16),
        ("rt_flags", ctypes.c_ushort),
        ("rt_pad2", ctypes.c_short),
        ("rt_pad3", ctypes.c_ulong),
        ("rt_pad4", ctypes.c_void_p),
        ("rt_metric", ctypes.c_short),
        ("rt_dev", ctypes.c_char_p),
        ("rt_mtu", ctypes.c_ulong),
        ("rt_window", ctypes.c_ulong),
        ("rt_irtt", ctypes.c_ushort),
    ]


def _sockaddr_in(address: str) -> bytes:
    return struct.pack("=H2s4s8x", socket.AF_INET, b"\0\0", socket.inet_aton(address))


def configure_ipv4(ifname: str, address: str, prefixlen: int) -> None:
    """Give `ifname` an IPv4 address and bring it up (the connected route
    comes with the address)."""
    name = ifname.encode()
    netmask = str(ipaddress.IPv4Network(f"0.0.0.0/{prefixlen}").netmask)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for request, value in ((SIOCSIFADDR, address), (SIOCSIFNETMASK, netmask)):
            fcntl.ioctl(s, request, _IFREQ_ADDR.pack(name, socket.AF_INET, b"\0\0", socket.inet_aton(value)))
        raw = fcntl.ioctl(s, SIOCGIFFLAGS, _IFREQ_FLAGS.pack(name, 0))
        _, flags = _IFREQ_FLAGS.unpack(raw)
        fcntl.ioctl(s, SIOCSIFFLAGS, _IFREQ_FLAGS.pack(name, flags | IFF_UP))


def add_default_route(gateway: str) -> None:
    entry = _RtEntry()
    for field, value in (("rt_dst", "0.0.0.0"), ("rt_gateway", gateway), ("rt_genmask", "0.0.0.0")):
        ctypes.memmove(getattr(entry, field), _sockaddr_in(value), 16)
    entry.rt_flags = RTF_UP | RTF_GATEWAY
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCADDRT, bytes(entry))


def write_sysctl(path: str, value: str) -> None:
    """Write a /proc/sys file; a missing one (no IPv6 in this kernel) is skipped."""
    try:
        with open(os.path.join("/proc/sys", path), "w") as f:
            f.write(value)
    except FileNotFoundError:
        pass


def read_sysctl(path: str) -> str:
    with open(os.path.join("/proc/sys", path)) as f:
        return f.read().strip()


def disable_ipv6(ifname: str) -> None:
    """No IPv6 on the device: no link-local address, router solicitation or
    neighbour discovery from or towards a sandbox (outbound is IPv4)."""
    write_sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6", "1")


def in_netns_of(pid: int) -> contextlib.AbstractContextManager[None]:
    """The calling thread in the network namespace of process `pid`, and back."""
    return in_netns(f"/proc/{pid}/ns/net")


@contextlib.contextmanager
def in_netns(path: str) -> Iterator[None]:
    """The calling thread in the network namespace at `path`, and back.
    Only ever in a thread of its own: setns() moves one thread."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def device_bytes(net_dev: str, ifname: str) -> tuple[int, int] | None:
    """(received, sent) bytes of `ifname` in the text of a /proc/.../net/dev."""
    for line in net_dev.splitlines()[2:]:
        name, _, counters = line.partition(":")
        if name.strip() == ifname:
            fields = counters.split()
            return int(fields[0]), int(fields[8])
    return None


def open_counters(pid: int) -> int:
    """An fd of /proc/PID/net/dev: read again with `bytes_of` (a pread, about
    10 us, against 60 for an open and read). It holds the namespace until closed."""
    return os.open(f"/proc/{pid}/net/dev", os.O_RDONLY | os.O_CLOEXEC)


def bytes_of(counters_fd: int, ifname: str) -> tuple[int, int]:
    """(received, sent) bytes of `ifname` in the namespace of an `open_counters` fd."""
    try:
        text = os.pread(counters_fd, 1 << 16, 0).decode()
    except OSError:
        return 0, 0
    return device_bytes(text, ifname) or (0, 0)


def device_names(prefix: str) -> list[str]:
    """The network devices of the server's own namespace whose names start with `prefix`."""
    with open("/proc/self/net/dev") as f:
        names = [line.partition(":")[0].strip() for line in f.read().splitlines()[2:]]
    return [name for name in names if name.startswith(prefix)]
