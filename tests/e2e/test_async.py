"""Asynchronous calls on a real server: 202 once queued, the callback with
the call's headers to a receiver on 127.0.0.1, the status and result,
retries with each attempt metered, cancelling, listing, the bound, the
CLI, the metrics, and a queued call that survives SIGKILL of the server."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.canned_http import Canned, Seen, serving
from tests.helpers import REPO, Server, server_with_config, wait_until

CONFIG = 'callback_allow = ["127.0.0.0/8"]\nmax_async_queue = 50\n'
SLEEPER = """
import time

def handle(event, context):
    time.sleep(float(event.query.get("s", "0")))
    return {"body": event.text, "path": event.path}
"""
# Fails its first attempt in each sandbox (a file in /tmp marks it), then succeeds.
FLAKY = """
import os

def handle(event, context):
    if not os.path.exists("/tmp/tried"):
        open("/tmp/tried", "w").close()
        raise RuntimeError("first attempt fails")
    return {"statusCode": 201, "headers": {"X-From": "flaky"}, "body": "second time lucky"}
"""


@dataclass
class Receiver:
    """A callback receiver on 127.0.0.1 (a canned server answering 204)."""

    canned: Canned

    @property
    def url(self) -> str:
        return f"{self.canned.url}/callback"

    def received(self, call_id: str) -> Seen | None:
        return next(
            (seen for seen in list(self.canned.seen) if seen.headers.get("x-call-id") == call_id), None
        )


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with serving() as canned:
        canned.answer("POST", "/callback", 204)
        yield Receiver(canned)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = server_with_config(tmp_path_factory.mktemp("async"), CONFIG).start()
    server.deploy_ok("sleeper", SLEEPER, max_instances=2)
    yield server
    assert server.stop() == 0, server.log()[-4000:]


def call_of(server: Server, call_id: str) -> dict[str, Any]:
    resp = server.request("GET", f"/system/async/{call_id}")
    assert resp.status == 200, resp.text
    return resp.json()


def wait_for_status(server: Server, call_id: str, status: str, timeout_s: float = 30) -> dict[str, Any]:
    wait_until(
        lambda: call_of(server, call_id)["status"] == status, timeout_s, f"call {call_id} to be {status}",
        detail=lambda: call_of(server, call_id),
    )  # fmt: skip
    return call_of(server, call_id)


def enqueue(server: Server, name: str, path: str = "", body: bytes = b"", **headers: str) -> str:
    resp = server.request("POST", f"/async-function/{name}{path}", body=body, headers=headers)
    assert resp.status == 202, resp.text
    assert resp.json() == {"call_id": resp.headers["X-Call-Id"]}
    return resp.headers["X-Call-Id"]


def test_a_call_runs_and_its_result_is_posted_to_the_callback(srv: Server, receiver: Receiver) -> None:
    call_id = enqueue(srv, "sleeper", "/sub?s=0", b"payload", **{"X-Callback-Url": receiver.url})
    call = wait_for_status(srv, call_id, "succeeded")
    assert call["attempts"] == 1 and call["result"]["status"] == 200
    assert json.loads(base64.b64decode(call["result"]["body"])) == {"body": "payload", "path": "/sub"}
    wait_until(lambda: receiver.received(call_id) is not None, 20, "the callback")
    callback = receiver.received(call_id)
    assert callback is not None and callback.method == "POST"
    headers = callback.headers
    assert (headers["x-function-name"], headers["x-function-status"]) == ("sleeper", "200")
    assert float(headers["x-duration-seconds"]) >= 0 and headers["content-type"] == "application/json"
    assert json.loads(callback.body) == {"body": "payload", "path": "/sub"}
    wait_until(
        lambda: call_of(srv, call_id)["callback_status"] == "delivered", 10, "the callback to be recorded"
    )


def test_a_5xx_is_retried_after_a_second_and_each_attempt_metered(srv: Server, receiver: Receiver) -> None:
    srv.deploy_ok("flaky", FLAKY, max_instances=1, async_retries=1)
    call_id = enqueue(srv, "flaky", **{"X-Callback-Url": receiver.url})
    call = wait_for_status(srv, call_id, "succeeded")
    assert call["attempts"] == 2 and call["result"]["status"] == 201
    assert base64.b64decode(call["result"]["body"]) == b"second time lucky"
    records = srv.request("GET", "/system/usage?function=flaky&records=1").json()["records"]
    assert [(r["attempt"], r["status"]) for r in records if r["call_id"] == call_id] == [
        (1, "error"),
        (2, "ok"),
    ]
    wait_until(lambda: receiver.received(call_id) is not None, 20, "the callback")
    assert receiver.received(call_id).headers["x-function-status"] == "201"  # type: ignore[union-attr]
    assert 'faas_async_retries_total{function_name="flaky"} 1.0' in srv.request("GET", "/metrics").text


def test_cancel_a_queued_call(srv: Server) -> None:
    srv.deploy_ok("single", SLEEPER, max_instances=1)
    running = enqueue(srv, "single", "?s=2")
    queued = enqueue(srv, "single", "?s=0")
    wait_for_status(srv, running, "running")
    cancelled = srv.request("DELETE", f"/system/async/{queued}")
    assert cancelled.status == 200 and cancelled.json()["status"] == "cancelled"
    assert srv.request("DELETE", f"/system/async/{running}").status == 409
    assert srv.request("DELETE", "/system/async/no-such-call").status == 404
    wait_for_status(srv, running, "succeeded")
    assert call_of(srv, queued)["status"] == "cancelled" and call_of(srv, queued)["attempts"] == 0


def test_listing_is_paged_and_filtered(srv: Server) -> None:
    srv.deploy_ok("listed", SLEEPER)
    ids = [enqueue(srv, "listed") for _ in range(3)]
    for call_id in ids:
        wait_for_status(srv, call_id, "succeeded")
    first = srv.request("GET", "/system/async?function=listed&limit=2").json()
    rest = srv.request("GET", f"/system/async?function=listed&limit=2&cursor={first['next_cursor']}").json()
    assert [c["call_id"] for c in first["calls"] + rest["calls"]] == ids and rest["next_cursor"] is None
    assert "result" not in first["calls"][0] and first["calls"][0]["result_status"] == 200
    failed = srv.request("GET", "/system/async?function=listed&status=failed").json()
    assert failed["calls"] == []
    assert srv.request("GET", "/system/async?status=bogus").status == 400


def test_bad_requests_lose_nothing(srv: Server) -> None:
    assert srv.request("POST", "/async-function/no-such-fn").status == 404
    metadata = srv.request(
        "POST", "/async-function/sleeper", headers={"X-Callback-Url": "http://169.254.169.254/x"}
    )
    assert metadata.status == 400 and "link-local" in metadata.json()["error"]
    private = srv.request("POST", "/async-function/sleeper", headers={"X-Callback-Url": "http://10.0.0.1/x"})
    assert private.status == 400 and "private" in private.json()["error"]
    assert srv.request("GET", "/async-function/sleeper").status == 405


def test_the_queue_is_bounded(srv: Server) -> None:
    srv.deploy_ok("bounded", SLEEPER, max_instances=1)
    answers = [srv.request("POST", "/async-function/bounded?s=1") for _ in range(60)]
    accepted = [a.headers["X-Call-Id"] for a in answers if a.status == 202]
    assert (
        len(accepted) <= 50 and answers[-1].status == 429 and "max_async_queue" in answers[-1].json()["error"]
    )
    assert 'faas_async_queue_depth{function_name="bounded"}' in srv.request("GET", "/metrics").text
    for call_id in accepted:  # leave the queue to the other tests
        srv.request("DELETE", f"/system/async/{call_id}")


def test_the_cli(srv: Server, receiver: Receiver) -> None:
    faas = [sys.executable, "-m", "gateway.cli", "--gateway", srv.url]
    queued = subprocess.run(
        [*faas, "invoke", "sleeper", "--async", "--data", "from cli", "--callback", receiver.url],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=True,
    )  # fmt: skip
    call_id = queued.stdout.strip()
    wait_for_status(srv, call_id, "succeeded")
    shown = subprocess.run(
        [*faas, "call", call_id, "--body"], capture_output=True, cwd=REPO, timeout=60, check=True
    )
    assert json.loads(shown.stdout) == {"body": "from cli", "path": "/"}
    listed = subprocess.run(
        [*faas, "calls", "sleeper", "--status", "succeeded"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert listed.returncode == 0 and call_id in listed.stdout


def test_a_queued_call_survives_sigkill_and_runs_once_after_the_restart(tmp_path: Path) -> None:
    server = server_with_config(tmp_path, CONFIG).start()
    server.deploy_ok("durable", SLEEPER, max_instances=1, async_retries=0)
    running = enqueue(server, "durable", "?s=30")
    wait_for_status(server, running, "running")
    queued = [enqueue(server, "durable", f"/q{i}") for i in range(3)]
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    restarted = server.start()
    try:
        for call_id in queued:
            assert wait_for_status(restarted, call_id, "succeeded")["attempts"] == 1
        interrupted = wait_for_status(restarted, running, "failed")
        assert interrupted["attempts"] == 1 and "server stopped during attempt 1" in interrupted["error"]
        records = restarted.request("GET", "/system/usage?function=durable&records=1").json()["records"]
        ran = [r["call_id"] for r in records]
        assert sorted(ran) == sorted(queued)  # each queued call once; the interrupted one not again
    finally:
        assert restarted.stop() == 0, restarted.log()[-4000:]
