"""Invokers' heartbeat leases in a real PostgreSQL: registered, updated,
dropped when they stop beating, removed on a clean exit."""

from __future__ import annotations

import asyncio
import time

from invoker.pg_nodes import NodeInfo, NodeLease, NodeWatch
from invoker.pg_schema import migrate


async def _until(predicate, timeout_s: float, what: str) -> float:  # type: ignore[no-untyped-def]
    """Seconds until `predicate()` held (the async twin of tests.helpers.wait_until)."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"waited {timeout_s} s for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


async def test_a_lease_lives_with_its_heartbeat(pg_url: str) -> None:
    migrate(pg_url)
    load = {"in_flight": 0}

    def describe(node_id: str) -> NodeInfo:
        return NodeInfo(node_id, f"10.0.0.{len(node_id)}:8081", 2, 4096, load["in_flight"], 3, True)

    async with NodeWatch(pg_url, period_s=0.1) as watch:
        async with NodeLease(pg_url, lambda: describe("a"), heartbeat_s=0.1, lease_s=0.5):
            killed = NodeLease(pg_url, lambda: describe("bb"), heartbeat_s=0.1, lease_s=0.5)
            await killed.__aenter__()
            await _until(lambda: set(watch.nodes) == {"a", "bb"}, 5, "both invokers live")
            assert watch.nodes["a"] == describe("a")
            load["in_flight"] = 7
            await _until(lambda: watch.nodes["a"].in_flight == 7, 5, "the new load seen")
            # Stop the heartbeat without removing the row, as a SIGKILL would.
            assert killed._task is not None
            killed._task.cancel()
            gone_after = await _until(lambda: "bb" not in watch.nodes, 5, "the dead invoker dropped")
            assert gone_after < 3.0
            assert "a" in watch.nodes
            assert killed._conn is not None
            await killed._conn.close()
        await _until(lambda: watch.nodes == {}, 5, "the cleanly stopped invoker removed")
