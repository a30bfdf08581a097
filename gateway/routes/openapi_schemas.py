"""The components of the OpenAPI document (gateway/routes/openapi.py): the
deploy body (from the field table of invoker/fields.py), records, errors."""

from __future__ import annotations

from typing import Any

from invoker.async_model import STATUSES as ASYNC_STATUSES
from invoker.fields import BY_NAME, DEPLOY_FIELDS, DeployField
from invoker.metering import STATUSES
from invoker.release_validate import MAX_SECRETS_PER_FUNCTION, SECRET_NAME_RE
from invoker.validate import MAX_ALLOW_ENTRIES, MAX_FILES, NAME_RE

JSON = "application/json"
Obj = dict[str, Any]


def ref(name: str) -> Obj:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: Obj, description: str) -> Obj:
    return {"description": description, "content": {JSON: {"schema": schema}}}


# Constraints of the non-numeric fields that the field table does not describe.
EXTRA_SCHEMA: dict[str, Obj] = {
    "entry": {"nullable": True},
    "env": {"additionalProperties": {"type": "string"}},
    "cpu_ms_per_call": {"nullable": True},
    "secrets": {
        "items": {"type": "string", "pattern": SECRET_NAME_RE.pattern},
        "maxItems": MAX_SECRETS_PER_FUNCTION,
    },
    "handler": {"nullable": True},
    "max_event_age_s": {"nullable": True},
    "network": {"nullable": True},
    "allow": {"items": {"type": "string", "maxLength": 100}, "maxItems": MAX_ALLOW_ENTRIES, "nullable": True},
    "egress_mbit": {"nullable": True},
}


def _field_schema(field: DeployField, host_cores: float) -> Obj:
    schema: Obj = {"type": field.kind}
    if field.is_number:
        schema |= {"minimum": field.minimum, "maximum": field.maximum_for(host_cores)}
    if field.choices is not None:
        schema["enum"] = list(field.choices)
    if field.default is not None:
        schema["default"] = field.default
    unit = f" Unit: {field.unit}." if field.unit else ""
    return schema | EXTRA_SCHEMA.get(field.name, {}) | {"description": field.full_description + unit}


def deploy_schema(host_cores: float, code_limit_bytes: int) -> Obj:
    """The deploy body, from the field table (invoker/fields.py)."""
    properties = {f.name: _field_schema(f, host_cores) for f in DEPLOY_FIELDS}
    properties["name"] = ref("Name")  # its pattern is a component of its own
    properties["files"] |= {
        "minProperties": 1,
        "maxProperties": MAX_FILES,
        "additionalProperties": {"type": "string", "format": "byte"},
        "description": f"{BY_NAME['files'].description} At most {code_limit_bytes} bytes decoded in all.",
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [f.name for f in DEPLOY_FIELDS if f.required],
        "properties": properties,
    }


def component_schemas(host_cores: float, code_limit_bytes: int) -> Obj:
    number, integer, string = {"type": "number"}, {"type": "integer"}, {"type": "string"}
    counts = ("requests", "errors", "billed_ms", "net_rx_bytes", "net_tx_bytes")
    totals = {
        "type": "object",
        "properties": {
            k: integer if k in counts else number
            for k in (*counts, "gb_seconds", "cpu_seconds", "transfer_gb", "cost")
        },
    }
    nullable_int = {**integer, "nullable": True}
    strings = {"type": "array", "items": string}
    env = {"type": "object", "additionalProperties": string}
    record = {  # FunctionConfig.to_record() and the warm sandboxes
        **{k: string for k in ("name", "handler", "entry", "code_sha256", "created_at", "updated_at")},
        **{k: integer for k in ("version", "memory_mb", "max_instances", "max_queue", "code_size_bytes")},
        **{"timeout_s": number, "cpu": number, "cpu_ms_per_call": nullable_int, "env": env, "files": strings},
        "network": {"type": "string", "enum": list(BY_NAME["network"].choices or ())},
        "allow": strings,
        "egress_mbit": {**number, "nullable": True},
        "instances": integer,
        "secrets": strings,
        "aliases": {"type": "array", "items": ref("Alias")},
        "flavour": {"type": "string", "enum": ["faas", "lambda"]},
        "async_retries": integer,
        "max_event_age_s": nullable_int,
        "layer": {
            "type": "object",
            "nullable": True,
            "properties": {"id": string, "size_bytes": integer, "packages": env},
        },
        "build_ms": {**number, "nullable": True},
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
            # `changed`: in a deploy's answer, whether it made a new version.
            "properties": {**record, "changed": {"type": "boolean"}},
        },
        "Layer": {
            "type": "object",
            "required": ["id", "size_bytes", "packages", "functions", "import_cache"],
            "properties": {
                **{k: string for k in ("id", "python", "created_at")},
                "size_bytes": integer,
                "packages": env,
                "requirements": strings,
                "imports": strings,
                "functions": strings,
                "import_cache": {"type": "object", "properties": {"state": string}},
            },
        },
        "Totals": totals,
        "UsageRecord": {
            "type": "object",
            "properties": {
                **{k: string for k in ("call_id", "function", "started_at")},
                **{k: integer for k in ("version", "billed_ms", "net_rx_bytes", "net_tx_bytes")},
                **{k: number for k in ("wall_ms", "cpu_ms", "max_memory_mb", "memory_mb")},
                "init_ms": {**number, "nullable": True},
                "status": {"type": "string", "enum": list(STATUSES)},
                "cold": {"type": "boolean"},
                "attempt": integer,
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
    409: "Conflict: the secret is used by a version an alias points at, or the asynchronous call is no longer queued (it cannot be cancelled).",
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


def async_schemas() -> Obj:
    """An asynchronous call (AsyncCall.to_json() of invoker/async_model.py) and its listing."""
    string, number, integer = {"type": "string"}, {"type": "number"}, {"type": "integer"}
    nullable_string = {**string, "nullable": True}
    result = {
        "type": "object",
        "nullable": True,
        "properties": {
            "status": integer,
            "headers": {"type": "object", "additionalProperties": string},
            "body": {**string, "format": "byte", "description": "The response body, base64."},
            "duration_s": number,
        },
    }
    call = {
        "type": "object",
        "required": ["call_id", "function", "status", "attempts"],
        "properties": {
            "call_id": string,
            "function": string,
            "status": {"type": "string", "enum": list(ASYNC_STATUSES)},
            "attempts": integer,
            **{k: string for k in ("created_at", "updated_at")},
            **{k: nullable_string for k in ("next_attempt_at", "callback_url", "callback_status", "error")},
            "result_status": {**integer, "nullable": True},
            "result": result,
        },
    }
    return {
        "AsyncCall": call,
        "AsyncCalls": {
            "type": "object",
            "required": ["calls", "next_cursor"],
            "properties": {
                "calls": {"type": "array", "items": call},
                "next_cursor": {**integer, "nullable": True},
            },
        },
        "Accepted": {"type": "object", "required": ["call_id"], "properties": {"call_id": string}},
    }


def error_responses() -> Obj:
    call_id = {"X-Call-Id": {"schema": {"type": "string"}, "description": "The call's id."}}
    return {f"E{c}": {**json_body(ref("Error"), text), "headers": call_id} for c, text in ERROR_TEXT.items()}
