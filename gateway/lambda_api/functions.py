"""The Lambda API's function operations: CreateFunction, GetFunction,
GetFunctionConfiguration (both with a Qualifier), ListFunctions,
UpdateFunctionCode, UpdateFunctionConfiguration, DeleteFunction. Each becomes a call of the
Invoker's public methods (deploy, get, functions, delete)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from invoker.errors import BadRequest, Conflict, NotFound
from invoker.invoker import Invoker
from invoker.validate import validate_name

from .qualifiers import qualified_config
from .shapes import (
    LATEST,
    deploy_fields,
    encoded,
    function_configuration,
    redeploy_body,
    split_name,
    unzip,
)

MAX_ITEMS_DEFAULT, MAX_ITEMS_LIMIT = 50, 10_000


async def read_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    return data


class FunctionOperations:
    def __init__(self, invoker: Invoker, region: str, code_limit_bytes: int) -> None:
        self.invoker = invoker
        self.region = region
        self.code_limit_bytes = code_limit_bytes

    def _name(self, request: web.Request) -> str:
        """The function named, unqualified or `$LATEST` (versions go with deploys)."""
        name, qualifier = split_name(request.match_info["name"], request.query.get("Qualifier"))
        if qualifier not in (None, LATEST):
            raise BadRequest(f"this operation takes no qualifier but {LATEST}, got {qualifier!r}")
        return name

    def _qualified(self, request: web.Request) -> dict[str, Any]:
        name, qualifier = split_name(request.match_info["name"], request.query.get("Qualifier"))
        config, version = qualified_config(self.invoker, name, qualifier)
        return function_configuration(config, self.region, version)

    def _exists(self, name: str) -> bool:
        try:
            self.invoker.get(name)
        except NotFound:
            return False
        return True

    async def create(self, request: web.Request) -> web.Response:
        settings = await read_json(request)
        name = validate_name(settings.get("FunctionName"))
        if self._exists(name):
            raise Conflict(f"Function already exist: {name}")
        code = settings.get("Code")
        if not isinstance(code, dict) or "ZipFile" not in code:
            raise BadRequest("Code.ZipFile is required: S3 locations and images are not supported")
        body = {
            "name": name,
            "files": unzip(code["ZipFile"], self.code_limit_bytes),
            **deploy_fields(settings),
        }
        config, _ = await self.invoker.deploy(body)
        return web.json_response(function_configuration(config, self.region), status=201)

    async def get(self, request: web.Request) -> web.Response:
        return web.json_response({"Configuration": self._qualified(request), "Code": {}})

    async def get_configuration(self, request: web.Request) -> web.Response:
        return web.json_response(self._qualified(request))

    async def list(self, request: web.Request) -> web.Response:
        marker = request.query.get("Marker") or ""
        raw_max = request.query.get("MaxItems") or str(MAX_ITEMS_DEFAULT)
        if not raw_max.isdigit() or not 1 <= int(raw_max) <= MAX_ITEMS_LIMIT:
            raise BadRequest(f"MaxItems must be an integer from 1 to {MAX_ITEMS_LIMIT}, got {raw_max!r}")
        after = [c for c in self.invoker.functions() if c.name > marker]  # sorted by name
        page = after[: int(raw_max)]
        body: dict[str, Any] = {"Functions": [function_configuration(c, self.region) for c in page]}
        if len(after) > len(page):
            body["NextMarker"] = page[-1].name
        return web.json_response(body)

    async def update_code(self, request: web.Request) -> web.Response:
        name = self._name(request)
        settings = await read_json(request)
        config = self.invoker.get(name)
        if "ZipFile" not in settings:
            raise BadRequest("ZipFile is required: S3 locations and images are not supported")
        files = unzip(settings["ZipFile"], self.code_limit_bytes)
        if not settings.get("DryRun"):
            config, _ = await self.invoker.deploy(redeploy_body(config, files))
        return web.json_response(function_configuration(config, self.region))

    async def update_configuration(self, request: web.Request) -> web.Response:
        name = self._name(request)
        changes = deploy_fields(await read_json(request))
        body = redeploy_body(self.invoker.get(name), encoded(self.invoker.function_files(name)))
        if "handler" in changes:  # Lambda's handler string: the function takes Lambda's convention
            body.pop("entry", None)
        config, _ = await self.invoker.deploy({**body, **changes})
        return web.json_response(function_configuration(config, self.region))

    async def delete(self, request: web.Request) -> web.Response:
        await self.invoker.delete(self._name(request))
        return web.Response(status=204)

    def add_to(self, router: web.UrlDispatcher) -> None:
        for path in ("/functions", "/functions/"):
            router.add_post(path, self.create)
            router.add_get(path, self.list)
        router.add_get("/functions/{name}", self.get)
        router.add_delete("/functions/{name}", self.delete)
        router.add_get("/functions/{name}/configuration", self.get_configuration)
        router.add_put("/functions/{name}/configuration", self.update_configuration)
        router.add_put("/functions/{name}/code", self.update_code)
