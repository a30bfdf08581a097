"""GET /system/logs?name=F&tail=N"""

from __future__ import annotations

from aiohttp import web

from invoker.errors import BadRequest
from invoker.invoker import Invoker

MAX_TAIL = 5000


def make_logs_handler(invoker: Invoker) -> web.RequestHandler:  # type: ignore[name-defined]
    async def logs(request: web.Request) -> web.Response:
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
        return web.json_response({"function": name, "lines": invoker.logs(name, tail)})

    return logs
