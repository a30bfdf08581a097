"""The seccomp filter's socket rules (sandbox/seccomp.py): a function opens
AF_UNIX, AF_INET, AF_INET6 and NETLINK_ROUTE sockets and nothing else, so
vsock, packet sockets, the kernel crypto API, uevents and the rest of the
kernel's socket code are out of its reach; file watches (inotify, fanotify)
too. Loopback networking keeps working."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import Server
from tests.security.common import assert_healthy, deploy_hostile

# What the filter answers; EPERM where the kernel refuses first (e.g. a
# netlink protocol that needs a capability) is a refusal too.
REFUSALS = {"EAFNOSUPPORT", "EPERM"}


@pytest.fixture(scope="module")
def sockets(server: Server) -> dict[str, Any]:
    resp = server.invoke(deploy_hostile(server, "sockets"), timeout=30)
    assert resp.status == 200, resp.text
    out = resp.json()
    print(out)
    return out


def test_every_other_socket_family_is_refused(sockets: dict[str, Any]) -> None:
    opened = {k: v for k, v in sockets["refused"].items() if k.startswith("socket(") and v not in REFUSALS}
    assert not opened, f"socket() calls that were not refused: {opened}"


@pytest.mark.parametrize(
    "attempt",
    [
        "socket(AF_VSOCK)",
        "socket(AF_PACKET)",
        "socket(AF_ALG)",
        "socket(AF_BLUETOOTH)",
        "socket(AF_NETLINK, NETLINK_KOBJECT_UEVENT)",
        "socket(AF_NETLINK, NETLINK_GENERIC)",
        "socket(AF_NETLINK, NETLINK_SOCK_DIAG)",
        "socket(AF_VSOCK | 1 << 32)",
        "socket(AF_NETLINK, NETLINK_KOBJECT_UEVENT | 1 << 32)",
        "socket(-1)",
    ],
)
def test_the_filter_refuses(sockets: dict[str, Any], attempt: str) -> None:
    """The filter's own errno. Without it the kernel opens vsock, packet,
    uevent, generic and diag netlink sockets (or answers another errno);
    AF_ALG and AF_BLUETOOTH depend on the host's modules, -1 on nothing."""
    assert sockets["refused"][attempt] == "EAFNOSUPPORT", sockets["refused"][attempt]


@pytest.mark.parametrize("family", ["AF_INET", "AF_INET6", "AF_NETLINK"])
def test_socketpair_is_unix_only(sockets: dict[str, Any], family: str) -> None:
    # The kernel itself says EOPNOTSUPP for these: EAFNOSUPPORT is the filter's.
    assert sockets["refused"][f"socketpair({family})"] == "EAFNOSUPPORT"


@pytest.mark.parametrize("call", ["inotify_init", "inotify_init1", "fanotify_init"])
def test_file_watches_are_refused(sockets: dict[str, Any], call: str) -> None:
    assert sockets["refused"][call] == "EPERM", sockets["refused"][call]


@pytest.mark.parametrize(
    "what",
    [
        "tcp 127.0.0.1",
        "tcp ::1",
        "udp 127.0.0.1",
        "udp ::1",
        "unix",
        "netlink route",
        "getaddrinfo localhost",
    ],
)
def test_what_functions_need_still_works(sockets: dict[str, Any], what: str) -> None:
    assert sockets["works"][what] == "ok", sockets["works"][what]


def test_server_is_unharmed(server: Server, sockets: dict[str, Any]) -> None:
    assert_healthy(server)
