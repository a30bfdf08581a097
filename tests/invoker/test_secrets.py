"""Secrets: the store on disk (modes, encryption at rest, the key file) and,
in process on the fake factory, what a deploy and a sandbox get of them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from invoker.errors import BadRequest, Conflict, NotFound, SecretMissing, StartupError
from invoker.invoker import Invoker
from invoker.secrets import FileSecretStore

from .fakes import FakeFactory, make_invoker
from .test_invoker import invocation
from .test_versions import code

VALUE = b"s3cr3t-\x00-\xff-value"


def key_file(tmp_path: Path, mode: int = 0o600) -> str:
    path = tmp_path / "secrets.key"
    path.write_bytes(Fernet.generate_key() + b"\n")
    path.chmod(mode)
    return str(path)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_secret_is_a_file_of_mode_0600_in_a_directory_of_mode_0700(tmp_path: Path) -> None:
    store = FileSecretStore(str(tmp_path / "secrets"))
    store.load()
    info, created = store.put("db", VALUE)
    assert created and (info.size_bytes, info.encrypted) == (len(VALUE), False)
    assert mode(tmp_path / "secrets") == 0o700 and mode(tmp_path / "secrets" / "db") == 0o600
    assert os.listdir(tmp_path / "secrets") == ["db"]  # nothing half-written left
    again = FileSecretStore(str(tmp_path / "secrets"))
    again.load()
    assert again.values(("db",)) == (("db", VALUE),)
    info2, created2 = again.put("db", b"rotated")
    assert not created2 and info2.created_at == info.created_at and info2.size_bytes == 7


def test_with_a_key_the_value_is_encrypted_at_rest(tmp_path: Path) -> None:
    store = FileSecretStore(str(tmp_path / "secrets"), key_file(tmp_path))
    store.load()
    info, _ = store.put("db", VALUE)
    assert info.encrypted
    assert VALUE not in (tmp_path / "secrets" / "db").read_bytes()
    assert store.values(("db",)) == (("db", VALUE),)


def test_secrets_stored_in_the_clear_are_encrypted_once_a_key_is_set(tmp_path: Path) -> None:
    plain = FileSecretStore(str(tmp_path / "secrets"))
    plain.load()
    plain.put("db", VALUE)
    assert VALUE in (tmp_path / "secrets" / "db").read_bytes()
    keyed = FileSecretStore(str(tmp_path / "secrets"), key_file(tmp_path))
    keyed.load()
    assert VALUE not in (tmp_path / "secrets" / "db").read_bytes()
    assert keyed.values(("db",)) == (("db", VALUE),) and keyed.info("db").encrypted


def test_the_key_file_is_checked_at_start(tmp_path: Path) -> None:
    secrets = str(tmp_path / "secrets")
    with pytest.raises(StartupError, match="open to other users"):
        FileSecretStore(secrets, key_file(tmp_path, 0o644)).load()
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    bad.chmod(0o600)
    with pytest.raises(StartupError, match="must hold a Fernet key"):
        FileSecretStore(secrets, str(bad)).load()
    with pytest.raises(StartupError, match="cannot read secrets_key_file"):
        FileSecretStore(secrets, str(tmp_path / "missing.key")).load()
    encrypted = FileSecretStore(secrets, key_file(tmp_path))
    encrypted.load()
    encrypted.put("db", VALUE)
    with pytest.raises(StartupError, match="no secrets_key_file") as no_key:
        FileSecretStore(secrets).load()
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(StartupError, match="cannot be decrypted") as wrong_key:
        FileSecretStore(secrets, key_file(other)).load()
    for error in (no_key, wrong_key):
        assert VALUE.decode("latin-1") not in str(error.value)


def test_a_write_cut_short_is_cleared_at_start(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / ".db.tmp").write_bytes(b"half")
    store = FileSecretStore(str(tmp_path / "secrets"))
    store.load()
    assert store.list() == [] and os.listdir(tmp_path / "secrets") == []


async def test_a_deploy_with_a_secret_that_does_not_exist_is_refused(invoker: Invoker) -> None:
    with pytest.raises(BadRequest, match="secret 'db' does not exist"):
        await invoker.deploy({"name": "f", "files": code("x"), "secrets": ["db"]})
    for secrets, message in (
        (["../x"], "invalid secret name"),
        (["a", "a"], "twice"),
        ("db", "must be a list"),
    ):
        with pytest.raises(BadRequest, match=message):
            await invoker.deploy({"name": "f", "files": code("x"), "secrets": secrets})
    with pytest.raises(NotFound):
        invoker.get("f")


async def test_a_sandbox_gets_the_values_its_function_names(invoker: Invoker, factory: FakeFactory) -> None:
    await invoker.put_secret({"name": "db", "value": "one"})
    await invoker.put_secret({"name": "api", "value_base64": "AP8="})
    await invoker.put_secret({"name": "unused", "value": "x"})
    config, _ = await invoker.deploy({"name": "f", "files": code("x"), "secrets": ["db", "api"]})
    assert config.secrets == ("api", "db") and config.to_record()["secrets"] == ["api", "db"]
    await invoker.deploy({"name": "g", "files": code("x")})
    await invoker.invoke(invocation("f"))
    await invoker.invoke(invocation("g"))
    assert factory.made[0].secrets == {"db": b"one", "api": b"\x00\xff"}
    assert factory.made[1].secrets == {}
    listed = {s["name"]: s for s in invoker.secrets()}
    assert listed["db"]["used_by"] == {"f": [1]} and listed["unused"]["used_by"] == {}
    assert all("value" not in s and b"one" not in repr(s).encode() for s in listed.values())


async def test_a_rotated_secret_reaches_new_sandboxes_and_warm_ones_keep_theirs(
    invoker: Invoker, factory: FakeFactory
) -> None:
    await invoker.put_secret({"name": "db", "value": "one"})
    await invoker.deploy({"name": "f", "files": code("x"), "secrets": ["db"]})
    await invoker.invoke(invocation("f"))
    record, created = await invoker.put_secret({"name": "db", "value": "two"})
    assert not created and record["size_bytes"] == 3
    assert (await invoker.invoke(invocation("f@1"))).cold is False  # the warm one, with "one"
    await invoker.deploy({"name": "f", "files": code("y"), "secrets": ["db"]})
    await invoker.invoke(invocation("f"))
    assert [s.secrets["db"] for s in factory.made] == [b"one", b"two"]


async def test_a_secret_an_alias_reaches_cannot_be_deleted(invoker: Invoker) -> None:
    await invoker.put_secret({"name": "db", "value": "one"})
    await invoker.deploy({"name": "f", "files": code("x"), "secrets": ["db"]})
    with pytest.raises(Conflict, match="in use by f version 1"):
        await invoker.delete_secret("db")
    await invoker.deploy({"name": "f", "files": code("y")})  # live moves to version 2, without it
    await invoker.delete_secret("db")
    with pytest.raises(NotFound):
        await invoker.delete_secret("db")
    with pytest.raises(SecretMissing, match="secret 'db' was deleted"):
        await invoker.invoke(invocation("f@1"))
    with pytest.raises(BadRequest, match="uses secret 'db', which no longer exists"):
        await invoker.rollback("f", {})
    assert invoker.warm_count("f") == 0  # the failed start gave its slot back


async def test_secret_bodies_are_checked_without_echoing_the_value(invoker: Invoker) -> None:
    bad = [
        ({"name": "db"}, "exactly one of value"),
        ({"name": "db", "value": "a", "value_base64": "YQ=="}, "exactly one of value"),
        ({"name": "db", "value": 7}, "value must be a string"),
        ({"name": "db", "value_base64": "!not base64!"}, "not valid base64"),
        ({"name": "db", "value": "x" * 70000}, "at most 65536 bytes"),
        ({"name": ".hidden", "value": "x"}, "invalid secret name"),
        ({"name": "db", "value": "x", "other": 1}, "unknown field"),
    ]
    for body, message in bad:
        with pytest.raises(BadRequest, match=message) as error:
            await invoker.put_secret(body)
        assert "!not base64!" not in str(error.value) and "xxxx" not in str(error.value)
    assert invoker.secrets() == []


async def test_secrets_survive_a_restart(tmp_path: Path, factory: FakeFactory) -> None:
    key = key_file(tmp_path)
    async with make_invoker(tmp_path / "data", factory, secrets_key_file=key) as invoker:
        await invoker.put_secret({"name": "db", "value": "one"})
        await invoker.deploy({"name": "f", "files": code("x"), "secrets": ["db"]})
    async with make_invoker(tmp_path / "data", FakeFactory(), secrets_key_file=key) as invoker:
        assert invoker.secret("db")["encrypted"] is True
        await invoker.invoke(invocation("f"))
    with pytest.raises(StartupError, match="no secrets_key_file"):
        async with make_invoker(tmp_path / "data", FakeFactory()):
            pass
