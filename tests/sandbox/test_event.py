from __future__ import annotations

import pytest

from sandbox.event import Context, Event, Headers


def test_headers_are_case_insensitive_and_join_repeats() -> None:
    h = Headers([("Content-Type", "a"), ("X-A", "1"), ("x-a", "2")])
    assert h["content-type"] == "a" and h["CONTENT-TYPE"] == "a"
    assert h["X-A"] == "1, 2" and h.getall("x-a") == ["1", "2"]
    assert "x-A" in h and "nope" not in h and len(h) == 2
    assert dict(h) == {"Content-Type": "a", "X-A": "1, 2"}


def test_event_body_views() -> None:
    e = Event("POST", "/", {}, Headers([]), b'{"a": [1]}')
    assert e.text == '{"a": [1]}' and e.json() == {"a": [1]}
    with pytest.raises(ValueError):
        Event("POST", "/", {}, Headers([]), b"nope").json()
    with pytest.raises(ValueError):
        Event("POST", "/", {}, Headers([]), b"\xff\xfe").json()


def test_context_remaining_time() -> None:
    import time

    ctx = Context("id", "fn", "3", 128, 2.0, True, time.monotonic() + 2)
    assert ctx.aws_request_id == "id" and 1900 <= ctx.get_remaining_time_in_millis() <= 2000
