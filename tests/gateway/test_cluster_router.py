"""gateway/cluster/router.py and forward.function_of: which invoker takes a call."""

from __future__ import annotations

from collections import Counter

import pytest

from gateway.cluster.forward import function_of
from gateway.cluster.router import Router
from invoker.pg_nodes import NodeInfo


def nodes(*ids: str, unready: tuple[str, ...] = ()) -> dict[str, NodeInfo]:
    return {i: NodeInfo(i, i, 2, 1024, ready=i not in unready) for i in ids}


def test_a_function_goes_home_and_homes_spread() -> None:
    live = nodes("a:1", "b:1", "c:1")
    router = Router(lambda: live)
    homes = {f"fn{i}": router.order(f"fn{i}", 0.0)[0].node_id for i in range(60)}
    assert all(router.order(name, 0.0)[0].node_id == home for name, home in homes.items())
    assert set(Counter(homes.values())) == set(live)


def test_calls_past_the_bound_go_to_the_next_invoker() -> None:
    live = nodes("a:1", "b:1", "c:1")
    router = Router(lambda: live)
    placed = []
    for _ in range(12):
        node = router.order("fn", 0.0)[0].node_id
        router.started(node)
        placed.append(node)
    counts = Counter(placed)
    assert len(counts) == 3 and max(counts.values()) <= 5  # ceil(1.25 * 12 / 3)
    for node in placed:
        router.finished(node)
    assert not router.in_flight


def test_unready_and_unreachable_invokers_are_passed_over_until_they_recover() -> None:
    live = nodes("a:1", "b:1", "c:1")
    router = Router(lambda: live, suspect_s=3.0)
    home = router.order("fn", 0.0)[0].node_id
    router.unreachable(home, 10.0)
    assert home not in [n.node_id for n in router.order("fn", 11.0)]
    assert router.order("fn", 13.5)[0].node_id == home  # tried again after suspect_s
    live[home] = NodeInfo(home, home, 2, 1024, ready=False)
    order = [n.node_id for n in router.order("fn", 20.0)]
    assert home not in order and len(order) == 2
    live[home] = NodeInfo(home, home, 2, 1024, ready=True)
    assert router.order("fn", 20.0)[0].node_id == home  # the ring kept its place


def test_no_live_invoker_means_no_order() -> None:
    assert Router(lambda: {}).order("fn", 0.0) == []
    assert Router(lambda: nodes("a:1", unready=("a:1",))).order("fn", 0.0) == []


@pytest.mark.parametrize(
    ("path", "query", "name"),
    [
        ("/async-function/fn@live", {}, "fn"),
        ("/system/functions/fn/versions", {}, "fn"),
        ("/system/function/fn", {}, "fn"),
        ("/2015-03-31/functions/fn/invocations", {}, "fn"),
        ("/2015-03-31/functions/fn:prod/invocations", {}, "fn"),
        (
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Afn%3A3/invocations",
            {},
            "fn",
        ),
        ("/system/logs", {"name": "fn"}, "fn"),
        ("/system/functions", {}, ""),
        ("/system/secrets", {}, ""),
        ("/openapi.json", {}, ""),
    ],
)
def test_the_function_a_request_is_about(path: str, query: dict[str, str], name: str) -> None:
    assert function_of(path, query) == name


def test_per_invoker_metrics_forget_invokers_that_left() -> None:
    from prometheus_client import CollectorRegistry

    from gateway.cluster.metrics import ClusterMetrics

    registry = CollectorRegistry()
    metrics = ClusterMetrics(registry)
    live = nodes("a:1", "b:1")
    router = Router(lambda: live, on_change=metrics.keep_only)
    for node_id in live:
        metrics.sent(node_id, "answered")
        metrics.in_flight(node_id, 0)
    router.order("fn", 0.0)
    router.unreachable("b:1", 0.0)
    del live["b:1"]
    router.order("fn", 1.0)
    assert (
        registry.get_sample_value("faas_cluster_requests_total", {"node": "a:1", "outcome": "answered"}) == 1
    )
    assert (
        registry.get_sample_value("faas_cluster_requests_total", {"node": "b:1", "outcome": "answered"})
        is None
    )
    assert registry.get_sample_value("faas_cluster_in_flight", {"node": "b:1"}) is None
