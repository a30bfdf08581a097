"""Secrets end to end: `faas secret create|list|delete` and /system/secrets,
deploy `--secret`, the file in /var/openfaas/secrets (its owner, mode and
read-only mount), a rotation, a deploy naming a missing secret, and the
store on disk with and without `secrets_key_file`."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet

from tests.e2e.test_cli import faas, ok
from tests.helpers import TEST_FUNCTIONS, Server, server_with_config

READER = TEST_FUNCTIONS / "secret_reader.py"


def digest(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def read_secrets(server: Server, target: str) -> dict[str, object]:
    resp = server.invoke(target)
    assert resp.status == 200, resp.text
    return resp.json()


def test_a_function_reads_its_secret_and_only_sees_its_name(server: Server, tmp_path: Path) -> None:
    value = os.urandom(12).hex().encode()
    out = ok(server.url, "secret", "create", "e2e-db", stdin=value)
    assert out.strip() == f"secret e2e-db created, {len(value)} bytes" and value.decode() not in out
    (tmp_path / "key").write_bytes(b"\x00binary\xff")
    ok(server.url, "secret", "create", "e2e-bin", "--from-file", str(tmp_path / "key"))
    listed = ok(server.url, "secret", "list")
    assert "e2e-db" in listed and value.decode() not in listed

    deployed = ok(
        server.url, "deploy", str(READER), "--name", "reader", "--secret", "e2e-db", "--secret", "e2e-bin"
    )
    assert deployed.startswith("deployed reader version 1 (created)"), deployed
    described = json.loads(ok(server.url, "describe", "reader"))
    assert described["secrets"] == ["e2e-bin", "e2e-db"]

    seen = read_secrets(server, "reader")
    assert seen["names"] == ["e2e-bin", "e2e-db"]
    files = seen["files"]
    assert isinstance(files, dict)
    assert files["e2e-db"]["sha256"] == digest(value) and files["e2e-bin"]["sha256"] == digest(
        b"\x00binary\xff"
    )
    for entry in files.values():
        assert entry["mode"] == oct(stat.S_IFREG | 0o400) and entry["owned"] is True, entry
        # Read-only twice over: mode 0400, and a read-only mount (chmod, which the owner may, fails too).
        assert entry["write"] in ("Permission denied", "Read-only file system"), entry
        assert entry["chmod"] == "Read-only file system", entry
    assert seen["dir_mode"] == oct(stat.S_IFDIR | 0o500) and seen["dir_owned"] is True
    assert seen["create"] in ("Permission denied", "Read-only file system")
    assert seen["mount"] and seen["mount"][0].split(",")[0] == "ro", seen["mount"]

    record = server.request("GET", "/system/secrets/e2e-db").json()
    assert record["name"] == "e2e-db" and record["size_bytes"] == len(value)
    assert record["used_by"] == {"reader": [1]} and record["encrypted"] is False
    assert value.decode() not in json.dumps(server.request("GET", "/system/secrets").json())


def test_a_function_without_secrets_has_an_empty_directory(server: Server) -> None:
    server.deploy_ok("no-secrets", READER)
    seen = read_secrets(server, "no-secrets")
    assert seen["names"] == [] and seen["mount"] == []


def test_a_deploy_naming_a_missing_secret_is_a_400(server: Server) -> None:
    resp = server.deploy("missing-secret", READER, secrets=["nowhere"])
    assert resp.status == 400 and "secret 'nowhere' does not exist" in resp.json()["error"], resp.text
    assert server.request("GET", "/system/functions/missing-secret").status == 404
    proc = faas(server.url, "deploy", str(READER), "--name", "missing-secret", "--secret", "nowhere")
    assert proc.returncode == 1 and "secret 'nowhere' does not exist" in proc.stderr


def test_rotation_reaches_new_sandboxes_and_a_secret_in_use_is_kept(server: Server) -> None:
    create = server.request("POST", "/system/secrets", json_body={"name": "e2e-rot", "value": "first"})
    assert create.status == 201 and "value" not in create.json()
    server.deploy_ok("rotating", READER, secrets=["e2e-rot"])
    assert read_secrets(server, "rotating")["files"]["e2e-rot"]["sha256"] == digest(b"first")  # type: ignore[index]
    rotate = server.request("POST", "/system/secrets", json_body={"name": "e2e-rot", "value": "second"})
    assert rotate.status == 200 and rotate.json()["size_bytes"] == 6
    # The warm sandbox keeps the value it started with; a new one (here: of a new version) reads the new one.
    assert read_secrets(server, "rotating@1")["files"]["e2e-rot"]["sha256"] == digest(b"first")  # type: ignore[index]
    server.deploy_ok("rotating", READER, secrets=["e2e-rot"], env={"ROUND": "2"})
    assert read_secrets(server, "rotating")["files"]["e2e-rot"]["sha256"] == digest(b"second")  # type: ignore[index]

    in_use = server.request("DELETE", "/system/secrets/e2e-rot")
    assert in_use.status == 409 and "in use by rotating version 2" in in_use.json()["error"], in_use.text
    assert server.request("DELETE", "/system/functions/rotating").status == 200
    assert ok(server.url, "secret", "delete", "e2e-rot").strip() == "deleted secret e2e-rot"
    assert server.request("GET", "/system/secrets/e2e-rot").status == 404


def test_secrets_are_encrypted_at_rest_with_a_key_file(tmp_path: Path) -> None:
    key = tmp_path / "secrets.key"
    key.write_bytes(Fernet.generate_key())
    key.chmod(0o600)
    srv = server_with_config(tmp_path, f'secrets_key_file = "{key}"\n').start()
    value = b"at-rest-" + os.urandom(8).hex().encode()
    try:
        ok(srv.url, "secret", "create", "db", "--from-literal", value.decode())
        srv.deploy_ok("enc", READER, secrets=["db"])
        assert read_secrets(srv, "enc")["files"]["db"]["sha256"] == digest(value)  # type: ignore[index]
        store = srv.data_dir / "secrets"
        assert stat.S_IMODE(store.stat().st_mode) == 0o700
        assert stat.S_IMODE((store / "db").stat().st_mode) == 0o600
        assert srv.request("GET", "/system/secrets/db").json()["encrypted"] is True
        assert srv.stop() == 0
        for path in srv.data_dir.rglob("*"):
            if path.is_file():
                assert value not in path.read_bytes(), path
        srv.start()
        assert read_secrets(srv, "enc")["files"]["db"]["sha256"] == digest(value)  # type: ignore[index]
    finally:
        srv.stop()


def test_large_secrets_reach_the_sandbox_whole(server: Server) -> None:
    """Eight secrets of 64 KiB (the most a value may be): their Specialize
    message is larger than the channel's socket buffer, so most of it is
    written after the part that carries the code's mount."""
    values = {f"e2e-big-{i}": os.urandom(64 * 1024) for i in range(8)}
    for name, value in values.items():
        body = {"name": name, "value_base64": base64.b64encode(value).decode()}
        assert server.request("POST", "/system/secrets", json_body=body).status == 201
    too_big = {"name": "e2e-too-big", "value_base64": base64.b64encode(os.urandom(64 * 1024 + 1)).decode()}
    resp = server.request("POST", "/system/secrets", json_body=too_big)
    assert resp.status == 400 and "at most 65536 bytes" in resp.json()["error"]
    server.deploy_ok("big-secrets", READER, secrets=sorted(values))
    files = read_secrets(server, "big-secrets")["files"]
    assert {name: entry["sha256"] for name, entry in files.items()} == {  # type: ignore[union-attr]
        name: digest(value) for name, value in values.items()
    }
    assert server.request("DELETE", "/system/functions/big-secrets").status == 200
    for name in values:
        assert server.request("DELETE", f"/system/secrets/{name}").status == 200
