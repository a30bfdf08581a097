"""Prometheus metrics of docs/METRICS.md, in a registry of their own (no
globals): the gateway exposes `registry`, the invoker updates the rest."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .metering import BillingTotals

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


class PoolStateCollector(Collector):
    """Gauges read from the invoker at scrape time, so they are never stale."""

    def __init__(self, snapshot: Callable[[], tuple[dict[str, int], dict[str, int]]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterable[GaugeMetricFamily]:
        by_state, warm_by_function = self._snapshot()
        sandboxes = GaugeMetricFamily("faas_sandboxes", "Sandboxes by state", labels=["state"])
        for state in ("prewarmed", "idle", "busy"):
            sandboxes.add_metric([state], by_state.get(state, 0))
        yield sandboxes
        service = GaugeMetricFamily(
            "gateway_service_count", "Warm sandboxes per function", labels=["function_name"]
        )
        for name, count in sorted(warm_by_function.items()):
            service.add_metric([name], count)
        yield service


class BillingCollector(Collector):
    """Billing counters computed from the same integer totals as the usage
    API, so both agree exactly."""

    def __init__(self, billing: BillingTotals) -> None:
        self._billing = billing

    def collect(self) -> Iterable[CounterMetricFamily]:
        gb = CounterMetricFamily("faas_billed_gb_seconds", "Billed GB-seconds", labels=["function_name"])
        cpu = CounterMetricFamily("faas_cpu_seconds", "CPU seconds used by calls", labels=["function_name"])
        requests = CounterMetricFamily("faas_billed_requests", "Billed requests", labels=["function_name"])
        network = CounterMetricFamily(
            "faas_network_bytes",
            "Bytes sandboxes received (rx) and sent (tx)",
            labels=["function_name", "direction"],
        )
        for name, totals in sorted(self._billing.by_function.items()):
            gb.add_metric([name], totals.gb_seconds)
            cpu.add_metric([name], totals.cpu_seconds)
            requests.add_metric([name], totals.requests)
            network.add_metric([name, "rx"], totals.net_rx_bytes)
            network.add_metric([name, "tx"], totals.net_tx_bytes)
        yield from (gb, cpu, requests, network)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._done_children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._started_children: dict[str, Any] = {}
        self._queue_wait_children: dict[str, Any] = {}
        r = self.registry
        self.invocations = Counter(
            "gateway_function_invocation", "Invocations by status code", ["function_name", "code"], registry=r
        )
        self.seconds = Histogram(
            "gateway_functions_seconds",
            "Invocation latency",
            ["function_name", "code"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.started = Counter(
            "gateway_function_invocation_started", "Invocations started", ["function_name"], registry=r
        )
        self.cold_starts = Counter(
            "faas_cold_starts", "Calls served by a new sandbox", ["function_name"], registry=r
        )
        self.init_seconds = Histogram(
            "faas_init_seconds",
            "Sandbox start plus module init",
            ["function_name"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "faas_queue_wait_seconds",
            "Time calls waited for a sandbox",
            ["function_name"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.kills = Counter(
            "faas_sandbox_kills", "Sandboxes killed", ["function_name", "reason"], registry=r
        )

        self.evictions = Counter(
            "faas_evictions", "Idle sandboxes evicted under the memory budget", ["function_name"], registry=r
        )
        self.prewarm_hits = Counter(
            "faas_prewarm_hits", "Cold starts served by a pre-warmed sandbox", registry=r
        )
        self.prewarm_misses = Counter(
            "faas_prewarm_misses", "Cold starts that found no pre-warmed sandbox", registry=r
        )

    def invocation_done(self, function: str, code: int, seconds: float) -> None:
        """Count one answered invocation (children cached: labels() costs a lock and a hash per call)."""
        key = (function, code)
        children = self._done_children.get(key)
        if children is None:
            children = (
                self.invocations.labels(function, str(code)),
                self.seconds.labels(function, str(code)),
            )
            self._done_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def invocation_started(self, function: str) -> None:
        child = self._started_children.get(function)
        if child is None:
            child = self._started_children[function] = self.started.labels(function)
        child.inc()

    def queue_waited(self, function: str, seconds: float) -> None:
        child = self._queue_wait_children.get(function)
        if child is None:
            child = self._queue_wait_children[function] = self.queue_wait.labels(function)
        child.observe(seconds)

    def watch_billing(self, billing: BillingTotals) -> None:
        self.registry.register(BillingCollector(billing))

    def watch_pools(self, snapshot: Callable[[], tuple[dict[str, int], dict[str, int]]]) -> None:
        self.registry.register(PoolStateCollector(snapshot))
