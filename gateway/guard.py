"""/system against web pages in the operator's browser (docs/HTTP-API.md).

/system listens on loopback without a token, and a browser on the same
machine reaches loopback too. Two ways a hostile page would use that:

- CSRF: the page posts to http://127.0.0.1:8080/system/functions. Only
  "simple" cross-site requests go out without a CORS preflight (that this
  server never grants), and they can only carry a form content type or
  none: so a state-changing /system request must declare
  `Content-Type: application/json` (415 otherwise). A DELETE is never
  simple, so one without a body may omit it.
- DNS rebinding: the page's own name is re-pointed at 127.0.0.1, making
  /system same-origin to it, and it reads the answers. The browser still
  sends the page's name as Host, so a Host that does not name this server
  gets 421. A Host names this server when it is the address the client
  connected to (with the port), the name the server was told to listen on,
  a loopback name when that address is loopback, or in `allowed_hosts`.

And an `Origin` (sent by browsers on cross-site and state-changing
requests) that is not this server's own, nor in `allowed_origins`, gets 403.

Only /system: functions are public endpoints, and /healthz, /readyz and
/metrics are read by probes and scrapers under whatever name they use.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

from .config import ServerConfig
from .errors import ForeignOrigin, Handler, MisdirectedRequest, UnsupportedMediaType

GUARDED_PREFIX = "/system"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_MEDIA_TYPE = "application/json"
HTTP_DEFAULT_PORT = 80
LOOPBACK_NAMES = frozenset({"localhost"})


def split_authority(authority: str) -> tuple[str, int | None] | None:
    """(host, port or None) of a Host header or an origin's authority,
    lower-cased, IPv6 without brackets; None when it is malformed."""
    value = authority.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    elif ":" in value:
        host, _, port_text = value.rpartition(":")
    else:
        host, port_text = value, None
    if not host or any(c in host for c in "/@[] "):
        return None
    if port_text is None:
        return host, None
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5 or int(port_text) > 65535:
        return None
    return host, int(port_text)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a v4 client of a dual-stack listener
    return address


class HostPolicy:
    """Which Host (and origin authority) values name this server."""

    def __init__(self, listen_host: str, allowed_hosts: Iterable[str]) -> None:
        listen = listen_host.strip().lower().strip("[]")
        # An address is checked against the connection's own; a name is the operator's word.
        self.listen_name = listen if _ip(listen) is None else None
        self.any_port: set[str] = set()
        self.exact: set[tuple[str, int]] = set()
        for entry in allowed_hosts:
            parsed = split_authority(entry)
            if parsed is None:
                continue
            host, port = parsed
            if port is None:
                self.any_port.add(host)
            else:
                self.exact.add((host, port))

    def names_this_server(self, authority: str, local: tuple[str, int] | None) -> bool:
        """`local`: the (address, port) the client connected to."""
        parsed = split_authority(authority)
        if parsed is None:
            return False
        host, given_port = parsed
        port = HTTP_DEFAULT_PORT if given_port is None else given_port
        if host in self.any_port or (host, port) in self.exact:
            return True
        if local is None or port != local[1]:
            return False
        if host == self.listen_name:
            return True
        local_ip, host_ip = _ip(local[0]), _ip(host)
        if local_ip is None:
            return False
        if host_ip == local_ip:
            return True
        # An address literal cannot be rebound; "localhost" resolves locally.
        return local_ip.is_loopback and (
            host in LOOPBACK_NAMES or (host_ip is not None and host_ip.is_loopback)
        )


def _local_address(request: web.Request) -> tuple[str, int] | None:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return str(sockname[0]), int(sockname[1])
    return None


def _declares_json(request: web.Request) -> bool:
    media_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return media_type == JSON_MEDIA_TYPE


def _check_content_type(request: web.Request) -> None:
    if request.method not in STATE_CHANGING:
        return
    if request.method == "DELETE" and "Content-Type" not in request.headers and not request.body_exists:
        return
    if not _declares_json(request):
        given = request.headers.get("Content-Type")
        raise UnsupportedMediaType(
            f"{request.method} {request.path} takes Content-Type: {JSON_MEDIA_TYPE}, "
            + (f"got {given!r}" if given is not None else "got none")
        )


class BrowserGuard:
    """The checks above, for /system and for the Lambda API's management
    operations (gateway/lambda_api), which change state just as well."""

    def __init__(self, config: ServerConfig) -> None:
        self.hosts = HostPolicy(config.host, config.allowed_hosts)
        self.allowed_origins = frozenset(o.strip().lower().rstrip("/") for o in config.allowed_origins)

    def _own_origin(self, origin: str, local: tuple[str, int] | None) -> bool:
        scheme, sep, authority = origin.partition("://")
        return sep == "://" and scheme == "http" and self.hosts.names_this_server(authority, local)

    def check(self, request: web.Request, content_type: bool = True) -> None:
        """421, 403 or 415 for a request a web page could have made; `content_type`:
        whether a state-changing request must declare JSON."""
        local = _local_address(request)
        host = request.headers.get("Host")
        if host is None or not self.hosts.names_this_server(host, local):
            raise MisdirectedRequest(
                f"Host {host!r} does not name this server: use its listen address or add the name "
                "to allowed_hosts"
            )
        origin = request.headers.get("Origin")
        if origin is not None:
            normalized = origin.strip().lower()
            if normalized not in self.allowed_origins and not self._own_origin(normalized, local):
                raise ForeignOrigin(f"requests from Origin {origin!r} are refused: add it to allowed_origins")
        # A route that does not exist or takes another method changes nothing: its 404/405 first.
        if content_type and request.match_info.http_exception is None:
            _check_content_type(request)


def make_guard_middleware(config: ServerConfig) -> web.Middleware:  # type: ignore[name-defined]
    guard = BrowserGuard(config)

    @web.middleware
    async def guard_system(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(GUARDED_PREFIX):
            guard.check(request)
        return await handler(request)

    return guard_system
