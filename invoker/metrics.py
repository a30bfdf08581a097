"""Prometheus metrics of docs/METRICS.md, in a registry of their own (no
globals): the gateway exposes `registry`, the invoker updates the rest."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


class Tally:
    """One histogram series kept as plain numbers: its count of observations
    in each bucket (not cumulative), and their sum."""

    __slots__ = ("counts", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.total = 0.0

    def cumulative(self, bounds: tuple[float, ...]) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip((*bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append((floatToGoString(bound), running))
        return out


class CallCollector(Collector):
    """The per-call series (docs/METRICS.md), counted in plain dicts on the
    event loop and turned into metrics at scrape time: prometheus_client's
    own counters take a lock and walk a few objects per increment, and a
    warm call updates four series, a cold start two more (bench/PROFILE.md). Only the event loop
    writes; a scrape copies the dicts first."""

    def __init__(self) -> None:
        self.done: dict[tuple[str, int], Tally] = {}  # (function, status code)
        self.started: dict[str, int] = {}
        self.queue_wait: dict[str, Tally] = {}
        # Cold starts: a new function's first prometheus_client series cost ~60 µs on its path.
        self.init: dict[str, Tally] = {}
        self._buckets = len(LATENCY_BUCKETS) + 1

    def count_done(self, function: str, code: int, seconds: float) -> None:
        self._observe(self.done, (function, code), seconds)

    def count_wait(self, function: str, seconds: float) -> None:
        self._observe(self.queue_wait, function, seconds)

    def count_init(self, function: str, seconds: float) -> None:
        self._observe(self.init, function, seconds)

    def _observe(self, tallies: dict[Any, Tally], key: Any, seconds: float) -> None:
        tally = tallies.get(key)
        if tally is None:
            tally = tallies[key] = Tally(self._buckets)
        tally.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        tally.total += seconds

    def collect(self) -> Iterable[Metric]:
        done, started = list(self.done.items()), list(self.started.items())
        waits, inits = list(self.queue_wait.items()), list(self.init.items())
        invocations = CounterMetricFamily(
            "gateway_function_invocation", "Invocations by status code", labels=["function_name", "code"]
        )
        seconds = HistogramMetricFamily(
            "gateway_functions_seconds", "Invocation latency", labels=["function_name", "code"]
        )
        for (function, code), tally in sorted(done):
            labels = [function, str(code)]
            invocations.add_metric(labels, sum(tally.counts))
            seconds.add_metric(labels, tally.cumulative(LATENCY_BUCKETS), tally.total)
        begun = CounterMetricFamily(
            "gateway_function_invocation_started", "Invocations started", labels=["function_name"]
        )
        for function, count in sorted(started):
            begun.add_metric([function], count)
        queue_wait = HistogramMetricFamily(
            "faas_queue_wait_seconds", "Time calls waited for a sandbox", labels=["function_name"]
        )
        for function, tally in sorted(waits):
            queue_wait.add_metric([function], tally.cumulative(LATENCY_BUCKETS), tally.total)
        cold_starts = CounterMetricFamily(
            "faas_cold_starts", "Calls served by a new sandbox", labels=["function_name"]
        )
        init_seconds = HistogramMetricFamily(
            "faas_init_seconds", "Sandbox start plus module init", labels=["function_name"]
        )
        for function, tally in sorted(inits):
            cold_starts.add_metric([function], sum(tally.counts))
            init_seconds.add_metric([function], tally.cumulative(LATENCY_BUCKETS), tally.total)
        yield from (invocations, seconds, begun, queue_wait, cold_starts, init_seconds)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls = CallCollector()
        r.register(self.calls)
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
        self.calls.count_done(function, code, seconds)

    def invocation_started(self, function: str) -> None:
        started = self.calls.started
        started[function] = started.get(function, 0) + 1

    def queue_waited(self, function: str, seconds: float) -> None:
        self.calls.count_wait(function, seconds)

    def cold_started(self, function: str, init_seconds: float) -> None:
        """faas_cold_starts and faas_init_seconds of one cold start."""
        self.calls.count_init(function, init_seconds)

    def watch_billing(self, billing: BillingTotals) -> None:
        self.registry.register(BillingCollector(billing))

    def watch_pools(self, snapshot: Callable[[], tuple[dict[str, int], dict[str, int]]]) -> None:
        self.registry.register(PoolStateCollector(snapshot))
