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
        self._outcomes: set[tuple[str, str]] = set()
        self._nodes_seen: set[str] = set()
        self._nodes = Gauge("faas_cluster_nodes", "Live invokers, by readiness", ["ready"], registry=registry)

    def sent(self, node: str, outcome: str) -> None:
        self._sent.labels(node, outcome).inc()
        self._outcomes.add((node, outcome))

    def in_flight(self, node: str, count: int) -> None:
        self._in_flight.labels(node).set(count)
        self._nodes_seen.add(node)

    def keep_only(self, live: frozenset[str]) -> None:
        """Drop the series of invokers that left (on Kubernetes each restart
        is a new address: their series would pile up)."""
        for node, outcome in [seen for seen in self._outcomes if seen[0] not in live]:
            self._sent.remove(node, outcome)
            self._outcomes.discard((node, outcome))
        for node in [seen for seen in self._nodes_seen if seen not in live]:
            self._in_flight.remove(node)
            self._nodes_seen.discard(node)

    def watch_nodes(self, live: Callable[[], Mapping[str, NodeInfo]]) -> None:
        for ready in (True, False):
            label = "true" if ready else "false"
            self._nodes.labels(label).set_function(
                lambda ready=ready: sum(1 for node in live().values() if node.ready is ready)
            )
