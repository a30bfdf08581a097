"""Deploys that once broke the layer around the sandbox: a function deleted
and created again under the same name while a call was in flight, and
deploys whose files cannot exist on disk."""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from pathlib import Path

import msgpack

from tests.helpers import Server
from tests.security.common import assert_healthy

TENANT = """
import time

def handle(event, context):
    time.sleep(float(event.query.get("sleep", "0")))
    return open("/var/task/secret.txt").read()
"""


def tenant_files(secret: str) -> dict[str, str]:
    return {
        "handler.py": base64.b64encode(TENANT.encode()).decode(),
        "secret.txt": base64.b64encode(secret.encode()).decode(),
    }


def deploy_tenant(server: Server, secret: str, **settings: object) -> None:
    body = {"name": "tenant", "files": tenant_files(secret), **settings}
    resp = server.request("POST", "/system/functions", json_body=body)
    assert resp.status in (200, 201), resp.text


def busy_calls(server: Server) -> float:
    for line in server.request("GET", "/metrics").text.splitlines():
        if line.startswith('faas_sandboxes{state="busy"}'):
            return float(line.split()[-1])
    return 0.0


def wait_for_a_busy_sandbox(server: Server) -> None:
    deadline = time.monotonic() + 20
    while busy_calls(server) < 1:
        assert time.monotonic() < deadline, "the call never started"
        time.sleep(0.01)


def test_recreated_function_never_serves_the_deleted_ones_code(fresh_server: Server) -> None:
    server = fresh_server
    deploy_tenant(server, "secret of the first tenant")
    answers: list[str] = []
    in_flight = threading.Thread(
        target=lambda: answers.append(server.invoke("tenant", "?sleep=2", timeout=30).text)
    )
    in_flight.start()
    try:
        wait_for_a_busy_sandbox(server)
        assert server.request("DELETE", "/system/functions/tenant").status == 200
        deploy_tenant(server, "the second tenant")
        assert server.invoke("tenant").text == "the second tenant"
    finally:
        in_flight.join(30)
    assert answers == ["secret of the first tenant"]  # the call in flight ends on its own code
    # Its end must not remove the new function's code: new sandboxes still start.
    slow = threading.Thread(target=lambda: answers.append(server.invoke("tenant", "?sleep=1").text))
    slow.start()
    try:
        wait_for_a_busy_sandbox(server)
        second = server.invoke("tenant")  # the warm one is busy: a cold start
    finally:
        slow.join(30)
    assert second.status == 200 and second.headers["X-Cold-Start"] == "true", second.text
    assert second.text == "the second tenant" and answers[-1] == "the second tenant"
    deploy_tenant(server, "the second tenant, new release", memory_mb=256)
    assert server.invoke("tenant").text == "the second tenant, new release"


def test_files_that_cannot_exist_on_disk_are_400_and_leave_nothing(fresh_server: Server) -> None:
    server = fresh_server
    handler = base64.b64encode(b"def handle(e, c):\n    return 'x'\n").decode()
    bad = {
        "a file that is also a directory": {"handler.py": handler, "a": handler, "a/b": handler},
        "a name over the filesystem's limit": {"handler.py": handler, "x" * 300 + ".txt": handler},
        "a path over the limit": {"handler.py": handler, "/".join(["d" * 200] * 20) + "/f": handler},
    }
    for why, files in bad.items():
        resp = server.request("POST", "/system/functions", json_body={"name": "bad", "files": files})
        assert resp.status == 400, (why, resp.status, resp.text)
    assert server.request("GET", "/system/functions/bad").status == 404
    assert server.stop() == 0
    server.start()  # the next start is not bricked
    assert_healthy(server)


def test_start_survives_a_stored_function_it_cannot_serve(fresh_server: Server) -> None:
    """A function stored before these checks existed (files that collide as
    paths) is logged and left out at start; the others are served."""
    server = fresh_server
    server.deploy_ok("good", "def handle(e, c):\n    return 'good'\n")
    server.deploy_ok("broken", "def handle(e, c):\n    return 'broken'\n")
    assert server.stop() == 0
    registry = sqlite3.connect(Path(server.data_dir) / "registry.db")
    with registry:
        handler = b"def handle(e, c):\n    return 'broken'\n"
        files = {"handler.py": handler, "a": b"x", "a/b": b"y"}
        registry.execute(
            "UPDATE versions SET files = ? WHERE name = 'broken'", (msgpack.packb(files, use_bin_type=True),)
        )
    registry.close()
    server.start()
    assert server.invoke("good").text == "good"
    assert server.request("GET", "/system/functions/broken").status == 404
    assert "function broken version 1 cannot be served" in server.log()
    assert json.loads(server.request("GET", "/system/functions").text)[0]["name"] == "good"
