"""Versions and aliases in process, on the fake sandbox factory: a deploy
makes a version (or none), routing by version and alias, the weighted
split, rollback onto warm sandboxes, waiting calls that follow their alias,
retention, deletion and a restart."""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
from pathlib import Path

import pytest

from invoker.errors import BadRequest, NotFound, SandboxDied
from invoker.invoker import Invoker
from invoker.model import VERSION_HEADER
from sandbox.api import SandboxState
from sandbox.protocol import Call, Result

from .fakes import FakeFactory, FakeSandbox, make_invoker
from .test_invoker import deploy_body, invocation, until, waiting


def code(text: str) -> dict[str, str]:
    return {"handler.py": base64.b64encode(f"def handle(e, c):\n    return {text!r}\n".encode()).decode()}


async def deploy_version(invoker: Invoker, text: str, name: str = "f", **settings: object) -> int:
    deployed = await invoker.deploy_version({"name": name, "files": code(text), **settings})
    assert deployed.changed
    return deployed.config.version


async def run(invoker: Invoker, target: str = "f", call_id: str = "c") -> tuple[int, str]:
    """(the version that ran, the sandbox that ran it)."""
    result = await invoker.invoke(invocation(target, call_id))
    return result.version, result.body.decode().removeprefix("hello from ")


async def test_a_deploy_identical_to_the_newest_makes_no_version(
    invoker: Invoker, factory: FakeFactory
) -> None:
    first = await invoker.deploy_version(deploy_body(memory_mb=256))
    await run(invoker)
    again = await invoker.deploy_version(deploy_body(memory_mb=256))
    assert (first.created, first.changed) == (True, True)
    assert (again.created, again.changed) == (False, False)
    assert again.config == first.config and again.config.version == 1
    assert [c.version for c, _ in invoker.versions("f")] == [1]
    assert factory.made[0].state is SandboxState.IDLE  # nothing changed: its sandbox stays warm
    changed = await invoker.deploy_version(deploy_body(memory_mb=512))
    assert (changed.created, changed.changed, changed.config.version) == (False, True, 2)
    assert changed.config.created_at == first.config.created_at


async def test_calls_by_version_and_alias_run_in_sandboxes_of_their_own(invoker: Invoker) -> None:
    assert await deploy_version(invoker, "one") == 1
    assert await deploy_version(invoker, "two") == 2
    assert (await run(invoker, "f"))[0] == 2  # live follows the newest
    v1, sandbox1 = await run(invoker, "f@1")
    v2, sandbox2 = await run(invoker, "f@2")
    assert (v1, v2) == (1, 2) and sandbox1 != sandbox2
    assert (await run(invoker, "f@live"))[1] == sandbox2
    await invoker.put_alias("f", "stable", {"version": 1})
    assert await run(invoker, "f@stable") == (1, sandbox1)
    assert invoker.admit("f@stable").version == 1


@pytest.mark.parametrize("target", ["f@3", "f@0", "f@beta", "f@", "g", "g@1"])
async def test_an_unknown_version_or_alias_is_not_found(invoker: Invoker, target: str) -> None:
    await deploy_version(invoker, "one")
    await deploy_version(invoker, "two")
    with pytest.raises(NotFound):
        invoker.admit(target)
    with pytest.raises(NotFound):
        await invoker.invoke(invocation(target))


async def test_rollback_pins_live_and_runs_on_the_warm_sandbox(
    invoker: Invoker, factory: FakeFactory
) -> None:
    await deploy_version(invoker, "one")
    _, old_sandbox = await run(invoker)
    await deploy_version(invoker, "two")
    assert (await run(invoker))[0] == 2
    answer = await invoker.rollback("f", {})
    assert answer == {
        "function": "f",
        "previous": 2,
        "live": {"name": "live", "version": 1, "weights": {}, "follows_newest": False},
    }
    result = await invoker.invoke(invocation())
    assert (result.version, result.cold) == (1, False)  # no cold start: version 1's sandbox was warm
    assert result.body == f"hello from {old_sandbox}".encode()
    # A pinned live stays where it is when a version is deployed...
    assert await deploy_version(invoker, "three") == 3
    assert (await run(invoker))[0] == 1
    await invoker.rollback("f", {"to": 3})
    assert (await run(invoker))[0] == 3
    with pytest.raises(BadRequest, match="has no version 7"):
        await invoker.rollback("f", {"to": 7})
    await invoker.rollback("f", {"to": 1})
    with pytest.raises(BadRequest, match="no version before 1"):
        await invoker.rollback("f", {})
    # ...until it is unpinned: then it follows the newest again.
    record = await invoker.delete_alias("f", "live")
    assert record == {"name": "live", "version": 3, "weights": {}, "follows_newest": True}
    assert (await run(invoker))[0] == 3


@pytest.mark.parametrize("weight", [0.1, 0.01, 0.25, 0.5, 0.9])
async def test_a_weighted_alias_splits_calls_within_two_points_of_the_weight(
    invoker: Invoker, weight: float
) -> None:
    await deploy_version(invoker, "one")
    await deploy_version(invoker, "two")
    await invoker.put_alias("f", "live", {"version": 1, "weights": {"2": weight}})
    versions = [(await run(invoker, call_id=str(i)))[0] for i in range(1000)]
    share = versions.count(2) / len(versions)
    assert abs(share - weight) <= 0.02, share
    # Spread over the run, not bunched: every run of 200 calls is close too.
    for start in range(0, 1000, 200):
        window = versions[start : start + 200]
        assert abs(window.count(2) / 200 - weight) <= 0.02, (start, window.count(2))
    assert set(versions) == {1, 2}


async def test_alias_bodies_and_names_are_checked(invoker: Invoker) -> None:
    await deploy_version(invoker, "one")
    await deploy_version(invoker, "two")
    bad = [
        ({}, "needs version"),
        ({"version": 9}, "has no version 9"),
        ({"version": 1, "weights": {"9": 0.5}}, "has no version 9"),
        ({"version": 1, "weights": {"1": 0.5}}, "points at already"),
        ({"version": 1, "weights": {"2": 1.5}}, "from 0 to 1"),
        ({"version": 1, "weights": {"2": 0.1, "3": 0.1}}, "one other version"),
        ({"version": "1"}, "version number"),
        ({"version": 1, "extra": 1}, "unknown field"),
    ]
    for body, message in bad:
        with pytest.raises(BadRequest, match=message):
            await invoker.put_alias("f", "beta", body)
    with pytest.raises(BadRequest, match="invalid alias name"):
        await invoker.put_alias("f", "123", {"version": 1})
    with pytest.raises(NotFound):
        await invoker.put_alias("nope", "beta", {"version": 1})
    with pytest.raises(NotFound, match="no alias 'beta'"):
        await invoker.delete_alias("f", "beta")
    assert [a["name"] for a in invoker.aliases("f")] == ["live"]


async def test_calls_waiting_for_an_alias_follow_it_and_explicit_ones_stay(
    invoker: Invoker, factory: FakeFactory
) -> None:
    await deploy_version(invoker, "one", max_instances=1)
    factory.gate = asyncio.Event()
    busy = asyncio.create_task(invoker.invoke(invocation(call_id="busy")))
    await until(lambda: len(factory.in_flight) == 1, "the first call runs")
    via_live = asyncio.create_task(invoker.invoke(invocation("f", "via-live")))
    pinned = asyncio.create_task(invoker.invoke(invocation("f@1", "pinned")))
    await until(lambda: waiting(invoker) == 2, "both wait for version 1's one sandbox")
    await deploy_version(invoker, "two", max_instances=1)
    await until(lambda: len(factory.in_flight) == 2, "the call via live starts on version 2")
    factory.gate.set()
    done = await asyncio.gather(busy, via_live, pinned)
    assert [r.version for r in done] == [1, 2, 1]


async def test_retention_keeps_the_newest_and_the_aliased_versions(
    tmp_path: Path, factory: FakeFactory
) -> None:
    async with make_invoker(tmp_path, factory, versions_kept=2) as invoker:
        await deploy_version(invoker, "v1")
        await invoker.put_alias("f", "old", {"version": 1})
        await deploy_version(invoker, "v2")
        await run(invoker, "f@2")
        code_dir = factory.made[0].function.code_dir  # type: ignore[union-attr]
        assert os.path.isdir(code_dir)
        for text in ("v3", "v4"):
            await deploy_version(invoker, text)
        assert [c.version for c, _ in invoker.versions("f")] == [1, 3, 4]
        assert factory.made[0].state is SandboxState.DEAD  # version 2's sandbox went with it
        assert not os.path.exists(code_dir)
        with pytest.raises(NotFound):
            await invoker.invoke(invocation("f@2"))
        await invoker.delete_alias("f", "old")  # version 1 is only retained while aliased
        assert [c.version for c, _ in invoker.versions("f")] == [3, 4]


async def test_a_version_removed_while_its_sandbox_is_busy_retires_it_after_the_call(
    tmp_path: Path, factory: FakeFactory
) -> None:
    async with make_invoker(tmp_path, factory, versions_kept=1) as invoker:
        await deploy_version(invoker, "v1")
        factory.gate = asyncio.Event()
        busy = asyncio.create_task(invoker.invoke(invocation()))
        await until(lambda: len(factory.in_flight) == 1, "the call runs")
        await deploy_version(invoker, "v2")
        factory.gate.set()
        assert (await busy).version == 1
        await until(lambda: factory.made[0].state is SandboxState.DEAD, "its sandbox is destroyed")


async def test_delete_removes_every_version_and_alias(invoker: Invoker, factory: FakeFactory) -> None:
    await deploy_version(invoker, "one")
    await deploy_version(invoker, "two")
    await invoker.put_alias("f", "beta", {"version": 1})
    await run(invoker, "f@1")
    await run(invoker, "f@2")
    await invoker.delete("f")
    assert not factory.live()
    with pytest.raises(NotFound):
        invoker.versions("f")
    again = await invoker.deploy_version({"name": "f", "files": code("one")})
    assert (again.created, again.config.version) == (True, 1)
    assert [a["name"] for a in invoker.aliases("f")] == ["live"]


async def test_versions_and_aliases_survive_a_restart(tmp_path: Path, factory: FakeFactory) -> None:
    async with make_invoker(tmp_path, factory) as invoker:
        await deploy_version(invoker, "one")
        await deploy_version(invoker, "two")
        await invoker.put_alias("f", "canary", {"version": 1, "weights": {"2": 0.25}})
        await invoker.rollback("f", {})
    async with make_invoker(tmp_path, FakeFactory()) as invoker:
        assert [c.version for c, _ in invoker.versions("f")] == [1, 2]
        assert invoker.aliases("f") == [
            {"name": "live", "version": 1, "weights": {}, "follows_newest": False},
            {"name": "canary", "version": 1, "weights": {"2": 0.25}, "follows_newest": False},
        ]
        assert (await run(invoker))[0] == 1
        assert (await run(invoker, "f@2"))[0] == 2


async def test_a_registry_from_before_versions_is_taken_over(tmp_path: Path, factory: FakeFactory) -> None:
    async with make_invoker(tmp_path, factory) as invoker:
        await deploy_version(invoker, "one")
    db = sqlite3.connect(tmp_path / "registry.db")
    db.execute("ALTER TABLE versions RENAME TO functions")
    db.execute("DROP TABLE aliases")
    db.commit()
    db.close()
    async with make_invoker(tmp_path, FakeFactory()) as invoker:
        assert [c.version for c, _ in invoker.versions("f")] == [1]
        assert (await run(invoker))[0] == 1


async def test_an_error_from_a_sandbox_names_the_version_that_ran(
    invoker: Invoker, factory: FakeFactory
) -> None:
    await deploy_version(invoker, "one")
    await deploy_version(invoker, "two")

    async def crash(sandbox: FakeSandbox, call: Call) -> Result:
        raise SandboxDied("crash", "sandbox exited or crashed during the call")

    factory.behaviour = crash
    with pytest.raises(SandboxDied) as died:
        await invoker.invoke(invocation("f@1"))
    assert died.value.headers[VERSION_HEADER] == "1"
