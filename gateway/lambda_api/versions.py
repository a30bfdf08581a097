"""The Lambda API's versions and aliases, on the runtime's own: every
deploy makes a version, so PublishVersion answers the newest one (as Lambda
does when nothing changed since the last publish); ListVersionsByFunction,
and CreateAlias, GetAlias, UpdateAlias, DeleteAlias and ListAliases on the
Invoker's aliases (`live` among them: it always exists). A qualifier is
`$LATEST` (the newest version), a version number or an alias name."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from invoker.errors import BadRequest, Conflict
from invoker.invoker import Invoker
from invoker.lambda_ids import function_arn

from .functions import read_json
from .qualifiers import alias_record
from .shapes import LATEST, function_configuration, split_name


def _version_number(invoker: Invoker, name: str, value: Any) -> int:
    if value == LATEST:
        return invoker.get(name).version
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise BadRequest(f"FunctionVersion must be a version number or $LATEST, got {value!r}")


def _weights(settings: dict[str, Any]) -> dict[str, float] | None:
    """RoutingConfig.AdditionalVersionWeights, or None when not given."""
    routing = settings.get("RoutingConfig")
    if routing is None:
        return None
    weights = routing.get("AdditionalVersionWeights") if isinstance(routing, dict) else None
    if not isinstance(weights, dict | None):
        raise BadRequest("RoutingConfig.AdditionalVersionWeights must be an object of version to weight")
    return dict(weights or {})


class VersionOperations:
    def __init__(self, invoker: Invoker, region: str) -> None:
        self.invoker = invoker
        self.region = region

    def _name(self, request: web.Request) -> str:
        name, qualifier = split_name(request.match_info["name"], None)
        if qualifier is not None:
            raise BadRequest(f"{request.match_info['name']!r}: this operation takes an unqualified name")
        return name

    def _alias_shape(self, name: str, record: dict[str, Any]) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "AliasArn": function_arn(self.region, name, record["name"]),
            "Name": record["name"],
            "FunctionVersion": str(record["version"]),
            "Description": "",
            "RevisionId": f"{record['version']}-{sorted(record['weights'].items())}",
        }
        if record["weights"]:
            shape["RoutingConfig"] = {"AdditionalVersionWeights": dict(record["weights"])}
        return shape

    async def publish(self, request: web.Request) -> web.Response:
        config = self.invoker.get(self._name(request))
        return web.json_response(function_configuration(config, self.region, str(config.version)), status=201)

    async def list_versions(self, request: web.Request) -> web.Response:
        name = self._name(request)
        versions = [function_configuration(self.invoker.get(name), self.region)]
        versions += [
            function_configuration(c, self.region, str(c.version)) for c, _ in self.invoker.versions(name)
        ]
        return web.json_response({"Versions": versions})

    async def _put(self, name: str, alias: str, version: int, weights: dict[str, float]) -> dict[str, Any]:
        record, _ = await self.invoker.put_alias(name, alias, {"version": version, "weights": weights})
        return self._alias_shape(name, record)

    async def create_alias(self, request: web.Request) -> web.Response:
        name = self._name(request)
        settings = await read_json(request)
        alias = settings.get("Name")
        if not isinstance(alias, str):
            raise BadRequest("Name is required: the alias name")
        if any(record["name"] == alias for record in self.invoker.aliases(name)):
            raise Conflict(f"Alias already exists: {function_arn(self.region, name, alias)}")
        version = _version_number(self.invoker, name, settings.get("FunctionVersion"))
        shape = await self._put(name, alias, version, _weights(settings) or {})
        return web.json_response(shape, status=201)

    async def get_alias(self, request: web.Request) -> web.Response:
        name = self._name(request)
        record = alias_record(self.invoker, name, request.match_info["alias"])
        return web.json_response(self._alias_shape(name, record))

    async def update_alias(self, request: web.Request) -> web.Response:
        name, alias = self._name(request), request.match_info["alias"]
        current = alias_record(self.invoker, name, alias)
        settings = await read_json(request)
        given = settings.get("FunctionVersion")
        version = current["version"] if given is None else _version_number(self.invoker, name, given)
        weights = _weights(settings)
        return web.json_response(
            await self._put(name, alias, version, current["weights"] if weights is None else weights)
        )

    async def delete_alias(self, request: web.Request) -> web.Response:
        await self.invoker.delete_alias(self._name(request), request.match_info["alias"])
        return web.Response(status=204)

    async def list_aliases(self, request: web.Request) -> web.Response:
        name = self._name(request)
        wanted = request.query.get("FunctionVersion")
        records = [r for r in self.invoker.aliases(name) if wanted is None or str(r["version"]) == wanted]
        return web.json_response({"Aliases": [self._alias_shape(name, r) for r in records]})

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_post("/functions/{name}/versions", self.publish)
        router.add_get("/functions/{name}/versions", self.list_versions)
        router.add_post("/functions/{name}/aliases", self.create_alias)
        router.add_get("/functions/{name}/aliases", self.list_aliases)
        router.add_get("/functions/{name}/aliases/{alias}", self.get_alias)
        router.add_put("/functions/{name}/aliases/{alias}", self.update_alias)
        router.add_delete("/functions/{name}/aliases/{alias}", self.delete_alias)
