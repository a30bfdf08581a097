"""A gateway's connections to the cluster's invokers: keep-alive HTTP/1.1,
each request carrying the cluster token. Tells a request that never left
(the invoker refused or did not answer the connection: safe to send
elsewhere) from one that broke off after it was sent (it may have run)."""

from __future__ import annotations

from collections.abc import Iterable

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from .wire import TOKEN_HEADER

# A connection an invoker does not accept this fast counts as refused.
CONNECT_TIMEOUT_S = 1.0
# The longest a call may take (a function's timeout is at most 900 s), with
# room for queueing and a cold start: a bound, not a deadline the invoker
# keeps (it enforces each function's own timeout).
CALL_TIMEOUT_S = 960.0
# Idle connections are closed before the invoker's own keep-alive (75 s)
# does, so a pooled connection is never one the invoker is closing.
KEEPALIVE_S = 30.0
# Connection-level headers: each hop has its own.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


class NotSent(Exception):
    """The invoker could not be reached: the request never left."""


class Lost(Exception):
    """The request was sent and its answer did not (wholly) come back."""


def end_to_end(headers: Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    """`headers` less the hop-by-hop ones and any cluster token a client sent."""
    kept: CIMultiDict[str] = CIMultiDict()
    for name, value in headers:
        lower = name.lower()
        if lower not in HOP_BY_HOP and lower != TOKEN_HEADER.lower():
            kept.add(name, value)
    return kept


class InvokerClient:
    def __init__(self, cluster_token: str) -> None:
        self._token = cluster_token
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> InvokerClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S, use_dns_cache=True),
            timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )
        return self

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None
        return self._session

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(
        self,
        address: str,
        method: str,
        path_qs: str,
        headers: CIMultiDict[str],
        body: bytes,
        timeout_s: float | None = None,
    ) -> tuple[int, CIMultiDict[str], bytes]:
        """One request to the invoker at `address` (HOST:PORT): its status,
        headers and body, within `timeout_s` (default: a call's longest).
        NotSent or Lost when it fails."""
        assert self._session is not None
        headers = CIMultiDict(headers)
        headers[TOKEN_HEADER] = self._token
        # As the client sent it (a Lambda request's signature covers the path's encoding).
        url = URL(f"http://{address}{path_qs}", encoded=True)
        try:
            timeout = (
                aiohttp.ClientTimeout(total=timeout_s, sock_connect=CONNECT_TIMEOUT_S) if timeout_s else None
            )
            async with self._session.request(
                method, url, headers=headers, data=body, allow_redirects=False, timeout=timeout
            ) as response:
                return response.status, CIMultiDict(response.headers), await response.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise NotSent(f"cannot connect to {address}: {exc}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Lost(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None
