"""/system/secrets[/{name}]: create or rotate, list, describe, delete.
Answers carry names and metadata, never a value."""

from __future__ import annotations

from aiohttp import web

from invoker.invoker import Invoker

from .functions import read_json


class SecretRoutes:
    def __init__(self, invoker: Invoker) -> None:
        self.invoker = invoker

    async def list(self, request: web.Request) -> web.Response:
        return web.json_response(self.invoker.secrets())

    async def put(self, request: web.Request) -> web.Response:
        record, created = await self.invoker.put_secret(await read_json(request))
        return web.json_response(record, status=201 if created else 200)

    async def describe(self, request: web.Request) -> web.Response:
        return web.json_response(self.invoker.secret(request.match_info["name"]))

    async def delete(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        await self.invoker.delete_secret(name)
        return web.json_response({"deleted": name})

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/system/secrets", self.list)
        router.add_post("/system/secrets", self.put)
        router.add_get("/system/secrets/{name}", self.describe)
        router.add_delete("/system/secrets/{name}", self.delete)
