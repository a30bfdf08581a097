"""The Invoker in process, on a fake sandbox factory (tests/invoker/fakes.py):
scheduling, redeploy, the resize case, eviction, keep-alive, drain and
failures, without root or HTTP."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from invoker.errors import BadRequest, CallTimeout, NotFound, SandboxDied, TooManyRequests, Unavailable
from invoker.invoker import Invoker
from invoker.model import Invocation, UsageQuery
from sandbox.api import SandboxState
from sandbox.egress import AllowRule, OutboundSpec
from sandbox.protocol import Call, Result

from .fakes import MIB, FakeFactory, FakeSandbox, make_invoker

pytestmark = pytest.mark.inprocess

HANDLER = base64.b64encode(b"def handle(event, context):\n    return 'hi'\n").decode()


def deploy_body(name: str = "f", **settings: Any) -> dict[str, Any]:
    return {"name": name, "files": {"handler.py": HANDLER}, **settings}


def invocation(name: str = "f", call_id: str = "c") -> Invocation:
    return Invocation(function=name, call_id=call_id, method="GET", path="/", query={}, headers=(), body=b"")


async def until(condition: Callable[[], bool], what: str, turns: int = 1000) -> None:
    """Let the event loop run until `condition` holds (no wall-clock waits)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def waiting(invoker: Invoker, name: str = "f") -> int:
    """Calls of `name` queued for a sandbox, all versions together."""
    return sum(len(state.pool.waiters) for state in invoker.catalog.get(name).states.values())


async def test_cold_then_warm_reuses_the_sandbox(invoker: Invoker, factory: FakeFactory) -> None:
    await invoker.deploy(deploy_body())
    first = await invoker.invoke(invocation(call_id="1"))
    second = await invoker.invoke(invocation(call_id="2"))
    assert (first.cold, second.cold) == (True, False)
    assert first.body == second.body == b"hello from fake-1"
    assert first.init_ms is not None and second.init_ms is None
    assert len(factory.made) == 1 and factory.made[0].calls == 2
    assert invoker.warm_count("f") == 1


async def test_every_call_is_recorded_with_its_status(invoker: Invoker, factory: FakeFactory) -> None:
    await invoker.deploy(deploy_body())
    await invoker.invoke(invocation(call_id="ok-1"))

    async def oom(sandbox: FakeSandbox, call: Call) -> Result:
        raise SandboxDied("oom", "memory limit of 128 MiB exceeded")

    factory.behaviour = oom
    with pytest.raises(SandboxDied, match="memory limit of 128 MiB exceeded"):
        await invoker.invoke(invocation(call_id="oom-1"))
    rows = await invoker.usage_records(UsageQuery(function="f"), cursor=0, limit=10)
    assert [(r.call_id, r.status, r.cold) for _, r in rows] == [("ok-1", "ok", True), ("oom-1", "oom", False)]
    assert factory.made[0].state is SandboxState.DEAD
    assert invoker.warm_count("f") == 0  # the slot is free again
    assert any("sandbox killed (oom)" in line for line in invoker.logs("f", 10))


async def test_a_sandbox_is_parked_when_it_goes_idle_not_when_a_waiter_takes_it(
    invoker: Invoker, factory: FakeFactory
) -> None:
    await invoker.deploy(deploy_body(max_instances=1))
    factory.gate = asyncio.Event()
    calls = [asyncio.create_task(invoker.invoke(invocation(call_id=str(i)))) for i in range(3)]
    await until(lambda: len(factory.in_flight) == 1 and waiting(invoker) == 2, "one runs, two wait")
    factory.gate.set()
    await asyncio.gather(*calls)
    (sandbox,) = factory.made
    # Handed from the first call to the second and the second to the third; parked after the last.
    assert (sandbox.calls, sandbox.parked) == (3, 1)
    await invoker.invoke(invocation(call_id="alone"))
    assert (sandbox.calls, sandbox.parked) == (4, 2)


async def test_raising_max_instances_lets_every_waiter_in_at_once(
    invoker: Invoker, factory: FakeFactory
) -> None:
    """The resize case: from 1 to 5 with 3 calls waiting starts 3 sandboxes,
    not 1: calls waiting for live follow it to the new version."""
    await invoker.deploy(deploy_body(max_instances=1))
    factory.gate = asyncio.Event()
    calls = [asyncio.create_task(invoker.invoke(invocation(call_id=str(i)))) for i in range(4)]
    await until(lambda: len(factory.in_flight) == 1, "the first call runs")
    await until(lambda: waiting(invoker) == 3, "the other three wait for the one slot")
    assert len(factory.in_flight) == 1

    await invoker.deploy(deploy_body(max_instances=5, memory_mb=256))
    await until(lambda: len(factory.in_flight) == 4, "all three waiters get a sandbox")
    assert len(factory.made) == 4
    factory.gate.set()
    results = await asyncio.gather(*calls)
    assert all(r.status == 200 for r in results)
    assert [r.version for r in results] == [1, 2, 2, 2]
    # Every sandbox stays warm, the old version's too (for a rollback).
    assert sorted(s.id for s in factory.live()) == ["fake-1", "fake-2", "fake-3", "fake-4"]
    assert [s.limits.memory_mb for s in factory.made] == [128, 256, 256, 256]


async def test_full_queue_is_429_and_waiting_past_the_timeout_is_504(
    invoker: Invoker, factory: FakeFactory
) -> None:
    await invoker.deploy(deploy_body(max_instances=1, max_queue=1, timeout_s=0.2))
    factory.gate = asyncio.Event()
    busy = asyncio.create_task(invoker.invoke(invocation(call_id="busy")))
    await until(lambda: len(factory.in_flight) == 1, "the first call runs")
    queued = asyncio.create_task(invoker.invoke(invocation(call_id="waiting")))
    await until(lambda: waiting(invoker) == 1, "a call waits")
    with pytest.raises(TooManyRequests):
        await invoker.invoke(invocation(call_id="third"))
    with pytest.raises(CallTimeout, match="waiting for a free sandbox"):
        await queued
    factory.gate.set()
    assert (await busy).status == 200


async def test_redeploy_runs_a_new_version_and_keeps_the_old_one_warm(
    invoker: Invoker, factory: FakeFactory
) -> None:
    await invoker.deploy(deploy_body())
    await invoker.invoke(invocation())
    config, created = await invoker.deploy(deploy_body(memory_mb=256))
    assert not created and (config.version, config.memory_mb) == (2, 256)
    assert factory.made[0].state is SandboxState.IDLE  # version 1's, warm for a rollback
    result = await invoker.invoke(invocation())
    assert result.cold and result.version == 2 and factory.made[1].limits.memory_mb == 256
    assert invoker.warm_count("f") == 2


async def test_delete_fails_waiters_and_destroys_sandboxes(invoker: Invoker, factory: FakeFactory) -> None:
    await invoker.deploy(deploy_body(max_instances=1))
    factory.gate = asyncio.Event()
    busy = asyncio.create_task(invoker.invoke(invocation(call_id="busy")))
    await until(lambda: len(factory.in_flight) == 1, "the first call runs")
    queued = asyncio.create_task(invoker.invoke(invocation(call_id="waiting")))
    await until(lambda: waiting(invoker) == 1, "a call waits")
    await invoker.delete("f")
    with pytest.raises(NotFound, match="was deleted"):
        await queued
    factory.gate.set()
    assert (await busy).status == 200  # a call in flight ends normally
    await until(lambda: not factory.live(), "its sandbox is destroyed after the call")
    with pytest.raises(NotFound):
        await invoker.invoke(invocation())


async def test_drain_answers_waiters_503_and_lets_calls_in_flight_finish(
    invoker: Invoker, factory: FakeFactory
) -> None:
    await invoker.deploy(deploy_body(max_instances=1))
    factory.gate = asyncio.Event()
    busy = asyncio.create_task(invoker.invoke(invocation(call_id="busy")))
    await until(lambda: len(factory.in_flight) == 1, "the first call runs")
    queued = asyncio.create_task(invoker.invoke(invocation(call_id="waiting")))
    await until(lambda: waiting(invoker) == 1, "a call waits")
    invoker.drain()
    with pytest.raises(Unavailable):
        await queued
    with pytest.raises(Unavailable):
        invoker.admit("f")
    with pytest.raises(Unavailable):
        await invoker.invoke(invocation(call_id="late"))
    factory.gate.set()
    assert (await busy).status == 200


async def test_memory_budget_evicts_the_least_recently_used_idle_sandbox(
    tmp_path: Path, factory: FakeFactory
) -> None:
    factory.memory_bytes = 8 * MIB
    async with make_invoker(tmp_path, factory, warm_memory_budget_mb=20) as invoker:
        for name in ("a", "b"):
            await invoker.deploy(deploy_body(name))
            await invoker.invoke(invocation(name))
        await invoker.invoke(invocation("a"))  # b is now the least recently used
        await invoker.deploy(deploy_body("c"))
        await invoker.invoke(invocation("c"))
        await until(lambda: len(factory.live()) == 2, "one sandbox is evicted")
        assert sorted(s.function.function_name for s in factory.live()) == ["a", "c"]  # type: ignore[union-attr]


async def test_memory_budget_with_only_busy_sandboxes_is_503(tmp_path: Path, factory: FakeFactory) -> None:
    factory.memory_bytes = 8 * MIB
    async with make_invoker(tmp_path, factory, warm_memory_budget_mb=12) as invoker:
        await invoker.deploy(deploy_body("a"))
        await invoker.deploy(deploy_body("b"))
        await invoker.invoke(invocation("a"))
        factory.gate = asyncio.Event()
        busy = asyncio.create_task(invoker.invoke(invocation("a")))
        await until(lambda: len(factory.in_flight) == 1, "a's call runs")
        with pytest.raises(Unavailable, match="all are busy"):
            await invoker.invoke(invocation("b"))
        assert factory.made[0].state is SandboxState.BUSY  # a busy sandbox is never evicted
        factory.gate.set()
        await busy


async def test_keepalive_retires_idle_sandboxes(tmp_path: Path, factory: FakeFactory) -> None:
    async with make_invoker(tmp_path, factory, keepalive_s=0.2) as invoker:
        await invoker.deploy(deploy_body())
        await invoker.invoke(invocation())
        deadline = time.monotonic() + 10
        while factory.live() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not factory.live() and invoker.warm_count("f") == 0


async def test_a_sandbox_that_died_idle_is_replaced_without_failing_the_call(
    invoker: Invoker, factory: FakeFactory
) -> None:
    await invoker.deploy(deploy_body())
    await invoker.invoke(invocation())
    factory.made[0].crashed = True
    result = await invoker.invoke(invocation())
    assert result.status == 200 and result.cold
    assert len(factory.made) == 2 and invoker.warm_count("f") == 1


async def test_a_failed_init_is_recorded_and_frees_the_slot(invoker: Invoker, factory: FakeFactory) -> None:
    from invoker.errors import InitError

    await invoker.deploy(deploy_body(max_instances=1))
    factory.init_error = InitError("function init failed: ValueError: boom", "Traceback: boom\n")
    with pytest.raises(InitError):
        await invoker.invoke(invocation(call_id="init"))
    rows = await invoker.usage_records(UsageQuery(function="f"), cursor=0, limit=10)
    assert [(r.call_id, r.status, r.cold) for _, r in rows] == [("init", "error", True)]
    assert any("Traceback: boom" in line for line in invoker.logs("f", 10))
    factory.init_error = None
    assert (await invoker.invoke(invocation())).status == 200


async def test_outbound_is_deployed_only_where_the_host_can_give_it(
    invoker: Invoker, factory: FakeFactory
) -> None:
    factory.network_problem = "outbound network needs nftables on the host"
    with pytest.raises(BadRequest, match="outbound network needs nftables on the host"):
        await invoker.deploy(deploy_body("out", network="outbound"))
    assert invoker.functions() == []  # nothing stored
    await invoker.deploy(deploy_body("plain"))  # loopback-only functions are not affected
    assert factory.network_prepared == 1


async def test_a_cold_start_takes_a_sandbox_with_the_functions_policy(
    invoker: Invoker, factory: FakeFactory
) -> None:
    await invoker.deploy(deploy_body("out", network="outbound", allow=["10.0.0.5:5432"], egress_mbit=8))
    await invoker.deploy(deploy_body("plain"))
    await invoker.invoke(invocation("out"))
    await invoker.invoke(invocation("plain", "c2"))
    out, plain = factory.made
    assert out.outbound == OutboundSpec((AllowRule("10.0.0.5/32", 5432),), egress_mbit=8.0)
    assert plain.outbound is None
    record = invoker.get("out").to_record()
    assert (record["network"], record["allow"], record["egress_mbit"]) == (
        "outbound",
        ["10.0.0.5/32:5432"],
        8.0,
    )


async def test_network_bytes_reach_the_usage_record(invoker: Invoker, factory: FakeFactory) -> None:
    await invoker.deploy(deploy_body("out", network="outbound"))
    factory.net_bytes = (1234, 567)
    await invoker.invoke(invocation("out"))
    ((_, record),) = await invoker.usage_records(UsageQuery(function="out"), 0, 10)
    assert (record.net_rx_bytes, record.net_tx_bytes) == (1234, 567)
