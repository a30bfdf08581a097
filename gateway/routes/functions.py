"""/system/functions: list, create or update, describe, delete."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from invoker.errors import BadRequest, PayloadTooLarge
from invoker.invoker import Invoker
from invoker.model import FunctionConfig


def _record(invoker: Invoker, config: FunctionConfig) -> dict[str, Any]:
    """The function record: its newest version, its warm sandboxes (all
    versions) and its aliases."""
    return {
        **config.to_record(),
        "instances": invoker.warm_count(config.name),
        "aliases": invoker.aliases(config.name),
    }


def instances_summed(answers: list[Any]) -> Any:
    """Several servers' answers to GET /system/functions (a list of records,
    by name) or /system/functions/NAME (one record), as one: each record as
    the server with its newest version gives it (the rest of a record comes
    from the registry they share; one may not have heard of a deploy yet),
    with `instances` summed over all of them (warm sandboxes are each
    server's own). A function that a server does not know yet counts 0 there."""

    def one(records: list[dict[str, Any]]) -> dict[str, Any]:
        newest = max(records, key=lambda record: record.get("version", 0))
        return {**newest, "instances": sum(record.get("instances", 0) for record in records)}

    if isinstance(answers[0], dict):
        return one([answer for answer in answers if isinstance(answer, dict)])
    by_name: dict[str, list[dict[str, Any]]] = {}
    for answer in answers:
        if isinstance(answer, list):
            for record in answer:
                by_name.setdefault(record["name"], []).append(record)
    return [one(records) for _, records in sorted(by_name.items())]


async def read_json(request: web.Request) -> Any:
    limit = request.client_max_size
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(
            f"request body of {request.content_length} bytes is over the limit of {limit} bytes"
        )
    raw = await request.read()
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise BadRequest("request body is not UTF-8") from None
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body is JSON nested too deeply") from None


class FunctionRoutes:
    def __init__(self, invoker: Invoker) -> None:
        self.invoker = invoker

    async def list(self, request: web.Request) -> web.Response:
        return web.json_response([_record(self.invoker, c) for c in self.invoker.functions()])

    async def deploy(self, request: web.Request) -> web.Response:
        deployed = await self.invoker.deploy_version(await read_json(request))
        record = {**_record(self.invoker, deployed.config), "changed": deployed.changed}
        return web.json_response(record, status=201 if deployed.created else 200)

    async def describe(self, request: web.Request) -> web.Response:
        return web.json_response(_record(self.invoker, self.invoker.get(request.match_info["name"])))

    async def delete(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        await self.invoker.delete(name)
        return web.json_response({"deleted": name})

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/system/functions", self.list)
        router.add_post("/system/functions", self.deploy)
        router.add_put("/system/functions", self.deploy)
        router.add_get("/system/functions/{name}", self.describe)
        router.add_delete("/system/functions/{name}", self.delete)
