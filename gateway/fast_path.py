"""/function/* straight to its handler, past aiohttp's router and its chain
of middlewares.

A warm call's server CPU is the figure the runtime's speed is judged by
(docs/ARCHITECTURE.md, bench/PROFILE.md), and aiohttp's routed path costs a
call about a tenth of it: the router walks the URL's parts and builds match
info, and each middleware runs as one more coroutine frame behind a
`functools.partial`. A call to a function needs only two of those steps, the
error answers and the request limits (the guard and the token concern
/system only): the front handler installed here runs exactly those two, in
the same order, as plain calls, and hands every other request to the
application's own routed path.

The routes stay registered and serve the same handler: a request with an
`Expect` header (the router's expect handler answers `100 Continue`) goes
the routed way, as does every request to an app that must check more than
that (an invoker of a cluster checks the cluster's token on every request:
it gets no fast path). A middleware added later that must act on
`/function/*` has to be called in `front` too: the fast path knows only
these two.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from .errors import answer_errors
from .limits import within_limits

# (request, function name as in the URL, path after it, "/" at least)
FunctionHandler = Callable[[web.Request, str, str], Awaitable[web.StreamResponse]]

PREFIX = "/function/"
# The routes' own patterns: "{name}" is aiohttp's default [^{}/]+.
NAME_ROUTE = PREFIX + "{name}"
PATH_ROUTE = PREFIX + "{name}/{path:[\\s\\S]*}"
_TARGET = re.compile(r"/function/([^{}/]+)(?:/([\s\S]*))?")


def _unquote(value: str) -> str:
    """A match of the URL's `path_safe` form (%2F and %25 still escaped) as
    the router gives it to a handler."""
    if "%" not in value:
        return value
    return value.replace("%2F", "/").replace("%25", "%")


def function_target(path_safe: str) -> tuple[str, str] | None:
    """(name, path) of a /function/NAME[/PATH] URL path, exactly what the
    routes' match info gives; None for any other path."""
    match = _TARGET.fullmatch(path_safe)
    if match is None:
        return None
    name, rest = match.groups()
    return _unquote(name), "/" + _unquote(rest or "")


def add_function_routes(
    app: web.Application, handler: FunctionHandler, body_timeout_s: float, fast: bool = True
) -> None:
    """Route /function/NAME[/PATH] to `handler`; with `fast`, also in front
    of the router, for requests the app's only other checks would be its
    error answers and the limits."""

    async def routed(request: web.Request) -> web.StreamResponse:
        return await handler(request, request.match_info["name"], "/" + request.match_info.get("path", ""))

    app.router.add_route("*", NAME_ROUTE, routed)
    app.router.add_route("*", PATH_ROUTE, routed)
    if not fast:
        return
    routed_handle = app._handle

    async def front(request: web.Request) -> web.StreamResponse:
        if request.raw_path.startswith(PREFIX) and hdrs.EXPECT not in request.headers:
            target = function_target(request.rel_url.path_safe)
            if target is not None:
                return await answer_errors(request, within_limits, body_timeout_s, handler, *target)
        return await routed_handle(request)

    # Application._make_handler hands `self._handle` to the server: aiohttp
    # has no public hook in front of the router. tests/gateway/test_fast_path.py
    # fails if a new aiohttp stops taking it.
    app._handle = front  # type: ignore[method-assign]
