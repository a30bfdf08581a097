"""The runtime inside a sandbox: load the handler once (init), then serve
calls one at a time over the channel. Imports nothing from gateway/invoker."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import mmap
import os
import socket
import sys
import time
import traceback
from collections.abc import Awaitable
from typing import Any

from . import frames, lambda_event, procfs, protocol
from .event import Context, Event, Headers
from .protocol import LOG_CAP_BYTES, OUTPUT_LENGTH, TRUNCATION_MARKER
from .response import UnsupportedReturn, to_http
from .spec import FunctionSpec

_NOT_AWAITABLE = frozenset({str, bytes, dict, list, type(None)})


class LogBuffer:
    """Output of one call (or of init), capped at LOG_CAP_BYTES."""

    def __init__(self, cap: int = LOG_CAP_BYTES, area: mmap.mmap | None = None) -> None:
        self._parts: list[str] = []
        self._size = 0
        self._cap = cap
        self.truncated = False
        # The output area shared with the invoker (None in init and warm-up).
        self._area = area
        if area is not None:
            OUTPUT_LENGTH.pack_into(area, 0, 0)

    def write(self, text: str) -> None:
        if self.truncated or not text:
            return
        data = text.encode("utf-8", "replace")
        if self._size + len(data) > self._cap:
            data = data[: self._cap - self._size]
            text = data.decode("utf-8", "ignore")
            self.truncated = True
        self._parts.append(text)
        if self._area is not None:
            start = OUTPUT_LENGTH.size + self._size
            self._area[start : start + len(data)] = data
            OUTPUT_LENGTH.pack_into(self._area, 0, self._size + len(data))
        self._size += len(data)

    def empty_for(self, area: mmap.mmap | None) -> bool:
        """Nothing was written, and the output area is this one: as good as
        a new buffer for the next call (whose area already says 0 bytes)."""
        return self._size == 0 and not self.truncated and self._area is area

    def text(self) -> str:
        out = "".join(self._parts)
        if self.truncated:
            if out and not out.endswith("\n"):
                out += "\n"
            out += TRUNCATION_MARKER
        return out


class LogSink:
    """Where captured output goes: the current call's (or init's) buffer."""

    def __init__(self) -> None:
        self.logs = LogBuffer()


SINK = LogSink()


class CapturedStream(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr for the sandbox's whole life, so
    references taken at init (logging handlers) keep working; writes go to
    whichever call is current."""

    def __init__(self, sink: LogSink, name: str) -> None:
        self._sink = sink
        self.name = name

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._sink.logs.write(text)
        return len(text)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def isatty(self) -> bool:
        return False


def warm_up() -> None:
    """Run the call path once on a fake request while the sandbox is still
    blank: the pages it touches are copied (copy-on-write after the fork)
    now, off the path of the first real call."""
    call = protocol.Call("warm-up", "GET", "/", {}, (("A", "b"),), b"x", time.monotonic())
    msg = protocol.parse_from_invoker(protocol.decode_payload(protocol.pack(call)[4:]))
    assert isinstance(msg, protocol.Call)
    event = Event(msg.method, msg.path, msg.query, Headers(msg.headers), msg.body)
    Context("warm-up", "", "0", 0, 0.0, True, msg.deadline).get_remaining_time_in_millis()
    buffer = LogBuffer()
    buffer.write(event.text)
    for value in (None, "s", b"b", {"k": [1]}, {"statusCode": 200, "body": "x"}):
        to_http(value)
    lambda_spec = FunctionSpec("warm-up", 0, "", "m", "f", lambda_arn="arn:aws:lambda:r:0:function:w")
    lambda_event.http_event(msg, lambda_spec.lambda_arn, 0)
    lambda_event.LambdaContext(msg, lambda_spec, "").get_remaining_time_in_millis()
    lambda_event.url_response({"statusCode": 200, "body": "x", "cookies": ["a=b"]})
    protocol.pack(protocol.Result("warm-up", 200, (), b"", None, buffer.text()))


def _short(message: str, limit: int = 4096) -> str:
    """Error messages travel in the response and the frame: keep them short."""
    return message if len(message) <= limit else message[:limit] + "... (truncated)"


def install_streams() -> None:
    """Capture print(), sys.stderr and logging for good. Done once in the
    zygote, so no sandbox pays for it (or for the pages it would dirty)."""
    sys.stdout = CapturedStream(SINK, "<stdout>")
    sys.stderr = CapturedStream(SINK, "<stderr>")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True)


def _error_body(message: str, call_id: str) -> bytes:
    return json.dumps({"error": message, "call_id": call_id}).encode()


class Runtime:
    def __init__(
        self,
        spec: FunctionSpec,
        channel: socket.socket,
        stamps: list[tuple[str, float]] | None = None,
        output_area: mmap.mmap | None = None,
    ) -> None:
        self.spec = spec
        self._output_area = output_area
        self.stamps = stamps if stamps is not None else []
        self.channel = channel
        self.handler: Any = None
        self._loop: Any = None
        self._cold = True
        self._log_stream = ""
        self._version = str(spec.function_version)
        self._batch_after_first_call = True

    @property
    def logs(self) -> LogBuffer:
        return SINK.logs

    @logs.setter
    def logs(self, buffer: LogBuffer) -> None:
        SINK.logs = buffer

    def load_handler(self) -> None:
        """The init phase: import the handler module once and find its entry."""
        path = os.path.join("/var/task", self.spec.handler_module.replace(".", "/") + ".py")
        name = self.spec.handler_module
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(module_spec)
        # Register under its own name unless a preloaded module owns it.
        if name not in sys.modules:
            sys.modules[name] = module
        module_spec.loader.exec_module(module)
        handler = getattr(module, self.spec.entry, None)
        if handler is None:
            raise AttributeError(f"{self.spec.handler_module}.py has no function {self.spec.entry!r}")
        if not callable(handler):
            raise TypeError(f"{self.spec.handler_module}.{self.spec.entry} is not callable")
        self.handler = handler

    def init(self) -> protocol.Ready | protocol.InitFailed:
        self.logs = LogBuffer()
        self.stamps.append(("streams", time.monotonic()))
        if self.spec.flavour == "lambda":
            self._log_stream = lambda_event.log_stream_name(self.spec, time.time())
            os.environ.update(lambda_event.environment(self.spec, self._log_stream))
        try:
            self.load_handler()
        except BaseException as exc:  # the user's module may raise anything, SystemExit included
            self.logs.write(traceback.format_exc())
            return protocol.InitFailed(_short(f"{type(exc).__name__}: {exc}"), self.logs.text())
        self.stamps.append(("init", time.monotonic()))
        return protocol.Ready(self.logs.text(), tuple(self.stamps))

    def _run_handler(self, event: Event, context: Context) -> Any:
        result = self.handler(event, context)
        # What handlers return is almost always one of these: spare them the ABC check.
        if type(result) not in _NOT_AWAITABLE and isinstance(result, Awaitable):
            if self._loop is None:
                import asyncio

                self._loop = asyncio.new_event_loop()
            result = self._loop.run_until_complete(result)
        return result

    def _faas_call(self, msg: protocol.Call) -> tuple[int, list[tuple[str, str]], bytes]:
        spec = self.spec
        event = Event(msg.method, msg.path, msg.query, Headers(msg.headers), msg.body, msg.raw_query)
        context = Context(
            msg.id,
            spec.function_name,
            self._version,
            spec.memory_mb,
            spec.timeout_s,
            self._cold,
            msg.deadline,
        )
        return to_http(self._run_handler(event, context))

    def _lambda_call(self, msg: protocol.Call) -> tuple[int, list[tuple[str, str]], bytes]:
        context = lambda_event.LambdaContext(msg, self.spec, self._log_stream)
        if msg.raw:
            event = lambda_event.invoke_event(msg.body)
            return lambda_event.invoke_response(self._run_handler(event, context))
        event = lambda_event.http_event(msg, self.spec.lambda_arn, int(time.time() * 1000))
        return lambda_event.url_response(self._run_handler(event, context))

    def call(self, msg: protocol.Call) -> protocol.Result:
        call_id = msg.id
        if not self.logs.empty_for(self._output_area):
            self.logs = LogBuffer(area=self._output_area)
        lambda_flavour = self.spec.flavour == "lambda"
        error: str | None = None
        failure: BaseException | None = None
        try:
            status, headers, body = self._lambda_call(msg) if lambda_flavour else self._faas_call(msg)
            if len(body) > protocol.MAX_BODY_BYTES:
                raise UnsupportedReturn(
                    f"response body of {len(body)} bytes is over the limit of {protocol.MAX_BODY_BYTES} bytes"
                )
        except UnsupportedReturn as exc:
            error, failure = _short(str(exc)), exc
            self.logs.write(f"{error}\n")
        except BaseException as exc:  # SystemExit and KeyboardInterrupt are handler errors too
            error, failure = _short(f"{type(exc).__name__}: {exc}"), exc
            self.logs.write(traceback.format_exc())
        finally:
            self._cold = False
        if failure is not None and error is not None:
            if lambda_flavour and msg.raw:  # Invoke's shape: errorMessage, errorType, stackTrace
                body = json.dumps(lambda_event.error_payload(failure, call_id)).encode()
            else:
                body = _error_body(error, call_id)
            status, headers = 500, [("Content-Type", "application/json")]
        return protocol.Result(call_id, status, tuple(headers), body, error, self.logs.text())

    def serve(self) -> None:
        me = os.getpid()
        self.channel.sendall(protocol.pack(self.init()))
        receiver = frames.FrameReceiver(self.channel)
        while True:
            raw = receiver.recv()
            if raw is None:
                return
            msg = protocol.parse_from_invoker(raw)
            if not isinstance(msg, protocol.Call):
                raise protocol.ProtocolError(f"unexpected message {raw['t']!r}")
            result = self.call(msg)
            if os.getpid() != me:
                # A process the handler forked returned from it too: only the
                # sandbox's own runtime answers; a second answer would reach
                # a later call.
                os._exit(0)
            self.channel.sendall(protocol.pack(result))
            if self._batch_after_first_call:
                # Warm from here on: SCHED_BATCH, so that the server waking this
                # sandbox with a call is not preempted by it (it runs when a
                # CPU is free). Not before: a cold start is latency, not throughput.
                self._batch_after_first_call = False
                os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
            # We are PID 1 of the sandbox: orphans the handler left become ours.
            procfs.reap_exited_children()
