"""What a function needs reaches every server sharing a database: secrets
(PostgreSQL, Fernet with the cluster's one key file), layers (built by the
server that took the deploy, fetched by the others on first use) and code
(written to a server's disk on the first call there). Real servers, real
PostgreSQL, real pip against the configured package index."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet

from tests.e2e.package_index import files_body, require_index
from tests.helpers import EXAMPLES, TEST_FUNCTIONS, Server, wait_until

pytestmark = pytest.mark.root

READER = TEST_FUNCTIONS / "secret_reader.py"
SIX_PROBE = (
    "import six\n\ndef handle(event, context):\n    return {'six': six.__version__, 'file': six.__file__}\n"
)
BUILD_TIMEOUT_S = 600


def digest(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def pair(tmp_path: Path, pg_url: str) -> tuple[Server, Server]:
    """Two servers on one database and one secrets key file, each with its own data directory."""
    key = tmp_path / "secrets.key"
    key.write_bytes(Fernet.generate_key())
    key.chmod(0o600)
    servers = []
    for name in ("a", "b"):
        config = tmp_path / f"{name}.toml"
        config.write_text(f'database = "{pg_url}"\nsecrets_key_file = "{key}"\n')
        (tmp_path / name).mkdir()
        servers.append(Server(tmp_path / name / "data", extra_args=("--config", str(config))))
    return servers[0], servers[1]


@pytest.fixture
def servers(tmp_path: Path, pg_url: str) -> Iterator[tuple[Server, Server]]:
    a, b = pair(tmp_path, pg_url)
    a.start()
    try:
        b.start()
    except BaseException:
        a.stop()
        raise
    yield a, b
    assert b.stop() == 0, b.log()[-3000:]
    assert a.stop() == 0, a.log()[-3000:]


def seen_secret(server: Server, target: str, name: str) -> str | None:
    resp = server.invoke(target)
    if resp.status != 200:
        return None
    entry = resp.json()["files"].get(name)
    return entry["sha256"] if entry else None


def test_secrets_made_through_one_server_are_used_through_another_within_a_second(
    servers: tuple[Server, Server], pg_url: str
) -> None:
    a, b = servers
    assert a.request("POST", "/system/secrets", json_body={"name": "db", "value": "first"}).status == 201
    a.deploy_ok("reader", READER, secrets=["db"])
    t0 = time.monotonic()
    wait_until(lambda: seen_secret(b, "reader", "db") == digest(b"first"), 1.0, "the secret read on b")
    assert time.monotonic() - t0 < 1.0
    assert [s["name"] for s in b.request("GET", "/system/secrets").json()] == ["db"]
    with psycopg.connect(pg_url) as conn:
        [(encrypted, stored)] = conn.execute(
            "SELECT encrypted, data FROM secrets WHERE name = 'db'"
        ).fetchall()
    assert encrypted is True and b"first" not in bytes(stored)  # a Fernet token, as the file store keeps it

    # A rotation, then a new version (new sandboxes read the new value), through a.
    assert a.request("POST", "/system/secrets", json_body={"name": "db", "value": "second"}).status == 200
    a.deploy_ok("reader", READER, secrets=["db"], env={"ROUND": "2"})
    wait_until(lambda: seen_secret(b, "reader", "db") == digest(b"second"), 1.0, "the rotation on b")

    # Created through b, seen by a: the same secret, one table.
    assert b.request("POST", "/system/secrets", json_body={"name": "gone", "value": "x"}).status == 201
    wait_until(lambda: a.request("GET", "/system/secrets/gone").status == 200, 1.0, "b's secret on a")
    a.deploy_ok("user", READER, secrets=["gone"])
    a.deploy_ok("user", READER)  # version 2, live: version 1 keeps the secret's name
    assert a.request("DELETE", "/system/secrets/gone").status in (200, 204)
    wait_until(lambda: b.request("GET", "/system/secrets/gone").status == 404, 1.0, "the delete on b")
    missing = b.invoke("user@1")  # never started on b: it cannot start without its secret
    assert missing.status == 500 and "secret 'gone' was deleted" in missing.json()["error"], missing.text


def code_dirs(server: Server, name: str) -> list[str]:
    root = server.data_dir / "code" / name
    return os.listdir(root) if root.is_dir() else []


def test_code_reaches_a_server_on_its_first_call_there_and_is_fetched_once(
    servers: tuple[Server, Server],
) -> None:
    a, b = servers
    a.deploy_ok("hello", EXAMPLES / "hello.py")
    wait_until(lambda: b.request("GET", "/system/functions/hello").status == 200, 1.0, "the deploy on b")
    assert code_dirs(a, "hello") and not code_dirs(b, "hello")
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: b.invoke("hello").status, range(8)))
    assert statuses == [200] * 8
    assert len(code_dirs(b, "hello")) == 1
    assert b.log().count("fetched the code of hello version 1") == 1
    # Deleted through a: b's copy goes with the version.
    assert a.request("DELETE", "/system/functions/hello").status in (200, 202, 204)
    wait_until(lambda: not code_dirs(b, "hello"), 5.0, "b's code removed")


def layer_ids(pg_url: str) -> list[str]:
    with psycopg.connect(pg_url) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM layers ORDER BY id")]


def test_a_layer_built_by_one_server_runs_on_another_that_never_built_it(
    servers: tuple[Server, Server], pg_url: str
) -> None:
    require_index()
    a, b = servers
    body = files_body("with-six", {"handler.py": SIX_PROBE, "requirements.txt": "six\n"})
    resp = a.request("POST", "/system/functions", json_body=body, timeout=BUILD_TIMEOUT_S)
    assert resp.status == 201, resp.text
    layer = resp.json()["layer"]
    assert layer_ids(pg_url) == [layer["id"]]
    t0 = time.monotonic()
    wait_until(lambda: b.invoke("with-six").status == 200, 5.0, "the function with its layer on b")
    elapsed = time.monotonic() - t0
    out = b.invoke("with-six").json()
    assert out == {"six": layer["packages"]["six"], "file": "/opt/python/six.py"}
    assert os.listdir(b.data_dir / "layers") == [layer["id"]]
    assert f"built layer {layer['id']}" in a.log()
    assert "built layer" not in b.log() and f"fetched layer {layer['id']}" in b.log()
    print(f"first call on b, layer fetched: {elapsed * 1000:.0f} ms")
    # The last version using it deleted: gone from the database and from both disks.
    assert a.request("DELETE", "/system/functions/with-six").status in (200, 202, 204)
    wait_until(lambda: not layer_ids(pg_url), 5.0, "the layer deleted from the database")
    wait_until(lambda: not os.listdir(b.data_dir / "layers"), 5.0, "b's copy removed")
    wait_until(lambda: not os.listdir(a.data_dir / "layers"), 5.0, "a's copy removed")
