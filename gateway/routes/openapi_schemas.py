"""The components of the OpenAPI document (gateway/routes/openapi.py): the
deploy body with SPEC section 2's defaults and ranges, records, errors."""

from __future__ import annotations

from typing import Any

from invoker.metering import STATUSES
from invoker.validate import MAX_FILES, NAME_RE

JSON = "application/json"
Obj = dict[str, Any]


def ref(name: str) -> Obj:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: Obj, description: str) -> Obj:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _num(kind: str, default: Any, lo: float, hi: float, description: str) -> Obj:
    schema: Obj = {"type": kind, "minimum": lo, "maximum": hi, "description": description}
    if default is not None:
        schema["default"] = default
    return schema


def deploy_schema(host_cores: float, code_limit_bytes: int) -> Obj:
    """The deploy body with the defaults and ranges of SPEC section 2."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "files"],
        "properties": {
            "name": ref("Name"),
            "files": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": MAX_FILES,
                "additionalProperties": {"type": "string", "format": "byte"},
                "description": "Relative path (no '..', no leading '/', no backslash) to base64 "
                f"content; at most {code_limit_bytes} bytes decoded in all.",
            },
            "entry": {
                "type": "string",
                "nullable": True,
                "default": "handle",
                "description": "The handler function, or module.function to pick its file.",
            },
            "memory_mb": _num("integer", 128, 32, 10240, "Memory limit of one sandbox in MiB."),
            "timeout_s": _num("number", 30, 0.1, 900, "Wall-clock limit of one call."),
            "cpu": _num("number", 1.0, 0.05, host_cores, "CPU quota in cores (at most the host's)."),
            "cpu_ms_per_call": {
                **_num("integer", None, 1, 900000, "CPU-time budget of one call; none by default."),
                "nullable": True,
            },
            "env": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Environment variables: names match [A-Za-z_][A-Za-z0-9_]*.",
            },
            "max_instances": _num("integer", 10, 1, 1000, "Sandboxes of the function at once."),
            "max_queue": _num("integer", 1000, 0, 100000, "Calls waiting for a sandbox (FIFO)."),
        },
    }


def component_schemas(host_cores: float, code_limit_bytes: int) -> Obj:
    number, integer, string = {"type": "number"}, {"type": "integer"}, {"type": "string"}
    totals = {
        "type": "object",
        "properties": {
            k: integer if k in ("requests", "errors", "billed_ms") else number
            for k in ("requests", "errors", "billed_ms", "gb_seconds", "cpu_seconds", "cost")
        },
    }
    nullable_int = {**integer, "nullable": True}
    strings = {"type": "array", "items": string}
    env = {"type": "object", "additionalProperties": string}
    record = {  # FunctionConfig.to_record() and the warm sandboxes
        **{k: string for k in ("name", "handler", "entry", "code_sha256", "created_at", "updated_at")},
        **{k: integer for k in ("version", "memory_mb", "max_instances", "max_queue", "code_size_bytes")},
        **{"timeout_s": number, "cpu": number, "cpu_ms_per_call": nullable_int, "env": env, "files": strings},
        "instances": integer,
    }
    return {
        "Name": {"type": "string", "pattern": NAME_RE.pattern, "maxLength": 63},
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": string, "call_id": string},
        },
        "Deploy": deploy_schema(host_cores, code_limit_bytes),
        "Function": {
            "type": "object",
            "required": list(record),
            "properties": record,
        },
        "Totals": totals,
        "UsageRecord": {
            "type": "object",
            "properties": {
                **{k: string for k in ("call_id", "function", "started_at")},
                **{k: integer for k in ("version", "billed_ms")},
                **{k: number for k in ("wall_ms", "cpu_ms", "max_memory_mb", "memory_mb")},
                "init_ms": {**number, "nullable": True},
                "status": {"type": "string", "enum": list(STATUSES)},
                "cold": {"type": "boolean"},
            },
        },
        "Usage": {
            "type": "object",
            "required": ["functions", "totals"],
            "properties": {
                "since": {**string, "nullable": True},
                "until": {**string, "nullable": True},
                "function": {**string, "nullable": True},
                "pricing": {"type": "object", "additionalProperties": number},
                "functions": {
                    "type": "array",
                    "items": {**totals, "properties": {**totals["properties"], "function": string}},
                },
                "totals": totals,
                "records": {"type": "array", "items": ref("UsageRecord")},
                "next_cursor": {**integer, "nullable": True},
            },
        },
    }


ERROR_TEXT = {
    400: "Bad request: a precise message says what is wrong.",
    401: "Missing or wrong bearer token (only when the server has one).",
    403: "A web page of another origin (Origin not the server's own nor in allowed_origins).",
    404: "No such function or route.",
    405: "Method not allowed (Allow lists the allowed ones).",
    408: "The request body did not arrive in time.",
    413: "Request body over the limit.",
    414: "Request target too long.",
    415: "A request that changes state must have Content-Type: application/json.",
    421: "The Host header does not name this server (nor is it in allowed_hosts).",
    429: "The function's concurrency limit and wait queue are full (Retry-After).",
    431: "Request headers too large.",
    500: "The handler raised, or returned an unsupported type.",
    502: "The sandbox died: out of memory, crashed, exited, or broke the protocol.",
    503: "Shutting down, no capacity, or metering is off.",
    504: "The call ran past its timeout or its CPU-time budget.",
}


def error_responses() -> Obj:
    call_id = {"X-Call-Id": {"schema": {"type": "string"}, "description": "The call's id."}}
    return {f"E{c}": {**json_body(ref("Error"), text), "headers": call_id} for c, text in ERROR_TEXT.items()}
