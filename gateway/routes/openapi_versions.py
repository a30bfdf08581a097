"""The OpenAPI document's part for versions, aliases, rollback and secrets
(gateway/routes/versions.py, secrets.py): path items and component schemas,
merged into the document by gateway/routes/openapi.py."""

from __future__ import annotations

from collections.abc import Callable

from invoker.release_validate import ALIAS_NAME_RE, MAX_SECRET_BYTES, SECRET_NAME_RE
from invoker.validate import NAME_RE

from .openapi_schemas import JSON, Obj, json_body, ref

System = Callable[..., Obj]
Errors = Callable[..., Obj]


def release_schemas() -> Obj:
    string, integer = {"type": "string"}, {"type": "integer"}
    # NAME, NAME@VERSION or NAME@ALIAS.
    qualifier = rf"(@([0-9]+|{ALIAS_NAME_RE.pattern.strip('^$')}))?"
    return {
        "QualifiedName": {"type": "string", "pattern": f"{NAME_RE.pattern.rstrip('$')}{qualifier}$"},
        "Alias": {
            "type": "object",
            "required": ["name", "version", "weights", "follows_newest"],
            "properties": {
                "name": string,
                "version": integer,
                "weights": {"type": "object", "additionalProperties": {"type": "number"}},
                "follows_newest": {"type": "boolean"},
            },
        },
        "AliasTarget": {
            "type": "object",
            "additionalProperties": False,
            "required": ["version"],
            "properties": {
                "version": {**integer, "minimum": 1},
                "weights": {
                    "type": "object",
                    "maxProperties": 1,
                    "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
                    "description": 'One other version and the share of calls it gets, e.g. {"4": 0.1}.',
                },
            },
        },
        "Secret": {
            "type": "object",
            "properties": {
                "name": string,
                "size_bytes": integer,
                "created_at": string,
                "updated_at": string,
                "encrypted": {"type": "boolean"},
                "used_by": {"type": "object", "additionalProperties": {"type": "array", "items": integer}},
            },
        },
        "NewSecret": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "oneOf": [{"required": ["value"]}, {"required": ["value_base64"]}],
            "properties": {
                "name": {"type": "string", "pattern": SECRET_NAME_RE.pattern},
                "value": {
                    "type": "string",
                    "description": "The value as text (exactly one of value, value_base64).",
                },
                "value_base64": {
                    "type": "string",
                    "format": "byte",
                    "description": f"The value as base64, at most {MAX_SECRET_BYTES} bytes decoded.",
                },
            },
        },
    }


def _path_param(name: str, pattern: str, description: str) -> Obj:
    schema = {"type": "string", "pattern": pattern}
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def release_paths(system: System, errors: Errors, name: Obj) -> Obj:
    """The path items; `system` and `errors` are openapi.py's builders of a
    /system operation and of error responses, `name` its function parameter."""
    alias_param = _path_param(
        "alias", ALIAS_NAME_RE.pattern, "The alias (`live` is what /function/{name} calls)."
    )
    secret_param = _path_param("name", SECRET_NAME_RE.pattern, "The secret.")
    aliases = {"type": "array", "items": ref("Alias")}
    alias = json_body(ref("Alias"), "The alias.")
    secret = json_body(ref("Secret"), "The secret's metadata (never its value).")
    deleted = json_body({"type": "object", "properties": {"deleted": {"type": "string"}}}, "Deleted.")
    # A version's function record, its warm sandboxes and the names of the aliases pointing at it.
    version_record = {
        "type": "object",
        "required": ["version", "instances", "aliases"],
        "properties": {
            "version": {"type": "integer"},
            "instances": {"type": "integer"},
            "aliases": {"type": "array", "items": {"type": "string"}},
        },
    }
    return {
        "/system/functions/{name}/versions": {
            "get": system(
                "list_versions",
                "The function's retained versions, oldest first, and its aliases",
                {
                    "200": json_body(
                        {
                            "type": "object",
                            "properties": {
                                "function": {"type": "string"},
                                "versions": {"type": "array", "items": version_record},
                                "aliases": aliases,
                            },
                        },
                        "Versions.",
                    ),
                    **errors(404),
                },
                parameters=[name],
            )
        },
        "/system/functions/{name}/aliases": {
            "get": system(
                "list_aliases",
                "The function's aliases, live first",
                {
                    "200": json_body(
                        {
                            "type": "object",
                            "properties": {"function": {"type": "string"}, "aliases": aliases},
                        },
                        "Aliases.",
                    ),
                    **errors(404),
                },
                parameters=[name],
            )
        },
        "/system/functions/{name}/aliases/{alias}": {
            "put": system(
                "put_alias",
                "Point an alias at a version, or split its calls between two",
                {"200": alias, "201": {**alias, "description": "Created."}, **errors(404, 413, 415)},
                parameters=[name, alias_param],
                requestBody={"required": True, "content": {JSON: {"schema": ref("AliasTarget")}}},
            ),
            "delete": system(
                "delete_alias",
                "Delete an alias; for live, unpin it (it follows the newest version again)",
                {
                    "200": json_body({"oneOf": [ref("Alias"), deleted["content"][JSON]["schema"]]}, "Done."),
                    **errors(404, 415),
                },
                parameters=[name, alias_param],
            ),
        },
        "/system/functions/{name}/rollback": {
            "post": system(
                "rollback",
                "Pin live to version `to` (default: the one before live's)",
                {
                    "200": json_body(
                        {
                            "type": "object",
                            "properties": {
                                "function": {"type": "string"},
                                "previous": {"type": "integer"},
                                "live": ref("Alias"),
                            },
                        },
                        "Rolled back.",
                    ),
                    **errors(404, 413, 415),
                },
                parameters=[name],
                requestBody={
                    "required": False,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {"to": {"type": "integer", "minimum": 1}},
                            }
                        }
                    },
                },
            )
        },
        "/system/secrets": {
            "get": system(
                "list_secrets",
                "Every secret's name and metadata (never a value)",
                {"200": json_body({"type": "array", "items": ref("Secret")}, "Secrets.")},
            ),
            "post": system(
                "put_secret",
                "Create a secret, or rotate it (new sandboxes read the new value)",
                {"201": {**secret, "description": "Created."}, "200": secret, **errors(413, 415)},
                requestBody={"required": True, "content": {JSON: {"schema": ref("NewSecret")}}},
            ),
        },
        "/system/secrets/{name}": {
            "get": system(
                "describe_secret",
                "A secret's metadata",
                {"200": secret, **errors(404)},
                parameters=[secret_param],
            ),
            "delete": system(
                "delete_secret",
                "Delete a secret no alias's version uses",
                {"200": deleted, **errors(404, 409, 415)},
                parameters=[secret_param],
            ),
        },
    }
