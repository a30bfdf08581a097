"""Fuzz the whole HTTP API from its own OpenAPI document (schemathesis).

A real server; every documented operation gets a bounded number of generated
requests, valid and invalid. Invocations go to one deployed function that
never raises, so any 500 is the gateway's own. Asserted: no 5xx the gateway
causes, every answer has an X-Call-Id, every 4xx/5xx is JSON with an "error" message, and responses conform
to the document (status codes, content types, schemas); invalid input is
rejected. Bounded: ~30 examples per operation and mode, about 20 s.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.config import ServerConfig  # noqa: E402
from gateway.routes.openapi import build_document  # noqa: E402
from invoker.validate import host_cores  # noqa: E402
from tests.helpers import Server  # noqa: E402

# FAAS_FUZZ_EXAMPLES=300 FAAS_FUZZ_RANDOM=1 for a longer, non-repeatable run.
EXAMPLES = int(os.environ.get("FAAS_FUZZ_EXAMPLES", "30"))

TARGET = "fuzz-target"
NEVER_RAISES = """
def handle(event, context):
    return {"method": event.method, "path": event.path, "size": len(event.body)}
"""
HANDLER = base64.b64encode(NEVER_RAISES.encode()).decode()
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("fuzz") / "d").start()
    srv.deploy_ok(TARGET, NEVER_RAISES, timeout_s=10, max_instances=2)
    yield srv
    code = srv.stop()
    assert code == 0, f"faas serve exited with {code}:\n{srv.log()[-4000:]}"


@pytest.fixture(scope="module")
def api_schema(fuzz_server: Server) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


# Paths whose name is the fuzz target's: they call it (synchronously or not).
INVOCATIONS = ("/function/", "/async-function/")

# The operations, known at collection time from the same builder the server
# uses; invalid input only where there is something to make invalid (an
# invocation takes any path, query, headers and body; its name is fixed).
CASES = [
    pytest.param(path, method, mode, id=f"{method.upper()} {path} {mode.value}")
    for path, item in build_document(ServerConfig(), host_cores())["paths"].items()
    for method, op in item.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE
    or (not path.startswith(INVOCATIONS) and (op.get("parameters") or op.get("requestBody")))
]


def check(case: Any, server: Server) -> None:
    response = case.call(base_url=server.url, timeout=30)
    headers = {k.lower(): v for k, v in response.headers.items()}
    assert headers.get("x-call-id"), f"{case.method} {case.formatted_path}: no X-Call-Id"
    if response.status_code >= 400:
        shown = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
        assert headers.get("content-type", [""])[0].startswith("application/json"), shown
        if case.method != "HEAD":  # no body to a HEAD
            body = response.json()
            assert isinstance(body.get("error"), str) and body["error"], shown
    case.validate_response(response, checks=CHECKS)


@pytest.mark.parametrize("path,method,mode", CASES)
def test_operation(
    path: str, method: str, mode: GenerationMode, api_schema: Any, fuzz_server: Server
) -> None:
    operation = api_schema[path][method.upper()]
    fixed = {"name": TARGET} if path.startswith(INVOCATIONS) else None  # exists, never raises
    valid_code = path == "/system/functions" and mode is GenerationMode.POSITIVE
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=not os.environ.get("FAAS_FUZZ_RANDOM"),
        database=None,
        phases=[Phase.generate],
    )
    def run(case: Any) -> None:
        if valid_code and isinstance(case.body, dict) and len(str(case.body.get("name"))) % 2:
            case.body["files"] = {"handler.py": HANDLER}  # so that some deploys succeed
        check(case, fuzz_server)

    run()


def test_server_survived_and_logged_no_gateway_error(fuzz_server: Server) -> None:
    assert fuzz_server.request("GET", "/healthz").status == 200
    assert fuzz_server.invoke(TARGET).json()["method"] == "GET"
    log = fuzz_server.log()
    assert "unhandled error in" not in log, log[-4000:]
