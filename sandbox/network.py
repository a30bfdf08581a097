"""Outbound network for sandboxes that ask for it: the host side.

`NetworkManager` owns everything the server changes on the host's network
for them, and nothing else: veth pairs named with a prefix of its own
(`fx` + a tag of its data directory), their addresses (a /31 per sandbox
from a block of `sandbox_subnet` it holds with an flock), one nftables
table it owns whole, or iptables chains where nftables is missing (the
egress policy and the source NAT: sandbox/egress.py, sandbox/firewall.py),
and IPv4 forwarding while it needs it
(sandbox/ipforward.py). Nothing is touched until the first function with
`network: outbound` is deployed (`activate`); what a killed server left is
removed at the next start with the same data directory; `__aexit__`
removes the rest.

A sandbox's `NetworkAttachment` is made while it is still a blank (its veth
costs milliseconds, off the cold path); the function's policy (its allow
list, its bandwidth cap) is applied when a cold start takes it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import ipaddress
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import netdev
from .egress import OutboundSpec, TableSpec
from .errors import SpawnError
from .firewall import FIREWALLS, Firewall, FirewallError, find_firewall
from .ipforward import Forwarding
from .locks import try_lock, unlock_and_remove
from .veth import SANDBOX_IFNAME, VethWorker

log = logging.getLogger("faas.network")

# Where the flocks of address blocks and of IP forwarding live.
LOCK_DIR = "/run/faas"
# A server's block of sandbox_subnet: 1/16 of it where that leaves room.
BLOCK_EXTRA_BITS = 4
MAX_BLOCK_PREFIX = 26
RESOLV_CONF = "/etc/resolv.conf"
# How long a stop waits for the kernel to take down the veths of dead sandboxes.
VETH_GONE_TIMEOUT_S = 5.0


class NetworkUnavailable(SpawnError):
    """This host cannot give sandboxes outbound network; the message says why."""


@dataclass(frozen=True)
class NetworkConfig:
    sandbox_subnet: str = "100.72.0.0/16"
    egress_default: str = "allow"
    # Resolvers outbound sandboxes query; empty: the host's own.
    nameservers: tuple[str, ...] = ()
    # "auto" (nftables, else iptables), "nftables" or "iptables".
    firewall: str = "auto"


def host_nameservers(path: str = RESOLV_CONF) -> tuple[str, ...]:
    """The host's IPv4 resolvers, as /etc/resolv.conf lists them (a loopback
    stub included: sandboxes reach it through their gateway)."""
    found: list[str] = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return ()
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            with contextlib.suppress(ValueError):
                address = ipaddress.ip_address(parts[1])
                if address.version == 4 and str(address) not in found:
                    found.append(str(address))
    return tuple(found)


def sandbox_nameservers(nameservers: tuple[str, ...], gateway: str) -> tuple[str, ...]:
    """A sandbox's /etc/resolv.conf: a loopback resolver is its gateway
    (the host translates port 53 there to it), the others as they are."""
    out: list[str] = []
    for server in nameservers:
        server = gateway if ipaddress.ip_address(server).is_loopback else server
        if server not in out:
            out.append(server)
    return tuple(out)


class AddressBlock:
    """This server's block of the sandbox subnet, held by an flock per
    network namespace (so two servers on one host never share an address),
    cut into /31s: the host end and the sandbox of one veth each."""

    def __init__(self, subnet: str, lock_dir: str) -> None:
        self.subnet = ipaddress.IPv4Network(subnet)
        self._lock_dir = lock_dir
        self._fd: int | None = None
        self._path = ""
        self.network = self.subnet
        # Slots are reused oldest-freed first, so a veth that the kernel is
        # still taking down never meets a new one of the same name and address.
        self._free: collections.deque[int] = collections.deque()

    def acquire(self) -> None:
        prefix = min(self.subnet.prefixlen + BLOCK_EXTRA_BITS, MAX_BLOCK_PREFIX)
        prefix = max(prefix, self.subnet.prefixlen)
        netns = os.stat("/proc/self/ns/net").st_ino
        os.makedirs(self._lock_dir, mode=0o700, exist_ok=True)
        tag = str(self.subnet).replace("/", "_")
        for index, block in enumerate(self.subnet.subnets(new_prefix=prefix)):
            path = os.path.join(self._lock_dir, f"{netns}-{tag}-{index}.lock")
            fd = try_lock(path)
            if fd is None:
                continue
            self._fd, self._path, self.network = fd, path, block
            # Slot 0 would give the host end the block's network address.
            self._free = collections.deque(range(1, block.num_addresses // 2))
            return
        raise OSError(f"every block of sandbox_subnet {self.subnet} is held by another server")

    def release(self) -> None:
        if self._fd is not None:
            unlock_and_remove(self._path, self._fd)
            self._fd = None

    def take(self) -> int:
        if not self._free:
            raise SpawnError(f"no free sandbox address in {self.network}")
        return self._free.popleft()

    def give(self, slot: int) -> None:
        self._free.append(slot)

    def addresses(self, slot: int) -> tuple[str, str]:
        """(host end, sandbox) of a slot."""
        base = self.network.network_address + 2 * slot
        return str(base), str(base + 1)


@dataclass(eq=False)
class NetworkAttachment:
    """One sandbox's veth: its names and addresses, the policy chain its
    allow list jumps to while it has one, and where its byte counters stood
    when the last call ended (like CPU, traffic between calls is billed to
    the next)."""

    manager: NetworkManager
    slot: int
    host_ifname: str
    gateway: str
    address: str
    pid: int = 0
    policy: str | None = None
    # /proc/PID/net/dev, open from attach to release.
    counters_fd: int | None = None
    _mark: tuple[int, int] = field(default=(0, 0))

    def usage_since_mark(self) -> tuple[int, int]:
        """(received, sent) bytes since the last mark; marks now."""
        if self.counters_fd is None:
            return 0, 0
        rx, tx = netdev.bytes_of(self.counters_fd, SANDBOX_IFNAME)
        if (rx, tx) == (0, 0):
            return 0, 0  # gone: nothing more can be read
        before, self._mark = self._mark, (rx, tx)
        return max(0, rx - before[0]), max(0, tx - before[1])

    def close_counters(self) -> None:
        fd, self.counters_fd = self.counters_fd, None
        if fd is not None:
            os.close(fd)

    async def release(self) -> None:
        await self.manager.release(self)


class NetworkManager:
    def __init__(self, config: NetworkConfig, data_dir: str, lock_dir: str = LOCK_DIR) -> None:
        self.config = config
        # Says, while outbound network is on, what holds its rules: so that a
        # start after a SIGKILL knows what to remove (and one after a clean
        # stop, or of a server that never had it, touches nothing).
        self._marker = os.path.join(data_dir, "run", "network-active")
        tag = hashlib.sha256(os.path.realpath(data_dir).encode()).hexdigest()[:6]
        self.veth_prefix = f"fx{tag}"
        self.table = f"faas_{tag}"
        self.block = AddressBlock(config.sandbox_subnet, os.path.join(lock_dir, "net-blocks"))
        self.nameservers: tuple[str, ...] = ()
        self.active = False
        self._firewall: Firewall | None = None
        self._forwarding = Forwarding(os.path.join(lock_dir, "ip-forward"))
        self._worker = VethWorker()
        self._activating = asyncio.Lock()
        # Sandboxes using each policy chain.
        self._policies: collections.Counter[str] = collections.Counter()
        self.attachments: set[NetworkAttachment] = set()

    async def __aenter__(self) -> NetworkManager:
        # A server that never had outbound network starts no thread for it.
        if os.path.exists(self._marker):
            await self._worker.run(self._remove_stale)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for attachment in self.attachments:
            attachment.close_counters()  # an open one would keep its namespace, and veth, alive
        try:
            if self.active:
                await self._worker.run(self._remove_all)
        finally:
            self._worker.close()

    def _remove_stale(self) -> None:
        """What a killed server with this data directory left: its rules and veths."""
        try:
            with open(self._marker) as f:
                kind = f.read().strip()
        except FileNotFoundError:
            return
        firewall = find_firewall(self.table, self.veth_prefix, kind if kind in FIREWALLS else "auto")
        if firewall is not None:
            with contextlib.suppress(FirewallError):
                if firewall.remove():
                    log.warning("removed the %s rules %s left by a killed server", firewall.name, self.table)
        stale = self._worker.sweep(self.veth_prefix)
        if stale:
            log.warning("removed %d veths left by a killed server", len(stale))
        os.unlink(self._marker)

    def _remove_all(self) -> None:
        """At stop, once every sandbox is dead: the rules first (cheap, and
        nothing of them outlives a stop that is cut short), then the veths,
        which go with their sandboxes' namespaces as the kernel gets to it:
        wait a little for that, delete what remains."""
        if not self.active:
            return
        t0 = time.monotonic()
        assert self._firewall is not None
        try:
            self._firewall.remove()
        except FirewallError as exc:
            log.warning("could not remove the %s rules %s: %s", self._firewall.name, self.table, exc)
        while netdev.device_names(self.veth_prefix) and time.monotonic() < t0 + VETH_GONE_TIMEOUT_S:
            time.sleep(0.05)
        deleted = self._worker.sweep(self.veth_prefix)
        self._forwarding.release()
        self.block.release()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._marker)
        self.active = False
        log.info(
            "outbound network removed in %.2f s (%d veths deleted, the rest went with their sandboxes)",
            time.monotonic() - t0,
            len(deleted),
        )

    async def activate(self) -> None:
        """Make the host ready (forwarding, the table, an address block);
        NetworkUnavailable with one line saying why where it cannot be."""
        if self.active:
            return
        async with self._activating:
            if not self.active:
                await self._worker.run(self._activate)

    def _activate(self) -> None:
        firewall = find_firewall(self.table, self.veth_prefix, self.config.firewall)
        if firewall is None:
            wanted = "nftables or iptables" if self.config.firewall == "auto" else self.config.firewall
            package = "iptables" if self.config.firewall == "iptables" else "nftables"
            raise NetworkUnavailable(
                f"outbound network needs {wanted} on the host: install the {package} package"
            )
        try:
            self.block.acquire()
            try:
                os.makedirs(os.path.dirname(self._marker), exist_ok=True)
                with open(self._marker, "w") as f:
                    f.write(firewall.name)
                self._forwarding.acquire()
                self.nameservers = self.config.nameservers or host_nameservers()
                if not self.nameservers:
                    log.warning("the host has no IPv4 resolver: outbound sandboxes get no DNS")
                spec = TableSpec(
                    name=self.table,
                    veth_prefix=self.veth_prefix,
                    sandbox_subnet=str(self.block.subnet),
                    block=str(self.block.network),
                    nameservers=self.nameservers,
                    egress_default=self.config.egress_default,
                )
                firewall.install(spec)
                self._worker.ipr  # noqa: B018 - pyroute2's import and socket, now rather than on a cold start
            except BaseException:
                self._forwarding.release()
                self.block.release()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._marker)
                raise
        except (OSError, FirewallError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise NetworkUnavailable(f"outbound network is unavailable on this host: {why}") from None
        self._firewall = firewall
        self.active = True
        log.info(
            "outbound network: sandboxes in %s, %s rules %s", self.block.network, firewall.name, self.table
        )

    def reserve(self) -> NetworkAttachment:
        """An address and a veth name for a new sandbox (SpawnError if none is free)."""
        slot = self.block.take()
        gateway, address = self.block.addresses(slot)
        attachment = NetworkAttachment(self, slot, f"{self.veth_prefix}{slot:x}", gateway, address)
        self.attachments.add(attachment)
        return attachment

    async def attach(self, attachment: NetworkAttachment, pid: int) -> None:
        """The veth of a blank sandbox (process `pid`), addressed and routed."""
        attachment.pid = pid
        await self._worker.run(
            self._worker.create,
            attachment.host_ifname,
            pid,
            attachment.gateway,
            attachment.address,
            self.block.network.max_prefixlen - 1,
            any(ipaddress.ip_address(s).is_loopback for s in self.nameservers),
        )
        attachment.counters_fd = netdev.open_counters(pid)

    async def apply(self, attachment: NetworkAttachment, spec: OutboundSpec) -> None:
        """A function's policy on a sandbox it is about to be specialized
        into: its allow list (a jump from the sandbox's veth to the list's
        chain) and its bandwidth cap."""
        if spec.allow:
            firewall = self._firewall
            assert firewall is not None
            name = spec.policy_name
            # Counted before any await, so that a release meanwhile never
            # removes the chain this sandbox is about to use.
            first = self._policies[name] == 0
            self._policies[name] += 1
            attachment.policy = name
            if first:
                await self._run(firewall.add_policy, spec)
            await self._run(firewall.attach, attachment.host_ifname, name)
        if spec.egress_mbit:
            await self._worker.run(self._worker.cap, attachment.host_ifname, attachment.pid, spec.egress_mbit)

    async def release(self, attachment: NetworkAttachment) -> None:
        """A sandbox is gone (its veth goes with its namespace): its policy
        element, the policy's chain once unused, and its address."""
        if attachment not in self.attachments:
            return
        self.attachments.discard(attachment)
        attachment.close_counters()
        self.block.give(attachment.slot)
        name, attachment.policy = attachment.policy, None
        if name is None:
            return
        self._policies[name] -= 1
        unused = self._policies[name] <= 0
        if unused:
            del self._policies[name]
        firewall = self._firewall
        assert firewall is not None
        steps: list[tuple[Callable[..., None], tuple[str, ...]]] = [
            (firewall.detach, (attachment.host_ifname, name))
        ]
        if unused:
            steps.append((firewall.remove_policy, (name,)))
        for step, args in steps:
            try:
                await self._run(step, *args)
            except FirewallError as exc:
                log.warning("could not remove the policy %s of %s: %s", name, attachment.host_ifname, exc)

    async def _run(self, operation: Callable[..., None], *args: Any) -> None:
        """libnftables in line (a fraction of a millisecond); a program in the worker."""
        assert self._firewall is not None
        if self._firewall.fast:
            operation(*args)
        else:
            await self._worker.run(operation, *args)
