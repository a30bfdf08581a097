"""Secrets in a real PostgreSQL (invoker/pg_secrets.py): the file store's
behaviour (limits, Fernet at rest, a start refusing what its key cannot
read), shared by two stores standing for two servers, kept current by
NOTIFY faas_secrets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet

from invoker import pg_secrets
from invoker.errors import BadRequest, NotFound, SecretMissing, StartupError
from invoker.pg_listen import ClusterListener
from invoker.pg_schema import migrate
from invoker.pg_secrets import CHANNEL, PostgresSecretStore


def key_file(tmp_path: Path, name: str = "key") -> str:
    path = tmp_path / name
    path.write_bytes(Fernet.generate_key())
    path.chmod(0o600)
    return str(path)


@pytest.fixture
def url(pg_url: str) -> str:
    migrate(pg_url)
    return pg_url


def opened(url: str, key: str | None = None) -> PostgresSecretStore:
    store = PostgresSecretStore(url, key)
    store.load()
    return store


async def test_two_servers_share_secrets_encrypted_with_their_one_key(tmp_path: Path, url: str) -> None:
    key = key_file(tmp_path)
    a, b = opened(url, key), opened(url, key)
    info, created = a.put("db", b"hunter2")
    assert created and info.encrypted and info.size_bytes == 7
    with psycopg.connect(url) as conn:
        [(stored,)] = conn.execute("SELECT data FROM secrets WHERE name = 'db'").fetchall()
    assert Fernet(Path(key).read_bytes()).decrypt(bytes(stored)) == b"hunter2"
    assert not b.exists("db")  # until b hears of it
    await b.refresh("db")
    assert b.values(("db",)) == (("db", b"hunter2"),) and b.info("db") == info
    rotated, created = b.put("db", b"second")
    assert not created and rotated.created_at == info.created_at and rotated.updated_at >= info.updated_at
    await a.refresh("db")
    assert a.values(("db",)) == (("db", b"second"),)
    a.delete("db")
    await b.refresh(None)  # after a lost connection: everything
    assert b.list() == []
    with pytest.raises(SecretMissing, match="'db' was deleted"):
        b.values(("db",))
    with pytest.raises(NotFound):
        b.delete("db")
    a.close()
    b.close()


async def test_changes_are_heard_by_the_listener_within_a_second(url: str) -> None:
    a, b = opened(url), opened(url)
    heard: asyncio.Queue[str | None] = asyncio.Queue()

    async def refresh(name: str | None) -> None:
        await b.refresh(name)
        heard.put_nowait(name)

    async with ClusterListener(url, {CHANNEL: refresh}) as listener:
        await asyncio.wait_for(listener.listening.wait(), 5)
        assert heard.get_nowait() is None  # everything re-read once listening
        a.put("token", b"abc")
        assert await asyncio.wait_for(heard.get(), 1.0) == "token"
    assert b.values(("token",)) == (("token", b"abc"),)


def test_the_limit_holds_for_the_whole_cluster(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_secrets, "MAX_SECRETS", 2)
    a, b = opened(url), opened(url)
    a.put("one", b"1")
    b.put("two", b"2")  # b has not heard of "one": the table is counted
    with pytest.raises(BadRequest, match="at most 2"):
        a.put("three", b"3")
    a.put("one", b"rotated")  # a rotation is no new secret


def test_a_start_refuses_what_its_key_cannot_read_and_encrypts_what_is_clear(
    tmp_path: Path, url: str
) -> None:
    opened(url).put("clear", b"plain")
    keyed = opened(url, key_file(tmp_path))  # encrypts the clear one at start
    assert keyed.info("clear").encrypted and keyed.values(("clear",)) == (("clear", b"plain"),)
    with pytest.raises(StartupError, match="no secrets_key_file is set"):
        opened(url)
    with pytest.raises(StartupError, match="cannot be decrypted"):
        opened(url, key_file(tmp_path, "other"))


def test_a_server_without_the_key_writes_nothing_in_the_clear_among_encrypted_secrets(
    tmp_path: Path, url: str
) -> None:
    keyless = opened(url)  # started before any secret was encrypted
    keyed = opened(url, key_file(tmp_path))
    keyed.put("db", b"hunter2")
    with pytest.raises(BadRequest, match="no secrets_key_file"):
        keyless.put("api", b"plain")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT name, encrypted FROM secrets").fetchall() == [("db", True)]
