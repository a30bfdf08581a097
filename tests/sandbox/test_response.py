"""The return-value table of docs/HANDLER.md."""

from __future__ import annotations

import pytest

from sandbox.response import (
    HEADER_COUNT_LIMIT,
    HEADER_FIELD_LIMIT,
    HEADERS_TOTAL_LIMIT,
    UnsupportedReturn,
    header_size_problem,
    to_http,
    valid_header,
)


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


@pytest.mark.parametrize("char", ["\r", "\n", "\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f"])
def test_control_characters_in_a_value_are_refused(char: str) -> None:
    with pytest.raises(UnsupportedReturn, match="invalid response header 'X-A'"):
        to_http({"statusCode": 200, "headers": {"X-A": f"a{char}b"}})
    assert not valid_header("X-A", f"a{char}b")


@pytest.mark.parametrize("value", ["a\tb", "caf\u00e9", "", "a b ~!"])
def test_tab_and_text_in_a_value_pass(value: str) -> None:
    assert to_http({"statusCode": 200, "headers": {"X-A": value}})[1] == [("X-A", value)]


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(UnsupportedReturn, match="invalid response header"):
        to_http({"statusCode": 200, "headers": {"X-A": "\ud800"}})


def _headers(count: int, size: int = 1) -> dict[str, str]:
    return {f"X-{i:03d}": "v" * size for i in range(count)}


def test_header_count_is_bounded() -> None:
    # The Content-Type the runtime adds counts too.
    assert (
        len(to_http({"statusCode": 200, "headers": _headers(HEADER_COUNT_LIMIT - 1), "body": "x"})[1]) == 100
    )
    with pytest.raises(UnsupportedReturn, match="response 101 header fields, at most 100 are allowed"):
        to_http({"statusCode": 200, "headers": _headers(HEADER_COUNT_LIMIT), "body": "x"})


def test_one_header_is_bounded() -> None:
    fits = HEADER_FIELD_LIMIT - len("X-A") - 4
    assert to_http({"statusCode": 200, "headers": {"X-A": "v" * fits}})[1] == [("X-A", "v" * fits)]
    with pytest.raises(
        UnsupportedReturn, match="response header 'X-A' of 8193 bytes is over the limit of 8192"
    ):
        to_http({"statusCode": 200, "headers": {"X-A": "v" * (fits + 1)}})
    with pytest.raises(UnsupportedReturn, match="over the limit"):  # counted in bytes, not characters
        to_http({"statusCode": 200, "headers": {"X-A": "\u00e9" * (fits // 2 + 1)}})


def test_all_headers_are_bounded() -> None:
    with pytest.raises(UnsupportedReturn, match=f"over the limit of {HEADERS_TOTAL_LIMIT} bytes"):
        to_http({"statusCode": 200, "headers": _headers(5, 7000)})
    assert header_size_problem([(b"X-A", b"v" * 7000)] * 4) is None
