"""The Lambda API as an aiohttp sub-application mounted at /2015-03-31: its
routes, its error shape (lambda_errors) and its authentication.

With a token on the server, every request must carry an AWS SigV4
signature made with `lambda_access_key_id` and `lambda_secret_access_key`
(a server without those refuses them all). Without a token the server
listens on loopback only and requests may come unsigned; then, as for
/system, a request a web page could have sent is refused (gateway/guard.py):
a Host that does not name the server, a foreign Origin, and for the
management operations a body not declared JSON. Invoke, like /function/,
takes any body.
"""

from __future__ import annotations

from aiohttp import web

from invoker.invoker import Invoker
from invoker.metrics import Metrics

from ..config import ServerConfig
from ..errors import Handler
from ..guard import BrowserGuard
from .errors import UnrecognizedClient, lambda_errors
from .functions import FunctionOperations
from .invoke import InvokeOperation
from .sigv4 import verify
from .versions import VersionOperations

PREFIX = "/2015-03-31"
INVOKE_ROUTE = "invoke_function"


def make_auth_middleware(config: ServerConfig) -> web.Middleware:  # type: ignore[name-defined]
    guard = BrowserGuard(config)
    key_id, secret = config.lambda_access_key_id, config.lambda_secret_access_key

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not config.token:
            guard.check(request, content_type=request.match_info.route.name != INVOKE_ROUTE)
            return await handler(request)
        if not key_id or not secret:
            raise UnrecognizedClient(
                "this server takes no signed requests: set lambda_access_key_id and lambda_secret_access_key"
            )
        verify(request.method, request.raw_path, request.headers, await request.read(), key_id, secret)
        return await handler(request)

    return authenticate


def make_lambda_app(invoker: Invoker, metrics: Metrics, config: ServerConfig) -> web.Application:
    app = web.Application(middlewares=[lambda_errors, make_auth_middleware(config)])
    FunctionOperations(invoker, config.lambda_region, config.code_limit_bytes).add_to(app.router)
    VersionOperations(invoker, config.lambda_region).add_to(app.router)
    invoke = InvokeOperation(invoker, metrics, config.max_body_bytes)
    app.router.add_post("/functions/{name}/invocations", invoke.invoke, name=INVOKE_ROUTE)
    return app
