"""AWS Lambda's calling convention, inside the sandbox (docs/HANDLER.md,
"Lambda handlers"): the event a handler gets (a Function URL payload 2.0
for an HTTP call, the JSON payload itself for an Invoke API call), its
context with every attribute of Lambda's Python context, and how its return
value becomes the answer (the Function URL response rules, or the JSON
result of Invoke). Pure but for the clock; imports nothing of the host side.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sys
import time
import traceback
from typing import Any
from urllib.parse import unquote_plus

from .protocol import Call
from .response import JSON, UnsupportedReturn, proxy_response, response_header_problem
from .spec import FunctionSpec

LATEST = "$LATEST"
# Request bodies of these types reach a handler as text; others base64 (isBase64Encoded).
TEXT_TYPES = ("text/", "json", "xml", "javascript", "x-www-form-urlencoded", "yaml", "graphql")


def region_and_account(function_arn: str) -> tuple[str, str]:
    """`arn:aws:lambda:REGION:ACCOUNT:function:NAME` -> (REGION, ACCOUNT)."""
    parts = function_arn.split(":")
    return (parts[3], parts[4]) if len(parts) >= 7 else ("", "")


def log_stream_name(spec: FunctionSpec, started: float) -> str:
    """Lambda's `YYYY/MM/DD/[VERSION]ID`: one stream per sandbox."""
    day = time.strftime("%Y/%m/%d", time.gmtime(started))
    return f"{day}/[{LATEST}]{spec.hostname.removeprefix('sandbox-')}"


def environment(spec: FunctionSpec, log_stream: str) -> dict[str, str]:
    """The variables Lambda sets for a function (reserved: they win over the deploy's env)."""
    region, _ = region_and_account(spec.lambda_arn)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return {
        "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": str(spec.function_version),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{version}",
        "LAMBDA_TASK_ROOT": "/var/task",
        "_HANDLER": f"{spec.handler_module.replace('.', '/')}.{spec.entry}",
    }


# -- the event ------------------------------------------------------------------


def _is_text(content_type: str, body: bytes) -> bool:
    kind = content_type.lower()
    if kind and not any(marker in kind for marker in TEXT_TYPES):
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def http_event(call: Call, function_arn: str, received_ms: int) -> dict[str, Any]:
    """The Function URL payload (version 2.0) of an HTTP call."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in call.headers:
        key = name.lower()
        if key == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
        else:
            headers[key] = f"{headers[key]},{value}" if key in headers else value
    query: dict[str, str] = {}
    for pair in call.raw_query.split("&") if call.raw_query else ():
        key, _, value = pair.partition("=")
        key, value = unquote_plus(key), unquote_plus(value)
        query[key] = f"{query[key]},{value}" if key in query else value
    text = _is_text(headers.get("content-type", ""), call.body)
    host = headers.get("host", "")
    _, account = region_and_account(function_arn)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": call.path,
        "rawQueryString": call.raw_query,
        "cookies": cookies,
        "headers": headers,
        "queryStringParameters": query or None,
        "requestContext": {
            "accountId": account,
            "apiId": host.split(".", 1)[0],
            "authentication": None,
            "authorizer": None,
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0],
            "http": {
                "method": call.method,
                "path": call.path,
                "protocol": "HTTP/1.1",
                "sourceIp": call.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": call.id,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(received_ms / 1000)),
            "timeEpoch": received_ms,
        },
        "body": call.body.decode("utf-8") if text else base64.b64encode(call.body).decode("ascii"),
        "pathParameters": None,
        "isBase64Encoded": not text,
        "stageVariables": None,
    }


def invoke_event(body: bytes) -> Any:
    """The event of an Invoke API call: its JSON payload ({} when empty, as Lambda does)."""
    return json.loads(body) if body.strip() else {}


# -- the context ----------------------------------------------------------------


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self) -> None:
        self.cognito_identity_id: str | None = None
        self.cognito_identity_pool_id: str | None = None


class ClientContext:
    """The mobile SDK's client context an Invoke call may carry (X-Amz-Client-Context)."""

    __slots__ = ("client", "custom", "env")

    def __init__(self, data: dict[str, Any]) -> None:
        self.client = data.get("client")
        self.custom = data.get("custom")
        self.env = data.get("env")


def client_context(headers: tuple[tuple[str, str], ...]) -> ClientContext | None:
    for name, value in headers:
        if name.lower() == "x-amz-client-context":
            try:
                data = json.loads(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                return None
            return ClientContext(data) if isinstance(data, dict) else None
    return None


class LambdaContext:
    """What awslambdaric gives a handler; memory_limit_in_mb is a string there too."""

    def __init__(self, call: Call, spec: FunctionSpec, log_stream: str) -> None:
        self.aws_request_id = call.id
        self.function_name = spec.function_name
        # The version that runs, and the ARN qualified by it (the sandbox
        # does not know through which alias, if any, the call came).
        self.function_version = str(spec.function_version)
        self.invoked_function_arn = f"{spec.lambda_arn}:{spec.function_version}" if spec.lambda_arn else ""
        self.memory_limit_in_mb = str(spec.memory_mb)
        self.log_group_name = f"/aws/lambda/{spec.function_name}"
        self.log_stream_name = log_stream
        self.identity = CognitoIdentity()
        self.client_context = client_context(call.headers) if call.raw else None
        self._deadline = call.deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def log(self, message: str) -> None:
        sys.stdout.write(message)

    def __repr__(self) -> str:
        return f"LambdaContext(aws_request_id={self.aws_request_id!r}, function_name={self.function_name!r})"


# -- the answer -----------------------------------------------------------------


def _json_bytes(value: Any) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise UnsupportedReturn(f"Unable to marshal response: {exc}") from None


def invoke_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """An Invoke call's answer: the return value as JSON."""
    return 200, [("Content-Type", JSON)], _json_bytes(result)


def url_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """The Function URL response rules: a dict with statusCode gives its
    status, headers, cookies and body (base64 when isBase64Encoded); any
    other JSON value is a 200 application/json answer of that value."""
    if not (isinstance(result, dict) and "statusCode" in result):
        return invoke_response(result)
    status = result["statusCode"]
    if isinstance(status, str) and status.isdigit():  # API Gateway's samples answer "200"
        result = {**result, "statusCode": int(status)}
    cookies = result.get("cookies") or []
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        raise UnsupportedReturn("cookies must be a list of strings")
    status, headers, body = proxy_response(result, content_type=JSON)
    if cookies:
        headers += [("Set-Cookie", cookie) for cookie in cookies]
        problem = response_header_problem(headers)
        if problem:
            raise UnsupportedReturn(problem)
    return status, headers, body


def error_payload(exc: BaseException, request_id: str) -> dict[str, Any]:
    """Lambda's body of an unhandled error: errorMessage, errorType, stackTrace, requestId."""
    if isinstance(exc, UnsupportedReturn):
        error_type = "Runtime.MarshalError"
    else:
        error_type = type(exc).__name__
    # The handler's frames, not the runtime's that called it (as Lambda shows them).
    own = os.path.dirname(os.path.abspath(__file__))
    frames = traceback.format_list(
        [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(own)]
    )
    return {
        "errorMessage": str(exc),
        "errorType": error_type,
        "requestId": request_id,
        "stackTrace": frames,
    }
