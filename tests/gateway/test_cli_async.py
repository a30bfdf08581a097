"""The CLI's commands of asynchronous calls against the canned gateway of
test_cli_unit: `invoke --async [--callback]`, `calls`, `call`."""

from __future__ import annotations

import base64
import json

import pytest

from gateway import cli
from tests.canned_http import Canned


def test_invoke_async_prints_the_call_id_and_sends_the_callback(
    gw: Canned, capsys: pytest.CaptureFixture[str]
) -> None:
    gw.answer("POST", "/async-function/echo/sub", 202, {"call_id": "c-42"})
    argv = ["--gateway", gw.url, "invoke", "echo", "--async", "--data", "x", "--path", "sub"]
    assert cli.main([*argv, "--callback", "http://127.0.0.1:9000/cb"]) == 0
    assert capsys.readouterr().out == "c-42\n"
    seen = gw.seen[-1]
    assert (seen.method, seen.path, seen.body) == ("POST", "/async-function/echo/sub", b"x")
    assert seen.headers["x-callback-url"] == "http://127.0.0.1:9000/cb"


@pytest.mark.parametrize("extra", [["--callback", "http://x/"], ["--async", "--method", "GET"]])
def test_invoke_async_usage_errors(
    gw: Canned, capsys: pytest.CaptureFixture[str], tty_stdin: None, extra: list[str]
) -> None:
    assert cli.main(["--gateway", gw.url, "invoke", "f", *extra]) == 2
    assert "--async" in capsys.readouterr().err and gw.seen == []


def test_calls_table_and_call(gw: Canned, capsys: pytest.CaptureFixture[str]) -> None:
    call = {"call_id": "c-1", "function": "f", "status": "failed", "attempts": 3, "result_status": 500}
    gw.answer(
        "GET",
        "/system/async",
        200,
        {"calls": [{**call, "created_at": "2026-01-01T00:00:00Z"}], "next_cursor": 7},
    )
    assert cli.main(["--gateway", gw.url, "calls", "f", "--status", "failed"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split() == ["CALL_ID", "FUNCTION", "STATUS", "ATTEMPTS", "RESULT", "CREATED"]
    assert out.splitlines()[1].split() == ["c-1", "f", "failed", "3", "500", "2026-01-01T00:00:00Z"]
    assert "--cursor 7" in err
    assert gw.seen[-1].path == "/system/async?function=f&status=failed&limit=100"
    result = {"status": 500, "headers": {}, "body": base64.b64encode(b"boom").decode()}
    gw.answer("GET", "/system/async/c-1", 200, {**call, "result": result})
    assert cli.main(["--gateway", gw.url, "call", "c-1"]) == 0
    assert json.loads(capsys.readouterr().out)["attempts"] == 3
    assert cli.main(["--gateway", gw.url, "call", "c-1", "--body"]) == 1  # the result is an error status
    assert capsys.readouterr().out == "boom"
