"""create_app(config): the one factory that builds the aiohttp application.

Dependencies (metrics, invoker) are made here and passed to each route's
factory; nothing is global. The invoker is entered on startup and exited on
cleanup, so teardown runs in reverse order of setup.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator

from aiohttp import web

from invoker.errors import Unauthorized
from invoker.invoker import Invoker
from invoker.metrics import Metrics
from invoker.validate import host_cores

from .bodies import BufferedBodies
from .cluster.channel_server import ChannelServer
from .cluster.invoker_side import make_cluster_auth_middleware, node_lease_context
from .cluster.wire import PATH as CHANNEL_PATH
from .config import ServerConfig
from .errors import Handler, error_middleware, http_status
from .fast_path import add_function_routes
from .guard import make_guard_middleware
from .lambda_api.app import PREFIX as LAMBDA_PREFIX
from .lambda_api.app import make_lambda_app
from .limits import handler_args, make_limits_middleware
from .routes.async_calls import AsyncRoutes
from .routes.functions import FunctionRoutes
from .routes.invoke import make_invoke_handler
from .routes.layers import make_layers_handler
from .routes.logs import make_logs_handler
from .routes.nodes import make_nodes_handler
from .routes.openapi import make_openapi_handler
from .routes.ops import OpsRoutes
from .routes.secrets import SecretRoutes
from .routes.usage import make_usage_handler
from .routes.versions import VersionRoutes

# A call's framing around its request: method, path, query, headers, ids.
CHANNEL_OVERHEAD_BYTES = 256 * 1024

INVOKER = web.AppKey("invoker", Invoker)
METRICS = web.AppKey("metrics", Metrics)
CONFIG = web.AppKey("config", ServerConfig)


def make_auth_middleware(token: str | None) -> web.Middleware:  # type: ignore[name-defined]
    expected = f"Bearer {token}".encode() if token else None

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is not None and request.path.startswith("/system"):
            # Bytes that are not UTF-8 arrive as surrogate escapes: compare them as the bytes sent.
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, expected):
                raise Unauthorized("missing or wrong token: send Authorization: Bearer TOKEN")
        return await handler(request)

    return auth


def create_app(config: ServerConfig) -> web.Application:
    config.check()
    metrics = Metrics()
    invoker = Invoker(config.invoker_config(), metrics, http_status=http_status)
    # Room for a deploy somewhat over code_limit_bytes in base64 (4/3), so that
    # one gets validation's precise 400; invocations enforce their own, smaller
    # limit while reading.
    max_request = max(config.max_body_bytes, config.code_limit_bytes * 2 + 1024 * 1024)
    if config.role == "invoker":
        # Reached only through the cluster's gateways, which check the user's side.
        assert config.cluster_token is not None  # config.check() said so
        checks = [make_cluster_auth_middleware(config.cluster_token)]
    else:
        checks = [make_guard_middleware(config), make_auth_middleware(config.token)]
    app = web.Application(
        middlewares=[error_middleware, make_limits_middleware(config.body_timeout_s), *checks],
        client_max_size=max_request,
        handler_args=handler_args(config),
    )
    app[CONFIG] = config
    app[METRICS] = metrics
    app[INVOKER] = invoker

    bodies = BufferedBodies(config.max_buffered_bytes)
    invoke = make_invoke_handler(invoker, metrics, bodies, config.max_body_bytes, config.token)
    # An invoker of a cluster checks the cluster's token first: no fast path there.
    add_function_routes(app, invoke, config.body_timeout_s, fast=config.role != "invoker")
    AsyncRoutes(invoker, bodies, config.max_body_bytes, config.token).add_to(app.router)
    FunctionRoutes(invoker).add_to(app.router)
    VersionRoutes(invoker).add_to(app.router)
    SecretRoutes(invoker).add_to(app.router)
    app.router.add_get("/system/logs", make_logs_handler(invoker))
    app.router.add_get("/system/layers", make_layers_handler(invoker))
    app.router.add_get("/system/usage", make_usage_handler(invoker, config.pricing))
    app.router.add_get("/system/nodes", make_nodes_handler(invoker, config.advertised))
    channels = ChannelServer(invoker, metrics, max_request + CHANNEL_OVERHEAD_BYTES)
    if config.role == "invoker":
        app.router.add_get(CHANNEL_PATH, channels.channel)
    OpsRoutes(invoker, metrics).add_to(app.router)
    app.add_subapp(LAMBDA_PREFIX, make_lambda_app(invoker, metrics, config))
    app.router.add_get("/openapi.json", make_openapi_handler(config, host_cores()))

    async def invoker_context(app: web.Application) -> AsyncIterator[None]:
        async with invoker:
            yield

    app.cleanup_ctx.append(invoker_context)
    if config.role == "invoker":
        # Registered once ready; the row goes before the invoker tears down.
        assert config.database is not None
        app.cleanup_ctx.append(node_lease_context(invoker, config.database, config.advertised))

    async def drain(app: web.Application) -> None:
        # Runs once the listener is closed, before aiohttp waits for the
        # requests in flight: calls still arriving on open connections get 503.
        invoker.drain()

    app.on_shutdown.append(drain)
    app.on_shutdown.append(channels.close)
    return app
