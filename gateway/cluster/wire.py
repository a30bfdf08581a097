"""The gateway-invoker framing of a cluster's synchronous calls. Pure: no I/O.

A gateway keeps one WebSocket to each invoker (GET /internal/channel, the
cluster token in the handshake) and sends many calls over it at once, each
a binary message `[id, call]`; the invoker answers each with `[id, status,
answer]` in whatever order the calls end. A call travels as the Invocation
the gateway made of the client's request (query, headers less the server's
token, body as bytes: no second parse); its answer (status 200) as the
function's status, headers and body with how it was served, or (any other
status) as the error the invoker would have answered: message and headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from invoker.model import Invocation

PATH = "/internal/channel"
# The header that carries the cluster token (not Authorization: that one is
# the user's, and passes through to /system and to functions as it came).
TOKEN_HEADER = "X-Faas-Cluster-Token"
# The header naming the invoker that served a call, for clients and tests.
NODE_HEADER = "X-Faas-Node"


class WireError(ValueError):
    """A frame that is not a well-formed call or answer."""


# Call number 0 is the channel's own: an invoker shutting down says goodbye
# with it (a failure, 503, naming the last call it read).
GOODBYE_NUMBER = 0


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


@dataclass(frozen=True)
class Failure:
    """An error an invoker answered for a call: its HTTP status, message, headers."""

    status: int
    message: str
    headers: dict[str, str]


def encode_call(number: int, inv: Invocation) -> bytes:
    return msgpack.packb([number, _invocation_map(inv)])


def decode_call(message: bytes, received_at: float) -> tuple[int, Invocation]:
    """The call a gateway sent; `received_at`: this host's monotonic clock
    (the gateway's means nothing here)."""
    number, call = _pair(message)
    return number, _invocation(call, received_at)


def encode_answer(number: int, result: Any) -> bytes:
    """An InvocationResult (or RemoteResult) as the answer to call `number`."""
    return msgpack.packb([number, 200, _result_map(result)])


def encode_failure(number: int, status: int, message: str, headers: dict[str, str]) -> bytes:
    return msgpack.packb([number, status, {"e": message, "h": headers}])


def decode_reply(message: bytes) -> tuple[int, RemoteResult | Failure]:
    m = _unpack(message)
    if not isinstance(m, list) or len(m) != 3 or not isinstance(m[0], int) or not isinstance(m[1], int):
        raise WireError("an answer must be [id, status, answer]")
    number, status, answer = m
    if not isinstance(answer, dict):
        raise WireError("an answer's body must be a map")
    if status == 200:
        return number, _result(answer)
    try:
        return number, Failure(status, str(answer["e"]), {str(k): str(v) for k, v in answer["h"].items()})
    except (KeyError, AttributeError) as exc:
        raise WireError(f"malformed failure: {exc}") from None


def _invocation_map(inv: Invocation) -> dict[str, Any]:
    return {
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


def _invocation(m: Any, received_at: float) -> Invocation:
    if not isinstance(m, dict):
        raise WireError("a call must be a map")
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


def _result_map(result: Any) -> dict[str, Any]:
    return {
        "s": result.status,
        "h": result.headers,
        "b": result.body,
        "w": result.wall_ms,
        "bm": result.billed_ms,
        "c": result.cold,
        "v": result.version,
    }


def _result(m: dict[str, Any]) -> RemoteResult:
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


def _unpack(frame: bytes) -> Any:
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise WireError(f"not a msgpack frame: {exc}") from None


def _pair(message: bytes) -> tuple[int, Any]:
    m = _unpack(message)
    if not isinstance(m, list) or len(m) != 2 or not isinstance(m[0], int):
        raise WireError("a call must be [id, call]")
    return m[0], m[1]


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise WireError(f"expected a string, got {type(value).__name__}")
    return value


def _bytes(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise WireError(f"expected bytes, got {type(value).__name__}")
    return value


def goodbye(last_read: int) -> bytes:
    """An invoker shutting down: it read no call after `last_read` and never will."""
    return encode_failure(GOODBYE_NUMBER, 503, "the invoker is shutting down", {"last-read": str(last_read)})
