"""A cluster's network on one machine, entirely in namespaces the test makes:

    hub namespace: bridge br0 10.99.0.1/24, PostgreSQL (and NATS) on
    10.99.0.1, the gateways on its 127.0.0.1
      |-- veth -- node namespace 0: eth0 10.99.0.10, invoker on :8080
      |-- veth -- node namespace 1: eth0 10.99.0.11, invoker on :8080
      '-- veth -- node namespace 2: eth0 10.99.0.12, invoker on :8080

Every namespace is held by a process of its own (tests/nettopo.py), so
killing the holders removes them with every link and address in them; the
host's own namespace is not touched.
"""

from __future__ import annotations

from tests.nettopo import Namespace

HUB = "10.99.0.1"
INVOKER_PORT = 8080


class ClusterNet:
    def __init__(self, nodes: int) -> None:
        self.hub = Namespace()
        self.nodes: list[Namespace] = []
        try:
            self.hub.run("ip", "link", "set", "lo", "up")
            self.hub.run("ip", "link", "add", "br0", "type", "bridge")
            self.hub.run("ip", "addr", "add", f"{HUB}/24", "dev", "br0")
            self.hub.run("ip", "link", "set", "br0", "up")
            for index in range(nodes):
                self._add_node(index)
        except BaseException:
            self.close()
            raise

    def _add_node(self, index: int) -> None:
        node = Namespace()
        self.nodes.append(node)
        assert node.proc is not None
        link = f"v{index}"
        self.hub.run(
            "ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", str(node.proc.pid)
        )
        self.hub.run("ip", "link", "set", link, "master", "br0", "up")
        node.run("ip", "link", "set", "lo", "up")
        node.run("ip", "addr", "add", f"{self.address(index)}/24", "dev", "eth0")
        node.run("ip", "link", "set", "eth0", "up")

    @staticmethod
    def address(index: int) -> str:
        return f"10.99.0.{10 + index}"

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        self.hub.close()
