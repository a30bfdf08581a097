"""`faas serve --database postgresql://...`: the registry and the ledger in
a real PostgreSQL, outliving the server and its data directory."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg
import pytest

from tests.helpers import EXAMPLES, Server, wait_until

pytestmark = pytest.mark.root


def test_functions_and_usage_live_in_postgres(tmp_path: Path, pg_url: str) -> None:
    first = Server(tmp_path / "a", extra_args=("--database", pg_url)).start()
    try:
        first.deploy_ok("hello", EXAMPLES / "hello.py")
        call_ids = set()
        for _ in range(5):
            resp = first.invoke("hello")
            assert resp.status == 200, resp.body
            call_ids.add(resp.headers["X-Call-Id"])
    finally:
        # SIGKILL: records of answered calls were durable before their answers.
        first.stop(signal.SIGKILL)
    with psycopg.connect(pg_url) as conn:
        stored = {r[0] for r in conn.execute("SELECT call_id FROM usage WHERE function = 'hello'")}
    assert stored == call_ids
    # Another server, an empty data directory: the function comes from the database.
    second = Server(tmp_path / "b", extra_args=("--database", pg_url)).start()
    try:
        resp = second.invoke("hello")
        assert resp.status == 200, resp.body
        usage = second.request("GET", "/system/usage?function=hello&records=1").json()
        assert len(usage["records"]) == 6
    finally:
        second.stop()


def test_a_deploy_on_one_server_is_callable_on_another_within_a_second(tmp_path: Path, pg_url: str) -> None:
    a = Server(tmp_path / "a", extra_args=("--database", pg_url)).start()
    b = Server(tmp_path / "b", extra_args=("--database", pg_url)).start()
    try:
        a.deploy_ok("hello", EXAMPLES / "hello.py")
        t0 = time.monotonic()
        wait_until(lambda: b.invoke("hello").status == 200, 1.0, "the deploy callable on the other server")
        assert time.monotonic() - t0 < 1.0
        a.deploy_ok("hello", EXAMPLES / "echo.py")  # version 2
        wait_until(lambda: b.invoke("hello").headers.get("X-Faas-Version") == "2", 1.0, "version 2 there")
        assert a.request("POST", "/system/functions/hello/rollback", json_body={}).status == 200
        wait_until(lambda: b.invoke("hello").headers.get("X-Faas-Version") == "1", 1.0, "the rollback there")
        assert a.request("DELETE", "/system/functions/hello").status in (200, 202, 204)
        wait_until(lambda: b.invoke("hello").status == 404, 1.0, "the delete there")
    finally:
        a.stop()
        b.stop()
