"""Asynchronous calls (docs/HTTP-API.md, "Asynchronous calls"):

- POST /async-function/{name}[/{path}]: 202 {"call_id"} once the call is
  durably queued; X-Callback-Url names where its result goes.
- GET /system/async/{call_id}: its status, attempts and result.
- DELETE /system/async/{call_id}: cancel it while it is queued.
- GET /system/async?function=F&status=S&limit=N&cursor=C: the calls, paged
  like usage records.
"""

from __future__ import annotations

import time

from aiohttp import web

from invoker.async_model import STATUSES, AsyncQuery
from invoker.errors import BadRequest
from invoker.invoker import Invoker
from invoker.validate import validate_name

from ..bodies import BufferedBodies
from .invoke import invocation_of
from .usage import MAX_LIMIT, int_param

CALLBACK_HEADER = "X-Callback-Url"


class AsyncRoutes:
    def __init__(
        self, invoker: Invoker, bodies: BufferedBodies, max_body_bytes: int, token: str | None
    ) -> None:
        self.invoker = invoker
        self.bodies = bodies
        self.max_body_bytes = max_body_bytes
        self.token = token

    async def enqueue(self, request: web.Request) -> web.Response:
        received = time.monotonic()
        name = request.match_info["name"]
        # 503 while draining, 404 for no such function, before a body is read;
        # a full function is no reason to refuse: the call waits in the queue.
        self.invoker.admit(name, room=False)
        path = "/" + request.match_info.get("path", "")
        async with self.bodies.read(request, self.max_body_bytes) as body:
            inv = invocation_of(request, name, body, received, self.token, path)
            call_id = await self.invoker.enqueue_async(inv, request.headers.get(CALLBACK_HEADER))
        return web.json_response({"call_id": call_id}, status=202, headers={"X-Call-Id": call_id})

    async def get(self, request: web.Request) -> web.Response:
        call = await self.invoker.async_call(request.match_info["call_id"])
        return web.json_response(call.to_json())

    async def cancel(self, request: web.Request) -> web.Response:
        call = await self.invoker.cancel_async(request.match_info["call_id"])
        return web.json_response(call.to_json())

    async def list(self, request: web.Request) -> web.Response:
        function = request.query.get("function") or None
        if function is not None:
            validate_name(function)
        status = request.query.get("status") or None
        if status is not None and status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        limit = int_param(request, "limit", 1000, 1, MAX_LIMIT)
        cursor = int_param(request, "cursor", 0, 0, 2**62)
        rows = await self.invoker.async_calls(AsyncQuery(function, status), cursor, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return web.json_response(
            {
                "calls": [call.to_json(with_result=False) for _, call in rows],
                "next_cursor": rows[-1][0] if more and rows else None,
            }
        )

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_post("/async-function/{name}", self.enqueue)
        # [\s\S], not '.': a path may hold an (escaped) newline too.
        router.add_post("/async-function/{name}/{path:[\\s\\S]*}", self.enqueue)
        router.add_get("/system/async", self.list)
        router.add_get("/system/async/{call_id}", self.get)
        router.add_delete("/system/async/{call_id}", self.cancel)
