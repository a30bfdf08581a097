"""The real `faas` CLI, as a subprocess, against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import EXAMPLES, REPO, TEST_FUNCTIONS, Server


def faas(
    gateway: str, *args: str, stdin: bytes | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run `faas --gateway URL ARGS...`; stdin is empty (not a terminal) unless given."""
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--gateway", gateway, *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        cwd=REPO,
        timeout=timeout,
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    )


def ok(gateway: str, *args: str, stdin: bytes | None = None) -> str:
    proc = faas(gateway, *args, stdin=stdin)
    assert proc.returncode == 0, (
        f"faas {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_deploy_creates_then_updates(server: Server) -> None:
    server.request("DELETE", "/system/functions/hello")  # in case another test made it
    first = ok(server.url, "deploy", str(EXAMPLES / "hello.py"))
    assert first.startswith("deployed hello version ") and first.rstrip().endswith("(created)"), first
    v1 = int(first.split()[3])
    same = ok(server.url, "deploy", str(EXAMPLES / "hello.py"))
    assert same.strip() == f"deployed hello version {v1} (unchanged)", same
    second = ok(server.url, "deploy", str(EXAMPLES / "hello.py"), "--memory", "256")
    assert second.strip() == f"deployed hello version {v1 + 1} (updated)", second
    assert server.request("GET", "/system/functions/hello").json()["version"] == v1 + 1


def test_deploy_directory_with_options_then_describe(server: Server, tmp_path: Path) -> None:
    fn = tmp_path / "my_dir_fn"
    fn.mkdir()
    (fn / "helper.py").write_text("GREETING = 'from helper'\n")
    (fn / "handler.py").write_text(
        "import os\n"
        "import helper\n\n\n"
        "def handle(event, context):\n"
        "    return {'greeting': helper.GREETING, 'a': os.environ.get('A'),\n"
        "            'memory': context.memory_limit_in_mb, 'timeout': context.timeout_s}\n"
    )
    out = ok(
        server.url,
        "deploy",
        str(fn),
        "--name",
        "dirfn",
        "--memory",
        "64",
        "--timeout",
        "5",
        "--env",
        "A=b",
    )
    assert out.startswith("deployed dirfn version ") and "(created)" in out, out
    record = json.loads(ok(server.url, "describe", "dirfn"))
    assert record["name"] == "dirfn"
    assert record["memory_mb"] == 64
    assert record["timeout_s"] == 5
    assert record["env"] == {"A": "b"}
    assert sorted(record["files"]) == ["handler.py", "helper.py"]
    called = json.loads(ok(server.url, "invoke", "dirfn"))
    assert called == {"greeting": "from helper", "a": "b", "memory": 64, "timeout": 5}


def test_invoke_prints_the_body(server: Server) -> None:
    ok(server.url, "deploy", str(EXAMPLES / "hello.py"))
    assert ok(server.url, "invoke", "hello") == "Hello, world!"
    assert ok(server.url, "invoke", "hello", "--path", "?name=Ada") == "Hello, Ada!"


def test_invoke_passes_data_method_path_and_headers(server: Server) -> None:
    ok(server.url, "deploy", str(EXAMPLES / "echo.py"))
    out = ok(
        server.url,
        "invoke",
        "echo",
        "--data",
        "hi",
        "--method",
        "PUT",
        "--path",
        "/x",
        "--header",
        "X-A:1",
    )
    data = json.loads(out)
    assert data["method"] == "PUT"
    assert data["path"] == "/x"
    assert data["body"] == "hi"
    headers = {k.lower(): v for k, v in data["headers"].items()}
    assert headers["x-a"] == "1"


def test_invoke_reads_stdin(server: Server) -> None:
    ok(server.url, "deploy", str(EXAMPLES / "echo.py"))
    data = json.loads(ok(server.url, "invoke", "echo", stdin=b"from stdin\n"))
    assert data["method"] == "POST"  # a body and no --method: POST
    assert data["body"] == "from stdin\n"
    empty = json.loads(ok(server.url, "invoke", "echo"))
    assert empty["method"] == "GET" and empty["body"] == ""


def test_list_includes_the_names(server: Server) -> None:
    ok(server.url, "deploy", str(EXAMPLES / "hello.py"))
    ok(server.url, "deploy", str(EXAMPLES / "echo.py"))
    out = ok(server.url, "list")
    lines = out.splitlines()
    assert lines[0].split()[0] == "NAME", out
    names = {line.split()[0] for line in lines[1:]}
    assert {"hello", "echo"} <= names, out


def test_logs_tail(server: Server) -> None:
    ok(server.url, "deploy", str(TEST_FUNCTIONS / "raiser.py"))
    failed = faas(server.url, "invoke", "raiser", "--data", "xyz")
    assert failed.returncode == 1
    line = one_error_line(failed)
    assert "500" in line and "ValueError" in line and "boom: xyz" in line, line
    everything = ok(server.url, "logs", "raiser").splitlines()
    assert any(line.endswith(" about to fail") for line in everything), everything
    assert len(everything) > 5, everything  # print + traceback: more than the tail asked for
    tail = ok(server.url, "logs", "raiser", "--tail", "5").splitlines()
    assert tail == everything[-5:], tail
    call_id = everything[0].split()[1]
    assert all(line.split()[1] == call_id for line in tail), tail
    assert any(line.endswith("ValueError: boom: xyz") for line in tail), tail


def test_delete_then_invoke_is_an_error(server: Server) -> None:
    ok(server.url, "deploy", str(EXAMPLES / "hello.py"), "--name", "doomed")
    assert ok(server.url, "invoke", "doomed") == "Hello, world!"
    assert ok(server.url, "delete", "doomed").strip() == "deleted doomed"
    proc = faas(server.url, "invoke", "doomed")
    assert proc.returncode == 1, proc
    assert proc.stdout == ""
    line = one_error_line(proc)
    assert "404" in line, line
    described = faas(server.url, "describe", "doomed")
    assert described.returncode == 1
    one_error_line(described)


def test_unreachable_gateway_is_exit_2_and_one_line() -> None:
    url = "http://127.0.0.1:1"
    for args in (("list",), ("invoke", "hello"), ("deploy", str(EXAMPLES / "hello.py"))):
        proc = faas(url, *args)
        assert proc.returncode == 2, (args, proc)
        line = one_error_line(proc)
        assert url in line and "faas serve" in line, line


def test_deploy_syntax_error_names_file_and_line(server: Server, tmp_path: Path) -> None:
    bad = tmp_path / "broken.py"
    bad.write_text("def handle(event, context):\n    return 1\n\ndef oops(:\n    pass\n")
    proc = faas(server.url, "deploy", str(bad))
    assert proc.returncode == 1, proc
    line = one_error_line(proc)
    assert "broken.py" in line and "line 4" in line, line
    assert server.request("GET", "/system/functions/broken").status == 404
