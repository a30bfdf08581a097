"""Two invokers on one real PostgreSQL (sandboxes faked, tests/invoker/fakes.py):
a version deployed through one reaches the other's disk on its first call
there, fetched once however many calls need it; one removed meanwhile is
not found."""

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

from invoker.errors import NotFound
from invoker.invoker import Invoker
from invoker.model import Invocation
from tests.invoker.fakes import FakeFactory, make_invoker


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
