"""The per-call series kept as plain numbers (invoker.metrics.CallCollector)
expose exactly what prometheus_client's own Counter and Histogram would."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.parser import text_string_to_metric_families

from invoker.metrics import LATENCY_BUCKETS, Metrics


def _samples(
    registry: CollectorRegistry, names: set[str]
) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    from prometheus_client import generate_latest

    out = set()
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name in names:
                out.add((sample.name, tuple(sorted(sample.labels.items())), round(sample.value, 9)))
    return out


def test_call_series_match_prometheus_client() -> None:
    metrics = Metrics()
    reference = CollectorRegistry()
    invocations = Counter("gateway_function_invocation", "x", ["function_name", "code"], registry=reference)
    seconds = Histogram(
        "gateway_functions_seconds",
        "x",
        ["function_name", "code"],
        buckets=LATENCY_BUCKETS,
        registry=reference,
    )
    started = Counter("gateway_function_invocation_started", "x", ["function_name"], registry=reference)
    waits = Histogram(
        "faas_queue_wait_seconds", "x", ["function_name"], buckets=LATENCY_BUCKETS, registry=reference
    )
    colds = Counter("faas_cold_starts", "x", ["function_name"], registry=reference)
    inits = Histogram(
        "faas_init_seconds", "x", ["function_name"], buckets=LATENCY_BUCKETS, registry=reference
    )
    rng = random.Random(7)
    # Values on the bucket bounds too: `le` includes the bound.
    values = [*LATENCY_BUCKETS, 0.0, 1e-6, 1000.0] + [rng.uniform(0, 2) ** 4 for _ in range(300)]
    for i, value in enumerate(values):
        function, code = ("hello", "echo")[i % 2], (200, 500, 429)[i % 3]
        metrics.invocation_started(function)
        started.labels(function).inc()
        metrics.invocation_done(function, code, value)
        invocations.labels(function, str(code)).inc()
        seconds.labels(function, str(code)).observe(value)
        metrics.queue_waited(function, value / 3)
        waits.labels(function).observe(value / 3)
        if i % 5 == 0:
            metrics.cold_started(function, value * 2)
            colds.labels(function).inc()
            inits.labels(function).observe(value * 2)
    names = {
        "gateway_function_invocation_total",
        "gateway_function_invocation_started_total",
        "faas_cold_starts_total",
        *(
            f"{base}_{part}"
            for base in ("gateway_functions_seconds", "faas_queue_wait_seconds", "faas_init_seconds")
            for part in ("bucket", "count", "sum")
        ),
    }
    ours, theirs = _samples(metrics.registry, names), _samples(reference, names)
    assert ours == theirs
    assert len(ours) > 100


def test_a_scrape_sees_no_series_before_the_first_call() -> None:
    metrics = Metrics()
    assert _samples(metrics.registry, {"gateway_function_invocation_total"}) == set()
