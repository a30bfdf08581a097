"""GET /openapi.json: an OpenAPI 3 description of the whole HTTP API (docs/HTTP-API.md).

Built per server, so that what depends on it is exact: the `cpu` maximum
(the host's cores), the body and code size limits, whether /system needs a
token. tests/gateway/test_openapi.py checks that its paths and methods are
the app's routes and that its deploy ranges are the ones validation applies.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from invoker.async_model import STATUSES as ASYNC_STATUSES
from invoker.metering import TIME_FORMAT_HELP

from ..config import ServerConfig
from .logs import MAX_TAIL
from .openapi_schemas import JSON, Obj, async_schemas, component_schemas, error_responses, json_body, ref
from .openapi_versions import release_paths, release_schemas
from .usage import MAX_LIMIT

# What a `*` route (an invocation) is documented with.
INVOKE_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
WITH_BODY = ("post", "put", "patch")


# Answered by the gateway to any request, before routing.
COMMON = (408, 414, 431)
# Answered to any /system request from a foreign origin or Host (gateway/guard.py);
# a request that changes state also needs a JSON content type (415).
GUARD = (403, 421)


NODE_SCHEMA = {
    "type": "object",
    "required": ["node_id", "address", "ready", "healthy", "in_flight", "sandboxes", "cores", "memory_mb"],
    "properties": {
        "node_id": {"type": "string", "description": "HOST:PORT the gateways call"},
        "address": {"type": "string"},
        "ready": {"type": "boolean", "description": "takes calls (its heartbeat says)"},
        "healthy": {"type": "boolean", "description": "ready, and reachable when last tried"},
        "in_flight": {"type": "integer", "description": "calls running there"},
        "sandboxes": {"type": "integer", "description": "warm sandboxes, busy or idle"},
        "cores": {"type": "integer"},
        "memory_mb": {"type": "integer"},
        "gateway_in_flight": {"type": "integer", "description": "at a cluster gateway: its own calls there"},
    },
}


def _errors(*codes: int) -> Obj:
    return {str(c): {"$ref": f"#/components/responses/E{c}"} for c in codes}


def _query(name: str, schema: Obj, description: str, required: bool = False, empty: bool = False) -> Obj:
    param = {"name": name, "in": "query", "required": required, "schema": schema, "description": description}
    if empty:  # `name=` counts as not given
        param["allowEmptyValue"] = True
    return param


def _name_param(description: str) -> Obj:
    return {"name": "name", "in": "path", "required": True, "schema": ref("Name"), "description": description}


def _invoke_ops(prefix: str, with_path: bool, max_body_bytes: int) -> Obj:
    params = [
        {
            **_name_param("The function (its live alias), NAME@VERSION or NAME@ALIAS."),
            "schema": ref("QualifiedName"),
        }
    ]
    if with_path:
        params.append(
            {
                "name": "path",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "Passed to the function as event.path (after a leading '/').",
            }
        )
    ops: Obj = {}
    for method in INVOKE_METHODS:
        op: Obj = {
            "operationId": f"{prefix}_{method}",
            "tags": ["invocation"],
            "summary": f"Call the function synchronously ({method.upper()})",
            "description": "Query string, headers and body are passed through; the function's "
            "answer is the response (headers X-Duration-Ms, X-Billed-Duration-Ms, X-Cold-Start).",
            "parameters": params,
            "responses": {
                "default": {"description": "What the function returned.", "headers": _call_id()},
                **_errors(404, 413, 429, 500, 502, 503, 504, *COMMON),
            },
        }
        if method in WITH_BODY:
            op["requestBody"] = {
                "required": False,
                "description": f"Any bytes, at most {max_body_bytes}.",
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    JSON: {"schema": {}},
                },
            }
        ops[method] = op
    return ops


def _call_id() -> Obj:
    return {"X-Call-Id": {"schema": {"type": "string"}, "description": "The call's id."}}


def _system(op_id: str, summary: str, responses: Obj, **extra: Any) -> Obj:
    return {
        "operationId": op_id,
        "tags": ["management"],
        "summary": summary,
        "responses": {**responses, **_errors(400, 401, *GUARD, *COMMON)},
        **extra,
    }


def _ops(op_id: str, summary: str, response: Obj) -> Obj:
    return {
        "get": {
            "operationId": op_id,
            "tags": ["operations"],
            "summary": summary,
            "responses": {"200": response, **_errors(*COMMON)},
        }
    }


def _async_paths(max_body_bytes: int) -> Obj:
    """POST /async-function/..., /system/async (gateway/routes/async_calls.py)."""
    call_id = {
        "name": "call_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"},
        "description": "The call's id (X-Call-Id of its 202).",
    }
    callback = {
        "name": "X-Callback-Url",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "Where the result is POSTed when the call ends (http or https; the callback policy applies).",
    }
    path = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
    body = {
        "required": False,
        "description": f"Any bytes, at most {max_body_bytes}.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
    accepted = {"202": json_body(ref("Accepted"), "Queued durably; X-Call-Id names the call.")}

    def enqueue(op_id: str, params: list[Obj]) -> Obj:
        return {
            "post": {
                "operationId": op_id,
                "tags": ["invocation"],
                "summary": "Call the function asynchronously",
                "parameters": params,
                "requestBody": body,
                "responses": {**accepted, **_errors(400, 404, 413, 429, 503, *COMMON)},
            }
        }

    listing = [
        _query("function", ref("Name"), "Only this function.", empty=True),
        _query(
            "status",
            {"type": "string", "enum": list(ASYNC_STATUSES)},
            "Only calls in this status.",
            empty=True,
        ),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 1000}, "At most."),
        _query(
            "cursor", {"type": "integer", "minimum": 0, "maximum": 2**62, "default": 0}, "After this cursor."
        ),
    ]
    call = json_body(ref("AsyncCall"), "The call: status, attempts, result.")
    return {
        "/async-function/{name}": enqueue("invoke_async", [_name_param("The function."), callback]),
        "/async-function/{name}/{path}": enqueue(
            "invoke_async_path", [_name_param("The function."), path, callback]
        ),
        "/system/async": {
            "get": _system(
                "list_async_calls",
                "Asynchronous calls, oldest first",
                {"200": json_body(ref("AsyncCalls"), "A page of calls.")},
                parameters=listing,
            )
        },
        "/system/async/{call_id}": {
            "get": _system(
                "get_async_call", "An asynchronous call", {"200": call, **_errors(404)}, parameters=[call_id]
            ),
            "delete": _system(
                "cancel_async_call",
                "Cancel a queued asynchronous call",
                {"200": call, **_errors(404, 409, 415)},
                parameters=[call_id],
            ),
        },
    }


def build_document(config: ServerConfig, host_cores: float) -> Obj:
    deploy = {"required": True, "content": {JSON: {"schema": ref("Deploy")}}}
    fn = json_body(ref("Function"), "The function record.")
    deploy_responses = {
        "201": {**fn, "description": "Created."},
        "200": {**fn, "description": "Updated."},
        **_errors(413, 415),
    }
    name = _name_param("The function.")
    text = {
        "description": "Prometheus text format.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    security = [{"bearerAuth": []}] if config.token else [{}, {"bearerAuth": []}]
    logs_params = [
        _query("name", ref("Name"), "The function (required; `function` is an alias)."),
        _query("function", ref("Name"), "Alias of `name`."),
        _query(
            "tail",
            {"type": "integer", "minimum": 0, "maximum": MAX_TAIL, "default": 100},
            "How many of the last lines.",
        ),
    ]
    usage_params = [
        _query(name, schema, text, empty=True)
        for name, schema, text in (
            ("function", ref("Name"), "Only this function."),
            ("since", {"type": "string"}, f"From this time: {TIME_FORMAT_HELP}."),
            ("until", {"type": "string"}, f"Up to this time: {TIME_FORMAT_HELP}."),
            ("records", {"type": "string"}, "1, true or yes: include the usage records."),
            (
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 1000},
                "At most this many records.",
            ),
            (
                "cursor",
                {"type": "integer", "minimum": 0, "maximum": 2**62, "default": 0},
                "Records after this cursor (next_cursor of the previous page).",
            ),
        )
    ]
    paths: Obj = {
        "/function/{name}": _invoke_ops("invoke", False, config.max_body_bytes),
        "/function/{name}/{path}": _invoke_ops("invoke_path", True, config.max_body_bytes),
        "/system/functions": {
            "get": _system(
                "list_functions",
                "List functions",
                {"200": json_body({"type": "array", "items": ref("Function")}, "Function records.")},
            ),
            "post": _system(
                "deploy_function", "Create or update a function", deploy_responses, requestBody=deploy
            ),
            "put": _system("deploy_function_put", "Alias of POST", deploy_responses, requestBody=deploy),
        },
        "/system/functions/{name}": {
            "get": _system(
                "describe_function", "Describe a function", {"200": fn, **_errors(404)}, parameters=[name]
            ),
            "delete": _system(
                "delete_function",
                "Delete a function (its sandboxes are drained)",
                {
                    "200": json_body(
                        {"type": "object", "properties": {"deleted": {"type": "string"}}}, "Deleted."
                    ),
                    **_errors(404, 415),
                },
                parameters=[name],
            ),
        },
        "/system/logs": {
            "get": _system(
                "logs",
                "Log lines of a function",
                {
                    "200": json_body(
                        {
                            "type": "object",
                            "properties": {
                                "function": {"type": "string"},
                                "lines": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                        "Lines `ISO-TIME CALL-ID TEXT`, oldest first.",
                    ),
                    **_errors(404),
                },
                parameters=logs_params,
            )
        },
        "/system/layers": {
            "get": _system(
                "list_layers",
                "Layers: installed requirements, the functions using them, their import caches",
                {"200": json_body({"type": "array", "items": ref("Layer")}, "Layers, oldest first.")},
            )
        },
        "/system/usage": {
            "get": _system(
                "usage",
                "Usage totals and cost; records on request",
                {"200": json_body(ref("Usage"), "Totals."), **_errors(503)},
                parameters=usage_params,
            )
        },
        "/system/nodes": {
            "get": _system(
                "nodes",
                "The invokers serving calls: this server, or a cluster gateway's live invokers",
                {"200": json_body({"type": "array", "items": NODE_SCHEMA}, "The invokers."), **_errors()},
            )
        },
        "/healthz": _ops(
            "healthz", "200 while the process serves", json_body({"type": "object"}, "Serving.")
        ),
        "/readyz": _ops(
            "readyz", "200 once the sandbox pool can take calls", json_body({"type": "object"}, "Ready.")
        ),
        "/metrics": _ops("metrics", "Prometheus metrics (docs/METRICS.md)", text),
        "/openapi.json": _ops("openapi", "This document", json_body({"type": "object"}, "OpenAPI 3.")),
    }
    paths.update(release_paths(_system, _errors, name))
    paths.update(_async_paths(config.max_body_bytes))
    paths["/readyz"]["get"]["responses"]["503"] = json_body({"type": "object"}, "Not ready yet.")
    for path, item in paths.items():
        for op in item.values():
            if path.startswith("/system"):
                op["security"] = security
            for response in op["responses"].values():
                if "$ref" not in response:
                    response.setdefault("headers", _call_id())
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "faas",
            "version": "1",
            "description": "A serverless runtime for Python functions.",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in ("invocation", "management", "operations")],
        "paths": paths,
        "components": {
            "schemas": component_schemas(host_cores, config.code_limit_bytes)
            | release_schemas()
            | async_schemas(),
            "responses": error_responses(),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


def make_openapi_handler(config: ServerConfig, host_cores: float) -> web.RequestHandler:  # type: ignore[name-defined]
    document = build_document(config, host_cores)

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    return openapi
