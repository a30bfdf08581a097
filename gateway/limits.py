"""Limits on what a client may send before a handler runs: the size of the
request line and headers, and how long headers and body may take to arrive.

aiohttp's parser answers requests over its own limits itself, in plain text,
before any middleware. So its hard caps (PARSER_*) sit above the gateway's
(URL_LIMIT, and sandbox.response's HEADER_*, which bound response headers
too), and the gateway answers everything between them with a JSON error
(414, 431). Only a request over the parser's caps, or one that is
not HTTP at all, still gets aiohttp's plain-text 400 and a closed connection.

Slow headers: aiohttp's keep-alive timer starts when a connection opens and
after each response, and closes a connection still waiting for a complete
request when it fires, so `keepalive_timeout` = header_timeout_s bounds both
idle keep-alive connections and clients that trickle headers (slowloris).
Slow bodies: the middleware gives each body body_timeout_s from the time its
headers arrived; past that the reader gets RequestTimeout (408).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from sandbox.response import header_size_problem

from .config import ServerConfig
from .errors import Handler, HeadersTooLarge, RequestTimeout, UriTooLong

URL_LIMIT = 8 * 1024
PARSER_LINE_LIMIT = 16 * 1024
PARSER_HEADER_COUNT = 128


def handler_args(config: ServerConfig) -> dict[str, Any]:
    """Keyword arguments of aiohttp's RequestHandler (web.Application(handler_args=...))."""
    return {
        "max_line_size": PARSER_LINE_LIMIT,
        "max_field_size": PARSER_LINE_LIMIT,
        "max_headers": PARSER_HEADER_COUNT,
        "keepalive_timeout": config.header_timeout_s,
    }


def check_head(request: web.BaseRequest) -> None:
    url = len(request.raw_path)
    if url > URL_LIMIT:
        raise UriTooLong(f"request target of {url} bytes is over the limit of {URL_LIMIT} bytes")
    problem = header_size_problem(request.raw_headers)
    if problem:
        raise HeadersTooLarge(problem)


def make_limits_middleware(body_timeout_s: float) -> web.Middleware:  # type: ignore[name-defined]
    @web.middleware
    async def limits(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await within_limits(request, body_timeout_s, handler)

    return limits


async def within_limits(
    request: web.Request,
    body_timeout_s: float,
    handler: Callable[..., Awaitable[web.StreamResponse]],
    *args: Any,
) -> web.StreamResponse:
    """`handler(request, *args)` once the request's head is within the
    limits, its body given body_timeout_s to arrive. The limits middleware,
    and the fast path of /function/* (gateway/fast_path.py) calls it directly."""
    check_head(request)
    content = request.content
    if content.is_eof():
        return await handler(request, *args)

    def expire() -> None:
        if not content.is_eof():
            content.set_exception(RequestTimeout(f"request body not received within {body_timeout_s:g} s"))

    timer = asyncio.get_running_loop().call_later(body_timeout_s, expire)
    try:
        return await handler(request, *args)
    finally:
        timer.cancel()
