"""`faas versions`, `alias`, `rollback`, `secret` and `deploy --secret`
against a canned gateway: the requests they make and what they print."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest

from gateway import cli

from . import test_cli_unit
from .test_cli_unit import Canned, FakeStdin

# The canned gateway of the CLI's other tests.
gw = test_cli_unit.gw

LIVE = {"name": "live", "version": 2, "weights": {}, "follows_newest": True}


def run(gw: Canned, *argv: str) -> int:
    return cli.main(["--gateway", gw.url, *argv])


def test_versions_table(gw: Canned, capsys: pytest.CaptureFixture[str]) -> None:
    versions = [
        {
            "version": 1,
            "updated_at": "2026-01-01T00:00:00Z",
            "code_sha256": "ab" * 32,
            "memory_mb": 128,
            "secrets": [],
            "instances": 1,
            "aliases": ["stable"],
        },
        {
            "version": 2,
            "updated_at": "2026-01-02T00:00:00Z",
            "code_sha256": "cd" * 32,
            "memory_mb": 256,
            "secrets": ["db", "api"],
            "instances": 0,
            "aliases": ["live"],
        },
    ]
    gw.answer(
        "GET", "/system/functions/f/versions", 200, {"function": "f", "versions": versions, "aliases": []}
    )
    assert run(gw, "versions", "f") == 0
    assert capsys.readouterr().out.splitlines() == [
        "VERSION  CREATED               CODE          MEMORY  SECRETS  INSTANCES  ALIASES",
        "1        2026-01-01T00:00:00Z  abababababab  128MB   -        1          stable",
        "2        2026-01-02T00:00:00Z  cdcdcdcdcdcd  256MB   db,api   0          live",
    ]


def test_alias_put_with_a_weight(gw: Canned, capsys: pytest.CaptureFixture[str]) -> None:
    answer = {"name": "canary", "version": 3, "weights": {"4": 0.1}, "follows_newest": False}
    gw.answer("PUT", "/system/functions/f/aliases/canary", 201, answer)
    assert run(gw, "alias", "f", "canary", "3", "--weight", "4=10%") == 0
    assert json.loads(gw.seen[-1].body) == {"version": 3, "weights": {"4": 0.1}}
    assert gw.seen[-1].headers["content-type"] == "application/json"
    assert capsys.readouterr().out == "canary of f -> version 3 (90%), version 4 (10%)\n"
    assert run(gw, "alias", "f", "canary", "3", "--weight", "4=0.25") == 0
    assert json.loads(gw.seen[-1].body) == {"version": 3, "weights": {"4": 0.25}}


@pytest.mark.parametrize("weight", ["4", "x=0.1", "4=2", "4=abc", "4=-5%"])
def test_alias_bad_weight_is_a_usage_error(
    gw: Canned, capsys: pytest.CaptureFixture[str], weight: str
) -> None:
    assert run(gw, "alias", "f", "canary", "3", "--weight", weight) == 2
    assert capsys.readouterr().err.startswith(f"error: invalid --weight '{weight}'")
    assert gw.seen == []


def test_alias_list_and_delete(gw: Canned, capsys: pytest.CaptureFixture[str]) -> None:
    stable = {"name": "stable", "version": 1, "weights": {}, "follows_newest": False}
    gw.answer("GET", "/system/functions/f/aliases", 200, {"function": "f", "aliases": [LIVE, stable]})
    assert run(gw, "alias", "f") == 0
    assert capsys.readouterr().out.splitlines() == [
        "ALIAS   POINTS AT",
        "live    version 2, following the newest",
        "stable  version 1",
    ]
    gw.answer("DELETE", "/system/functions/f/aliases/stable", 200, {"deleted": "stable"})
    assert run(gw, "alias", "f", "stable", "--delete") == 0
    assert capsys.readouterr().out == "deleted alias stable of f\n"
    gw.answer("DELETE", "/system/functions/f/aliases/live", 200, LIVE)
    assert run(gw, "alias", "f", "live", "--delete") == 0
    assert capsys.readouterr().out == "live of f -> version 2, following the newest\n"
    assert run(gw, "alias", "f", "live", "3", "--delete") == 2


def test_rollback(gw: Canned, capsys: pytest.CaptureFixture[str]) -> None:
    answer = {"function": "f", "previous": 3, "live": {**LIVE, "version": 2, "follows_newest": False}}
    gw.answer("POST", "/system/functions/f/rollback", 200, answer)
    assert run(gw, "rollback", "f") == 0
    assert json.loads(gw.seen[-1].body) == {}
    assert capsys.readouterr().out == "rolled back f: live -> version 2 (was 3)\n"
    assert run(gw, "rollback", "f", "--to", "2") == 0
    assert json.loads(gw.seen[-1].body) == {"to": 2}
    gw.answer("POST", "/system/functions/f/rollback", 400, {"error": "no version before 1 to roll back to"})
    assert run(gw, "rollback", "f") == 1
    assert capsys.readouterr().err == "error: no version before 1 to roll back to\n"


def test_secret_create_from_each_source(
    gw: Canned, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw.answer("POST", "/system/secrets", 201, {"name": "db", "size_bytes": 3})
    secret_file = tmp_path / "value"
    secret_file.write_bytes(b"\x00\xffbin")
    assert run(gw, "secret", "create", "db", "--from-file", str(secret_file)) == 0
    assert json.loads(gw.seen[-1].body) == {
        "name": "db",
        "value_base64": base64.b64encode(b"\x00\xffbin").decode(),
    }
    assert run(gw, "secret", "create", "db", "--from-literal", "hunter2") == 0
    assert json.loads(gw.seen[-1].body)["value_base64"] == base64.b64encode(b"hunter2").decode()
    monkeypatch.setattr(sys, "stdin", FakeStdin(b"from stdin", tty=False))
    assert run(gw, "secret", "create", "db") == 0
    assert json.loads(gw.seen[-1].body)["value_base64"] == base64.b64encode(b"from stdin").decode()
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "secret db created, 5 bytes"
    assert "hunter2" not in out and "from stdin" not in out
    monkeypatch.setattr(sys, "stdin", FakeStdin(b"", tty=True))
    assert run(gw, "secret", "create", "db") == 2
    assert "--from-file F, --from-literal V, or pipe it on stdin" in capsys.readouterr().err
    assert run(gw, "secret", "create", "db", "--from-file", str(tmp_path / "missing")) == 2


def test_secret_list_and_delete(gw: Canned, capsys: pytest.CaptureFixture[str]) -> None:
    secrets = [
        {
            "name": "db",
            "size_bytes": 7,
            "updated_at": "2026-01-01T00:00:00Z",
            "encrypted": True,
            "used_by": {"f": [1, 2]},
        },
        {
            "name": "spare",
            "size_bytes": 12,
            "updated_at": "2026-01-02T00:00:00Z",
            "encrypted": False,
            "used_by": {},
        },
    ]
    gw.answer("GET", "/system/secrets", 200, secrets)
    assert run(gw, "secret", "list") == 0
    assert capsys.readouterr().out.splitlines() == [
        "NAME   BYTES  UPDATED               ENCRYPTED  USED BY",
        "db         7  2026-01-01T00:00:00Z  yes        f@1+2",
        "spare     12  2026-01-02T00:00:00Z  no         -",
    ]
    gw.answer("DELETE", "/system/secrets/db", 409, {"error": "secret 'db' is in use by f version 2"})
    assert run(gw, "secret", "delete", "db") == 1
    assert capsys.readouterr().err == "error: secret 'db' is in use by f version 2\n"


def test_deploy_with_secrets_and_unchanged(
    gw: Canned, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    f = tmp_path / "fn.py"
    f.write_text("def handle(e, c): return 1\n")
    gw.answer(
        "POST", "/system/functions", 200, {"name": "fn", "version": 2, "changed": False, "aliases": [LIVE]}
    )
    assert run(gw, "deploy", str(f), "--secret", "db", "--secret", "api") == 0
    assert json.loads(gw.seen[-1].body)["secrets"] == ["db", "api"]
    assert capsys.readouterr().out == "deployed fn version 2 (unchanged)\n"
    pinned = {**LIVE, "version": 1, "follows_newest": False}
    gw.answer(
        "POST", "/system/functions", 200, {"name": "fn", "version": 3, "changed": True, "aliases": [pinned]}
    )
    assert run(gw, "deploy", str(f)) == 0
    assert capsys.readouterr().out.splitlines() == [
        "deployed fn version 3 (updated)",
        "live stays pinned to version 1: faas alias fn live VERSION",
    ]
