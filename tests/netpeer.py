"""The hosts of the network tests' made-up internet (tests/nettopo.py): one
HTTP server, on every address of its network namespace (203.0.113.10 the
"public" host, 10.20.0.10 the "private" one, 169.254.169.254 the metadata
host), answering:

    GET /whoami       {"local": address it was reached on, "peer": the caller's}
    GET /bytes?n=N    N bytes
    POST /sink        {"received": bytes of the body}

    python -m tests.netpeer PORT
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CHUNK = 64 * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _json(self, data: object) -> None:
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/whoami":
            self._json({"local": self.connection.getsockname()[0], "peer": self.client_address[0]})
            return
        if url.path == "/bytes":
            n = int(parse_qs(url.query).get("n", ["0"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = b"x" * CHUNK
            while n > 0:
                self.wfile.write(chunk[: min(n, CHUNK)])
                n -= CHUNK
            return
        self.send_error(404)

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/sink":
            self.send_error(404)
            return
        remaining = int(self.headers.get("Content-Length", "0"))
        received = 0
        while remaining > 0:
            data = self.rfile.read(min(remaining, CHUNK))
            if not data:
                break
            received += len(data)
            remaining -= len(data)
        self._json({"received": received})


def main() -> None:
    server = ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
