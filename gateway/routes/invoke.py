"""ANY /function/{name}[/{path}]: a synchronous invocation. `name` may be
NAME@VERSION or NAME@ALIAS (the invoker routes it)."""

from __future__ import annotations

import hmac
import time
from typing import Any

from aiohttp import web

from invoker.errors import FaasError
from invoker.invoker import Invoker
from invoker.metrics import Metrics
from invoker.model import VERSION_HEADER, Invocation

from ..bodies import BufferedBodies
from ..errors import http_status
from ..fast_path import FunctionHandler

# Set by aiohttp for the response it writes; a function may not override them.
HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive", "upgrade", "x-call-id"}
# What the gateway says about the call: a function's own header of these names gives way.
SET_BY_GATEWAY = frozenset(
    HOP_BY_HOP | {"x-duration-ms", "x-billed-duration-ms", "x-cold-start", VERSION_HEADER.lower()}
)


def _text(value: str) -> str:
    """aiohttp keeps header bytes that are not UTF-8 as surrogate escapes,
    which cannot travel as text: read those bytes as Latin-1 (RFC 9110's
    obs-text) instead."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("latin-1")


def _field_text(raw: bytes) -> str:
    """A header value as it arrived: UTF-8, or Latin-1 (RFC 9110's obs-text)
    for bytes that are not UTF-8; what _text gives for aiohttp's decoding of it."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def request_headers(request: web.BaseRequest) -> tuple[tuple[str, str], ...]:
    """The request's header fields in order, decoded straight from the bytes
    that arrived (one pass, no multidict)."""
    return tuple(
        (name.decode("utf-8", "surrogateescape"), _field_text(value)) for name, value in request.raw_headers
    )


def without_server_token(
    headers: tuple[tuple[str, str], ...], token: str | None
) -> tuple[tuple[str, str], ...]:
    """The request headers less any Authorization header that carries the
    server's own token (`Bearer TOKEN`, any case of the scheme, or the bare
    token): a function must never see the key to /system. Other Authorization
    values are the function's business and pass. An exact match only, in
    constant time: a function echoing its headers must not become an oracle
    that tells a caller how much of a guess is right."""
    if not token:
        return headers
    expected = token.encode("utf-8", "surrogateescape")
    kept = []
    for name, value in headers:
        if name.lower() == "authorization" and _carries(value, expected):
            continue
        kept.append((name, value))
    return tuple(kept)


def _carries(value: str, expected: bytes) -> bool:
    raw = value.strip()
    scheme, _, credential = raw.partition(" ")
    if scheme.lower() != "bearer":
        credential = ""
    # Both comparisons always run: how long this takes says nothing about which matched.
    bare = hmac.compare_digest(raw.encode("utf-8", "surrogateescape"), expected)
    bearer = hmac.compare_digest(credential.strip().encode("utf-8", "surrogateescape"), expected)
    return bare or bearer


def invocation_of(
    request: web.Request, name: str, body: bytes, received: float, token: str | None, path: str
) -> Invocation:
    """The Invocation of an HTTP request to a function (synchronous or
    asynchronous): its query, headers (less the server's token) and body."""
    return Invocation(
        function=name,
        call_id=request["call_id"],
        method=request.method,
        path=path,
        query={k: _text(v) for k, v in request.query.items()},
        headers=without_server_token(request_headers(request), token),
        body=body,
        received_at=received,
        raw_query=request.rel_url.raw_query_string,
        source_ip=request.remote or "",
    )


def make_invoke_handler(
    invoker: Invoker, metrics: Metrics, bodies: BufferedBodies, max_body_bytes: int, token: str | None = None
) -> FunctionHandler:
    async def invoke(request: web.Request, name: str, path: str) -> web.StreamResponse:
        received = time.monotonic()
        call_id: str = request["call_id"]
        # 503 while draining, 404 for no such function, version or alias, 429
        # when full: all before a byte of the body is read.
        function = invoker.admit(name).name
        code = 500
        try:
            if request.body_exists:
                async with bodies.read(request, max_body_bytes) as body:
                    result = await invoker.invoke(invocation_of(request, name, body, received, token, path))
            else:  # nothing to read or to count against the bound
                result = await invoker.invoke(invocation_of(request, name, b"", received, token, path))
            code = result.status
        except FaasError as exc:
            code = http_status(exc)
            raise
        finally:
            metrics.invocation_done(function, code, time.monotonic() - received)
        return result_response(result, call_id)

    return invoke


def result_response(result: Any, call_id: str) -> web.Response:
    """The HTTP response of a call's answer (an InvocationResult here, a
    cluster invoker's RemoteResult at a gateway): the function's status,
    headers and body, and how it was served."""
    # One list, made into the response's multidict once.
    headers = [(k, v) for k, v in result.headers if k.lower() not in SET_BY_GATEWAY]
    headers += (
        ("X-Call-Id", call_id),
        ("X-Duration-Ms", f"{result.wall_ms:.3f}"),
        ("X-Billed-Duration-Ms", str(result.billed_ms)),
        ("X-Cold-Start", "true" if result.cold else "false"),
        (VERSION_HEADER, str(result.version)),
    )
    return web.Response(status=result.status, body=result.body, headers=headers)
