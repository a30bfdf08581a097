"""The Lambda API's Invoke: POST /2015-03-31/functions/{name}/invocations.

X-Amz-Invocation-Type RequestResponse (200, the handler's return value as
JSON), Event (202, through the asynchronous queue: retries, results under
/system/async) or DryRun (204: the function exists and may be called).
The payload is the event itself. A handler that raised, or a sandbox that
timed out or died, is a function error: 200 with `X-Amz-Function-Error:
Unhandled` and Lambda's `{errorMessage, errorType, stackTrace, requestId}`.
A `Qualifier` (`$LATEST`, a version number or an alias) picks the version
run; `X-Amz-Executed-Version` names the one that ran. `X-Amz-Log-Type: Tail` adds `X-Amz-Log-Result`, the base64 of the last
4 KB of the call's log (START, its output, END, REPORT).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from aiohttp import web

from invoker.errors import (
    CallTimedOut,
    CpuBudgetExceeded,
    FaasError,
    InitError,
    PayloadTooLarge,
    SandboxDied,
    SandboxError,
)
from invoker.invoker import Invoker
from invoker.metrics import Metrics
from invoker.model import VERSION_HEADER, Invocation

from ..errors import http_status
from .errors import InvalidRequestContent
from .qualifiers import target
from .shapes import split_name

INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
LOG_TAIL_BYTES = 4096
# The function's most recent log lines searched for the call's own.
LOG_LINES_SEARCHED = 2000
# Lambda's errorType for a call that failed outside the handler.
SANDBOX_ERROR_TYPES: tuple[tuple[type[SandboxError], str], ...] = (
    (CallTimedOut, "Sandbox.Timedout"),
    (CpuBudgetExceeded, "Sandbox.Timedout"),
    (InitError, "Runtime.ImportModuleError"),
    (SandboxDied, "Runtime.ExitError"),
)


def sandbox_error_type(exc: SandboxError) -> str:
    if isinstance(exc, SandboxDied) and exc.reason == "oom":
        return "Runtime.OutOfMemory"
    for kind, name in SANDBOX_ERROR_TYPES:
        if isinstance(exc, kind):
            return name
    return "Runtime.Unknown"


def log_tail(invoker: Invoker, name: str, call_id: str, version: str) -> str:
    """The call's log as Lambda's tail shows it, last 4 KB, base64."""
    texts = []
    for line in invoker.logs(name, LOG_LINES_SEARCHED):
        parts = line.split(" ", 2)
        if len(parts) >= 2 and parts[1] == call_id:
            texts.append(parts[2] if len(parts) == 3 else "")
    output = "".join(f"{t}\n" for t in texts if not t.startswith("REPORT "))
    reports = "".join(f"{t}\n" for t in texts if t.startswith("REPORT "))
    text = f"START RequestId: {call_id} Version: {version}\n{output}END RequestId: {call_id}\n{reports}"
    return base64.b64encode(text.encode("utf-8", "replace")[-LOG_TAIL_BYTES:]).decode("ascii")


class InvokeOperation:
    def __init__(self, invoker: Invoker, metrics: Metrics, max_body_bytes: int) -> None:
        self.invoker = invoker
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def invoke(self, request: web.Request) -> web.Response:
        received = time.monotonic()
        call_id: str = request["call_id"]
        name, qualifier = split_name(request.match_info["name"], request.query.get("Qualifier"))
        function = target(self.invoker, name, qualifier)
        kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if kind not in INVOCATION_TYPES:
            raise InvalidRequestContent(f"X-Amz-Invocation-Type must be one of {', '.join(INVOCATION_TYPES)}")
        # 404 for no such function, 503 while draining; a full function is a
        # 429 for a call made now, not for one queued (Event).
        self.invoker.admit(function, room=kind == "RequestResponse")
        if kind == "DryRun":
            return web.Response(status=204)
        inv = await self._invocation(request, function, call_id, received)
        if kind == "Event":
            await self.invoker.enqueue_async(inv)
            return web.Response(status=202)
        code, version = 500, ""
        try:
            result = await self.invoker.invoke(inv)
            code, version = result.status, str(result.version)
            body, function_error = result.body, result.error is not None
        except SandboxError as exc:
            code, version = http_status(exc), exc.headers.get(VERSION_HEADER, "")
            payload = {"errorMessage": exc.message, "errorType": sandbox_error_type(exc), "stackTrace": []}
            body, function_error = json.dumps({**payload, "requestId": call_id}).encode(), True
        except FaasError as exc:
            code = http_status(exc)
            raise
        finally:
            self.metrics.invocation_done(name, code, time.monotonic() - received)
        version = version or str(self.invoker.get(name).version)
        headers = {"X-Amz-Executed-Version": version}
        if function_error:
            headers["X-Amz-Function-Error"] = "Unhandled"
        if request.headers.get("X-Amz-Log-Type") == "Tail":
            headers["X-Amz-Log-Result"] = log_tail(self.invoker, name, call_id, version)
        return web.Response(status=200, body=body, content_type="application/json", headers=headers)

    async def _invocation(self, request: web.Request, name: str, call_id: str, received: float) -> Invocation:
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise _too_large(self.max_body_bytes)
        payload = await request.read()
        if len(payload) > self.max_body_bytes:
            raise _too_large(self.max_body_bytes)
        if payload.strip():
            try:
                json.loads(payload)
            except (ValueError, RecursionError) as exc:
                raise InvalidRequestContent(f"Could not parse request body into json: {exc}") from None
        context = request.headers.get("X-Amz-Client-Context")
        headers: Any = (("X-Amz-Client-Context", context),) if context else ()
        return Invocation(
            function=name,
            call_id=call_id,
            method="POST",
            path="/",
            query={},
            headers=headers,
            body=payload,
            received_at=received,
            raw_event=True,
            source_ip=request.remote or "",
        )


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"Request must be smaller than {limit} bytes for the InvokeFunction operation")
