"""The egress policy of outbound sandboxes, as data and as nftables text.

Pure: no I/O. What a function asks for (`OutboundSpec`: its `allow` list
and bandwidth cap), how an `allow` entry is read (`parse_allow`), and the
server's own nftables table (`table_ruleset`) with one chain per distinct
allow list (`policy_chain`). sandbox/network.py applies them.

Every decision is made on the host, on packets that come out of a
sandbox's veth: in the forward hook for what is routed on, in the input
hook for what is addressed to the host itself. The table only ever refuses
(or accepts within itself): a host firewall's own chains still see every
packet, so nothing the host refuses becomes allowed.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Never reachable from a sandbox, whatever its allow list says: "this"
# network, loopback, link-local (cloud metadata at 169.254.169.254),
# multicast, reserved and broadcast. The sandbox subnet joins them.
NEVER = (
    ("0.0.0.0/8", "the 'this network' range"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved (and broadcast)"),
    ("::/127", "the unspecified and loopback address"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
)
# Refused unless a function's allow list names them.
PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
EGRESS_DEFAULTS = ("allow", "deny")
MAX_ALLOW_ENTRIES = 64
# Mbit/s to bytes/s.
BYTES_PER_MBIT = 1_000_000 // 8


@dataclass(frozen=True, order=True)
class AllowRule:
    """One `allow` entry: a network, and the TCP/UDP port if only that one."""

    network: str
    port: int | None = None

    def __str__(self) -> str:
        if self.port is None:
            return self.network
        if ":" in self.network:
            return f"[{self.network}]:{self.port}"
        return f"{self.network}:{self.port}"

    def nft(self) -> str:
        family = "ip6" if ":" in self.network else "ip"
        port = "" if self.port is None else f" meta l4proto {{ tcp, udp }} th dport {self.port}"
        return f"{family} daddr {self.network}{port} accept"


def _split_port(entry: str) -> tuple[str, str | None]:
    """'CIDR[:PORT]' -> (CIDR, PORT or None); IPv6 with a port is written
    '[CIDR]:PORT' (or 'CIDR:PORT' after a prefix length: 'fd00::/8:443')."""
    if entry.startswith("["):
        inside, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("an IPv6 entry with a port is written [ADDRESS/PREFIX]:PORT")
        return inside, rest[1:] if rest else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, port
    if ":" in entry and "/" in entry:
        address, _, prefix = entry.partition("/")
        if ":" in prefix:
            prefix, _, port = prefix.partition(":")
            return f"{address}/{prefix}", port
    return entry, None


def parse_allow(entry: object) -> AllowRule:
    """An `allow` entry ("10.0.0.0/8", "10.1.2.3:5432", "[fd00::/8]:443");
    ValueError saying what is wrong. Host bits of a CIDR are cleared."""
    if not isinstance(entry, str) or not entry or len(entry) > 100:
        raise ValueError(f"{entry!r} is not CIDR[:PORT]")
    text, port_text = _split_port(entry.strip())
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{entry!r} is not CIDR[:PORT]: {text!r} is not an address or network") from None
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{entry!r}: the port must be from 1 to 65535")
        port = int(port_text)
    for never, what in NEVER:
        refused = ipaddress.ip_network(never)
        if network.version == refused.version and network.subnet_of(refused):  # type: ignore[arg-type]
            raise ValueError(f"{entry!r} is {what}, which a sandbox may never reach")
    return AllowRule(str(network), port)


def parse_allow_list(entries: object) -> tuple[AllowRule, ...]:
    """The `allow` field: a list of entries, sorted and without repeats."""
    if not isinstance(entries, list):
        raise ValueError("must be a list of CIDR[:PORT] strings")
    if len(entries) > MAX_ALLOW_ENTRIES:
        raise ValueError(f"at most {MAX_ALLOW_ENTRIES} entries, got {len(entries)}")
    return tuple(sorted({parse_allow(entry) for entry in entries}))


@dataclass(frozen=True)
class OutboundSpec:
    """What one function's outbound network is: where besides the public
    internet it may go, and its bandwidth cap in Mbit/s (None: none)."""

    allow: tuple[AllowRule, ...] = ()
    egress_mbit: float | None = None

    @property
    def policy_name(self) -> str:
        """The nftables chain of its allow list: the same for every function
        with the same list."""
        digest = hashlib.sha256("\n".join(map(str, self.allow)).encode()).hexdigest()
        return f"allow_{digest[:12]}"


@dataclass(frozen=True)
class TableSpec:
    """The server's own nftables table: its name, the name prefix of its
    veths' host ends, the subnet every server's sandboxes live in, this
    server's block of it, the resolvers sandboxes may query, and whether
    public addresses are allowed by default."""

    name: str
    veth_prefix: str
    sandbox_subnet: str
    block: str
    nameservers: tuple[str, ...] = ()
    egress_default: str = "allow"

    @property
    def loopback_resolver(self) -> str | None:
        """The host's first resolver on loopback (a stub such as
        systemd-resolved's 127.0.0.53): sandboxes reach it at their gateway,
        port 53, which the host translates to it."""
        return next((s for s in self.nameservers if ipaddress.ip_address(s).is_loopback), None)


def _addresses(networks: Iterable[str], version: int) -> str:
    return ", ".join(n for n in networks if ipaddress.ip_network(n).version == version)


def table_ruleset(spec: TableSpec) -> str:
    """One nftables transaction that replaces the table whole (an earlier
    one of the same name, left by a killed server, goes with it)."""
    table = f"inet {spec.name}"
    veths = f'"{spec.veth_prefix}*"'
    never = [n for n, _ in NEVER] + [spec.sandbox_subnet]
    dns = ""
    if spec.nameservers:
        servers4 = [s for s in spec.nameservers if ipaddress.ip_address(s).version == 4]
        servers6 = [s for s in spec.nameservers if ipaddress.ip_address(s).version == 6]
        rules = []
        for family, servers in (("ip", servers4), ("ip6", servers6)):
            if servers:
                rules.append(
                    f"{family} daddr {{ {', '.join(servers)} }} meta l4proto {{ tcp, udp }} th dport 53 accept"
                )
        dns = "\n".join(f"        {rule}" for rule in rules)
    deny_public = "        jump refuse\n" if spec.egress_default == "deny" else ""
    stub = spec.loopback_resolver
    dnat = (
        f"""    chain dns_to_stub {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname {veths} ip daddr {spec.block} meta l4proto {{ tcp, udp }} th dport 53 dnat ip to {stub}
    }}
"""
        if stub
        else ""
    )
    return f"""add table {table}
delete table {table}
table {table} {{
    map policies {{
        type ifname : verdict
    }}
    chain refuse {{
        meta l4proto tcp reject with tcp reset
        reject with icmpx type admin-prohibited
    }}
    chain to_host {{
{dns}
        jump refuse
    }}
    chain egress {{
{dns}
        ip daddr {{ {_addresses(never, 4)} }} jump refuse
        ip6 daddr {{ {_addresses(never, 6)} }} jump refuse
        iifname vmap @policies
        ip daddr {{ {_addresses(PRIVATE, 4)} }} jump refuse
        ip6 daddr {{ {_addresses(PRIVATE, 6)} }} jump refuse
{deny_public}    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname {veths} jump to_host
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname {veths} jump egress
        oifname {veths} ct state established,related accept
        oifname {veths} jump refuse
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {spec.block} oifname != {veths} masquerade
    }}
{dnat}}}
"""


def policy_chain(table: str, spec: OutboundSpec) -> str:
    """The chain of one allow list: accepts what the list names, and returns
    to the table's refusals otherwise."""
    rules = "\n".join(f"add rule inet {table} {spec.policy_name} {rule.nft()}" for rule in spec.allow)
    return (
        f"add chain inet {table} {spec.policy_name}\nflush chain inet {table} {spec.policy_name}\n{rules}\n"
    )
