"""A gateway's metrics of its invokers, on the gateway's registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from invoker.pg_nodes import NodeInfo


class ClusterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._sent = Counter(
            "faas_cluster_requests",
            "Requests a gateway sent to each invoker, by outcome"
            " (answered, full: tried the next, unreachable, lost: failed during the request)",
            ["node", "outcome"],
            registry=registry,
        )
        self._in_flight = Gauge(
            "faas_cluster_in_flight",
            "This gateway's requests in flight on each invoker",
            ["node"],
            registry=registry,
        )
        self._nodes = Gauge("faas_cluster_nodes", "Live invokers, by readiness", ["ready"], registry=registry)

    def sent(self, node: str, outcome: str) -> None:
        self._sent.labels(node, outcome).inc()

    def in_flight(self, node: str, count: int) -> None:
        self._in_flight.labels(node).set(count)

    def watch_nodes(self, live: Callable[[], Mapping[str, NodeInfo]]) -> None:
        for ready in (True, False):
            label = "true" if ready else "false"
            self._nodes.labels(label).set_function(
                lambda ready=ready: sum(1 for node in live().values() if node.ready is ready)
            )
