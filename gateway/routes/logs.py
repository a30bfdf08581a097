"""GET /system/logs?name=F&tail=N"""

from __future__ import annotations

import heapq

from aiohttp import web

from invoker.errors import BadRequest
from invoker.invoker import Invoker

MAX_TAIL = 5000


def logs_query(request: web.Request) -> tuple[str, int]:
    """(function, tail) of a logs request; 400 for a missing or bad one."""
    # `name`, or `function` as /system/usage calls it; a given but bad one is a 400.
    name = request.query.get("name", request.query.get("function"))
    if not name:
        raise BadRequest("query parameter 'name' (the function) is required")
    raw_tail = request.query.get("tail", "100")
    try:
        tail = int(raw_tail)
    except ValueError:
        raise BadRequest(f"tail must be an integer from 0 to {MAX_TAIL}, got {raw_tail!r}") from None
    if not 0 <= tail <= MAX_TAIL:
        raise BadRequest(f"tail must be an integer from 0 to {MAX_TAIL}, got {tail}")
    return name, tail


def merge_tails(tails: list[list[str]], tail: int) -> list[str]:
    """The last `tail` lines of several logs, each oldest first, as one log
    oldest first: lines start with their UTC time stamp (invoker/logs.py),
    so they sort as text; a stamp shared by two logs keeps each log's order."""
    if tail <= 0:
        return []
    merged = list(heapq.merge(*tails, key=lambda line: line.partition(" ")[0]))
    return merged[-tail:]


def make_logs_handler(invoker: Invoker) -> web.RequestHandler:  # type: ignore[name-defined]
    async def logs(request: web.Request) -> web.Response:
        name, tail = logs_query(request)
        return web.json_response({"function": name, "lines": invoker.logs(name, tail)})

    return logs
