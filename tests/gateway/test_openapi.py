"""The OpenAPI document is in step with the code: its paths and methods are the
app's routes, and its deploy defaults and ranges are the ones validation applies."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.config import ServerConfig
from gateway.lambda_api.app import PREFIX as LAMBDA_PREFIX
from gateway.routes.openapi import INVOKE_METHODS, build_document
from invoker.errors import BadRequest
from invoker.fields import BY_NAME
from invoker.validate import Limits, validate_deploy

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
CORES = 4.0


def app_routes(app: Any) -> set[tuple[str, str]]:
    # aiohttp adds a HEAD route to every add_get: part of the GET, not a route of its own.
    gets = {r.resource.canonical for r in app.router.routes() if r.method == "GET"}
    routes: set[tuple[str, str]] = set()
    for route in app.router.routes():
        path, method = route.resource.canonical, route.method.lower()
        if path.startswith(LAMBDA_PREFIX):  # AWS's own API: its contract is AWS's model, not this document
            continue
        if method == "*":
            routes |= {(path, m) for m in INVOKE_METHODS}
        elif not (method == "head" and path in gets):
            routes.add((path, method))
    return routes


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, m) for path, item in doc["paths"].items() for m in item if m in HTTP_METHODS}


def test_every_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=str(tmp_path))
    app = create_app(config)
    doc = build_document(config, CORES)
    routes, docs = app_routes(app), documented(doc)
    assert routes - docs == set(), "routes missing from gateway/routes/openapi.py"
    assert docs - routes == set(), "documented operations with no route"


def test_operation_ids_are_unique_and_every_operation_answers_errors_as_json() -> None:
    doc = build_document(ServerConfig(), CORES)
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for item in doc["paths"].values():
        for op in item.values():
            assert {"408", "414", "431"} <= set(op["responses"]), op["operationId"]
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]


def test_document_loads_in_schemathesis() -> None:
    schemathesis = pytest.importorskip("schemathesis")
    schema = schemathesis.openapi.from_dict(build_document(ServerConfig(), CORES))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(documented(build_document(ServerConfig(), CORES)))


def test_bearer_auth_is_required_on_system_only_when_a_token_is_set() -> None:
    with_token = build_document(ServerConfig(token="t"), CORES)
    without = build_document(ServerConfig(), CORES)
    for doc, expected in ((with_token, [{"bearerAuth": []}]), (without, [{}, {"bearerAuth": []}])):
        assert doc["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
        for path, item in doc["paths"].items():
            for op in item.values():
                assert op.get("security") == (expected if path.startswith("/system") else None), path


# -- deploy body: defaults and ranges are validation's -------------------------

HANDLER = base64.b64encode(b"def handle(event, context):\n    return 1\n").decode()


def deploy(**fields: Any) -> Any:
    body = {"name": "f", "files": {"handler.py": HANDLER}, **fields}
    config, _ = validate_deploy(body, Limits(host_cores=CORES), version=1, now=0.0)
    return config


def numeric_fields() -> list[tuple[str, dict[str, Any]]]:
    props = build_document(ServerConfig(), CORES)["components"]["schemas"]["Deploy"]["properties"]
    return [(k, v) for k, v in props.items() if v.get("type") in ("integer", "number")]


def test_deploy_schema_lists_exactly_the_fields_validation_knows() -> None:
    from invoker.validate import FIELDS

    deploy_schema = build_document(ServerConfig(), CORES)["components"]["schemas"]["Deploy"]
    assert set(deploy_schema["properties"]) == FIELDS
    assert deploy_schema["additionalProperties"] is False
    assert set(deploy_schema["required"]) == {"name", "files"}


@pytest.mark.parametrize("field,schema", numeric_fields(), ids=[k for k, _ in numeric_fields()])
def test_deploy_ranges_and_defaults_match_validation(field: str, schema: dict[str, Any]) -> None:
    lo, hi = schema["minimum"], schema["maximum"]
    if field == "cpu":
        assert hi == CORES
    # A field that needs another (egress_mbit: network outbound) gets it.
    needs = BY_NAME[field].needs
    beside = {needs[0]: needs[1]} if needs else {}
    assert getattr(deploy(**{field: lo}, **beside), field) == lo
    assert getattr(deploy(**{field: hi}, **beside), field) == hi
    step = 1 if schema["type"] == "integer" else 0.001
    for outside in (lo - step, hi + step):
        with pytest.raises(BadRequest, match=field):
            deploy(**{field: outside}, **beside)
    if schema["type"] == "integer":
        with pytest.raises(BadRequest, match=field):
            deploy(**{field: lo + 0.5}, **beside)
    assert getattr(deploy(), field) == schema.get("default")
