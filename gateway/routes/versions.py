"""/system/functions/{name}/versions, /aliases[/{alias}] and /rollback."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from invoker.invoker import Invoker

from .functions import read_json


class VersionRoutes:
    def __init__(self, invoker: Invoker) -> None:
        self.invoker = invoker

    async def versions(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        aliases = self.invoker.aliases(name)
        versions = [
            {
                **config.to_record(),
                "instances": instances,
                "aliases": [a["name"] for a in aliases if _points_at(a, config.version)],
            }
            for config, instances in self.invoker.versions(name)
        ]
        return web.json_response({"function": name, "versions": versions, "aliases": aliases})

    async def aliases(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.json_response({"function": name, "aliases": self.invoker.aliases(name)})

    async def put_alias(self, request: web.Request) -> web.Response:
        info = request.match_info
        record, created = await self.invoker.put_alias(info["name"], info["alias"], await read_json(request))
        return web.json_response(record, status=201 if created else 200)

    async def delete_alias(self, request: web.Request) -> web.Response:
        info = request.match_info
        live = await self.invoker.delete_alias(info["name"], info["alias"])
        return web.json_response(live if live is not None else {"deleted": info["alias"]})

    async def rollback(self, request: web.Request) -> web.Response:
        body = await read_json(request) if request.body_exists else {}
        return web.json_response(await self.invoker.rollback(request.match_info["name"], body))

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/system/functions/{name}/versions", self.versions)
        router.add_get("/system/functions/{name}/aliases", self.aliases)
        router.add_put("/system/functions/{name}/aliases/{alias}", self.put_alias)
        router.add_delete("/system/functions/{name}/aliases/{alias}", self.delete_alias)
        router.add_post("/system/functions/{name}/rollback", self.rollback)


def _points_at(alias: dict[str, Any], version: int) -> bool:
    return alias["version"] == version or str(version) in alias["weights"]
