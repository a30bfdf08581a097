"""A tiny synchronous HTTP client for the gateway, on the standard library only.

The CLI imports this on every run, so it must not pull in aiohttp or requests:
`faas list` should answer in tens of milliseconds, not after importing an event loop.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

# Above the largest function timeout (900 s), so a slow call is answered by the
# gateway's 504 rather than cut short by the client.
DEFAULT_TIMEOUT_S = 960.0
# Connecting is separate from waiting for the answer: a gateway that is not there
# should be reported in seconds, not after the call timeout.
CONNECT_TIMEOUT_S = 10.0
USER_AGENT = "faas-cli/0.1"
# Error messages are printed on one line; a huge HTML error page is cut.
MAX_MESSAGE_CHARS = 2000
# The only paths that take the server's token.
SYSTEM_PREFIX = "/system/"

ParamValue = str | int | float | None


class GatewayError(Exception):
    """Talking to the gateway failed after the connection was made (reset, read timeout)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class GatewayUnreachable(GatewayError):
    """No connection could be made: refused, unknown host, or connect timeout."""

    def __init__(self, url: str, reason: str = "") -> None:
        super().__init__(f"cannot reach the gateway at {url}" + (f": {reason}" if reason else ""))
        self.url = url
        self.reason = reason


class ApiError(GatewayError):
    """The gateway answered with an error status (>= 400)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Headers(list[tuple[str, str]]):
    """Response headers: the (name, value) pairs in order, plus case-insensitive lookups."""

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower()
        for key, value in self:
            if key.lower() == wanted:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self if key.lower() == wanted]


@dataclass
class Response:
    status: int
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; ValueError when it is not JSON."""
        return json.loads(self.body)


def error_message(resp: Response) -> str:
    """The `error` of a JSON error body, else the body's text, else the status phrase; one line."""
    message = ""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        message = data["error"]
    elif resp.body:
        message = resp.text
    message = " ".join(message.split())
    if not message:
        message = resp.reason or _phrase(resp.status)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "..."
    return message


def raise_for_status(resp: Response) -> Response:
    if resp.status >= 400:
        raise ApiError(resp.status, error_message(resp))
    return resp


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class GatewayClient:
    def __init__(self, base_url: str, token: str | None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token or None
        self.timeout_s = timeout_s
        # "localhost:8080" is what people type; treat a URL without a scheme as http.
        parts = urlsplit(self.base_url if "://" in self.base_url else "http://" + self.base_url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise ValueError(f"invalid gateway URL {base_url!r}: expected http://HOST[:PORT]")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = port
        self._prefix = parts.path.rstrip("/")

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, ParamValue] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Iterable[tuple[str, str]] | None = None,
    ) -> Response:
        """One request on a fresh connection; any status is returned, not raised."""
        url = self._url(path, params)
        # The token opens /system only; a function must never be sent it.
        authenticate = ("/" + path.lstrip("/")).startswith(SYSTEM_PREFIX)
        body = data
        extra = list(headers or [])
        if json_body is not None:
            body = json.dumps(json_body).encode()
            if not any(k.lower() == "content-type" for k, _ in extra):
                extra.append(("Content-Type", "application/json"))
        conn = self._connect()
        try:
            return self._exchange(conn, method.upper(), url, body, extra, authenticate)
        finally:
            conn.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Response:
        """`request`, raising ApiError for an error status."""
        return raise_for_status(self.request(method, path, **kwargs))

    def _url(self, path: str, params: Mapping[str, ParamValue] | None) -> str:
        if not path.startswith("/"):
            path = "/" + path
        # Keep what is already a valid URL (slashes, a query, %-escapes); escape the rest.
        url = self._prefix + quote(path, safe="/?&=%:@!$'()*+,;~")
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        if query:
            url += ("&" if "?" in url else "?") + urlencode(query)
        return url

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=min(CONNECT_TIMEOUT_S, self.timeout_s))
        try:
            conn.connect()
        except OSError as exc:  # refused, DNS failure, connect timeout, unreachable network
            conn.close()
            raise GatewayUnreachable(self.base_url, _reason(exc)) from None
        if conn.sock is not None:
            conn.sock.settimeout(self.timeout_s)
        return conn

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        url: str,
        body: bytes | None,
        headers: list[tuple[str, str]],
        authenticate: bool,
    ) -> Response:
        names = {k.lower() for k, _ in headers}
        try:
            # putheader, not request(headers=dict): the user may repeat a header.
            conn.putrequest(method, url, skip_accept_encoding=True)
            if "user-agent" not in names:
                conn.putheader("User-Agent", USER_AGENT)
            if authenticate and self.token and "authorization" not in names:
                conn.putheader("Authorization", f"Bearer {self.token}")
            for key, value in headers:
                conn.putheader(key, value)
            if body is not None or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body or b"")))
            conn.endheaders(body or None)
            resp = conn.getresponse()
            payload = resp.read()
        except TimeoutError:
            raise GatewayError(
                f"no answer from the gateway at {self.base_url} within {self.timeout_s:g} s"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise GatewayError(
                f"lost the connection to the gateway at {self.base_url}: {_reason(exc)}"
            ) from None
        return Response(resp.status, Headers(resp.getheaders()), payload, resp.reason or "")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())
