"""A canned HTTP server in a thread, on 127.0.0.1: it answers by (method,
path) and records every request. The CLI's tests use it as a gateway, the
asynchronous calls' tests as a callback receiver."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Canned:
    """Answers by (method, path without query); records every request."""

    routes: dict[tuple[str, str], tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def answer(self, method: str, path: str, status: int, body: Any = b"", ctype: str = "") -> None:
        if not isinstance(body, bytes):
            body, ctype = json.dumps(body).encode(), ctype or "application/json"
        self.routes[(method, path)] = (status, {"Content-Type": ctype} if ctype else {}, body)


def _handler(canned: Canned) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            canned.seen.append(
                Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            route = canned.routes.get((self.command, self.path.split("?")[0]))
            status, headers, payload = route or (404, {}, b'{"error": "no route", "call_id": "x"}')
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    return Handler


@contextlib.contextmanager
def serving() -> Iterator[Canned]:
    canned = Canned()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(canned))
    canned.url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval: shutdown() waits for it, once per use.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield canned
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
