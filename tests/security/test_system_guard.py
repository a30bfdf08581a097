"""/system against a web page in the operator's browser (docs/HTTP-API.md,
gateway/guard.py): a cross-site form or fetch cannot change state (415), a
DNS-rebound name cannot read (421), a foreign Origin is refused (403).
Functions stay public endpoints; the real CLI still works."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli import faas
from tests.helpers import EXAMPLES, Response, Server, server_with_config

HELLO = base64.b64encode((EXAMPLES / "hello.py").read_bytes()).decode()


def _deploy_body(name: str) -> bytes:
    return json.dumps({"name": name, "files": {"hello.py": HELLO}}).encode()


def _exists(server: Server, name: str) -> bool:
    return server.request("GET", f"/system/functions/{name}").status == 200


def _refused(resp: Response, status: int, *words: str) -> None:
    assert resp.status == status, (resp.status, resp.text)
    assert resp.headers["Content-Type"].startswith("application/json"), resp.text
    error = resp.json()["error"]
    for word in words:
        assert word in error, error


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        None,
    ],
)
def test_deploy_without_a_json_content_type_is_415_and_deploys_nothing(
    server: Server, content_type: str | None
) -> None:
    name = "csrf-content-type"
    headers = {"Content-Type": content_type} if content_type else {}
    resp = server.request("POST", "/system/functions", body=_deploy_body(name), headers=headers)
    _refused(resp, 415, "application/json")
    assert not _exists(server, name)


def test_a_form_post_with_no_body_is_415(server: Server) -> None:
    for headers in ({}, {"Content-Type": "application/x-www-form-urlencoded"}):
        _refused(server.request("POST", "/system/functions", body=b"", headers=headers), 415)


def test_json_content_type_with_parameters_deploys(server: Server) -> None:
    headers = {"Content-Type": "Application/JSON; charset=utf-8"}
    resp = server.request("POST", "/system/functions", body=_deploy_body("csrf-json"), headers=headers)
    assert resp.status in (200, 201), resp.text
    assert server.request("DELETE", "/system/functions/csrf-json").status == 200


def test_delete_with_a_non_json_content_type_is_415(server: Server) -> None:
    server.deploy_ok("csrf-victim", EXAMPLES / "hello.py")
    resp = server.request(
        "DELETE", "/system/functions/csrf-victim", body=b"x", headers={"Content-Type": "text/plain"}
    )
    _refused(resp, 415)
    assert _exists(server, "csrf-victim")
    # With no body, no content type is needed.
    assert server.request("DELETE", "/system/functions/csrf-victim").status == 200
    assert not _exists(server, "csrf-victim")


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:{port}", "127.0.0.1", "127.0.0.1:1", "localhost.evil.example:{port}", ""],
)
def test_foreign_host_is_421(server: Server, host: str) -> None:
    resp = server.request("GET", "/system/functions", headers={"Host": host.format(port=server.port)})
    _refused(resp, 421, "allowed_hosts")


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}"])
def test_loopback_names_of_the_listen_address_are_accepted(server: Server, host: str) -> None:
    resp = server.request("GET", "/system/functions", headers={"Host": host.format(port=server.port)})
    assert resp.status == 200, resp.text


def test_a_rebound_name_cannot_deploy_either(server: Server) -> None:
    headers = {"Host": f"attacker.example:{server.port}", "Content-Type": "application/json"}
    resp = server.request("POST", "/system/functions", body=_deploy_body("csrf-rebound"), headers=headers)
    _refused(resp, 421)
    assert not _exists(server, "csrf-rebound")


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "null",
        "https://127.0.0.1:{port}",
        "http://127.0.0.1:1",
        "http://evil.example:{port}",
    ],
)
def test_foreign_origin_is_403(server: Server, origin: str) -> None:
    headers = {"Origin": origin.format(port=server.port), "Content-Type": "application/json"}
    resp = server.request("POST", "/system/functions", body=_deploy_body("csrf-origin"), headers=headers)
    _refused(resp, 403, "allowed_origins")
    assert not _exists(server, "csrf-origin")
    _refused(server.request("GET", "/system/functions", headers={"Origin": headers["Origin"]}), 403)


@pytest.mark.parametrize("origin", ["http://127.0.0.1:{port}", "http://localhost:{port}"])
def test_own_origin_is_accepted(server: Server, origin: str) -> None:
    resp = server.request("GET", "/system/functions", headers={"Origin": origin.format(port=server.port)})
    assert resp.status == 200, resp.text


def test_functions_stay_public_endpoints(server: Server) -> None:
    server.deploy_ok("echo", EXAMPLES / "echo.py")
    headers = {"Host": "evil.example", "Origin": "http://evil.example", "Content-Type": "text/plain"}
    resp = server.invoke("echo", method="POST", body=b"hi", headers=headers)
    assert resp.status == 200, resp.text
    assert resp.json()["body"] == "hi"


def test_the_cli_still_works(server: Server, tmp_path: Path) -> None:
    for gateway in (server.url, f"http://localhost:{server.port}"):
        deployed = faas(gateway, "deploy", str(EXAMPLES / "hello.py"), "--name", "csrf-cli")
        assert deployed.returncode == 0, deployed.stderr
        assert "csrf-cli" in faas(gateway, "list").stdout
        assert faas(gateway, "invoke", "csrf-cli").stdout == "Hello, world!"
        deleted = faas(gateway, "delete", "csrf-cli")
        assert deleted.returncode == 0, deleted.stderr


@pytest.fixture(scope="module")
def configured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if os.geteuid() != 0:
        pytest.skip("the runtime needs root")
    srv = server_with_config(
        tmp_path_factory.mktemp("guard"),
        'allowed_hosts = ["faas.internal", "proxy.example:8443"]\n'
        'allowed_origins = ["https://console.example"]\n',
    ).start()
    yield srv
    assert srv.stop() == 0, srv.log()[-4000:]


@pytest.mark.parametrize(
    ("host", "status"),
    [("faas.internal", 200), ("faas.internal:9", 200), ("proxy.example:8443", 200), ("proxy.example", 421)],
)
def test_allowed_hosts(configured_server: Server, host: str, status: int) -> None:
    assert configured_server.request("GET", "/system/functions", headers={"Host": host}).status == status


@pytest.mark.parametrize(
    ("origin", "status"), [("https://console.example", 200), ("http://console.example", 403)]
)
def test_allowed_origins(configured_server: Server, origin: str, status: int) -> None:
    assert configured_server.request("GET", "/system/functions", headers={"Origin": origin}).status == status
