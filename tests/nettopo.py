"""A made-up internet for the network tests, entirely in network namespaces
the tests create: no packet ever leaves the machine, and the host's own
namespace is not touched.

    server namespace                         internet namespace
    (faas serve runs here)                   (203.0.113.10  HTTP, tests/netpeer.py)
    up0 192.0.2.2/24  <---- veth ---->  dn0  (203.0.113.53  DNS, dnsmasq: internet.test)
    default via 192.0.2.1                    (10.20.0.10    a "private" host, same HTTP server)
                                             (169.254.169.254 a "metadata" host, same HTTP server)

Each namespace is held by a process of its own (`unshare --net`), never
named under /run/netns (no mount to clean up); killing the holders removes
the namespaces and with them every veth, address and rule in them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from sandbox import netdev
from tests.helpers import REPO, wait_until

PUBLIC = "203.0.113.10"
DNS = "203.0.113.53"
PRIVATE = "10.20.0.10"
METADATA = "169.254.169.254"
NAME = "internet.test"
SERVER_UPLINK = "192.0.2.2"
ROUTER = "192.0.2.1"
PEER_PORT = 80
TOOLS = ("nft", "dnsmasq", "ip", "nsenter", "unshare", "iptables")


# The Debian packages that hold them (nsenter and unshare: util-linux, always there).
PACKAGES = ("nftables", "dnsmasq-base", "iproute2", "iptables")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}")]


def install_tools() -> list[str]:
    """Install what is missing where we can (root and apt-get, as .ci/run
    does); what is still missing."""
    if missing_tools() and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
            capture_output=True,
            env=env,
        )
    return missing_tools()


class Namespace:
    """A network namespace, alive while its holder process is."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", "echo ready; exec sleep infinity"],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            self.close()
            raise RuntimeError("could not make a network namespace (unshare --net)")
        self.path = f"/proc/{self.proc.pid}/ns/net"

    def run(self, *argv: str, check: bool = True) -> str:
        """A command inside the namespace; its output."""
        proc = subprocess.run(["nsenter", f"--net={self.path}", *argv], capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
        return proc.stdout

    def popen(self, *argv: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["nsenter", f"--net={self.path}", *argv], **kwargs)

    def join(self) -> Callable[[], None]:
        """A preexec_fn that moves the new process into the namespace."""
        path = self.path

        def enter() -> None:
            fd = os.open(path, os.O_RDONLY)
            try:
                netdev._setns(fd)
            finally:
                os.close(fd)

        return enter

    def socket(self) -> socket.socket:
        """A TCP socket of this namespace (setns in a thread of its own)."""
        made: list[socket.socket | BaseException] = []

        def make() -> None:
            try:
                with netdev.in_netns(self.path):
                    made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            except BaseException as exc:
                made.append(exc)

        thread = threading.Thread(target=make)
        thread.start()
        thread.join()
        if isinstance(made[0], BaseException):
            raise made[0]
        return made[0]

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()


class NamedNamespace(Namespace):
    """A namespace made by `ip netns add` (for `ip netns exec`, which also
    shows a process /etc/netns/NAME/resolv.conf as /etc/resolv.conf), deleted
    on close, with what `ip` and this made under /run/netns and /etc/netns."""

    RUN_NETNS = "/run/netns"
    ETC_NETNS = "/etc/netns"

    def __init__(self, name: str, resolv_conf: str | None = None) -> None:
        self.name = name
        self.proc = None
        self._mounted_run_netns = not _mount_point(self.RUN_NETNS)
        self._made_etc_netns = not os.path.exists(self.ETC_NETNS)
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        self.path = os.path.join(self.RUN_NETNS, name)
        self.etc = os.path.join(self.ETC_NETNS, name)
        if resolv_conf is not None:
            os.makedirs(self.etc)
            with open(os.path.join(self.etc, "resolv.conf"), "w") as f:
                f.write(resolv_conf)
        self.run("ip", "link", "set", "lo", "up")

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        if self._mounted_run_netns and _mount_point(self.RUN_NETNS) and not os.listdir(self.RUN_NETNS):
            subprocess.run(["umount", self.RUN_NETNS], capture_output=True)
        shutil.rmtree(self.etc, ignore_errors=True)
        if self._made_etc_netns and os.path.isdir(self.ETC_NETNS) and not os.listdir(self.ETC_NETNS):
            os.rmdir(self.ETC_NETNS)


def _mount_point(path: str) -> bool:
    """Whether something is mounted on `path` (a bind of a directory onto
    itself included, which os.path.ismount does not see)."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


class Internet:
    """The two namespaces, the link between them, the HTTP server and dnsmasq."""

    def __init__(self) -> None:
        self.server_ns = Namespace()
        self.internet_ns = Namespace()
        self._procs: list[subprocess.Popen[bytes]] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        s, i = self.server_ns, self.internet_ns
        for ns in (s, i):
            ns.run("ip", "link", "set", "lo", "up")
        assert i.proc is not None
        s.run("ip", "link", "add", "up0", "type", "veth", "peer", "name", "dn0", "netns", str(i.proc.pid))
        s.run("ip", "addr", "add", f"{SERVER_UPLINK}/24", "dev", "up0")
        s.run("ip", "link", "set", "up0", "up")
        s.run("ip", "route", "add", "default", "via", ROUTER)
        i.run("ip", "addr", "add", f"{ROUTER}/24", "dev", "dn0")
        i.run("ip", "link", "set", "dn0", "up")
        for address in (PUBLIC, DNS, PRIVATE, METADATA):
            i.run("ip", "addr", "add", f"{address}/32", "dev", "lo")
        peer = i.popen(
            sys.executable, "-m", "tests.netpeer", str(PEER_PORT), cwd=str(REPO), stdout=subprocess.PIPE
        )
        self._procs.append(peer)
        assert peer.stdout is not None
        if peer.stdout.readline().strip() != b"ready":
            raise RuntimeError("the test HTTP server did not start")
        dnsmasq = i.popen(
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            f"--listen-address={DNS}",
            f"--address=/{NAME}/{PUBLIC}",
            "--pid-file=",
            "--user=root",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._procs.append(dnsmasq)
        wait_until(
            lambda: f"{DNS}:53" in i.run("ss", "-lnu") or dnsmasq.poll() is not None,
            10,
            "dnsmasq to listen",
        )
        if dnsmasq.poll() is not None:
            assert dnsmasq.stderr is not None
            raise RuntimeError(f"dnsmasq failed: {dnsmasq.stderr.read().decode(errors='replace')}")

    def links(self) -> dict[str, int]:
        """The server namespace's links: name to ifindex."""
        found = {}
        for line in self.server_ns.run("ip", "-o", "link", "show").splitlines():
            index, name = line.split(":")[:2]
            found[name.strip().split("@")[0]] = int(index)
        return found

    def rules(self, tag: str = "") -> list[str]:
        """nftables tables `faas_TAG` and iptables rules and chains `faas-TAG-*`
        (of any server when `tag` is empty)."""
        table = f"faas_{tag}" if tag else "faas_"
        tables = [t for t in self.server_ns.run("nft", "list", "tables").split() if t.startswith(table)]
        chains = [
            line
            for kind in ("filter", "nat")
            for line in self.server_ns.run("iptables", "-w", "-t", kind, "-S").splitlines()
            if f"faas-{tag}" in line
        ]
        return tables + chains

    def server_state(self) -> dict[str, Any]:
        """What the server namespace holds besides what this topology made:
        links, IPv4 addresses, nftables tables and iptables rules."""
        addresses = self.server_ns.run("ip", "-o", "-4", "addr", "show").split()
        return {
            "links": sorted(set(self.links()) - {"lo", "up0"}),
            "addresses": sorted(
                a for a in addresses if "/" in a and not a.startswith(("127.", SERVER_UPLINK))
            ),
            "rules": self.rules(),
        }

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for ns in (self.server_ns, self.internet_ns):
            ns.close()


@contextlib.contextmanager
def internet() -> Iterator[Internet]:
    net = Internet()
    try:
        yield net
    finally:
        net.close()
