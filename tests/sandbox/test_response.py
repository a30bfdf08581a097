"""The return-value table of SPEC section 1."""

from __future__ import annotations

import pytest

from sandbox.response import UnsupportedReturn, to_http


def test_table() -> None:
    assert to_http(None) == (200, [], b"")
    assert to_http("hé") == (200, [("Content-Type", "text/plain; charset=utf-8")], "hé".encode())
    assert to_http(b"\x00") == (200, [("Content-Type", "application/octet-stream")], b"\x00")
    assert to_http({"a": 1}) == (200, [("Content-Type", "application/json")], b'{"a": 1}')
    assert to_http([1]) == (200, [("Content-Type", "application/json")], b"[1]")


def test_proxy_shape() -> None:
    status, headers, body = to_http({"statusCode": 404, "body": {"e": 1}})
    assert status == 404 and ("Content-Type", "application/json") in headers and body == b'{"e": 1}'
    status, headers, body = to_http(
        {"statusCode": 200, "headers": {"content-type": "text/csv"}, "body": "a,b"}
    )
    assert headers == [("content-type", "text/csv")] and body == b"a,b"
    assert to_http({"statusCode": 204}) == (204, [], b"")
    status, _, body = to_http({"statusCode": 200, "body": "aGk=", "isBase64Encoded": True})
    assert body == b"hi"


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        3,
        4.5,
        object(),
        {"statusCode": "200"},
        {"statusCode": 99},
        {"statusCode": 200, "headers": []},
        {"x": object()},
    ],
)
def test_unsupported(value: object) -> None:
    with pytest.raises(UnsupportedReturn):
        to_http(value)


@pytest.mark.parametrize("headers", [{"X-A": "a\r\nSet-Cookie: x=1"}, {"Bad Name": "v"}, {"X": "nul\x00"}])
def test_headers_that_would_break_the_response_are_refused(headers: dict) -> None:
    with pytest.raises(UnsupportedReturn):
        to_http({"statusCode": 200, "headers": headers, "body": "x"})


@pytest.mark.parametrize("code", [100, 101, 103, 199, 600, -1])
def test_non_final_status_is_refused(code: int) -> None:
    with pytest.raises(
        UnsupportedReturn, match=f"statusCode {code} is not a final HTTP status: use 200 to 599"
    ):
        to_http({"statusCode": code})
