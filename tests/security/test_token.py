"""The server's token never reaches a function (docs/HTTP-API.md): not through
`faas invoke`, not through a raw request that carries it in any spelling.
Another Authorization value is the function's business and reaches it."""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator

import pytest

from tests.e2e.test_cli import faas
from tests.helpers import EXAMPLES, Server

TOKEN = "t0ken-" + "x" * 26


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if os.geteuid() != 0:
        pytest.skip("the runtime needs root")
    srv = Server(tmp_path_factory.mktemp("data") / "d", token=TOKEN).start()
    srv.deploy_ok("echo", EXAMPLES / "echo.py")
    yield srv
    assert srv.stop() == 0, srv.log()[-4000:]


def _seen_headers(server: Server, *authorization: str) -> dict[str, str]:
    """What the echo function got, called with these Authorization headers (raw HTTP)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("GET", "/function/echo")
        for value in authorization:
            conn.putheader("Authorization", value)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, body
    return {k.lower(): v for k, v in json.loads(body)["headers"].items()}


@pytest.mark.parametrize(
    "value",
    [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER   {TOKEN} ", TOKEN, f" {TOKEN}"],
)
def test_raw_request_with_the_token_does_not_pass_it(token_server: Server, value: str) -> None:
    seen = _seen_headers(token_server, value)
    assert "authorization" not in seen, seen
    assert TOKEN not in json.dumps(seen)


def test_the_token_is_removed_among_other_authorization_headers(token_server: Server) -> None:
    seen = _seen_headers(token_server, f"Bearer {TOKEN}", "Bearer theirs")
    assert seen.get("authorization") == "Bearer theirs", seen
    assert TOKEN not in json.dumps(seen)


@pytest.mark.parametrize(
    "value", ["Bearer someone-elses", "Basic dXNlcjpwYXNz", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"]
)
def test_other_authorization_values_reach_the_function(token_server: Server, value: str) -> None:
    assert _seen_headers(token_server, value).get("authorization") == value


def test_faas_invoke_does_not_send_the_token(token_server: Server) -> None:
    proc = faas(token_server.url, "--token", TOKEN, "invoke", "echo")
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)["headers"]
    assert TOKEN not in json.dumps(seen), seen
    # The same CLI still opens /system with the token.
    listed = faas(token_server.url, "--token", TOKEN, "list")
    assert listed.returncode == 0 and "echo" in listed.stdout, listed.stderr


def test_faas_invoke_passes_a_users_authorization(token_server: Server) -> None:
    proc = faas(token_server.url, "--token", TOKEN, "invoke", "echo", "--header", "Authorization: Bearer app")
    assert proc.returncode == 0, proc.stderr
    assert {k.lower(): v for k, v in json.loads(proc.stdout)["headers"].items()}[
        "authorization"
    ] == "Bearer app"


@pytest.mark.parametrize(
    "value",
    [b"Bearer \xff\xfe", b"Bearer caf\xe9", b"\xc3\x28", b"Bearer " + TOKEN.encode() + b"\xff", b"\x80"],
)
def test_a_non_utf8_authorization_is_401(token_server: Server, value: bytes) -> None:
    """Raw bytes, as a broken client or a prober sends them: 401, never the gateway's 500."""
    request = (
        b"GET /system/functions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: %s\r\nConnection: close\r\n\r\n"
        % (token_server.port, value)
    )
    with socket.create_connection(("127.0.0.1", token_server.port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 "), data[:500]
    assert "token" in json.loads(body)["error"]
    assert token_server.request("GET", "/system/functions").status == 200
