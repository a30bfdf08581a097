"""`faas serve --queue nats://...`: asynchronous calls through a real server
whose queue is in NATS JetStream, and a call on a killed server run by
another server sharing the queue."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Server, wait_until

pytestmark = pytest.mark.root

SLEEPER = """
import time

def handle(event, context):
    time.sleep(float(event.query.get("s", "0")))
    return {"body": event.text, "attempt": event.headers.get("x-faas-attempt")}
"""


def nats_server_of(base: Path, nats_url: str, ack_wait_s: float = 30, *args: str) -> Server:
    base.mkdir(parents=True, exist_ok=True)
    config = base / "faas.toml"
    config.write_text(f"queue_ack_wait_s = {ack_wait_s}\n")
    return Server(base / "data", extra_args=("--queue", nats_url, "--config", str(config), *args))


def call_of(server: Server, call_id: str) -> dict[str, Any]:
    resp = server.request("GET", f"/system/async/{call_id}")
    assert resp.status == 200, resp.text
    return resp.json()


def enqueue(server: Server, name: str, path: str = "", body: bytes = b"") -> str:
    resp = server.request("POST", f"/async-function/{name}{path}", body=body)
    assert resp.status == 202, resp.text
    return resp.headers["X-Call-Id"]


def test_an_async_call_is_queued_in_nats_and_runs(tmp_path: Path, nats_url: str) -> None:
    server = nats_server_of(tmp_path / "a", nats_url).start()
    try:
        server.deploy_ok("sleeper", SLEEPER)
        call_id = enqueue(server, "sleeper", "?s=0", b"payload")
        wait_until(lambda: call_of(server, call_id)["status"] == "succeeded", 30, "the call to succeed",
                   detail=lambda: call_of(server, call_id))  # fmt: skip
        call = call_of(server, call_id)
        assert call["attempts"] == 1 and call["result"]["status"] == 200
        listed = server.request("GET", "/system/async?function=sleeper").json()
        assert call_id in json.dumps(listed)
    finally:
        assert server.stop() == 0, server.log()[-4000:]


def test_a_call_on_a_killed_server_is_redelivered_and_runs_on_another(
    tmp_path: Path, nats_url: str, pg_url: str
) -> None:
    # One registry (PostgreSQL): every invoker taking calls from the queue knows every function.
    first = nats_server_of(tmp_path / "a", nats_url, 3, "--database", pg_url).start()
    try:
        first.deploy_ok("slow", SLEEPER)
        call_id = enqueue(first, "slow", "?s=3", b"once more")
        wait_until(lambda: call_of(first, call_id)["status"] == "running", 30, "the call to start")
    finally:
        first.stop(signal.SIGKILL)  # no ack, no in_progress any more
    second = nats_server_of(tmp_path / "b", nats_url, 3, "--database", pg_url).start()
    try:
        wait_until(lambda: call_of(second, call_id)["status"] == "succeeded", 30, "the call to run again",
                   detail=lambda: call_of(second, call_id))  # fmt: skip
        call = call_of(second, call_id)
        assert call["attempts"] == 2 and call["result"]["status"] == 200
    finally:
        assert second.stop() == 0, second.log()[-4000:]
