"""The one place errors become HTTP responses: JSON {"error", "call_id"},
with the status the table below gives each kind of error."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from invoker.errors import (
    BadRequest,
    CallTimedOut,
    CallTimeout,
    Conflict,
    CpuBudgetExceeded,
    FaasError,
    InitError,
    LayerBuildFailed,
    LayerUnavailable,
    NotFound,
    PayloadTooLarge,
    SandboxDied,
    SecretMissing,
    SetupError,
    SpawnError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)

log = logging.getLogger("faas.gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class UriTooLong(FaasError):
    """A URL over 8 KiB."""


class HeadersTooLarge(FaasError):
    """A header over 8 KiB, all of them over 32 KiB, or more than 100."""


class ForeignOrigin(FaasError):
    """A /system request made by a web page of another site (CSRF)."""


class UnsupportedMediaType(FaasError):
    """A state-changing /system request whose body is not declared JSON: what
    an HTML form or a no-preflight fetch() of another site would send."""


class MisdirectedRequest(FaasError):
    """A /system request whose Host does not name this server (DNS rebinding)."""


class RequestTimeout(FaasError, TimeoutError):
    """The body did not arrive in time. Also a TimeoutError, so that aiohttp,
    draining the rest of the body after the response, just closes the
    connection."""


class BadGateway(FaasError):
    """A cluster's invoker failed during a call: it died or its answer broke
    off. The call may have run; it is not tried elsewhere."""


class Relayed(FaasError):
    """An error a cluster's invoker answered, passed on with its status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


HTTP_STATUS: dict[type[FaasError], int] = {
    BadRequest: 400,
    LayerBuildFailed: 400,
    Unauthorized: 401,
    NotFound: 404,
    ForeignOrigin: 403,
    RequestTimeout: 408,
    Conflict: 409,
    PayloadTooLarge: 413,
    UriTooLong: 414,
    UnsupportedMediaType: 415,
    MisdirectedRequest: 421,
    TooManyRequests: 429,
    HeadersTooLarge: 431,
    # The function failed: its init raised (a handler that raises is a 500 from its sandbox).
    InitError: 500,
    # A version's secret was deleted since it was deployed: it cannot start.
    SecretMissing: 500,
    # The sandbox died: out of memory, crashed, exited, broke the protocol, or failed its setup.
    SandboxDied: 502,
    BadGateway: 502,
    SetupError: 502,
    Unavailable: 503,
    # A version's layer could not be fetched from the cluster's database, or was refused.
    LayerUnavailable: 503,
    SpawnError: 503,
    CallTimeout: 504,
    CallTimedOut: 504,
    CpuBudgetExceeded: 504,
}


def http_status(exc: FaasError) -> int:
    """The status of an error: its own kind's, else its nearest base's, else 500."""
    if isinstance(exc, Relayed):
        return exc.status
    for kind in type(exc).__mro__:
        status = HTTP_STATUS.get(kind)
        if status is not None:
            return status
    return 500


def new_call_id() -> str:
    """A random (version 4) UUID as str(uuid.uuid4()) writes it, without
    building the UUID object: this runs for every request."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def error_response(
    status: int, message: str, call_id: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": message, "call_id": call_id},
        status=status,
        headers={"X-Call-Id": call_id, **(headers or {})},
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await answer_errors(request, handler)


async def answer_errors(
    request: web.Request, handler: Callable[..., Awaitable[web.StreamResponse]], *args: Any
) -> web.StreamResponse:
    """`handler(request, *args)`'s response, or the error response of what it
    raised; the request gets its call id first. The error middleware, and
    the fast path of /function/* (gateway/fast_path.py) calls it directly."""
    call_id = request.get("call_id") or new_call_id()
    request["call_id"] = call_id
    try:
        response = await handler(request, *args)
    except FaasError as exc:
        response = error_response(http_status(exc), exc.message, call_id, exc.headers)
        if isinstance(exc, RequestTimeout):
            response.force_close()
        return response
    except web.RequestPayloadError as exc:  # e.g. a body that does not match its Content-Encoding
        # Close rather than let aiohttp drain the broken body (which raises again).
        request.content.feed_eof()
        response = error_response(400, f"request body could not be read: {exc}", call_id)
        response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        if exc.status == 413:
            message = f"request body too large: {exc.text}"
        return error_response(
            exc.status, message, call_id, {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        )
    except ConnectionResetError:
        if request.transport is not None and not request.transport.is_closing():
            log.exception("unhandled error in %s %s", request.method, request.path)
            return error_response(500, "internal error in the gateway", call_id)
        log.info("client closed the connection during %s %s", request.method, request.path)
        return error_response(400, "the client closed the connection before its request was read", call_id)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal error in the gateway", call_id)
    if not response.prepared:
        response.headers.setdefault("X-Call-Id", call_id)
    return response
