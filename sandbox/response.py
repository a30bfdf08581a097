"""Turn a handler's return value into (status, headers, body): the table of docs/HANDLER.md.

Pure: no I/O, runs inside the sandbox, unit-tested directly.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from typing import Any

TEXT = "text/plain; charset=utf-8"
BINARY = "application/octet-stream"
JSON = "application/json"

# The statuses a function may answer with: final ones only (docs/HANDLER.md).
FIRST_FINAL_STATUS = 200
LAST_STATUS = 599


# Bounds of a header block, the same for what a client sends (gateway/limits.py)
# and what a function answers. A field counts as `name: value\r\n`.
HEADER_COUNT_LIMIT = 100
HEADER_FIELD_LIMIT = 8 * 1024
HEADERS_TOTAL_LIMIT = 32 * 1024

# RFC 9110 field names; values must not break the header block.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Control characters but tab (RFC 9110 field-value): CR and LF would split the
# block, NUL and the rest make HTTP stacks (aiohttp among them) fail after the
# status was decided, or reach a terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def valid_header(name: str, value: str) -> bool:
    """A field name that is a token and a value without control characters."""
    return bool(_TOKEN.match(name)) and not _CONTROL.search(value)


def header_size_problem(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """What makes a header block exceed the HEADER_* bounds, or None."""
    if len(headers) > HEADER_COUNT_LIMIT:
        return f"{len(headers)} header fields, at most {HEADER_COUNT_LIMIT} are allowed"
    total = 0
    for name, value in headers:
        size = len(name) + len(value) + 4
        if size > HEADER_FIELD_LIMIT:
            shown = name[:64].decode("latin-1")
            return f"header {shown!r} of {size} bytes is over the limit of {HEADER_FIELD_LIMIT} bytes"
        total += size
    if total > HEADERS_TOTAL_LIMIT:
        return f"headers of {total} bytes are over the limit of {HEADERS_TOTAL_LIMIT} bytes"
    return None


def _encodable(value: str) -> bool:
    """Not a lone surrogate: what cannot be encoded cannot be sent."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def response_header_problem(headers: Sequence[Sequence[str]]) -> str | None:
    """Why a function's response headers cannot be sent, or None. Run by the
    runtime on what a handler returned and by the server on what a sandbox
    sent, which is not trusted."""
    encoded = []
    for name, value in headers:
        if valid_header(name, value) and _encodable(value):
            encoded.append((name.encode(), value.encode()))
        else:
            return f"invalid response header {name!r}: {value!r}"
    problem = header_size_problem(encoded)
    return f"response {problem}" if problem else None


class UnsupportedReturn(TypeError):
    """The handler returned something the runtime cannot turn into HTTP."""


def _encode_body(body: Any) -> tuple[bytes, str | None]:
    if body is None:
        return b"", None
    if isinstance(body, str):
        return body.encode("utf-8"), TEXT
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), BINARY
    if isinstance(body, (dict, list)):
        try:
            return json.dumps(body, ensure_ascii=False).encode("utf-8"), JSON
        except (TypeError, ValueError) as exc:
            raise UnsupportedReturn(
                f"handler returned a value that is not JSON-serializable: {exc}"
            ) from None
    raise UnsupportedReturn(f"handler returned unsupported type {type(body).__name__}")


def proxy_response(
    result: dict[str, Any], content_type: str | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    """A `{"statusCode", "headers", "body", "isBase64Encoded"}` answer. A
    body's content type, unless `headers` gives one, is `content_type`, else
    the one of its kind."""
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int):
        raise UnsupportedReturn(f"statusCode must be an integer from 200 to 599, got {status!r}")
    if not FIRST_FINAL_STATUS <= status <= LAST_STATUS:
        # 1xx are interim answers: sent as the answer, a client would wait for the real one.
        raise UnsupportedReturn(
            f"statusCode {status} is not a final HTTP status: use {FIRST_FINAL_STATUS} to {LAST_STATUS}"
        )
    raw_headers = result.get("headers")
    if raw_headers is None:
        raw_headers = {}
    if not isinstance(raw_headers, dict):
        raise UnsupportedReturn(f"headers must be a dict, got {type(raw_headers).__name__}")
    headers = [(str(k), str(v)) for k, v in raw_headers.items()]
    body_value = result.get("body")
    if result.get("isBase64Encoded") and isinstance(body_value, str):
        try:
            body, default_type = base64.b64decode(body_value, validate=True), BINARY
        except ValueError as exc:
            raise UnsupportedReturn(f"isBase64Encoded body is not base64: {exc}") from None
    else:
        body, default_type = _encode_body(body_value)
    if default_type and content_type:
        default_type = content_type
    if default_type and not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", default_type))
    problem = response_header_problem(headers)
    if problem:
        raise UnsupportedReturn(problem)
    return status, headers, body


def to_http(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) for a handler's return value.

    Raises UnsupportedReturn, which the runtime turns into a 500.
    """
    if isinstance(result, dict) and "statusCode" in result:
        return proxy_response(result)
    body, content_type = _encode_body(result)
    return 200, ([("Content-Type", content_type)] if content_type else []), body
