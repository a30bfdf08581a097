"""gateway/cluster/wire.py: the call and answer frames between a gateway and an invoker."""

from __future__ import annotations

import msgpack
import pytest

from gateway.cluster.wire import (
    Failure,
    RemoteResult,
    WireError,
    decode_call,
    decode_reply,
    encode_answer,
    encode_call,
    encode_failure,
)
from invoker.model import Invocation


def call(m: dict[str, object]) -> bytes:
    return msgpack.packb([1, m])


def test_an_invocation_crosses_whole_and_takes_the_invokers_clock() -> None:
    inv = Invocation(
        function="fn@live",
        call_id="c-1",
        method="POST",
        path="/a/b",
        query={"x": "1", "é": "ü"},
        headers=(("Content-Type", "application/json"), ("X-Dup", "1"), ("X-Dup", "2")),
        body=b"\x00\xff body",
        received_at=123.0,
        raw_query="x=1&%C3%A9=%C3%BC",
        raw_event=True,
        source_ip="10.0.0.9",
        attempt=3,
    )
    number, back = decode_call(encode_call(7, inv), received_at=999.5)
    assert number == 7
    assert back == Invocation(**{**inv.__dict__, "received_at": 999.5})


def test_an_answer_crosses_whole() -> None:
    result = RemoteResult(201, (("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")), b"\x01body", 12.5, 13, True, 4)
    assert decode_reply(encode_answer(3, result)) == (3, result)
    failure = Failure(429, "full", {"Retry-After": "1"})
    assert decode_reply(encode_failure(4, 429, "full", {"Retry-After": "1"})) == (4, failure)


# A call as encode_call writes it; each malformed case below breaks one field.
WELL_FORMED_CALL = {
    "f": "x", "id": "c", "m": "GET", "p": "/", "q": {}, "h": [], "b": b"",
    "rq": "", "re": False, "ip": "", "a": 1,
}  # fmt: skip


def test_the_well_formed_call_decodes() -> None:
    # So that each malformed case fails for its own field, not the frame's shape.
    number, inv = decode_call(msgpack.packb([1, WELL_FORMED_CALL]), 0.0)
    assert number == 1 and inv.function == "x"


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"f": "x"}),
        msgpack.packb(["1", {}]),
        msgpack.packb([1, {**WELL_FORMED_CALL, "f": 1}]),
        msgpack.packb([1, {**WELL_FORMED_CALL, "q": {"a": 1}}]),
        msgpack.packb([1, {**WELL_FORMED_CALL, "b": "text"}]),
    ],
)
def test_a_malformed_call_frame_is_a_wire_error(frame: bytes) -> None:
    with pytest.raises(WireError):
        decode_call(frame, 0.0)


@pytest.mark.parametrize(
    "answer", [[1, 200, {"s": 200}], [1, 200], ["1", 200, {}], [1, 500, {"e": "x"}], [1, 500, []], {"a": 1}]
)
def test_a_malformed_answer_is_a_wire_error(answer: object) -> None:
    with pytest.raises(WireError):
        decode_reply(msgpack.packb(answer))


def test_the_goodbye_is_a_503_on_call_zero_naming_the_last_call_read() -> None:
    from gateway.cluster.wire import GOODBYE_NUMBER, goodbye

    number, answer = decode_reply(goodbye(41))
    assert number == GOODBYE_NUMBER and isinstance(answer, Failure) and answer.status == 503
    assert answer.headers == {"last-read": "41"}
