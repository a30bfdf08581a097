"""gateway/limits.py and gateway/errors.py in process, without a sandbox: header
and URL limits, the body deadline, and every error answered as JSON."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request

from gateway.config import ConfigError, ServerConfig
from gateway.errors import HeadersTooLarge, UriTooLong, error_middleware
from gateway.limits import URL_LIMIT, check_head, handler_args, make_limits_middleware
from invoker.errors import BadRequest
from sandbox.response import HEADER_FIELD_LIMIT

from .raw_http import exchange

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")


def test_check_head_accepts_ordinary_requests() -> None:
    check_head(make_mocked_request("GET", "/x?" + "a" * 1000, headers={"Cookie": "c" * 4000}))


def test_check_head_limits() -> None:
    with pytest.raises(UriTooLong, match="request target"):
        check_head(make_mocked_request("GET", "/" + "a" * URL_LIMIT))
    with pytest.raises(HeadersTooLarge, match="X-Big"):
        check_head(make_mocked_request("GET", "/", headers={"X-Big": "a" * HEADER_FIELD_LIMIT}))
    with pytest.raises(HeadersTooLarge, match="headers of"):
        check_head(make_mocked_request("GET", "/", headers={f"X-{i}": "a" * 4000 for i in range(9)}))
    with pytest.raises(HeadersTooLarge, match="header fields"):
        check_head(make_mocked_request("GET", "/", headers={f"X-{i}": "a" for i in range(101)}))


def test_handler_args_raise_the_parser_caps_above_the_gateway_limits() -> None:
    args = handler_args(ServerConfig(header_timeout_s=7))
    assert args["keepalive_timeout"] == 7
    assert args["max_line_size"] > URL_LIMIT and args["max_field_size"] > HEADER_FIELD_LIMIT


@pytest.mark.parametrize("value", [0, -1, "5", True, None])
def test_timeouts_must_be_positive_numbers(value: Any) -> None:
    for key in ("header_timeout_s", "body_timeout_s"):
        with pytest.raises(ConfigError, match=key):
            ServerConfig(**{key: value}).check()


async def _read(request: web.Request) -> web.Response:
    return web.json_response({"size": len(await request.read())})


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


async def _bad(request: web.Request) -> web.Response:
    raise BadRequest("precise message")


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application(
        middlewares=[error_middleware, make_limits_middleware(0.5)], handler_args=handler_args(ServerConfig())
    )
    app.router.add_post("/read", _read)
    app.router.add_get("/boom", _boom)
    app.router.add_get("/bad", _bad)
    srv = TestServer(app)
    await srv.start_server()
    yield srv
    await srv.close()


def _req(method: str, path: str, *headers: str) -> bytes:
    return "\r\n".join(
        [f"{method} {path} HTTP/1.1", "Host: t", *headers, "Connection: close", "", ""]
    ).encode()


async def test_errors_are_json_with_a_call_id(server: TestServer) -> None:
    for path, status, message in [
        ("/boom", 500, "internal error in the gateway"),
        ("/bad", 400, "precise message"),
        ("/nope", 404, "Not Found"),
    ]:
        code, headers, body = await exchange(server, _req("GET", path))
        assert (code, body["error"]) == (status, message)
        assert body["call_id"] == headers["x-call-id"]
    code, headers, body = await exchange(server, _req("PUT", "/read"))
    assert code == 405 and headers["allow"] == "POST" and body["error"] == "Method Not Allowed"


async def test_a_body_that_arrives_in_time_is_read(server: TestServer) -> None:
    code, _, body = await exchange(
        server, _req("POST", "/read", "Content-Length: 4"), b"ab", b"cd", pause_s=0.1
    )
    assert (code, body) == (200, {"size": 4})


async def test_a_slow_body_is_408_and_closes_the_connection(server: TestServer) -> None:
    start = asyncio.get_running_loop().time()
    code, headers, body = await exchange(server, _req("POST", "/read", "Content-Length: 100"), b"ab")
    assert code == 408 and "within 0.5 s" in body["error"]
    assert headers["connection"] == "close"
    assert asyncio.get_running_loop().time() - start < 2


async def test_a_huge_header_is_431_json(server: TestServer) -> None:
    code, _, body = await exchange(server, _req("GET", "/bad", "X-Big: " + "a" * 9000))
    assert code == 431 and "X-Big" in body["error"]
