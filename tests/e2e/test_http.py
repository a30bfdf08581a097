"""End to end through HTTP: deploy, invoke, redeploy, delete, restart, errors."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

from tests.helpers import EXAMPLES, TEST_FUNCTIONS, Server


def test_hello_cold_then_warm(server: Server) -> None:
    created = server.deploy_ok("hello", EXAMPLES / "hello.py")
    assert created["name"] == "hello" and created["version"] >= 1
    first = server.invoke("hello", "?name=Ada")
    assert first.status == 200, first.text
    assert first.text == "Hello, Ada!"
    assert first.headers["Content-Type"].startswith("text/plain")
    assert first.headers["X-Cold-Start"] == "true"
    assert first.headers["X-Call-Id"]
    assert float(first.headers["X-Duration-Ms"]) >= 0
    assert int(first.headers["X-Billed-Duration-Ms"]) >= 1
    second = server.invoke("hello")
    assert second.text == "Hello, world!"
    assert second.headers["X-Cold-Start"] == "false"
    assert second.headers["X-Call-Id"] != first.headers["X-Call-Id"]


def test_echo_passes_the_request_through(server: Server) -> None:
    server.deploy_ok("echo", EXAMPLES / "echo.py")
    resp = server.invoke("echo", "/a/b?x=1&y=two", method="PUT", body=b"payload", headers={"X-Custom": "v"})
    assert resp.status == 200, resp.text
    data = resp.json()
    assert data["method"] == "PUT"
    assert data["path"] == "/a/b"
    assert data["query"] == {"x": "1", "y": "two"}
    assert data["headers"]["X-Custom"] == "v"
    assert data["body"] == "payload"
    assert data["request_id"] == resp.headers["X-Call-Id"]
    root = server.invoke("echo").json()
    assert root["path"] == "/" and root["method"] == "GET"


def test_json_example(server: Server) -> None:
    server.deploy_ok("stats", EXAMPLES / "stats.py")
    resp = server.invoke("stats", method="POST", json_body={"numbers": [1, 2, 3, 4]})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {"count": 4, "sum": 10, "mean": 2.5, "min": 1, "max": 4}
    bad = server.invoke("stats", method="POST", body=b"not json")
    assert bad.status == 400 and "not JSON" in bad.json()["error"]


def test_return_shapes(server: Server) -> None:
    server.deploy_ok("shapes", TEST_FUNCTIONS / "shapes.py")
    none = server.invoke("shapes", "?kind=none")
    assert none.status == 200 and none.body == b"" and "Content-Type" not in none.headers
    bytes_ = server.invoke("shapes", "?kind=bytes")
    assert bytes_.body == b"\x00\x01binary" and bytes_.headers["Content-Type"] == "application/octet-stream"
    assert server.invoke("shapes", "?kind=list").json() == [1, 2]
    proxy = server.invoke("shapes", "?kind=proxy")
    assert proxy.status == 201 and proxy.headers["X-Thing"] == "yes" and proxy.json() == {"made": True}
    assert proxy.headers["Content-Type"] == "application/json"
    tea = server.invoke("shapes", "?kind=proxy_text")
    assert tea.status == 418 and tea.text == "teapot" and tea.headers["Content-Type"] == "text/x-tea"


def test_async_handler(server: Server) -> None:
    server.deploy_ok("asyncfn", TEST_FUNCTIONS / "asyncfn.py")
    first = server.invoke("asyncfn").json()
    assert first == {"async": True, "cold": True, "function": "asyncfn"}
    assert server.invoke("asyncfn").json()["cold"] is False


def test_handler_exception_is_500_with_traceback_in_logs(server: Server) -> None:
    server.deploy_ok("raiser", TEST_FUNCTIONS / "raiser.py")
    resp = server.invoke("raiser", method="POST", body=b"xyz")
    assert resp.status == 500
    err = resp.json()
    assert "ValueError" in err["error"] and "boom: xyz" in err["error"]
    assert err["call_id"] == resp.headers["X-Call-Id"]
    lines = server.request("GET", "/system/logs?name=raiser&tail=50").json()["lines"]
    text = "\n".join(lines)
    assert "Traceback" in text and "about to fail" in text
    assert resp.headers["X-Call-Id"] in text


def test_unsupported_return_type_is_500(server: Server) -> None:
    server.deploy_ok("badreturn", TEST_FUNCTIONS / "badreturn.py")
    resp = server.invoke("badreturn")
    assert resp.status == 500
    assert "set" in resp.json()["error"]


def test_env_and_entry(server: Server) -> None:
    code = "import os\ndef main(event, context):\n    return os.environ['GREETING']\n"
    server.deploy_ok("envfn", code, entry="main", env={"GREETING": "hi there"})
    assert server.invoke("envfn").text == "hi there"


def test_directory_function_with_helper_module(server: Server) -> None:
    files = {
        "handler.py": "from lib.util import shout\ndef handle(event, context):\n    return shout(event.text)\n",
        "lib/__init__.py": "",
        "lib/util.py": "def shout(s):\n    return s.upper() + '!'\n",
        "data.txt": "ignored",
    }
    body = {"name": "multi", "files": {k: base64.b64encode(v.encode()).decode() for k, v in files.items()}}
    assert server.request("POST", "/system/functions", json_body=body).status == 201
    assert server.invoke("multi", method="POST", body=b"hey").text == "HEY!"


def test_redeploy_serves_new_code(server: Server) -> None:
    v1 = server.deploy("versioned", "def handle(e, c):\n    return 'one'\n")
    assert v1.status == 201
    assert server.invoke("versioned").text == "one"
    v2 = server.deploy("versioned", "def handle(e, c):\n    return 'two'\n")
    assert v2.status == 200
    assert v2.json()["version"] == v1.json()["version"] + 1
    assert server.invoke("versioned").text == "two"
    assert server.request("GET", "/system/functions/versioned").json()["version"] == v2.json()["version"]


def test_delete_then_404(server: Server) -> None:
    server.deploy_ok("doomed", "def handle(e, c):\n    return 'here'\n")
    assert server.invoke("doomed").status == 200
    assert server.request("DELETE", "/system/functions/doomed").status == 200
    gone = server.invoke("doomed")
    assert gone.status == 404 and "doomed" in gone.json()["error"]
    assert server.request("GET", "/system/functions/doomed").status == 404
    assert server.request("DELETE", "/system/functions/doomed").status == 404
    assert "doomed" not in [f["name"] for f in server.request("GET", "/system/functions").json()]


def test_list_and_describe(server: Server) -> None:
    server.deploy_ok("listed", EXAMPLES / "hello.py", memory_mb=256, timeout_s=5, cpu=0.5, max_instances=3)
    names = [f["name"] for f in server.request("GET", "/system/functions").json()]
    assert "listed" in names
    record = server.request("GET", "/system/functions/listed").json()
    assert record["memory_mb"] == 256 and record["timeout_s"] == 5 and record["cpu"] == 0.5
    assert record["max_instances"] == 3 and record["entry"] == "handle"


def test_unknown_function_is_404(server: Server) -> None:
    resp = server.invoke("no-such-function")
    assert resp.status == 404
    assert resp.json()["call_id"] == resp.headers["X-Call-Id"]


def test_body_over_limit_is_413(server: Server) -> None:
    server.deploy_ok("echo", EXAMPLES / "echo.py")
    resp = server.invoke("echo", method="POST", body=b"x" * (6 * 1024 * 1024 + 1))
    assert resp.status == 413
    assert "limit" in resp.json()["error"]
    assert server.invoke("echo", method="POST", body=b"x" * (1024 * 1024)).status == 200


def test_unknown_route_is_json_404(server: Server) -> None:
    resp = server.request("GET", "/nope")
    assert resp.status == 404 and "error" in resp.json()


def test_health_ready_metrics(server: Server) -> None:
    assert server.request("GET", "/healthz").status == 200
    assert server.request("GET", "/readyz").status == 200
    server.deploy_ok("hello", EXAMPLES / "hello.py")
    server.invoke("hello")
    text = server.request("GET", "/metrics").text
    assert 'gateway_function_invocation_total{code="200",function_name="hello"}' in text
    assert "gateway_functions_seconds_bucket" in text
    assert 'gateway_function_invocation_started_total{function_name="hello"}' in text
    assert 'gateway_service_count{function_name="hello"}' in text
    assert 'faas_sandboxes{state="idle"}' in text
    assert "faas_cold_starts_total" in text


def _deploy_error(server: Server, body: dict) -> str:
    resp = server.request("POST", "/system/functions", json_body=body)
    assert resp.status == 400, resp.text
    return resp.json()["error"]


def _files(code: str, name: str = "handler.py") -> dict[str, str]:
    return {name: base64.b64encode(code.encode()).decode()}


def test_deploy_errors(server: Server) -> None:
    ok = "def handle(e, c):\n    return 1\n"
    assert "name" in _deploy_error(server, {"name": "Bad_Name", "files": _files(ok)})
    assert "name" in _deploy_error(server, {"name": "-x", "files": _files(ok)})
    assert "name" in _deploy_error(server, {"files": _files(ok)})
    msg = _deploy_error(
        server, {"name": "syn", "files": _files("def handle(e, c):\n    return (\n\n", "fn.py")}
    )
    assert "fn.py" in msg and "line 2" in msg
    assert "'handle'" in _deploy_error(
        server, {"name": "noentry", "files": _files("def other(e, c):\n    pass\n")}
    )
    assert "'main'" in _deploy_error(server, {"name": "noentry", "files": _files(ok), "entry": "main"})
    assert "memory_mb" in _deploy_error(server, {"name": "lim", "files": _files(ok), "memory_mb": 16})
    assert "memory_mb" in _deploy_error(server, {"name": "lim", "files": _files(ok), "memory_mb": 20000})
    assert "timeout_s" in _deploy_error(server, {"name": "lim", "files": _files(ok), "timeout_s": 0})
    assert "cpu" in _deploy_error(server, {"name": "lim", "files": _files(ok), "cpu": 0.01})
    assert "max_instances" in _deploy_error(server, {"name": "lim", "files": _files(ok), "max_instances": 0})
    assert "memory_mb" in _deploy_error(server, {"name": "lim", "files": _files(ok), "memory_mb": "lots"})
    assert ".." in _deploy_error(server, {"name": "trav", "files": {"../x.py": _files(ok)["handler.py"]}})
    assert "base64" in _deploy_error(server, {"name": "b64", "files": {"handler.py": "***"}})
    big = base64.b64encode(b"#" * (21 * 1024 * 1024)).decode()
    assert "size limit" in _deploy_error(server, {"name": "big", "files": {"handler.py": big}})
    bad_json = server.request(
        "POST", "/system/functions", body=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status == 400 and "JSON" in bad_json.json()["error"]
    # Nothing of the rejected deploys was kept.
    names = {f["name"] for f in server.request("GET", "/system/functions").json()}
    assert not names & {"syn", "noentry", "lim", "trav", "b64", "big"}


def test_functions_survive_a_restart(fresh_server: Server) -> None:
    fresh_server.deploy_ok("persisted", "def handle(e, c):\n    return 'still here'\n", memory_mb=64)
    assert fresh_server.invoke("persisted").text == "still here"
    assert fresh_server.stop() == 0
    fresh_server.start()
    assert fresh_server.invoke("persisted").text == "still here"
    record = fresh_server.request("GET", "/system/functions/persisted").json()
    assert record["memory_mb"] == 64


def test_logs_survive_a_restart(fresh_server: Server) -> None:
    code = "def handle(e, c):\n    print('said before the restart')\n    return 'ok'\n"
    fresh_server.deploy_ok("logged", code)
    call_id = fresh_server.invoke("logged").headers["X-Call-Id"]
    lines_before = fresh_server.request("GET", "/system/logs?name=logged&tail=100").json()["lines"]
    assert fresh_server.stop() == 0
    fresh_server.start()
    lines = fresh_server.request("GET", "/system/logs?name=logged&tail=100").json()["lines"]
    assert [line for line in lines if call_id in line] == lines_before
    assert any(line.endswith(f"{call_id} said before the restart") for line in lines), lines
    assert any(f"{call_id} REPORT RequestId: {call_id} " in line for line in lines), lines


def test_token_auth(tmp_path) -> None:
    srv = Server(tmp_path / "data", token="s3cret").start()
    try:
        denied = srv.request("GET", "/system/functions", auth=False)
        assert denied.status == 401 and "token" in denied.json()["error"]
        wrong = srv.request("GET", "/system/functions", headers={"Authorization": "Bearer nope"}, auth=False)
        assert wrong.status == 401
        assert srv.request("GET", "/system/functions").status == 200
        # Invocation and health stay open, as in OpenFaaS.
        assert srv.request("GET", "/healthz").status == 200
    finally:
        srv.stop()


def test_refuses_public_address_without_token(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if k != "FAAS_TOKEN"},
    )
    assert result.returncode != 0
    assert "token" in result.stderr
    assert "Traceback" not in result.stderr


def test_query_list_has_every_value_in_order(server: Server) -> None:
    server.deploy_ok("querylist", "def handle(e, c):\n    return {'list': e.query_list, 'last': e.query}\n")
    answer = server.invoke("querylist", "?a=1&b=x%20y&a=2&empty=").json()
    assert answer["list"] == {"a": ["1", "2"], "b": ["x y"], "empty": [""]}
    assert answer["last"] == {"a": "2", "b": "x y", "empty": ""}
