"""The sandbox wire protocol: every message between the invoker, the zygote
and a sandbox as a frozen dataclass, how it is framed, and the size caps.

Pure: no I/O (sandbox/frames.py and sandbox/instance.py move the bytes).
A frame is a 4-byte big-endian length, then a msgpack map whose "t" names
the message. The invoker trusts nothing a sandbox sends: every message a
sandbox can send is type-checked here, field by field, and anything else is
a ProtocolError. The in-sandbox runtime imports this module too, so it
imports nothing of the host side.

    invoker -> sandbox   Specialize (with the code's mount fd), Call
    sandbox -> invoker   Blank, SetupFailed, Ready, InitFailed, Result
    invoker <-> zygote   SpawnRequest (with the channel fd), SpawnReply
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .response import HEADER_COUNT_LIMIT, HEADERS_TOTAL_LIMIT, response_header_problem, valid_header
from .spec import FunctionSpec, SandboxSpec

HEADER = struct.Struct(">I")
# Larger than any legal request or response (bodies are capped at 6 MiB,
# logs at 64 KiB), small enough that a garbage length is rejected before we
# allocate: a sandbox cannot make the server hold more than this per call.
MAX_FRAME_BYTES = 8 * 1024 * 1024
MAX_BODY_BYTES = 6 * 1024 * 1024
# Containers a legitimate message holds: a few keys, headers, a query.
# Without these bounds a small frame of many empty containers decodes into
# hundreds of MiB of Python objects (4 MiB of empty maps: ~300 MiB).
MAX_CONTAINER_LEN = 16384
# Strings are headers, paths, logs (capped at 64 KiB) and error messages;
# bodies are bytes. A longer string is a sandbox lying about its output.
MAX_STR_LEN = 256 * 1024
# A zygote request is a SandboxSpec: a few KiB.
MAX_CONTROL_BYTES = 1 << 20
# What a call may print that is kept (then one truncation marker line).
LOG_CAP_BYTES = 64 * 1024
TRUNCATION_MARKER = "[faas] log output truncated: more than 64 KiB in this call\n"
# The output area: a memfd the invoker hands a sandbox with Specialize. The
# runtime mirrors what the current call printed there (a little-endian
# length, then the bytes), so what a call printed before its sandbox was
# killed (timeout, out of memory) is not lost with it.
OUTPUT_LENGTH = struct.Struct("<I")
OUTPUT_AREA_BYTES = OUTPUT_LENGTH.size + LOG_CAP_BYTES

Stamps = tuple[tuple[str, float], ...]
# A function's secrets as (name, value): they travel only in Specialize.
Secrets = tuple[tuple[str, bytes], ...]


class ProtocolError(Exception):
    """The peer broke the protocol: bad length, bad msgpack, not a message,
    or a message whose fields do not have the types they must have."""


# -- framing --------------------------------------------------------------


# One packer for the process (packb makes a new one per call); both sides
# pack on one thread.
_PACKER = msgpack.Packer(use_bin_type=True)


def encode(message: dict[str, Any]) -> bytes:
    payload = _PACKER.pack(message)
    if len(payload) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    return HEADER.pack(len(payload)) + payload


def check_length(length: int) -> int:
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame length {length} exceeds {MAX_FRAME_BYTES}")
    return length


def decode_payload(payload: bytes | memoryview) -> dict[str, Any]:
    try:
        message = msgpack.unpackb(
            payload,
            raw=False,
            max_array_len=MAX_CONTAINER_LEN,
            max_map_len=MAX_CONTAINER_LEN,
            max_str_len=MAX_STR_LEN,
        )
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"undecodable frame: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ProtocolError("frame is not a message map")
    return message


# -- field checks: a sandbox's messages are untrusted -------------------------


def _str(msg: dict[str, Any], key: str, default: str | None = None) -> str:
    value = msg.get(key, default)
    if not isinstance(value, str):
        raise ProtocolError(f"{msg['t']}.{key} must be a string")
    return value


def _stamps(msg: dict[str, Any]) -> Stamps:
    raw = msg.get("stamps", [])
    if not isinstance(raw, list) or not all(
        isinstance(s, list) and len(s) == 2 and isinstance(s[0], str) and isinstance(s[1], (int, float))
        for s in raw
    ):
        raise ProtocolError(f"{msg['t']}.stamps must be a list of [stage, time]")
    return tuple((stage, float(t)) for stage, t in raw)


def _headers(raw: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list) or not all(
        isinstance(h, list)
        and len(h) == 2
        and isinstance(h[0], str)
        and isinstance(h[1], str)
        and valid_header(h[0], h[1])
        for h in raw
    ):
        raise ProtocolError("headers must be a list of valid [name, value] header strings")
    return tuple((k, v) for k, v in raw)


# Response header fields already checked, with their size on the wire: a
# function answers with the same few fields call after call, so a warm call
# checks each with one lookup. Bounded: past the cap, new fields are checked
# every time instead of remembered.
_CHECKED_FIELDS: dict[tuple[str, str], int] = {}
CHECKED_FIELDS_CAP = 4096


def _response_headers(raw: Any) -> tuple[tuple[str, str], ...]:
    """A Result's headers, checked as _headers and response_header_problem
    check them (the same errors: any field not seen before takes that path)."""
    if type(raw) is list and len(raw) <= HEADER_COUNT_LIMIT:
        total = 0
        try:
            for h in raw:
                if type(h) is not list or len(h) != 2:
                    break
                total += _CHECKED_FIELDS[h[0], h[1]]
            else:
                if total <= HEADERS_TOTAL_LIMIT:
                    return tuple((h[0], h[1]) for h in raw)
        except (KeyError, TypeError):  # not seen before, or not even hashable
            pass
    headers = _headers(raw)
    problem = response_header_problem(headers)
    if problem is not None:
        raise ProtocolError(problem)
    for name, value in headers:
        if len(_CHECKED_FIELDS) < CHECKED_FIELDS_CAP:
            _CHECKED_FIELDS[name, value] = len(name.encode()) + len(value.encode()) + 4
    return headers


# -- sandbox -> invoker --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Blank:
    """Setup done (namespaces, root, fds): ready to be specialized."""

    stamps: Stamps = ()

    def to_wire(self) -> dict[str, Any]:
        return {"t": "blank", "stamps": [list(s) for s in self.stamps]}


@dataclass(frozen=True, slots=True)
class SetupFailed:
    error: str

    def to_wire(self) -> dict[str, Any]:
        return {"t": "setup_error", "error": self.error}


@dataclass(frozen=True, slots=True)
class Ready:
    """The handler is imported; calls may come."""

    logs: str = ""
    stamps: Stamps = ()

    def to_wire(self) -> dict[str, Any]:
        return {"t": "ready", "logs": self.logs, "stamps": [list(s) for s in self.stamps]}


@dataclass(frozen=True, slots=True)
class InitFailed:
    """The handler's module raised while loading, or has no entry."""

    error: str
    logs: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"t": "init_error", "error": self.error, "logs": self.logs}


@dataclass(frozen=True, slots=True)
class Result:
    """A call's answer. `error` is set when the handler raised or returned
    something unsupported (status is then 500)."""

    id: str
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    error: str | None = None
    logs: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {
            "t": "result",
            "id": self.id,
            "status": self.status,
            "headers": self.headers,
            "body": self.body,
            "error": self.error,
            "logs": self.logs,
        }


def _result(msg: dict[str, Any]) -> Result:
    """Exactly the types the runtime sends: a number as the body would make
    us allocate that many bytes; a status outside 200-599 would be sent as a
    broken (or non-final) status line."""
    status, body, error = msg.get("status"), msg.get("body"), msg.get("error")
    if type(status) is not int or not 200 <= status <= 599:
        raise ProtocolError("result.status must be an integer from 200 to 599")
    if not isinstance(body, bytes) or len(body) > MAX_BODY_BYTES:
        raise ProtocolError(f"result.body must be bytes, at most {MAX_BODY_BYTES}")
    if not (error is None or isinstance(error, str)):
        raise ProtocolError("result.error must be a string or nil")
    headers = _response_headers(msg.get("headers"))
    return Result(_str(msg, "id"), status, headers, body, error, _str(msg, "logs", ""))


# -- invoker -> sandbox --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Specialize:
    """Become an instance of `function`; the code's read-only mount and the
    output area travel with it as file descriptors, in that order."""

    function: FunctionSpec
    # Never shown: not in a repr, a log line or an error.
    secrets: Secrets = field(default=(), repr=False)

    def to_wire(self) -> dict[str, Any]:
        return {
            "t": "specialize",
            "function": self.function.to_wire(),
            "secrets": [list(secret) for secret in self.secrets],
        }


@dataclass(frozen=True, slots=True)
class Call:
    id: str
    method: str
    path: str
    query: dict[str, str]
    headers: tuple[tuple[str, str], ...]
    body: bytes
    # time.monotonic() by which the call must end (the clock is the host's:
    # a sandbox has no time namespace).
    deadline: float
    # The query string as sent (a Lambda event's rawQueryString).
    raw_query: str = ""
    # The client's address (a Lambda event's requestContext.http.sourceIp).
    source_ip: str = ""
    # A Lambda Invoke API call: the body is the event itself.
    raw: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {
            "t": "call",
            "id": self.id,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body,
            "deadline": self.deadline,
            "raw_query": self.raw_query,
            "source_ip": self.source_ip,
            "raw": self.raw,
        }


Message = Blank | SetupFailed | Ready | InitFailed | Result | Specialize | Call

_FROM_SANDBOX = {
    "blank": lambda m: Blank(_stamps(m)),
    "setup_error": lambda m: SetupFailed(_str(m, "error", "")),
    "ready": lambda m: Ready(_str(m, "logs", ""), _stamps(m)),
    "init_error": lambda m: InitFailed(_str(m, "error", ""), _str(m, "logs", "")),
    "result": _result,
}


def parse_from_sandbox(msg: dict[str, Any]) -> Blank | SetupFailed | Ready | InitFailed | Result:
    """A decoded frame from a sandbox as its message; ProtocolError if it is
    not one a sandbox may send or a field has the wrong type."""
    parse = _FROM_SANDBOX.get(msg["t"])
    if parse is None:
        raise ProtocolError(f"a sandbox cannot send {msg['t']!r}")
    return parse(msg)


def parse_from_invoker(msg: dict[str, Any]) -> Specialize | Call:
    """A decoded frame from the invoker (trusted: only shapes are checked)."""
    if msg["t"] == "call":
        return Call(
            msg["id"],
            msg["method"],
            msg["path"],
            msg["query"],
            tuple(map(tuple, msg["headers"])),
            msg["body"],
            float(msg["deadline"]),
            msg["raw_query"],
            msg["source_ip"],
            msg["raw"],
        )
    if msg["t"] == "specialize":
        secrets = tuple((name, value) for name, value in msg.get("secrets", ()))
        return Specialize(FunctionSpec.from_wire(msg["function"]), secrets)
    raise ProtocolError(f"unexpected message {msg['t']!r}")


def pack(message: Message) -> bytes:
    """One framed message, ready to write."""
    return encode(message.to_wire())


# -- invoker <-> zygote (one SEQPACKET datagram each, no length prefix) -----------


# The zygote's first datagram: it has imported and prepared everything.
ZYGOTE_READY = b"ready"


@dataclass(frozen=True, slots=True)
class SpawnRequest:
    id: int
    spec: SandboxSpec

    def pack(self) -> bytes:
        return msgpack.packb({"id": self.id, "spec": self.spec.to_wire()}, use_bin_type=True)

    @classmethod
    def unpack(cls, data: bytes) -> SpawnRequest:
        message = msgpack.unpackb(data)
        return cls(message["id"], SandboxSpec.from_wire(message["spec"]))


@dataclass(frozen=True, slots=True)
class SpawnReply:
    """The sandbox's host pid, or why it could not be made."""

    id: int | None
    pid: int = 0
    error: str | None = None

    def pack(self) -> bytes:
        return msgpack.packb({"id": self.id, "pid": self.pid, "error": self.error})

    @classmethod
    def unpack(cls, data: bytes) -> SpawnReply:
        message = msgpack.unpackb(data)
        if not isinstance(message, dict):
            raise ProtocolError("zygote reply is not a map")
        return cls(message.get("id"), int(message.get("pid") or 0), message.get("error"))
