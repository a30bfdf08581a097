"""A function's response headers are bounded like a client's request headers
(sandbox/response.py): no control characters but tab, at most 100 fields, a
field at most 8 KiB, all at most 32 KiB. Over them the call is a clear 500,
and what the client got is what metrics and the usage ledger record; the
client's connection carries its next request."""

from __future__ import annotations

import http.client
import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import Server
from tests.security.common import assert_healthy, deploy_hostile


@pytest.fixture(scope="module")
def headers_fn(server: Server) -> str:
    return deploy_hostile(server, "headers")


def _invocations(server: Server, fn: str, code: int) -> float:
    text = server.request("GET", "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "gateway_function_invocation_total" and sample.labels == {
                "function_name": fn,
                "code": str(code),
            }:
                return sample.value
    return 0.0


def _ledger_status(server: Server, fn: str, call_id: str) -> str:
    body = server.request("GET", f"/system/usage?function={fn}&records=1&limit=100000").json()
    [record] = [r for r in body["records"] if r["call_id"] == call_id]
    return record["status"]


@pytest.mark.parametrize(
    ("query", "words"),
    [
        *[
            (f"ctrl={c:02x}", "invalid response header 'X-Evil'")
            for c in (0x00, 0x01, 0x0A, 0x0D, 0x1B, 0x1F, 0x7F)
        ],
        # 100 and the Content-Type the runtime adds.
        ("count=100", "response 101 header fields, at most 100 are allowed"),
        ("field=9000", "response header 'X-Big' of 9009 bytes is over the limit of 8192 bytes"),
        ("total=7000", "over the limit of 32768 bytes"),
    ],
)
def test_headers_over_the_bounds_are_a_500(server: Server, headers_fn: str, query: str, words: str) -> None:
    errors_before = _invocations(server, headers_fn, 500)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", f"/function/{headers_fn}?{query}")
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 500, (resp.status, body)
        assert words in json.loads(body)["error"], body
        assert resp.getheader("X-Evil") is None and resp.getheader("X-Big") is None
        call_id = resp.getheader("X-Call-Id")
        sock = conn.sock
        conn.request("GET", f"/function/{headers_fn}")
        again = conn.getresponse()
        assert (again.status, again.read()) == (200, b"served")
        assert conn.sock is sock, "the next request needed a new connection"
    finally:
        conn.close()
    assert _invocations(server, headers_fn, 500) == errors_before + 1
    assert _ledger_status(server, headers_fn, call_id) == "error"


# 90, not 99: with the gateway's own headers (X-Call-Id, X-Duration-Ms, Date, ...)
# 99 would pass 100 in all, more than Python's http.client reads.
@pytest.mark.parametrize("query", ["ctrl=09", "count=90", "field=8000", "total=6000"])
def test_headers_within_the_bounds_are_served(server: Server, headers_fn: str, query: str) -> None:
    resp = server.invoke(headers_fn, f"?{query}")
    assert (resp.status, resp.body) == (200, b"served"), resp.text
    if query == "ctrl=09":
        assert resp.headers["X-Evil"] == "a\tb"


def test_server_is_unharmed(server: Server, headers_fn: str) -> None:
    assert_healthy(server)
