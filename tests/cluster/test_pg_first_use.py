"""Invokers on one real PostgreSQL (sandboxes faked, tests/invoker/fakes.py;
layers made without pip, tests/invoker/test_layers.py): a version deployed
through one reaches the other's disk on its first call there, fetched once
however many calls need it, its layer with it (refused when tampered with);
one removed meanwhile is not found."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from invoker.errors import LayerUnavailable, NotFound
from invoker.invoker import Invoker
from invoker.layers import MANIFEST
from invoker.model import FunctionConfig, Invocation
from invoker.pg_layers import PostgresLayerArchive
from invoker.pg_registry import PostgresRegistry
from tests.cluster.test_pg_layers import LAYER_ID, make_layer
from tests.invoker.fakes import FakeFactory, make_invoker
from tests.invoker.test_layers import PiplessLayerStore


def body(name: str, text: str) -> dict[str, Any]:
    return {"name": name, "files": {"handler.py": base64.b64encode(text.encode()).decode()}}


def invocation(target: str, call_id: str) -> Invocation:
    return Invocation(
        function=target, call_id=call_id, method="GET", path="/", query={}, headers=(), body=b""
    )


async def heard(invoker: Invoker, name: str, version: int) -> None:
    deadline = time.monotonic() + 1.0
    while not (name in invoker.catalog.functions and version in invoker.catalog.functions[name].states):
        assert time.monotonic() < deadline, f"{name} version {version} not heard of within 1 s"
        await asyncio.sleep(0.01)


def code_dirs(root: Path, name: str) -> list[str]:
    path = root / "code" / name
    return os.listdir(path) if path.is_dir() else []


async def test_code_is_fetched_on_first_use_once_and_a_removed_version_is_not_found(
    tmp_path: Path, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "faas.invoker")
    a = make_invoker(tmp_path / "a", FakeFactory(), database=pg_url, metering=False)
    b = make_invoker(tmp_path / "b", FakeFactory(), database=pg_url, metering=False)
    async with a, b:
        await a.deploy_version(body("f", "def handle(event, context):\n    return 1\n"))
        await heard(b, "f", 1)
        state = b.catalog.functions["f"].states[1]
        assert state.code_dir == "" and code_dirs(tmp_path / "b", "f") == []
        results = await asyncio.gather(*(b.invoke(invocation("f", f"c{i}")) for i in range(6)))
        assert [r.status for r in results] == [200] * 6 and sum(r.cold for r in results) == 6
        assert os.path.isfile(os.path.join(state.code_dir, "handler.py"))
        assert code_dirs(tmp_path / "b", "f") == [os.path.basename(state.code_dir)]
        fetched = [r for r in caplog.records if r.getMessage() == "fetched the code of f version 1"]
        assert len(fetched) == 1

        await a.deploy_version(body("f", "def handle(event, context):\n    return 2\n"))
        await heard(b, "f", 2)
        with psycopg.connect(pg_url) as conn:  # removed before b heard of it (no NOTIFY)
            conn.execute("DELETE FROM versions WHERE name = 'f' AND version = 2")
        with pytest.raises(NotFound, match="version 2 of function 'f' was removed"):
            await b.invoke(invocation("f@2", "gone"))
        assert code_dirs(tmp_path / "b", "f") == [os.path.basename(state.code_dir)]


def layered_body(name: str, requirements: str) -> dict[str, Any]:
    files = {"handler.py": "def handle(event, context):\n    return 1\n", "requirements.txt": requirements}
    return {"name": name, "files": {k: base64.b64encode(v.encode()).decode() for k, v in files.items()}}


async def test_a_layer_built_through_one_invoker_is_fetched_by_the_other_on_first_use(
    tmp_path: Path, pg_url: str
) -> None:
    a = make_invoker(tmp_path / "a", FakeFactory(), database=pg_url, metering=False)
    b_factory = FakeFactory()
    b = make_invoker(tmp_path / "b", b_factory, database=pg_url, metering=False)
    a.catalog.layers = PiplessLayerStore(str(tmp_path / "a" / "layers"))
    b_layers = b.catalog.layers = PiplessLayerStore(str(tmp_path / "b" / "layers"))
    async with a, b:
        config, _ = await a.deploy(layered_body("f", "six\n"))
        await heard(b, "f", 1)
        assert b_layers.layers == {} and os.listdir(b_layers.root) == []
        with psycopg.connect(pg_url) as conn:  # tampered with: the digest no longer matches
            [(good,)] = conn.execute("SELECT tree_digest FROM layers").fetchall()
            conn.execute("UPDATE layers SET tree_digest = %s", ("f" * 64,))
        with pytest.raises(LayerUnavailable, match=f"layer {config.layer_id} from the database was refused"):
            await b.invoke(invocation("f", "refused"))
        assert os.listdir(b_layers.root) == [] and b_factory.made == []
        with psycopg.connect(pg_url) as conn:
            conn.execute("UPDATE layers SET tree_digest = %s", (good,))
        result = await b.invoke(invocation("f", "ok"))
        assert result.status == 200 and b_layers.builds == []  # b fetched it, never built it
        [sandbox] = b_factory.made
        assert sandbox.function is not None
        assert sandbox.function.layer_dir == os.path.join(b_layers.root, config.layer_id)
        assert os.path.isfile(os.path.join(sandbox.function.layer_dir, MANIFEST))


async def test_a_layer_only_on_a_servers_disk_is_stored_at_its_start(tmp_path: Path, pg_url: str) -> None:
    """Layers built before they were shared reach the database when their server starts."""
    make_layer(tmp_path / "a" / "layers")
    registry = PostgresRegistry(pg_url)
    # A version stored before layers were shared: its layer row never existed
    # (made here only so that the registry, which checks, takes the version).
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO layers (id, tree_digest, archive_bytes, chunks) VALUES (%s, '', 0, 0)", (LAYER_ID,)
        )
    registry.put(FunctionConfig(name="f", version=0, handler_module="handler", entry="handle",
                                files=("handler.py",), layer_id=LAYER_ID), {"handler.py": b""})  # fmt: skip
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM layers WHERE id = %s", (LAYER_ID,))
    registry.close()
    archive = PostgresLayerArchive(pg_url)
    assert not archive.has(LAYER_ID)
    async with make_invoker(tmp_path / "a", FakeFactory(), database=pg_url, metering=False):
        assert archive.has(LAYER_ID)
    archive.close()
