"""The veth pair of an outbound sandbox: made with pyroute2, its host end on
the host and its other end `eth0` in the sandbox's network namespace, both
addressed, up, with the sandbox's default route through the host end; and
a bandwidth cap (tbf) on both ends.

Everything here blocks (netlink, setns) and runs in the one thread of a
`VethWorker`: setns() moves only the thread that calls it, and pyroute2's
synchronous IPRoute runs an event loop of its own, which the server's
event loop thread cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from . import netdev
from .egress import BYTES_PER_MBIT

log = logging.getLogger("faas.network")

SANDBOX_IFNAME = "eth0"
# tbf: the burst a sandbox may send at full speed, at least this many bytes
# (or 10 ms at its rate), and the queue in front of the cap.
MIN_BURST_BYTES = 32 * 1024
LATENCY_MS = 50

T = TypeVar("T")


class VethWorker:
    """A thread of its own for netlink and namespace work; its IPRoute
    (pyroute2, imported on first use: 0.2 s) is opened there too."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faas-net")
        self._ipr: Any = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        if self._ipr is not None:
            self._executor.submit(self._close_ipr)
        self._executor.shutdown(wait=True)

    def _close_ipr(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    @property
    def ipr(self) -> Any:
        if self._ipr is None:
            from pyroute2 import IPRoute

            self._ipr = IPRoute()
        return self._ipr

    # -- in the worker thread -------------------------------------------------

    def create(
        self,
        host_ifname: str,
        pid: int,
        gateway: str,
        address: str,
        prefixlen: int,
        to_loopback: bool = False,
    ) -> None:
        """The pair, the peer made straight in the namespace of `pid` (moving
        a device between namespaces costs ~25 ms; making it there ~3 ms).
        `to_loopback`: the host end may route to 127/8 (DNS to the host's
        loopback resolver, translated by the firewall)."""
        self.ipr.link(
            "add", ifname=host_ifname, kind="veth", peer={"ifname": SANDBOX_IFNAME, "net_ns_pid": pid}
        )
        try:
            netdev.disable_ipv6(host_ifname)
            if to_loopback:
                netdev.write_sysctl(f"net/ipv4/conf/{host_ifname}/route_localnet", "1")
            netdev.configure_ipv4(host_ifname, gateway, prefixlen)
            with netdev.in_netns_of(pid):
                netdev.disable_ipv6(SANDBOX_IFNAME)
                netdev.configure_ipv4(SANDBOX_IFNAME, address, prefixlen)
                netdev.add_default_route(gateway)
        except BaseException:
            self.delete(host_ifname)
            raise

    def delete(self, host_ifname: str) -> bool:
        """Delete a pair by its host end; False if it was gone already."""
        try:
            self.ipr.link("del", ifname=host_ifname)
        except Exception as exc:
            if getattr(exc, "code", None) in (errno.ENODEV, errno.ENOENT) or "No such device" in str(exc):
                return False
            raise
        return True

    def cap(self, host_ifname: str, pid: int, mbit: float) -> None:
        """A token bucket of `mbit` Mbit/s on both ends: the host end's
        queue paces what the sandbox receives, eth0's what it sends (the
        sandbox, without CAP_NET_ADMIN, cannot remove it)."""
        rate = max(1, int(mbit * BYTES_PER_MBIT))
        burst = max(MIN_BURST_BYTES, rate // 100)
        options = {"rate": rate, "burst": burst, "latency": LATENCY_MS * 1000}
        self.ipr.tc("add", "tbf", index=self._index(self.ipr, host_ifname), handle="1:", **options)
        from pyroute2 import IPRoute

        with netdev.in_netns_of(pid):
            # A netlink socket belongs to the namespace it was opened in.
            inner = IPRoute()
        with contextlib.closing(inner):
            inner.tc("add", "tbf", index=self._index(inner, SANDBOX_IFNAME), handle="1:", **options)

    @staticmethod
    def _index(ipr: Any, ifname: str) -> int:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise OSError(errno.ENODEV, f"no device {ifname}")
        return int(found[0])

    def sweep(self, prefix: str) -> list[str]:
        """Delete every device of ours (by name prefix) left by a server
        that was killed; the names deleted."""
        deleted = []
        for name in netdev.device_names(prefix):
            if self.delete(name):
                deleted.append(name)
        return deleted
