"""create_gateway_app(config): a cluster's gateway (`role = "gateway"`).

It runs no sandbox and keeps no state of its own: the user's checks
(limits, Host, Origin, token) happen here, then each synchronous call goes
framed to its function's home invoker (gateway/cluster/forward.py) and
every other request (/system, asynchronous calls, the Lambda API) to the
invoker of the function it names, which shares the registry, the ledger and
the queue with the others. The live invokers come from the database's
node table (invoker/pg_nodes.py), read every 0.5 s.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from invoker.errors import FaasError, Unavailable
from invoker.metrics import Metrics
from invoker.pg_nodes import NodeWatch

from ..app import CHANNEL_OVERHEAD_BYTES, make_auth_middleware
from ..bodies import BufferedBodies
from ..config import ServerConfig
from ..errors import error_middleware, http_status
from ..fast_path import add_function_routes
from ..guard import make_guard_middleware
from ..limits import handler_args, make_limits_middleware
from ..routes.functions import instances_summed
from ..routes.invoke import invocation_of, result_response
from ..routes.logs import logs_query, merge_tails
from .channels import Channels
from .client import InvokerClient
from .forward import Cluster, function_of, relayed_error
from .metrics import ClusterMetrics
from .router import Router
from .wire import NODE_HEADER


class GatewayRoutes:
    def __init__(self, config: ServerConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.bodies = BufferedBodies(config.max_buffered_bytes)
        self.watch: NodeWatch | None = None
        self.cluster: Cluster | None = None

    async def invoke(self, request: web.Request, name: str, path: str) -> web.StreamResponse:
        assert self.cluster is not None
        received = time.monotonic()
        function = name.partition("@")[0]
        code = 500
        try:
            async with self.bodies.read(request, self.config.max_body_bytes) as body:
                inv = invocation_of(request, name, body, received, self.config.token, path)
                result, node = await self.cluster.call(inv)
            code = result.status
        except FaasError as exc:
            code = http_status(exc)
            raise
        finally:
            if code != 404:  # a name nobody deployed makes no series
                self.metrics.invocation_done(function, code, time.monotonic() - received)
        response = result_response(result, request["call_id"])
        response.headers[NODE_HEADER] = node
        return response

    async def forward(self, request: web.Request) -> web.StreamResponse:
        assert self.cluster is not None
        body = await request.read()
        key = function_of(request.path, dict(request.query))
        status, headers, data, node = await self.cluster.forward(
            request.method, request.raw_path, request.headers.items(), body, key
        )
        response = web.Response(status=status, body=data, headers=headers)
        response.headers[NODE_HEADER] = node
        return response

    async def _gathered(self, request: web.Request, valid: Callable[[Any], bool]) -> tuple[list[Any], str]:
        """The request asked of every reachable invoker: the JSON of each
        answer that succeeded and is `valid`, and the invokers that gave them
        (for X-Faas-Node). When none did: 404 if any invoker said so (no
        such function), else the first failure."""
        assert self.cluster is not None
        # rel_url: the path and query as sent, also for an absolute-form request target.
        answers = await self.cluster.gather("GET", request.rel_url.raw_path_qs, request.headers.items())
        bodies, nodes = [], []
        for node, status, _, body in answers:
            if status == 200:
                try:
                    answer = json.loads(body)
                except ValueError:
                    continue
                if valid(answer):
                    bodies.append(answer)
                    nodes.append(node)
        if not bodies:
            failures = [answer for answer in answers if answer[1] != 200]
            failure = next((a for a in failures if a[1] == 404), failures[0] if failures else None)
            if failure is not None:
                raise relayed_error(failure[1], failure[2], failure[3])
            raise Unavailable("no invoker of the cluster could be reached")
        return bodies, ", ".join(nodes)

    async def logs(self, request: web.Request) -> web.Response:
        """A function's logs from every invoker (each keeps those of the calls
        it served, the home invoker's and the spilled-over ones), merged by time."""
        name, tail = logs_query(request)
        answers, nodes = await self._gathered(
            request, lambda answer: isinstance(answer, dict) and isinstance(answer.get("lines"), list)
        )
        response = web.json_response(
            {"function": name, "lines": merge_tails([answer["lines"] for answer in answers], tail)}
        )
        response.headers[NODE_HEADER] = nodes
        return response

    async def functions(self, request: web.Request) -> web.Response:
        """GET /system/functions[/NAME]: the records (the invokers share the
        registry) with `instances` counted over every invoker."""
        answers, nodes = await self._gathered(request, lambda answer: isinstance(answer, (dict, list)))
        response = web.json_response(instances_summed(answers))
        response.headers[NODE_HEADER] = nodes
        return response

    async def nodes(self, request: web.Request) -> web.Response:
        assert self.watch is not None and self.cluster is not None
        now = time.monotonic()
        router = self.cluster.router
        return web.json_response(
            [
                {
                    **node.to_json(),
                    "healthy": node.ready and router.healthy(node.node_id, now),
                    "gateway_in_flight": router.in_flight.get(node.node_id, 0),
                }
                for node in self.watch.nodes.values()
            ]
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if self.watch is None or not any(node.ready for node in self.watch.nodes.values()):
            return web.json_response({"status": "no invoker is ready"}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics_text(self, request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(self.metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response


def create_gateway_app(config: ServerConfig) -> web.Application:
    config.check()
    assert config.database is not None and config.cluster_token is not None  # check() said so
    metrics = Metrics()
    cluster_metrics = ClusterMetrics(metrics.registry)
    max_request = max(config.max_body_bytes, config.code_limit_bytes * 2 + 1024 * 1024)
    app = web.Application(
        middlewares=[
            error_middleware,
            make_limits_middleware(config.body_timeout_s),
            make_guard_middleware(config),
            make_auth_middleware(config.token),
        ],
        client_max_size=max_request,
        handler_args=handler_args(config),
    )
    routes = GatewayRoutes(config, metrics)
    app.router.add_get("/healthz", routes.healthz)
    app.router.add_get("/readyz", routes.readyz)
    app.router.add_get("/metrics", routes.metrics_text)
    app.router.add_get("/system/nodes", routes.nodes)
    app.router.add_get("/system/logs", routes.logs)
    app.router.add_get("/system/functions", routes.functions)
    app.router.add_get("/system/functions/{name}", routes.functions)
    add_function_routes(app, routes.invoke, config.body_timeout_s)
    app.router.add_route("*", "/{tail:[\\s\\S]*}", routes.forward)

    database, token = config.database, config.cluster_token

    async def connected(app: web.Application) -> AsyncIterator[None]:
        async with NodeWatch(database) as watch, InvokerClient(token) as client:
            channels = Channels(client.session, token, max_request + CHANNEL_OVERHEAD_BYTES)
            routes.watch = watch
            routes.cluster = Cluster(
                Router(lambda: watch.nodes, on_change=cluster_metrics.keep_only),
                client,
                channels,
                cluster_metrics,
            )
            cluster_metrics.watch_nodes(lambda: watch.nodes)
            try:
                yield
            finally:
                await channels.aclose()

    app.cleanup_ctx.append(connected)
    return app
