"""gateway/fast_path.py: /function/* served past the router gives the
handler exactly what the routes would, with the same limits and error
answers; everything else still goes the routed way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config import ServerConfig
from gateway.errors import error_middleware
from gateway.fast_path import add_function_routes, function_target
from gateway.limits import handler_args, make_limits_middleware
from invoker.errors import NotFound

from .raw_http import exchange

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

BODY_TIMEOUT_S = 0.5
TARGETS = [
    "/function/hello",
    "/function/hello/",
    "/function/hello@2/a/b",
    "/function/hello@live/a%2Fb%25c/d",
    "/function/h%20i/x%0Ay",
    "/function/h%C3%A9/%E2%82%AC?q=1&r=%2F",
    "/function/name/with//double/slashes/",
    "/function/%2e%2e/x",
    "/function/",
    "/function",
    "/functions/x",
    "/function/a{b}/c",
]


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application(
        middlewares=[error_middleware, make_limits_middleware(BODY_TIMEOUT_S)],
        handler_args=handler_args(ServerConfig()),
    )

    async def handler(request: web.Request, name: str, path: str) -> web.Response:
        if name == "missing":
            raise NotFound("function 'missing' not found")
        body = await request.read()
        return web.json_response(
            {"name": name, "path": path, "routed": request._match_info is not None, "size": len(body)}
        )

    add_function_routes(app, handler, BODY_TIMEOUT_S)
    srv = TestServer(app)
    await srv.start_server()
    yield srv
    await srv.close()


async def _status_body(srv: TestServer, data: bytes, *more: bytes, pause_s: float = 0.0) -> tuple[int, Any]:
    status, _, body = await exchange(srv, data, *more, pause_s=pause_s)
    return status, body


def _req(target: str, *headers: str, method: str = "GET", body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: t", *headers, f"Content-Length: {len(body)}"]
    return "\r\n".join([*lines, "Connection: close", "", ""]).encode() + body


@pytest.mark.parametrize("target", TARGETS)
async def test_the_handler_gets_what_the_routes_give(server: TestServer, target: str) -> None:
    # Expect sends a request the routed way: the router's own match is the reference.
    routed = await _status_body(server, _req(target, "Expect: 100-continue"))
    fast = await _status_body(server, _req(target))
    if routed[0] == 200:
        assert routed[1].pop("routed") is True
        assert fast[1].pop("routed") is False, "the fast path was not taken"
    else:  # the router's 404, with a call id of its own each time
        assert routed[1].pop("call_id") and fast[1].pop("call_id")
    assert fast == routed


def test_function_target_decodes_as_the_router_does() -> None:
    assert function_target("/function/f") == ("f", "/")
    assert function_target("/function/f@3/a%2Fb%25") == ("f@3", "/a/b%")
    assert function_target("/function/") is None
    assert function_target("/system/functions") is None


async def test_errors_and_limits_hold_on_the_fast_path(server: TestServer) -> None:
    status, body = await _status_body(server, _req("/function/missing"))
    assert status == 404 and body["error"] == "function 'missing' not found" and body["call_id"]
    status, body = await _status_body(server, _req("/function/f/" + "a" * 9000))
    assert status == 414 and "request target" in body["error"]
    status, body = await _status_body(server, _req("/function/f", "X-Big: " + "b" * 17000))
    assert status == 400  # over the parser's own cap: aiohttp's plain answer
    # A body that stops arriving gets 408 once body_timeout_s has passed.
    head = _req("/function/f", method="POST")[: -len(b"Connection: close\r\n\r\n")]
    head = head.replace(b"Content-Length: 0", b"Content-Length: 10")
    status, body = await _status_body(server, head + b"Connection: close\r\n\r\n", b"12345", pause_s=0.1)
    assert status == 408 and "not received within" in body["error"]
    status, body = await _status_body(server, _req("/function/f", method="POST", body=b"x" * 1000))
    assert status == 200 and body["size"] == 1000 and body["routed"] is False


async def test_other_paths_are_routed(server: TestServer) -> None:
    status, body = await _status_body(server, _req("/system/functions"))
    assert status == 404 and body["call_id"]
