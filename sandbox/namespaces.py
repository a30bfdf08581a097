"""Namespaces: unshare, and the per-namespace setup that follows (loopback up
in the new network namespace, the hostname in the new UTS namespace)."""

from __future__ import annotations

import fcntl
import socket
import struct

from . import linux
from .spec import FunctionSpec, SandboxSpec

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ = struct.Struct("16sH")


def unshare_flags(spec: SandboxSpec) -> int:
    flags = 0
    for name in spec.namespaces:
        flags |= linux.NAMESPACE_FLAGS[name]
    return flags


def bring_loopback_up() -> None:
    # Two ioctls instead of pyroute2: a netlink library in the zygote would
    # make every fork slower for one flag.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        raw = fcntl.ioctl(s, SIOCGIFFLAGS, _IFREQ.pack(b"lo", 0))
        _, flags = _IFREQ.unpack(raw)
        fcntl.ioctl(s, SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | IFF_UP))


def setup_inside(spec: SandboxSpec) -> None:
    """Runs as PID 1 of the new namespaces, before the mounts."""
    if "net" in spec.namespaces:
        bring_loopback_up()


def specialize(spec: SandboxSpec, function: FunctionSpec) -> None:
    if "uts" in spec.namespaces:
        linux.sethostname(function.hostname)
