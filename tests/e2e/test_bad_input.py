"""Bad input: each answer is a clear 4xx JSON error, and the server is healthy after.

One server with short limits (config file): header and body timeouts of 2 s,
code limit of 1 MiB (so requests are capped at the 6 MiB body limit).
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import json
import socket
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Server, server_with_config, wait_until

HEADER_TIMEOUT_S = 2
BODY_TIMEOUT_S = 2
CODE_LIMIT = 1024 * 1024
BODY_LIMIT = 6 * 1024 * 1024
PROBE = """
import hashlib

def handle(event, context):
    return {"sha256": hashlib.sha256(event.body).hexdigest(), "size": len(event.body),
            "path": event.path, "x_a": event.headers.get("x-a")}
"""
OK_CODE = base64.b64encode(b"def handle(event, context):\n    return 'ok'\n").decode()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = server_with_config(
        tmp_path_factory.mktemp("bad"),
        f"header_timeout_s = {HEADER_TIMEOUT_S}\nbody_timeout_s = {BODY_TIMEOUT_S}\n"
        f"code_limit_bytes = {CODE_LIMIT}\n",
    ).start()
    server.deploy_ok("probe", PROBE)
    yield server
    log = server.log()
    code = server.stop()
    assert code == 0, f"faas serve exited with {code}:\n{log[-4000:]}"
    assert "unhandled error in" not in log, log[-4000:]


@pytest.fixture(autouse=True)
def healthy_after(srv: Server) -> Iterator[None]:
    yield
    assert srv.request("GET", "/healthz").status == 200
    resp = srv.invoke("probe", method="POST", body=b"still here")
    assert resp.status == 200, resp.text
    assert resp.json()["sha256"] == hashlib.sha256(b"still here").hexdigest()


def json_error(resp: Any, status: int, *words: str) -> str:
    assert resp.status == status, (resp.status, resp.body[:500])
    assert resp.headers["Content-Type"].startswith("application/json"), resp.body[:500]
    message = json.loads(resp.body)["error"]
    assert isinstance(message, str) and message
    for word in words:
        assert word in message, message
    return message


# -- raw HTTP, for what http.client will not send -------------------------------


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed_s: float

    def json(self) -> Any:
        return json.loads(self.body)


def connect(srv: Server, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Up to EOF, or to the end of the first response when it has a Content-Length
    (after an early 413 aiohttp keeps draining the body a while before it closes)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            length = [line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
            if sep and length and len(body) >= int(length[0].split(b":")[1]):
                break
    except ConnectionResetError:
        pass
    return data


def parse(data: bytes, t0: float) -> Raw:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return Raw(int(lines[0].split()[1]), headers, body, time.monotonic() - t0)


def raw(srv: Server, data: bytes, *more: bytes) -> Raw:
    """Send `data`, then each of `more` only once the server has read all
    that came before (so each part is a read of its own on the server)."""
    t0 = time.monotonic()
    with connect(srv) as sock:
        sock.sendall(data)
        for part in more:
            wait_server_read(srv, sock)
            sock.sendall(part)
        return parse(read_all(sock), t0)


TCP_LISTEN = "0A"


def server_sockets(srv: Server) -> dict[int, tuple[str, int]]:
    """The server's connected TCP sockets on its port, from /proc/net/tcp
    (the server shares the test's network namespace): the client's port ->
    (state, bytes received but not yet read by the server)."""
    found = {}
    with open("/proc/net/tcp") as f:
        next(f)  # the header line
        for line in f:
            _slot, local, remote, state, queues = line.split()[:5]
            if int(local.rsplit(":", 1)[1], 16) == srv.port and state != TCP_LISTEN:
                found[int(remote.rsplit(":", 1)[1], 16)] = (state, int(queues.split(":")[1], 16))
    return found


def wait_server_read(srv: Server, sock: socket.socket) -> None:
    """Until the server has read everything sent on `sock` so far: its end of
    the connection has nothing left in its receive queue."""
    client_port = sock.getsockname()[1]
    wait_until(
        lambda: server_sockets(srv).get(client_port, ("", 1))[1] == 0,
        10,
        f"the server to read what the client on port {client_port} sent",
        detail=lambda: server_sockets(srv).get(client_port),
    )


def raw_json_error(resp: Raw, status: int, *words: str) -> str:
    assert resp.status == status, (resp.status, resp.body[:500])
    assert resp.headers["content-type"].startswith("application/json"), resp.body[:500]
    message = resp.json()["error"]
    for word in words:
        assert word in message, message
    return message


JSON_TYPE = "Content-Type: application/json"
JSON_HEADERS = {"Content-Type": "application/json"}


def own(srv: Server) -> str:
    return f"127.0.0.1:{srv.port}"


def head(method: str, path: str, *headers: str, host: str = "test") -> bytes:
    """A request head; /system takes only a Host that names the server (gateway/guard.py)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *headers, "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


# -- malformed JSON and wrong types at deploy ------------------------------------


@pytest.mark.parametrize(
    "body,words",
    [
        (b"", ["not valid JSON"]),
        (b"{", ["not valid JSON"]),
        (b'{"name": "x",}', ["not valid JSON"]),
        (b'{"name": "x"} trailing', ["not valid JSON"]),
        (b"NaN", ["JSON object"]),
        (b"null", ["JSON object"]),
        (b'["name", "x"]', ["JSON object"]),
        (b"[" * 100_000, ["nested too deeply"]),
        (b"1" * 5000, ["not valid JSON"]),  # over Python's int digit limit
    ],
    ids=["empty", "open", "trailing-comma", "garbage-after", "nan", "null", "array", "deep", "huge-int"],
)
def test_malformed_json_is_400(srv: Server, body: bytes, words: list[str]) -> None:
    headers = {"Content-Type": "application/json"}
    json_error(srv.request("POST", "/system/functions", body=body, headers=headers), 400, *words)


WRONG = {
    "name": [1, None, [], {}, True, "", "UPPER", "a_b", "-a", "a" * 64, "a\nb"],
    "files": [None, "x", [], 1, {}, {"handler.py": 1}, {"handler.py": None}, {"handler.py": "!!!"}],
    "entry": [1, True, ["handle"], "a b", "handler.no such"],
    "memory_mb": ["128", True, 1.5, None, [], {}, 31, 10241],
    "timeout_s": ["1", True, None, [], 0.09, 901],
    "cpu": ["1", True, None, [], 0.04, 1e6],
    "cpu_ms_per_call": ["1", True, 1.5, [], 0, 900001],
    "env": ["x", [["A", "b"]], 1, True, {"A": 1}, {"1A": "x"}, {"A": None}, {"A": "x\x00"}],
    "max_instances": ["1", True, 1.5, None, 0, 1001],
    "max_queue": ["1", True, 1.5, None, -1, 100001],
    "nmae": ["typo"],
}
# Falsy values of the wrong type, which a check like `body.get("env") or {}`
# would take as "not given": rejected like any other wrong type.
FALSY_ACCEPTED = {"entry": [0, False, [], {}], "env": ["", 0, False, []]}
WORD = {"name": "name", "files": "file", "entry": "entry", "nmae": "unknown field"}


def _deploy_body(field: str, value: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "typed", "files": {"handler.py": OK_CODE}}
    body[field] = value
    return body


@pytest.mark.parametrize(
    "field,value", [(f, v) for f, values in WRONG.items() for v in values], ids=lambda v: repr(v)[:30]
)
def test_wrong_type_or_range_for_a_deploy_field_is_400_naming_it(srv: Server, field: str, value: Any) -> None:
    resp = srv.request("POST", "/system/functions", json_body=_deploy_body(field, value))
    json_error(resp, 400, WORD.get(field, field))
    assert srv.request("GET", "/system/functions/typed").status == 404


@pytest.mark.parametrize(
    "field,value", [(f, v) for f, values in FALSY_ACCEPTED.items() for v in values], ids=lambda v: repr(v)
)
def test_falsy_wrong_types_are_400(srv: Server, field: str, value: Any) -> None:
    resp = srv.request("POST", "/system/functions", json_body=_deploy_body(field, value))
    srv.request("DELETE", "/system/functions/typed")
    json_error(resp, 400, field)


# -- path traversal in file names -----------------------------------------------


@pytest.mark.parametrize(
    "filename",
    ["../x.py", "../../../../tmp/faas-escape.py", "/tmp/faas-escape.py", "/etc/faas-escape.py",
     "a/../../x.py", "./../x.py", "..\\x.py", "a\\b.py", "C:\\x.py", "a/./b.py", "a//b.py",
     "", ".", "..", "a/..", "x.py\x00", "a/"],
)  # fmt: skip
def test_path_traversal_in_file_names_is_400(srv: Server, filename: str) -> None:
    body = {"name": "trav", "files": {"handler.py": OK_CODE, filename: OK_CODE}}
    json_error(srv.request("POST", "/system/functions", json_body=body), 400, "file name")
    assert srv.request("GET", "/system/functions/trav").status == 404
    assert not Path("/tmp/faas-escape.py").exists() and not Path("/etc/faas-escape.py").exists()
    assert not (srv.data_dir.parent / "x.py").exists() and not (srv.data_dir / "x.py").exists()


# -- unknown routes, wrong methods ------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/nope", "/system", "/system/nope", "/function", "/function/", "/FUNCTION/x"]
)
def test_unknown_routes_are_404_json(srv: Server, path: str) -> None:
    json_error(srv.request("GET", path), 404)


@pytest.mark.parametrize(
    "method,path,allowed",
    [
        ("POST", "/healthz", {"GET", "HEAD"}),
        ("DELETE", "/metrics", {"GET", "HEAD"}),
        ("POST", "/openapi.json", {"GET", "HEAD"}),
        ("DELETE", "/system/functions", {"GET", "HEAD", "POST", "PUT"}),
        ("PATCH", "/system/functions/probe", {"GET", "HEAD", "DELETE"}),
        ("POST", "/system/logs", {"GET", "HEAD"}),
        ("PUT", "/system/usage", {"GET", "HEAD"}),
    ],
)
def test_wrong_methods_are_405_json_with_allow(
    srv: Server, method: str, path: str, allowed: set[str]
) -> None:
    resp = srv.request(method, path, body=b"{}")
    json_error(resp, 405)
    assert set(resp.headers["Allow"].split(",")) == allowed


# -- sizes: headers, URL, bodies, uploads, bombs ----------------------------------


def test_a_header_over_8_kib_is_431_json(srv: Server) -> None:
    resp = srv.request("GET", "/healthz", headers={"X-Big": "a" * 9000})
    json_error(resp, 431, "X-Big", "8192")
    resp = srv.invoke("probe", headers={"Cookie": "c" * 12_000})
    json_error(resp, 431, "Cookie")


def test_headers_over_32_kib_in_all_or_too_many_are_431_json(srv: Server) -> None:
    many = {f"X-H{i}": "v" * 1000 for i in range(40)}
    json_error(srv.request("GET", "/system/functions", headers=many), 431, "headers of")
    count = {f"X-C{i}": "v" for i in range(101)}
    json_error(srv.request("GET", "/healthz", headers=count), 431, "header fields")


def test_a_url_over_8_kib_is_414_json(srv: Server) -> None:
    json_error(srv.invoke("probe", "?q=" + "a" * 9000), 414, "request target")


def test_headers_over_the_parsers_cap_get_aiohttps_plain_400_and_a_closed_connection(srv: Server) -> None:
    """Over 16 KiB in one line aiohttp's parser answers by itself, before any
    middleware: plain text, not JSON (gateway/limits.py). Bounded and harmless."""
    resp = raw(srv, head("GET", "/healthz", "X-Huge: " + "a" * 20_000))
    assert resp.status == 400
    resp = raw(srv, head("GET", "/" + "a" * 20_000))
    assert resp.status == 400
    resp = raw(srv, b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n")  # not HTTP
    assert resp.status == 400


def test_invocation_body_over_6_mib_is_413(srv: Server) -> None:
    big = b"x" * (BODY_LIMIT + 1)
    json_error(srv.invoke("probe", method="POST", body=big), 413, str(BODY_LIMIT))
    exact = srv.invoke("probe", method="POST", body=big[:-1])
    assert exact.status == 200 and exact.json()["size"] == BODY_LIMIT


def test_chunked_invocation_body_over_6_mib_is_413(srv: Server) -> None:
    chunk = b"y" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(BODY_LIMIT // len(chunk) + 1))
    resp = raw(srv, head("POST", "/function/probe", "Transfer-Encoding: chunked") + body + b"0\r\n\r\n")
    raw_json_error(resp, 413, "over the limit")


@pytest.mark.parametrize("path", ["/function/probe", "/system/functions"])
def test_a_huge_content_length_is_413_before_any_body_is_read(srv: Server, path: str) -> None:
    with connect(srv) as sock:
        t0 = time.monotonic()
        sock.sendall(
            head("POST", path, "Content-Length: 10000000000", "Content-Type: application/json", host=own(srv))
        )
        resp = parse(read_all(sock), t0)
    # No byte of body was sent: a server that waited for it would answer 408
    # after the body timeout, so a 413 means it decided from the header alone.
    raw_json_error(resp, 413, "10000000000")


def test_deploy_over_the_request_limit_is_413(srv: Server) -> None:
    body = json.dumps({"name": "huge", "files": {"handler.py": "A" * BODY_LIMIT}}).encode()
    json_error(
        srv.request("POST", "/system/functions", body=body, headers=JSON_HEADERS), 413, "over the limit"
    )


def test_code_over_the_code_limit_is_400_and_base64_cannot_grow_past_it(srv: Server) -> None:
    """A deploy body is JSON with base64 content: what it decodes to is at most
    3/4 of the request, and the request itself is capped, so a small request
    cannot unpack into much code; the decoded size is checked against the limit."""
    over = base64.b64encode(b"#" * (CODE_LIMIT + 1)).decode()
    body = {"name": "big", "files": {"handler.py": OK_CODE, "data.bin": over}}
    json_error(srv.request("POST", "/system/functions", json_body=body), 400, f"size limit of {CODE_LIMIT}")
    split = {f"part{i}.bin": base64.b64encode(b"#" * (CODE_LIMIT // 4 + 1)).decode() for i in range(4)}
    body = {"name": "big", "files": {"handler.py": OK_CODE, **split}}
    json_error(srv.request("POST", "/system/functions", json_body=body), 400, f"size limit of {CODE_LIMIT}")
    many = {f"f{i}.txt": "" for i in range(1001)}
    body = {"name": "big", "files": {"handler.py": OK_CODE, **many}}
    json_error(srv.request("POST", "/system/functions", json_body=body), 400, "too many files")
    assert srv.request("GET", "/system/functions/big").status == 404


def _rss_kib(srv: Server) -> int:
    assert srv.proc is not None
    status = Path(f"/proc/{srv.proc.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])


@functools.cache
def bomb(encoding: str) -> bytes:
    zeros = b"\0" * (64 * 1024 * 1024)
    return gzip.compress(zeros, 9) if encoding == "gzip" else zlib.compress(zeros, 9)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("path", ["/function/probe", "/system/functions"])
def test_compressed_bomb_stops_at_the_body_limit(srv: Server, encoding: str, path: str) -> None:
    """Content-Encoding is decoded by aiohttp as it reads: 64 MiB of zeros in
    ~64 KiB is cut at the body limit (6 MiB), and the server's memory stays flat."""
    before = _rss_kib(srv)
    resp = srv.request(
        "POST", path, body=bomb(encoding), headers={"Content-Encoding": encoding, **JSON_HEADERS}
    )
    json_error(resp, 413)
    assert _rss_kib(srv) - before < 64 * 1024


def test_broken_content_encoding_is_400(srv: Server) -> None:
    resp = srv.invoke("probe", method="POST", body=b"not gzip", headers={"Content-Encoding": "gzip"})
    json_error(resp, 400, "content-encoding")


# -- slow clients ------------------------------------------------------------------


def test_slowloris_headers_are_cut_off(srv: Server) -> None:
    """One byte of headers every 0.25 s: the connection is closed once the header timeout passes."""
    t0 = time.monotonic()
    closed_after = None
    with connect(srv) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        for byte in b"X-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
                time.sleep(0.25)
                sock.settimeout(0.001)
                if sock.recv(1) == b"":
                    closed_after = time.monotonic() - t0
                    break
            except (BlockingIOError, TimeoutError):
                continue
            except OSError:
                closed_after = time.monotonic() - t0
                break
    assert closed_after is not None, "the server never closed a slowloris connection"
    assert HEADER_TIMEOUT_S - 0.5 < closed_after < HEADER_TIMEOUT_S + 2


def test_an_idle_connection_is_closed(srv: Server) -> None:
    with connect(srv) as sock:
        t0 = time.monotonic()
        assert read_all(sock) == b""
        assert time.monotonic() - t0 < HEADER_TIMEOUT_S + 2


def test_headers_in_pieces_within_the_timeout_are_served(srv: Server) -> None:
    resp = raw(srv, b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"Connection: close\r\n\r\n")
    assert resp.status == 200


@pytest.mark.parametrize("path", ["/system/functions", "/function/probe"])
def test_a_slow_body_is_408_json_within_the_body_timeout(srv: Server, path: str) -> None:
    with connect(srv) as sock:
        t0 = time.monotonic()
        sock.sendall(
            head("POST", path, "Content-Length: 1000", JSON_TYPE, host=own(srv)).replace(
                b"Connection: close\r\n", b""
            )
        )
        data = b""
        for _ in range(40):
            try:
                sock.sendall(b"{")
            except OSError:
                break
            sock.settimeout(0.25)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            data += chunk
            if not chunk or b"}" in chunk:
                break
        sock.settimeout(5)
        data += read_all(sock)
        resp = parse(data, t0)
    raw_json_error(resp, 408, f"within {BODY_TIMEOUT_S} s")
    assert resp.headers.get("connection", "").lower() == "close"
    assert resp.elapsed_s < BODY_TIMEOUT_S + 2


def test_a_client_that_disconnects_mid_body_leaves_no_trace(srv: Server) -> None:
    """The server has read the headers and part of the body when the client
    goes: it closes its end of the connection (no socket left in CLOSE_WAIT),
    deploys nothing and runs no call."""
    functions = srv.request("GET", "/system/functions").json()
    probe_calls = srv.request("GET", "/system/usage?function=probe").json()["totals"]["requests"]
    for path in ("/system/functions", "/function/probe"):
        with connect(srv) as sock:
            client_port = sock.getsockname()[1]
            sock.sendall(
                head("POST", path, "Content-Length: 1000", JSON_TYPE, host=own(srv)).replace(
                    b"Connection: close\r\n", b""
                )
            )
            wait_server_read(srv, sock)
            sock.sendall(b'{"name": "half')
            wait_server_read(srv, sock)
        wait_until(
            lambda port=client_port: port not in server_sockets(srv),
            10,
            f"the server to close its end of the connection from port {client_port}",
            detail=lambda: server_sockets(srv),
        )
    assert srv.request("GET", "/system/functions").json() == functions
    assert srv.request("GET", "/system/usage?function=probe").json()["totals"]["requests"] == probe_calls


def test_broken_chunked_encoding_after_the_headers_ends_with_the_body_timeout(srv: Server) -> None:
    """aiohttp's parser fails on the bad chunk but leaves the body of the request
    already dispatched waiting: only the body timeout ends it (408, JSON).
    Sent with the headers, the same chunk gets aiohttp's own plain 400."""
    start = head("POST", "/system/functions", "Transfer-Encoding: chunked", JSON_TYPE, host=own(srv))
    resp = raw(srv, start, b"zz\r\nabc\r\n0\r\n\r\n")
    raw_json_error(resp, 408, "request body not received")
    assert resp.elapsed_s < BODY_TIMEOUT_S + 2
    assert raw(srv, start + b"zz\r\nabc\r\n0\r\n\r\n").status == 400


# -- non-UTF-8 ------------------------------------------------------------------------


def test_non_utf8_deploy_body_is_400(srv: Server) -> None:
    for body in (b"\x80\x81\x82", b'{"name": "\xff", "files": {}}'):
        resp = srv.request(
            "POST", "/system/functions", body=body, headers={"Content-Type": "application/json"}
        )
        json_error(resp, 400, "UTF-8")


def test_non_utf8_query_strings_to_system_are_clear_errors(srv: Server) -> None:
    json_error(srv.request("GET", "/system/logs?name=%FF%FE"), 404, "not found")
    json_error(srv.request("GET", "/system/usage?function=%FF"), 400, "function name")
    json_error(srv.request("GET", "/system/usage?since=%FF"), 400, "since")
    json_error(srv.request("GET", "/system/logs?name=probe&tail=%FF"), 400, "tail")


def test_non_utf8_header_to_system_is_ignored(srv: Server) -> None:
    assert raw(srv, head("GET", "/system/functions", "X-A: \xff\xfe", host=own(srv))).status == 200


def test_invocations_pass_non_utf8_bodies_through(srv: Server) -> None:
    body = bytes(range(256)) * 64 + b"\xff\xfe\xc3\x28\xed\xa0\x80"
    resp = srv.invoke("probe", method="PUT", body=body, headers={"Content-Type": "text/plain; charset=utf-8"})
    assert resp.status == 200, resp.text
    assert resp.json() == {
        "sha256": hashlib.sha256(body).hexdigest(),
        "size": len(body),
        "path": "/",
        "x_a": None,
    }


def test_invocation_paths_may_hold_escaped_newlines_and_bytes(srv: Server) -> None:
    resp = srv.invoke("probe", "/a%0Ab/%FF")
    assert resp.status == 200, resp.text
    assert resp.json()["path"].startswith("/a\nb/")


def test_invocation_with_a_non_utf8_header_value_is_served(srv: Server) -> None:
    resp = raw(srv, head("GET", "/function/probe", "X-A: caf\xe9"))
    assert resp.status == 200, resp.body
