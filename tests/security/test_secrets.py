"""Secrets stay with their function: another function cannot find one
(not in its own secrets directory, not through /proc, not at the store's
host path, not in any file it can read), and once a function has used a
secret its value is in no API answer, error, log line, usage record,
metric or file of the server but the secret's own."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.e2e.test_cli import faas
from tests.helpers import TEST_FUNCTIONS, Server

from .common import assert_healthy, deploy_hostile

READER = TEST_FUNCTIONS / "secret_reader.py"


def create_secret(server: Server, name: str) -> bytes:
    value = b"sec-" + os.urandom(16).hex().encode()
    resp = server.request("POST", "/system/secrets", json_body={"name": name, "value": value.decode()})
    assert resp.status == 201, resp.text
    return value


def test_another_function_cannot_find_a_secret(server: Server) -> None:
    value = create_secret(server, "iso-owned")
    create_secret(server, "iso-other")
    server.deploy_ok("iso-owner", READER, secrets=["iso-owned"])
    server.deploy_ok("iso-neighbour", READER, secrets=["iso-other"])
    assert server.invoke("iso-owner").json()["names"] == ["iso-owned"]  # in a sandbox now
    assert server.invoke("iso-neighbour").json()["names"] == ["iso-other"]

    hunter = deploy_hostile(server, "secrets", timeout_s=60, memory_mb=256)
    query = f"?needle={value.hex()}&store={server.data_dir / 'secrets'}&name=iso-owned"
    resp = server.invoke(hunter, query, timeout=90)
    assert resp.status == 200, resp.text
    seen = resp.json()
    assert seen["found"] == [] and seen["listing"] == [], seen
    assert seen["scanned"] > 100, seen  # it did search: the runtime's files are readable
    assert_healthy(server)


def _everything_the_server_shows(server: Server, names: list[str]) -> str:
    """Every answer of the API about the functions and secrets, the metrics,
    logs and usage records, as one text."""
    paths = [
        "/system/functions",
        "/system/secrets",
        "/system/usage?records=1&limit=100000",
        "/metrics",
        *(f"/system/functions/{n}" for n in names),
        *(f"/system/functions/{n}/versions" for n in names),
        *(f"/system/logs?name={n}&tail=5000" for n in names),
        *(f"/system/secrets/{s}" for s in ("nothing-left", "leak-check")),
    ]
    return "\n".join(server.request("GET", path).text for path in paths)


def _server_files(data_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data_dir)): p.read_bytes() for p in data_dir.rglob("*") if p.is_file()}


def test_a_secrets_value_is_nowhere_but_its_own_file(server: Server) -> None:
    value = create_secret(server, "leak-check")
    shown: list[str] = []

    def answer(method: str, path: str, **kwargs: object) -> None:
        resp = server.request(method, path, **kwargs)  # type: ignore[arg-type]
        shown.append(f"{resp.status} {dict(resp.headers)} {resp.text}")

    server.deploy_ok("leak-user", READER, secrets=["leak-check"])
    for _ in range(3):
        resp = server.invoke("leak-user")
        assert resp.status == 200 and resp.json()["files"]["leak-check"]["size"] == len(value)
        shown.append(resp.text + json.dumps(dict(resp.headers)))
    # Requests that fail: none of their errors may carry the value they were sent.
    text = value.decode()
    answer("POST", "/system/secrets", json_body={"name": "../bad", "value": text})
    answer("POST", "/system/secrets", json_body={"name": "leak-check", "value": text, "extra": text})
    answer("POST", "/system/secrets", json_body={"name": "leak-check", "value_base64": text + "!"})
    answer("POST", "/system/secrets", json_body={"name": "leak-check", "value": text * 5000})
    answer("POST", "/system/functions", json_body={"name": "leak-user", "files": {}, "secrets": [text]})
    answer("DELETE", "/system/secrets/leak-check")  # in use: 409
    assert shown[-1].startswith("409 ")
    proc = faas(server.url, "secret", "create", "leak-check", "--from-literal", text)
    assert proc.returncode == 0
    shown += [proc.stdout, proc.stderr, faas(server.url, "secret", "list").stdout]
    shown.append(faas(server.url, "describe", "leak-user").stdout)
    assert_healthy(server)

    everything = _everything_the_server_shows(server, ["leak-user"]) + "\n".join(shown) + server.log()
    assert "leak-check" in everything  # the name is shown: the search looks at the right things
    assert text not in everything
    files = _server_files(server.data_dir)
    holding = sorted(path for path, data in files.items() if value in data)
    assert holding == ["secrets/leak-check"], holding  # stored as given: no secrets_key_file here


@pytest.fixture(autouse=True)
def _clean_secrets(server: Server) -> None:
    """Each test starts from secrets of its own."""
    for record in server.request("GET", "/system/secrets").json():
        for function in record["used_by"]:
            server.request("DELETE", f"/system/functions/{function}")
        server.request("DELETE", f"/system/secrets/{record['name']}")
