"""Turn a handler's return value into (status, headers, body): SPEC section 1.

Pure: no I/O, runs inside the sandbox, unit-tested directly.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

TEXT = "text/plain; charset=utf-8"
BINARY = "application/octet-stream"
JSON = "application/json"

# The statuses a function may answer with: final ones only (SPEC section 1).
FIRST_FINAL_STATUS = 200
LAST_STATUS = 599


# RFC 9110 field names; values must not break the header block.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def valid_header(name: str, value: str) -> bool:
    """A field name that is a token and a value that cannot break the header block."""
    return bool(_TOKEN.match(name)) and not any(c in value for c in "\r\n\x00")


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


def _proxy_response(result: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
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
    for name, value in headers:
        if not valid_header(name, value):
            raise UnsupportedReturn(f"invalid response header {name!r}: {value!r}")
    body_value = result.get("body")
    if result.get("isBase64Encoded") and isinstance(body_value, str):
        try:
            body, default_type = base64.b64decode(body_value, validate=True), BINARY
        except ValueError as exc:
            raise UnsupportedReturn(f"isBase64Encoded body is not base64: {exc}") from None
    else:
        body, default_type = _encode_body(body_value)
    if default_type and not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", default_type))
    return status, headers, body


def to_http(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) for a handler's return value.

    Raises UnsupportedReturn, which the runtime turns into a 500.
    """
    if isinstance(result, dict) and "statusCode" in result:
        return _proxy_response(result)
    body, content_type = _encode_body(result)
    return 200, ([("Content-Type", content_type)] if content_type else []), body
