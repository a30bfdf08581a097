"""The gateway-invoker framing of a cluster's synchronous calls: one msgpack
map per call each way, on keep-alive HTTP/1.1 connections (POST
/internal/invoke, authenticated by the cluster token). Pure: no I/O.

A call travels as the Invocation the gateway made of the client's request
(query, headers less the server's token, body as bytes: no second parse);
its answer as the function's status, headers and body with how it was served.
Errors are not framed here: the invoker answers them as any error (JSON,
docs/HTTP-API.md) and the gateway relays status, message and headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from invoker.model import Invocation

PATH = "/internal/invoke"
CONTENT_TYPE = "application/vnd.faas.call+msgpack"
# The header that carries the cluster token (not Authorization: that one is
# the user's, and passes through to /system and to functions as it came).
TOKEN_HEADER = "X-Faas-Cluster-Token"
# The header naming the invoker that served a call, for clients and tests.
NODE_HEADER = "X-Faas-Node"


class WireError(ValueError):
    """A frame that is not a well-formed call or answer."""


@dataclass(frozen=True)
class RemoteResult:
    """A call's answer as an invoker sent it: what the gateway's response needs."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    wall_ms: float
    billed_ms: int
    cold: bool
    version: int


def encode_invocation(inv: Invocation) -> bytes:
    return msgpack.packb(
        {
            "f": inv.function,
            "id": inv.call_id,
            "m": inv.method,
            "p": inv.path,
            "q": inv.query,
            "h": inv.headers,
            "b": inv.body,
            "rq": inv.raw_query,
            "re": inv.raw_event,
            "ip": inv.source_ip,
            "a": inv.attempt,
        }
    )


def decode_invocation(frame: bytes, received_at: float) -> Invocation:
    """The call a gateway sent; `received_at`: this host's monotonic clock
    (the gateway's means nothing here)."""
    m = _map(frame)
    try:
        headers = tuple((str(k), str(v)) for k, v in m["h"])
        query = m["q"]
        if not isinstance(query, dict) or not all(isinstance(v, str) for v in query.values()):
            raise WireError("query must map names to strings")
        inv = Invocation(
            function=_str(m["f"]),
            call_id=_str(m["id"]),
            method=_str(m["m"]),
            path=_str(m["p"]),
            query=query,
            headers=headers,
            body=_bytes(m["b"]),
            received_at=received_at,
            raw_query=_str(m["rq"]),
            raw_event=bool(m["re"]),
            source_ip=_str(m["ip"]),
            attempt=int(m["a"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"malformed call frame: {exc}") from None
    return inv


def encode_result(result: Any) -> bytes:
    """An InvocationResult (or RemoteResult) as its answer frame."""
    return msgpack.packb(
        {
            "s": result.status,
            "h": result.headers,
            "b": result.body,
            "w": result.wall_ms,
            "bm": result.billed_ms,
            "c": result.cold,
            "v": result.version,
        }
    )


def decode_result(frame: bytes) -> RemoteResult:
    m = _map(frame)
    try:
        return RemoteResult(
            status=int(m["s"]),
            headers=tuple((str(k), str(v)) for k, v in m["h"]),
            body=_bytes(m["b"]),
            wall_ms=float(m["w"]),
            billed_ms=int(m["bm"]),
            cold=bool(m["c"]),
            version=int(m["v"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"malformed answer frame: {exc}") from None


def _map(frame: bytes) -> dict[str, Any]:
    try:
        m = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise WireError(f"not a msgpack frame: {exc}") from None
    if not isinstance(m, dict):
        raise WireError("a frame must be a map")
    return m


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise WireError(f"expected a string, got {type(value).__name__}")
    return value


def _bytes(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise WireError(f"expected bytes, got {type(value).__name__}")
    return value
