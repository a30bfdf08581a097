"""Which invoker takes a call: the function's home on the ring of live
invokers, under the bounded-load rule, skipping the ones that are not
ready or that just refused a connection (gateway/cluster/ring.py).
Pure bookkeeping: the caller says what happened."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping

from invoker.pg_nodes import NodeInfo

from .ring import DEFAULT_EPSILON, Ring, candidates

# An invoker that refused a connection is passed over this long (its lease,
# if it died, runs out sooner; if it is only slow to accept, it is retried then).
SUSPECT_S = 3.0


class Router:
    def __init__(
        self,
        live_nodes: Callable[[], Mapping[str, NodeInfo]],
        epsilon: float = DEFAULT_EPSILON,
        suspect_s: float = SUSPECT_S,
        on_change: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        self._live_nodes = live_nodes
        # Told the live invokers whenever they change (per-invoker metrics forget the gone).
        self._on_change = on_change
        self._epsilon = epsilon
        self._suspect_s = suspect_s
        # This gateway's calls in flight on each invoker: the loads the bound is over.
        self.in_flight: dict[str, int] = defaultdict(int)
        self._suspect_until: dict[str, float] = {}
        self._ring = Ring(())

    def order(self, key: str, now: float) -> list[NodeInfo]:
        """The invokers to try for `key`, in order (empty: none is usable)."""
        nodes = self._live_nodes()
        if frozenset(nodes) != self._ring.node_ids:
            # The ring holds every live invoker, ready or not, so that a
            # function's home stays put while its invoker briefly is not ready.
            self._ring = Ring(nodes)
            for gone in set(self._suspect_until) - self._ring.node_ids:
                del self._suspect_until[gone]
            if self._on_change is not None:
                self._on_change(self._ring.node_ids)
        usable = [node_id for node_id, node in nodes.items() if node.ready and self.healthy(node_id, now)]
        return [nodes[c.node_id] for c in candidates(self._ring, key, self.in_flight, self._epsilon, usable)]

    def reachable(self, now: float) -> list[NodeInfo]:
        """Every live invoker not suspected of being unreachable, ready or
        not (a draining one still holds its logs)."""
        return [node for node_id, node in self._live_nodes().items() if self.healthy(node_id, now)]

    def healthy(self, node_id: str, now: float) -> bool:
        return self._suspect_until.get(node_id, 0.0) <= now

    def unreachable(self, node_id: str, now: float) -> None:
        self._suspect_until[node_id] = now + self._suspect_s

    def started(self, node_id: str) -> None:
        self.in_flight[node_id] += 1

    def finished(self, node_id: str) -> None:
        self.in_flight[node_id] -= 1
        if not self.in_flight[node_id]:
            del self.in_flight[node_id]
