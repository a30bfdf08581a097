"""A handler's statusCode must be a final status, 200 to 599 (docs/HANDLER.md):
an interim (1xx) or out-of-range one is a 500 with a clear error, and the
client's keep-alive connection carries its next request normally."""

from __future__ import annotations

import http.client
import json

import pytest

from tests.helpers import TEST_FUNCTIONS, Server


@pytest.fixture(scope="module")
def status_fn(server: Server) -> str:
    server.deploy_ok("status-code", TEST_FUNCTIONS / "status_code.py")
    return "status-code"


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    assert not resp.will_close, f"the server closed the connection after {resp.status}"
    return resp.status, body


@pytest.mark.parametrize("code", [100, 101, 103, 199, 600, 1000, -1])
def test_non_final_status_is_500_and_the_connection_stays_usable(
    server: Server, status_fn: str, code: int
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        status, body = _get(conn, f"/function/{status_fn}?code={code}")
        assert status == 500, (status, body)
        error = json.loads(body)["error"]
        assert f"statusCode {code} is not a final HTTP status: use 200 to 599" in error, error
        sock = conn.sock
        status, body = _get(conn, f"/function/{status_fn}?code=200")
        assert conn.sock is sock, "the second request needed a new connection"
        assert (status, body) == (200, b"as asked")
    finally:
        conn.close()


@pytest.mark.parametrize("code", [200, 204, 418, 599])
def test_final_statuses_pass(server: Server, status_fn: str, code: int) -> None:
    resp = server.invoke(status_fn, f"?code={code}")
    assert resp.status == code, resp.text
