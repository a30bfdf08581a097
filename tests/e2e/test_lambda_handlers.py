"""Lambda handlers run unmodified behind /function/NAME: deployed as a
lambda_function.py or with a handler string, they get the Function URL
event (payload 2.0), Lambda's context, and their answers follow the
Function URL response rules."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.helpers import Server

from .lambda_samples import ECHO_EVENT, IMAGE, JSON_API, PNG, RAISES


@pytest.fixture(scope="module")
def deployed(server: Server) -> Server:
    server.deploy_ok(
        "url-echo", ECHO_EVENT, handler="handler.lambda_handler", memory_mb=192, env={"GREETING": "hello"}
    )
    return server


def deploy_lambda(server: Server, name: str, source: str) -> dict[str, Any]:
    body = {"name": name, "files": {"lambda_function.py": base64.b64encode(source.encode()).decode()}}
    resp = server.request("POST", "/system/functions", json_body=body)
    assert resp.status in (200, 201), resp.text
    return resp.json()


def echo(server: Server, **request: Any) -> dict[str, Any]:
    resp = server.request(request.pop("method", "POST"), request.pop("path", "/function/url-echo"), **request)
    assert resp.status == 200, resp.text
    return {**json.loads(resp.body), "call_id": resp.headers["X-Call-Id"]}


def test_the_handler_string_selects_lambdas_convention(deployed: Server) -> None:
    record = deployed.request("GET", "/system/functions/url-echo").json()
    assert (record["flavour"], record["handler"]) == ("lambda", "handler.lambda_handler")


def test_an_http_call_gets_the_function_url_event(deployed: Server) -> None:
    got = echo(
        deployed,
        path="/function/url-echo/items/7?a=1&a=2&b=x%20y",
        body=b'{"n": 1}',
        headers={
            "Content-Type": "application/json",
            "Cookie": "c1=v1; c2=v2",
            "X-Trace": "t",
            "User-Agent": "tester/1",
        },
    )
    event = got["event"]
    assert (event["version"], event["routeKey"]) == ("2.0", "$default")
    assert (event["rawPath"], event["rawQueryString"]) == ("/items/7", "a=1&a=2&b=x%20y")
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["headers"]["x-trace"] == "t" and event["headers"]["content-type"] == "application/json"
    assert all(name == name.lower() for name in event["headers"])
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    http = event["requestContext"]["http"]
    assert (http["method"], http["path"], http["protocol"]) == ("POST", "/items/7", "HTTP/1.1")
    assert (http["sourceIp"], http["userAgent"]) == ("127.0.0.1", "tester/1")
    assert event["requestContext"]["requestId"] == got["call_id"]
    assert isinstance(event["requestContext"]["timeEpoch"], int)
    assert (event["body"], event["isBase64Encoded"]) == ('{"n": 1}', False)


def test_a_binary_body_arrives_base64(deployed: Server) -> None:
    event = echo(deployed, body=PNG, headers={"Content-Type": "image/png"})["event"]
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == PNG


def test_the_context_and_environment_are_lambdas(deployed: Server) -> None:
    got = echo(deployed, method="GET")
    context, env = got["context"], got["env"]
    assert context["aws_request_id"] == got["call_id"]
    assert (context["function_name"], context["function_version"]) == ("url-echo", "1")
    assert context["invoked_function_arn"] == "arn:aws:lambda:us-east-1:000000000000:function:url-echo:1"
    assert context["memory_limit_in_mb"] == "192"
    assert context["log_group_name"] == "/aws/lambda/url-echo"
    assert context["log_stream_name"].split("/")[-1].startswith("[$LATEST]")
    assert context["identity"] == [None, None] and context["client_context"] is None
    assert 0 < context["remaining_ms"] <= 30_000
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "url-echo" and env["AWS_REGION"] == "us-east-1"
    assert env["GREETING"] == "hello"


def test_a_json_api_answers_by_the_response_rules(server: Server) -> None:
    deploy_lambda(server, "url-api", JSON_API)
    got = server.request("GET", "/function/url-api?id=1")
    assert got.status == 200 and got.json() == {"id": "1", "name": "apple"}
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers.get_all("Set-Cookie") == ["session=abc; HttpOnly"]
    made = server.request("POST", "/function/url-api", json_body={"name": "pear"})
    assert made.json() == {"name": "pear", "created": True}
    refused = server.request("DELETE", "/function/url-api")
    assert refused.status == 400 and "Unsupported method" in refused.text


def test_a_base64_image_answer_is_binary(server: Server) -> None:
    deploy_lambda(server, "url-image", IMAGE)
    got = server.request("GET", "/function/url-image")
    assert (got.status, got.headers["Content-Type"], got.body) == (200, "image/png", PNG)


def test_plain_values_are_json_answers(server: Server) -> None:
    deploy_lambda(server, "url-plain", "def lambda_handler(event, context):\n    return 'Hello, world!'\n")
    got = server.request("GET", "/function/url-plain")
    assert (got.status, got.headers["Content-Type"], got.body) == (
        200,
        "application/json",
        b'"Hello, world!"',
    )


def test_a_raising_handler_is_a_500_with_its_error(server: Server) -> None:
    deploy_lambda(server, "url-raises", RAISES)
    got = server.request("GET", "/function/url-raises")
    assert got.status == 500 and got.json()["error"] == "CustomError: Something went wrong"


def test_a_handler_string_names_any_module(server: Server) -> None:
    source = "def main(event, context):\n    return {'path': event['rawPath']}\n"
    files = {"app/service.py": base64.b64encode(source.encode()).decode(), "app/__init__.py": ""}
    resp = server.request(
        "POST",
        "/system/functions",
        json_body={"name": "url-module", "files": files, "handler": "app/service.main"},
    )
    assert resp.status == 201, resp.text
    assert server.request("GET", "/function/url-module/x").json() == {"path": "/x"}
    both = server.request(
        "POST",
        "/system/functions",
        json_body={"name": "url-both", "files": files, "handler": "app.service.main", "entry": "main"},
    )
    assert both.status == 400 and "not both" in both.json()["error"]
