"""GET /system/nodes on a server that runs its own sandboxes (role all or
invoker): itself, the one node that serves its calls. A cluster's gateway
answers with every invoker instead (gateway/cluster/gateway_app.py)."""

from __future__ import annotations

from aiohttp import web

from invoker.invoker import Invoker

from ..cluster.invoker_side import describer


def make_nodes_handler(invoker: Invoker, address: str) -> web.RequestHandler:  # type: ignore[name-defined]
    describe = describer(invoker, address)

    async def nodes(request: web.Request) -> web.Response:
        node = describe()
        return web.json_response([{**node.to_json(), "healthy": node.ready}])

    return nodes
