"""GET /system/layers: every layer (a function's requirements, installed
once), the functions using it and the state of its import cache."""

from __future__ import annotations

from aiohttp import web

from invoker.invoker import Invoker


def make_layers_handler(invoker: Invoker) -> web.RequestHandler:  # type: ignore[name-defined]
    async def layers(request: web.Request) -> web.Response:
        return web.json_response(invoker.layers())

    return layers
