"""Where the results of asynchronous calls may be sent (X-Callback-Url):
the egress policy of sandboxes (docs/SANDBOX.md) applied to the server's
own requests, so that a caller cannot make the server reach what it should
not (the cloud's metadata service, a service on the host, the private
network) or learn whether it answers.

- Never: link-local (169.254.0.0/16, fe80::/10: cloud metadata),
  multicast, unspecified and broadcast addresses, whatever callback_allow says.
- Only when `callback_allow` lists them (CIDRs): the host's own addresses,
  loopback, and private ranges (10/8, 172.16/12, 192.168/16, 100.64/10,
  fc00::/7).
- Public addresses: always.

A name is resolved once per connection and the connection goes to an
address checked here (callbacks.CheckedResolver), so a name that resolves
to a public address when checked and to a private one when connected (DNS
rebinding) is never a gap.
"""

from __future__ import annotations

import contextlib
import ipaddress
import time
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import SplitResult, urlsplit

from .errors import BadRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NEVER = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",
        "fe80::/10",
        "224.0.0.0/4",
        "ff00::/8",
        "0.0.0.0/8",
        "::/128",
        "255.255.255.255/32",
    )
)
PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "fc00::/7",
        "127.0.0.0/8",
        "::1/128",
    )
)
MAX_URL_LENGTH = 2048
# The host's addresses are read again when older than this (interfaces come and go).
HOST_ADDRESSES_TTL_S = 60.0


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """callback_allow's CIDRs; ValueError naming a bad one."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"callback_allow: {entry!r} is not a CIDR (e.g. 127.0.0.0/8)") from None
    return tuple(networks)


def as_address(text: str) -> IPAddress | None:
    """The IP address `text` is (IPv4-mapped IPv6 as IPv4, any zone dropped), or None for a name."""
    try:
        address = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def read_host_addresses() -> frozenset[IPAddress]:
    """Every address of the host's interfaces: the local routes of IPv4
    (/proc/net/fib_trie) and the IPv6 addresses (/proc/net/if_inet6)."""
    found: set[IPAddress] = set()
    with contextlib.suppress(OSError):
        with open("/proc/net/fib_trie") as f:
            previous = ""
            for line in f:
                if line.strip() == "/32 host LOCAL":
                    address = as_address(previous.strip().removeprefix("|--").strip())
                    if address is not None:
                        found.add(address)
                previous = line
    with contextlib.suppress(OSError):
        with open("/proc/net/if_inet6") as f:
            for line in f:
                found.add(ipaddress.IPv6Address(bytes.fromhex(line.split()[0])))
    return frozenset(found)


class CallbackPolicy:
    def __init__(
        self,
        allow: Sequence[str],
        host_addresses: Callable[[], frozenset[IPAddress]] = read_host_addresses,
    ) -> None:
        self.allow = parse_networks(allow)
        self._read_host_addresses = host_addresses
        self._host_addresses: frozenset[IPAddress] = frozenset()
        self._read_at = -HOST_ADDRESSES_TTL_S

    def host_addresses(self) -> frozenset[IPAddress]:
        now = time.monotonic()
        if now - self._read_at >= HOST_ADDRESSES_TTL_S:
            self._host_addresses = self._read_host_addresses()
            self._read_at = now
        return self._host_addresses

    def refusal(self, address: IPAddress) -> str | None:
        """Why a callback may not go to `address`, or None when it may."""
        if any(address in net for net in NEVER):
            return f"{address} is link-local, multicast or unspecified: never a callback target"
        if any(address in net for net in self.allow):
            return None
        if any(address in net for net in PRIVATE):
            return f"{address} is a private or loopback address: list it in callback_allow to allow it"
        if address in self.host_addresses():
            return f"{address} is an address of this host: list it in callback_allow to allow it"
        return None

    def check_url(self, url: str) -> SplitResult:
        """The parts of a callback URL; BadRequest for one that is malformed,
        or whose host is an address the policy refuses (names are checked
        when they are resolved, at delivery)."""
        if len(url) > MAX_URL_LENGTH:
            raise BadRequest(f"X-Callback-Url is over {MAX_URL_LENGTH} characters")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise BadRequest(f"X-Callback-Url {url!r} is not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadRequest(f"X-Callback-Url {url!r} must be an http:// or https:// URL with a host")
        if any(c in url for c in "\r\n\t ") or parts.username or parts.password:
            raise BadRequest("X-Callback-Url may hold neither whitespace nor user:password@")
        address = as_address(parts.hostname)
        if address is not None:
            reason = self.refusal(address)
            if reason is not None:
                raise BadRequest(f"X-Callback-Url refused: {reason}")
        return parts
