"""The CLI without the runtime: deploy bodies from disk, argument handling, and the HTTP
client against a tiny canned-answer server in a thread."""

from __future__ import annotations

import base64
import io
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from gateway import cli
from gateway.bundle import BundleError, build_deploy_body, default_name, parse_env
from gateway.client import GatewayClient, GatewayUnreachable, Headers, Response, error_message
from tests.canned_http import Canned

from .conftest import FakeStdin

UNREACHABLE = "http://127.0.0.1:1"  # port 1: nothing listens, the connection is refused
UNREACHABLE_LINE = f"error: cannot reach the gateway at {UNREACHABLE} (is `faas serve` running?)\n"


# ---------------------------------------------------------------- bundle


def test_body_for_a_file(tmp_path: Path) -> None:
    f = tmp_path / "Hello_World.py"
    f.write_text("def handle(event, context):\n    return 'hi'\n")
    body = build_deploy_body(f)
    assert body == {
        "name": "hello-world",
        "files": {"Hello_World.py": base64.b64encode(f.read_bytes()).decode()},
    }


def test_body_carries_only_given_options(tmp_path: Path) -> None:
    f = tmp_path / "h.py"
    f.write_text("def main(e, c): pass\n")
    body = build_deploy_body(
        f, name="x", entry="main", memory_mb=256, timeout_s=1.5, env={"A": "1"}, max_queue=0
    )
    assert {k: v for k, v in body.items() if k != "files"} == {
        "name": "x",
        "entry": "main",
        "memory_mb": 256,
        "timeout_s": 1.5,
        "env": {"A": "1"},
        "max_queue": 0,  # 0 is a value, not "not given"
    }


def test_body_for_a_directory(tmp_path: Path) -> None:
    d = tmp_path / "my_func"
    (d / "lib" / "__pycache__").mkdir(parents=True)
    (d / ".git").mkdir()
    (d / ".hidden").mkdir()
    (d / "handler.py").write_text("import lib.util\n")
    (d / "requirements.txt").write_text("")
    (d / "lib" / "util.py").write_bytes(b"\x00\xffbinary")
    (d / "lib" / "util.pyc").write_bytes(b"junk")
    (d / "lib" / "__pycache__" / "util.cpython-311.pyc").write_bytes(b"junk")
    (d / ".git" / "HEAD").write_text("ref")
    (d / ".hidden" / "x.py").write_text("")
    (d / "alias.py").symlink_to(d / "handler.py")  # inside: fine, deployed as a copy
    body = build_deploy_body(d)
    assert body["name"] == "my-func"
    files = {k: base64.b64decode(v) for k, v in body["files"].items()}
    assert sorted(files) == ["alias.py", "handler.py", "lib/util.py", "requirements.txt"]
    assert files["lib/util.py"] == b"\x00\xffbinary"
    assert files["alias.py"] == b"import lib.util\n"


def test_directory_symlink_outside_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t")
    d = tmp_path / "fn"
    d.mkdir()
    (d / "handler.py").write_text("")
    (d / "leak.txt").symlink_to(secret)
    with pytest.raises(BundleError, match="outside"):
        build_deploy_body(d)


def test_bad_paths(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no such file"):
        build_deploy_body(tmp_path / "missing.py")
    with pytest.raises(BundleError, match=r"not a \.py file"):
        build_deploy_body(tmp_path / "notes.txt")
    with pytest.raises(BundleError, match="no files"):
        build_deploy_body(tmp_path / "empty")


def test_default_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "Some_Dir").mkdir()
    assert default_name(tmp_path / "Resize_Image.py") == "resize-image"
    assert default_name(str(tmp_path / "Some_Dir") + "/") == "some-dir"
    monkeypatch.chdir(tmp_path / "Some_Dir")
    assert default_name(".") == "some-dir"


def test_parse_env() -> None:
    assert parse_env(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    for bad in ("NOEQUALS", "=value"):
        with pytest.raises(BundleError, match="KEY=VALUE"):
            parse_env([bad])


def test_deploy_bad_env_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "h.py"
    f.write_text("")
    # An unreachable gateway proves the check comes before any request.
    assert cli.main(["--gateway", UNREACHABLE, "deploy", str(f), "--env", "A=1", "--env", "oops"]) == 2
    err = capsys.readouterr().err
    assert err == "error: invalid --env 'oops': expected KEY=VALUE\n"


def test_deploy_missing_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--gateway", UNREACHABLE, "deploy", "/nonexistent/x.py"]) == 2
    assert capsys.readouterr().err == "error: /nonexistent/x.py: no such file or directory\n"


# ---------------------------------------------------------------- unreachable, global options


@pytest.mark.parametrize(
    "argv",
    [
        ["--gateway", UNREACHABLE, "list"],
        ["list", "--gateway", UNREACHABLE],  # global options also after the subcommand
        ["--gateway", UNREACHABLE, "invoke", "hello"],
        ["--gateway", UNREACHABLE, "usage", "--json"],
    ],
)
def test_unreachable_gateway(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tty_stdin: None
) -> None:
    monkeypatch.delenv("FAAS_GATEWAY", raising=False)
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", UNREACHABLE_LINE)


def test_gateway_from_env(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAAS_GATEWAY", UNREACHABLE)
    assert cli.main(["describe", "x"]) == 2
    assert capsys.readouterr().err == UNREACHABLE_LINE


def test_client_raises_unreachable() -> None:
    with pytest.raises(GatewayUnreachable) as info:
        GatewayClient(UNREACHABLE, None).request("GET", "/healthz")
    assert info.value.url == UNREACHABLE


def test_no_command_and_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert cli.main(["invoke"]) == 2  # NAME missing: argparse's usage error
    assert cli.main(["--help"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_error_message() -> None:
    def resp(status: int, body: bytes) -> Response:
        return Response(status, Headers(), body)

    assert (
        error_message(resp(404, b'{"error": "no such function: x", "call_id": "c1"}'))
        == "no such function: x"
    )
    assert error_message(resp(502, b"Bad gateway\n  from proxy")) == "Bad gateway from proxy"
    assert error_message(resp(503, b"")) == "Service Unavailable"
    assert error_message(resp(400, b'["not", "an object"]')) == '["not", "an object"]'
    assert Headers([("X-Call-Id", "a")]).get("x-call-id") == "a"


# ---------------------------------------------------------------- against the canned gateway


def test_invoke_get_prints_body_raw(
    gw: Canned, capsysbinary: pytest.CaptureFixture[bytes], tty_stdin: None
) -> None:
    gw.answer("GET", "/function/hello/a/b", 200, b"\x00\x01no newline", "application/octet-stream")
    rc = cli.main(["--gateway", gw.url, "invoke", "hello", "--path", "a/b?x=1", "--header", "X-Thing: v"])
    assert rc == 0
    assert capsysbinary.readouterr().out == b"\x00\x01no newline"
    seen = gw.seen[-1]
    assert (seen.method, seen.path, seen.body) == ("GET", "/function/hello/a/b?x=1", b"")
    assert seen.headers["x-thing"] == "v"
    assert "authorization" not in seen.headers  # no token, no header


def test_invoke_data_posts(gw: Canned, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    gw.answer("POST", "/function/echo", 200, {"ok": True})
    assert cli.main(["--gateway", gw.url, "invoke", "echo", "--data", '{"n": 1}']) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True}
    assert gw.seen[-1].body == b'{"n": 1}'

    f = tmp_path / "payload.bin"
    f.write_bytes(b"\xde\xad")
    gw.answer("PUT", "/function/echo", 200, b"")
    assert cli.main(["--gateway", gw.url, "invoke", "echo", "--data", f"@{f}", "--method", "put"]) == 0
    assert (gw.seen[-1].method, gw.seen[-1].body) == ("PUT", b"\xde\xad")


def test_invoke_reads_piped_stdin(
    gw: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", FakeStdin(b"from a pipe", tty=False))
    gw.answer("POST", "/function/echo", 200, b"ok\n", "text/plain")
    assert cli.main(["invoke", "echo", "--gateway", gw.url]) == 0
    assert capsys.readouterr().out == "ok\n"
    assert (gw.seen[-1].method, gw.seen[-1].body) == ("POST", b"from a pipe")


@pytest.mark.parametrize(
    ("status", "body", "line"),
    [
        (
            500,
            {"error": "ZeroDivisionError: division by zero", "call_id": "c1"},
            "500 ZeroDivisionError: division by zero",
        ),
        (504, {"error": "timed out after 1 s", "call_id": "c2"}, "504 timed out after 1 s"),
        (502, b"upstream broke", "502 upstream broke"),
    ],
)
def test_invoke_error_status(
    gw: Canned, capsys: pytest.CaptureFixture[str], tty_stdin: None, status: int, body: Any, line: str
) -> None:
    gw.answer("GET", "/function/f", status, body)
    assert cli.main(["--gateway", gw.url, "invoke", "f"]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"error: {line}\n")


def test_invoke_bad_header(gw: Canned, capsys: pytest.CaptureFixture[str], tty_stdin: None) -> None:
    assert cli.main(["--gateway", gw.url, "invoke", "f", "--header", "nocolon"]) == 2
    assert capsys.readouterr().err == "error: invalid --header 'nocolon': expected NAME:VALUE\n"
    assert gw.seen == []


def test_list_table_and_token(gw: Canned, capsys: pytest.CaptureFixture[str]) -> None:
    gw.answer(
        "GET",
        "/system/functions",
        200,
        [
            {"name": "hello", "version": 3, "memory_mb": 128, "timeout_s": 30.0, "cpu": 1.0, "instances": 2},
            {"name": "resize-image", "version": 1, "memory_mb": 1024, "timeout_s": 0.5, "cpu": 0.25},
        ],
    )
    assert cli.main(["list", "--gateway", gw.url, "--token", "s3cret"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "NAME          VERSION  MEMORY  TIMEOUT  CPU   INSTANCES",
        "hello         3        128MB   30s      1     2",
        "resize-image  1        1024MB  0.5s     0.25  -",
    ]
    assert gw.seen[-1].headers["authorization"] == "Bearer s3cret"


def test_token_from_env_and_json(
    gw: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAAS_TOKEN", "envtok")
    gw.answer("GET", "/system/functions", 200, [])
    assert cli.main(["--gateway", gw.url, "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert gw.seen[-1].headers["authorization"] == "Bearer envtok"


def test_token_goes_to_system_only(gw: Canned, capsys: pytest.CaptureFixture[str], tty_stdin: None) -> None:
    """The token opens /system; a function is public code and must never be sent it."""
    gw.answer("GET", "/function/echo", 200, b"ok")
    assert cli.main(["--gateway", gw.url, "--token", "s3cret", "invoke", "echo"]) == 0
    assert "authorization" not in gw.seen[-1].headers
    assert (
        cli.main(
            ["--gateway", gw.url, "--token", "s3cret", "invoke", "echo", "--header", "Authorization: Basic x"]
        )
        == 0
    )
    assert gw.seen[-1].headers["authorization"] == "Basic x"  # the user's own header still goes
    gw.answer("GET", "/system/functions", 200, [])
    assert cli.main(["--gateway", gw.url, "--token", "s3cret", "list"]) == 0
    assert gw.seen[-1].headers["authorization"] == "Bearer s3cret"


def test_api_errors(gw: Canned, capsys: pytest.CaptureFixture[str]) -> None:
    gw.answer("GET", "/system/functions", 401, {"error": "missing or bad token"})
    assert cli.main(["--gateway", gw.url, "list"]) == 1
    assert capsys.readouterr().err == "error: missing or bad token (pass --token or set FAAS_TOKEN)\n"
    gw.answer("DELETE", "/system/functions/nope", 404, {"error": "no such function: nope"})
    assert cli.main(["--gateway", gw.url, "delete", "nope"]) == 1
    assert capsys.readouterr().err == "error: no such function: nope\n"
    gw.answer("GET", "/system/functions/html", 200, b"<html>", "text/html")
    assert cli.main(["--gateway", gw.url, "describe", "html"]) == 1
    assert capsys.readouterr().err == "error: the gateway answered 200 with a body that is not JSON\n"


def test_deploy_describe_delete(gw: Canned, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "hello.py"
    f.write_text("def handle(e, c): return 'hi'\n")
    gw.answer("POST", "/system/functions", 201, {"name": "hello", "version": 1})
    argv = [
        "--gateway",
        gw.url,
        "deploy",
        str(f),
        "--memory",
        "256",
        "--env",
        "A=b=c",
        "--cpu-ms-per-call",
        "50",
    ]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == "deployed hello version 1 (created)\n"
    sent = json.loads(gw.seen[-1].body)
    assert gw.seen[-1].headers["content-type"] == "application/json"
    assert sent == {
        "name": "hello",
        "files": {"hello.py": base64.b64encode(f.read_bytes()).decode()},
        "memory_mb": 256,
        "env": {"A": "b=c"},
        "cpu_ms_per_call": 50,
    }
    gw.answer("POST", "/system/functions", 200, {"name": "hello", "version": 2})
    assert cli.main(["--gateway", gw.url, "deploy", str(f)]) == 0
    assert capsys.readouterr().out == "deployed hello version 2 (updated)\n"

    gw.answer("GET", "/system/functions/hello", 200, {"name": "hello", "version": 2})
    assert cli.main(["--gateway", gw.url, "describe", "hello"]) == 0
    assert json.loads(capsys.readouterr().out) == {"name": "hello", "version": 2}
    gw.answer("DELETE", "/system/functions/hello", 200, {"deleted": "hello"})
    assert cli.main(["--gateway", gw.url, "delete", "hello"]) == 0
    assert capsys.readouterr().out == "deleted hello\n"


def test_logs(gw: Canned, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["2026-01-01T00:00:00Z c1 hello", "2026-01-01T00:00:01Z c1 REPORT RequestId: c1"]
    gw.answer("GET", "/system/logs", 200, {"function": "hello", "lines": lines})
    assert cli.main(["--gateway", gw.url, "logs", "hello", "--tail", "5"]) == 0
    assert capsys.readouterr().out.splitlines() == lines
    assert gw.seen[-1].path == "/system/logs?name=hello&tail=5"


def test_logs_escape_control_characters(gw: Canned, capsys: pytest.CaptureFixture[str]) -> None:
    """A function writes its log lines: nothing in them may drive the terminal."""
    lines = [
        "T c1 \x1b]52;c;cHduZWQ=\x07clipboard",
        "T c1 \x1b[1A\x1b[2KREPORT RequestId: c0 Duration: 1.00 ms",
        "T c1 8-bit CSI \x9b2J, DEL \x7f, NUL \x00, CR \r, bidi \u202e, tab\tkept, caf\u00e9",
    ]
    gw.answer("GET", "/system/logs", 200, {"function": "f", "lines": lines})
    assert cli.main(["--gateway", gw.url, "logs", "f"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "T c1 \\x1b]52;c;cHduZWQ=\\x07clipboard",
        "T c1 \\x1b[1A\\x1b[2KREPORT RequestId: c0 Duration: 1.00 ms",
        "T c1 8-bit CSI \\x9b2J, DEL \\x7f, NUL \\x00, CR \\x0d, bidi \\u202e, tab\tkept, caf\u00e9",
    ]


def test_printable_escapes_a_newline_inside_a_line() -> None:
    assert cli.printable("one\ntwo") == "one\\x0atwo"


def test_logs_follow_prints_only_new_lines(
    gw: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    windows = [["a", "b"], ["a", "b", "c"], ["b", "c", "d", "e"], ["b", "c", "d", "e"]]
    polls = iter(windows[1:])

    def fake_sleep(_: float) -> None:
        # Each poll sees the next window of the server's log; then the user presses Ctrl-C.
        try:
            window = next(polls)
        except StopIteration:
            raise KeyboardInterrupt from None
        gw.answer("GET", "/system/logs", 200, {"function": "f", "lines": window})

    monkeypatch.setattr(cli.time, "sleep", fake_sleep)
    gw.answer("GET", "/system/logs", 200, {"function": "f", "lines": windows[0]})
    assert cli.main(["--gateway", gw.url, "logs", "f", "--follow"]) == 0
    assert capsys.readouterr().out.splitlines() == ["a", "b", "c", "d", "e"]
    assert gw.seen[-1].path == f"/system/logs?name=f&tail={cli.FOLLOW_TAIL}"


def test_new_lines() -> None:
    assert cli.new_lines([], ["a"]) == ["a"]
    assert cli.new_lines(["a", "b"], ["a", "b"]) == []
    assert cli.new_lines(["a", "b"], ["b", "c"]) == ["c"]
    assert cli.new_lines(["x", "b"], ["a", "b", "c"]) == ["a", "b", "c"]  # context differs: no match
    assert cli.new_lines(["a"], ["z", "y"]) == ["z", "y"]  # scrolled out of the window


def test_usage_table(gw: Canned, capsys: pytest.CaptureFixture[str]) -> None:
    entry = {
        "requests": 3,
        "errors": 1,
        "billed_ms": 120,
        "gb_seconds": 0.015,
        "cpu_seconds": 0.05,
        "net_rx_bytes": 2048,
        "net_tx_bytes": 512,
        "cost": 8.5e-7,
    }
    gw.answer(
        "GET",
        "/system/usage",
        200,
        {
            "since": "2026-01-01T00:00:00Z",
            "until": "2026-01-02T00:00:00Z",
            "functions": [{"function": "hello", **entry}],
            "totals": entry,
        },
    )
    argv = ["--gateway", gw.url, "usage", "--function", "hello", "--since", "1767225600"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        "usage from 2026-01-01T00:00:00Z to 2026-01-02T00:00:00Z",
        "FUNCTION  REQUESTS  ERRORS  BILLED_MS  GB_SECONDS  CPU_SECONDS  NET_RX_BYTES  NET_TX_BYTES        COST",
        "hello            3       1        120    0.015000        0.050          2048           512  0.00000085",
        "TOTAL            3       1        120    0.015000        0.050          2048           512  0.00000085",
    ]
    assert gw.seen[-1].path == "/system/usage?function=hello&since=1767225600"
    assert cli.main(["--gateway", gw.url, "usage", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"] == entry


# ---------------------------------------------------------------- serve


NO_CLUSTER = {"role": None, "cluster_token": None, "advertise": None, "workers": None}


def test_serve_passes_options(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def run_server(**kwargs: Any) -> int:
        calls.append(kwargs)
        return 3

    monkeypatch.setitem(sys.modules, "gateway.serve", types.SimpleNamespace(run_server=run_server))
    monkeypatch.delenv("FAAS_TOKEN", raising=False)
    assert cli.main(["serve", "--port", "9000", "--deploy", "a.py", "fns/", "--deploy", "b.py"]) == 3
    cluster_flags = ["--role", "gateway", "--cluster-token", "k" * 16, "--advertise", "h:1", "--workers", "4"]
    assert cli.main(["serve", "--database", "postgresql://db/faas", *cluster_flags]) == 3
    assert (
        cli.main(
            [
                "--token",
                "t",
                "serve",
                "--keepalive",
                "2.5",
                "--data-dir",
                "/d",
                "--config",
                "c.toml",
                "--queue",
                "nats://n:4222",
            ]
        )
        == 3
    )
    assert calls == [
        {
            "host": None,
            "port": 9000,
            "data_dir": None,
            "config_file": None,
            "token": None,
            "keepalive_s": None,
            "database": None,
            "queue": None,
            "deploy_paths": ["a.py", "fns/", "b.py"],
            **NO_CLUSTER,
        },
        {
            "host": None,
            "port": None,
            "data_dir": None,
            "config_file": None,
            "token": None,
            "keepalive_s": None,
            "database": "postgresql://db/faas",
            "queue": None,
            "deploy_paths": [],
            "role": "gateway",
            "cluster_token": "k" * 16,
            "advertise": "h:1",
            "workers": 4,
        },
        {
            "host": None,
            "port": None,
            "data_dir": "/d",
            "config_file": "c.toml",
            "token": "t",
            "keepalive_s": 2.5,
            "database": None,
            "queue": "nats://n:4222",
            "deploy_paths": [],
            **NO_CLUSTER,
        },
    ]


def test_serve_failure_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def run_server(**kwargs: Any) -> int:
        raise RuntimeError("no usable cgroups:\nneed root")

    monkeypatch.setitem(sys.modules, "gateway.serve", types.SimpleNamespace(run_server=run_server))
    assert cli.main(["serve"]) == 1
    assert capsys.readouterr().err == "error: RuntimeError: no usable cgroups: need root\n"


# ---------------------------------------------------------------- layers


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_deploy_with_requirements_shows_progress_on_a_terminal_only(
    gw: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "handler.py").write_text("import six\n\ndef handle(e, c):\n    return six.__version__\n")
    (tmp_path / "requirements.txt").write_text("six\n")
    layer = {"id": "a" * 20, "size_bytes": 3 * 1024 * 1024, "packages": {"six": "1.17.0"}}
    gw.answer(
        "POST", "/system/functions", 201, {"name": "fn", "version": 1, "layer": layer, "build_ms": 2500}
    )
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli.main(["--gateway", gw.url, "deploy", str(tmp_path), "--name", "fn"]) == 0
    assert capsys.readouterr().out == (
        f"layer {'a' * 20}: 1 packages, 3.0 MiB, ready in 2.5 s\ndeployed fn version 1 (created)\n"
    )
    shown = terminal.getvalue()
    assert "\rinstalling requirements.txt into a layer " in shown and shown.endswith("\r\033[K")
    # Not a terminal: no progress line at all.
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert cli.main(["--gateway", gw.url, "deploy", str(tmp_path), "--name", "fn"]) == 0
    assert sys.stderr.getvalue() == ""  # type: ignore[attr-defined]


def test_layers_table(gw: Canned, capsys: pytest.CaptureFixture[str]) -> None:
    gw.answer(
        "GET",
        "/system/layers",
        200,
        [
            {
                "id": "b" * 20,
                "size_bytes": 5923667,
                "packages": {"pyyaml": "6.0.3", "humanize": "4.17.0"},
                "functions": ["f", "g"],
                "import_cache": {"state": "ready"},
            }
        ],
    )
    assert cli.main(["--gateway", gw.url, "layers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "SIZE", "PACKAGES", "FUNCTIONS", "IMPORT", "CACHE"]
    assert lines[1].split() == [
        "b" * 20,
        "5.6",
        "MiB",
        "humanize==4.17.0,",
        "pyyaml==6.0.3",
        "f,",
        "g",
        "ready",
    ]
    assert cli.main(["--gateway", gw.url, "layers", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["functions"] == ["f", "g"]
