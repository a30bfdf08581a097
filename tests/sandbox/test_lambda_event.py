"""Lambda's calling convention, without a sandbox: the Function URL event of
an HTTP call, the context, and the response rules."""

from __future__ import annotations

import base64
import json
import time

import pytest

from sandbox import lambda_event
from sandbox.protocol import Call
from sandbox.response import UnsupportedReturn
from sandbox.spec import FunctionSpec

ARN = "arn:aws:lambda:eu-west-1:000000000000:function:fn"
SPEC = FunctionSpec(
    "fn", 3, "/code", "lambda_function", "lambda_handler", memory_mb=256, hostname="sandbox-abc123",
    flavour="lambda", lambda_arn=ARN,
)  # fmt: skip


def call(body: bytes = b'{"a": 1}', headers: tuple[tuple[str, str], ...] = (), raw: bool = False) -> Call:
    base = (("Host", "127.0.0.1:8080"), ("User-Agent", "curl/8"), ("Content-Type", "application/json"))
    return Call(
        "req-1", "POST", "/some/path", {"a": "2"}, base + headers, body, time.monotonic() + 5,
        raw_query="a=1&a=2&b=x%20y", source_ip="127.0.0.1", raw=raw,
    )  # fmt: skip


def test_the_function_url_event_has_every_field() -> None:
    event = lambda_event.http_event(
        call(headers=(("Cookie", "c1=v1; c2=v2"), ("X-Multi", "one"), ("x-multi", "two"))), ARN, 1700000000123
    )
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert (event["rawPath"], event["rawQueryString"]) == ("/some/path", "a=1&a=2&b=x%20y")
    assert event["cookies"] == ["c1=v1", "c2=v2"] and "cookie" not in event["headers"]
    assert event["headers"]["x-multi"] == "one,two" and event["headers"]["user-agent"] == "curl/8"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    http = event["requestContext"]["http"]
    assert http == {
        "method": "POST", "path": "/some/path", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "curl/8",
    }  # fmt: skip
    context = event["requestContext"]
    assert (context["requestId"], context["timeEpoch"], context["accountId"]) == (
        "req-1",
        1700000000123,
        "000000000000",
    )
    assert context["time"] == "14/Nov/2023:22:13:20 +0000"
    assert (event["body"], event["isBase64Encoded"]) == ('{"a": 1}', False)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("image/png", b"\x89PNG\r\n"), ("application/json", b"\xff\xfe"), ("application/octet-stream", b"text")],
)
def test_binary_bodies_are_base64(content_type: str, body: bytes) -> None:
    msg = call(body=body, headers=(("Content-Type", content_type),))
    msg = Call(msg.id, msg.method, msg.path, {}, (("Content-Type", content_type),), body, msg.deadline)
    event = lambda_event.http_event(msg, ARN, 0)
    assert event["isBase64Encoded"] and base64.b64decode(event["body"]) == body


def test_an_invoke_event_is_its_payload() -> None:
    assert lambda_event.invoke_event(b'{"k": [1, 2]}') == {"k": [1, 2]}
    assert lambda_event.invoke_event(b"") == {}
    assert lambda_event.invoke_event(b'"text"') == "text"


def test_the_context_has_lambdas_attributes() -> None:
    client = base64.b64encode(
        json.dumps({"custom": {"k": "v"}, "client": {"app_title": "t"}}).encode()
    ).decode()
    msg = call(headers=(("X-Amz-Client-Context", client),), raw=True)
    context = lambda_event.LambdaContext(msg, SPEC, "2026/01/01/[$LATEST]abc123")
    assert context.aws_request_id == "req-1" and context.function_name == "fn"
    assert (context.function_version, context.invoked_function_arn) == ("3", f"{ARN}:3")
    assert context.memory_limit_in_mb == "256"  # a string, as in Lambda's own runtime
    assert (context.log_group_name, context.log_stream_name) == (
        "/aws/lambda/fn",
        "2026/01/01/[$LATEST]abc123",
    )
    assert context.identity.cognito_identity_id is None and context.identity.cognito_identity_pool_id is None
    assert context.client_context is not None and context.client_context.custom == {"k": "v"}
    assert 0 < context.get_remaining_time_in_millis() <= 5000
    assert lambda_event.LambdaContext(call(), SPEC, "").client_context is None  # HTTP calls carry none


def test_the_environment_lambda_sets() -> None:
    env = lambda_event.environment(SPEC, "stream")
    assert env["AWS_REGION"] == "eu-west-1" and env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["_HANDLER"] == "lambda_function.lambda_handler" and env["LAMBDA_TASK_ROOT"] == "/var/task"


def test_function_url_response_rules() -> None:
    json_type = [("Content-Type", "application/json")]
    assert lambda_event.url_response({"message": "hi"}) == (200, json_type, b'{"message": "hi"}')
    assert lambda_event.url_response("Hello, world!") == (200, json_type, b'"Hello, world!"')
    assert lambda_event.url_response(None) == (200, json_type, b"null")
    status, headers, body = lambda_event.url_response(
        {
            "statusCode": "201",
            "headers": {"X-Custom": "v"},
            "body": '{"id": 7}',
            "cookies": ["a=1", "b=2; Max-Age=5"],
        }
    )
    assert (status, body) == (201, b'{"id": 7}')
    assert headers == [
        ("X-Custom", "v"),
        ("Content-Type", "application/json"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2; Max-Age=5"),
    ]
    png = b"\x89PNG\r\n\x1a\n"
    image = {
        "statusCode": 200,
        "headers": {"Content-Type": "image/png"},
        "body": base64.b64encode(png).decode(),
        "isBase64Encoded": True,
    }
    assert lambda_event.url_response(image) == (200, [("Content-Type", "image/png")], png)
    with pytest.raises(UnsupportedReturn, match="cookies"):
        lambda_event.url_response({"statusCode": 200, "cookies": "a=1"})
    with pytest.raises(UnsupportedReturn, match="marshal"):
        lambda_event.invoke_response({1, 2})


def test_the_error_payload_shows_the_handlers_frames() -> None:
    def lambda_handler() -> None:
        raise KeyError("missing")

    try:
        lambda_handler()
    except KeyError as exc:
        payload = lambda_event.error_payload(exc, "req-1")
    assert (payload["errorType"], payload["errorMessage"], payload["requestId"]) == (
        "KeyError",
        "'missing'",
        "req-1",
    )
    assert any("lambda_handler" in frame for frame in payload["stackTrace"])
