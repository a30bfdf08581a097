"""Breaks the protocol on its channel (fd 3) in the way ?kind= names, then
(unless the kind says otherwise) returns normally. ?kind=ok just answers."""

import os
import struct
import time

import msgpack

CHANNEL = 3


def _send(data):
    view = memoryview(data)
    while view:
        view = view[os.write(CHANNEL, view) :]


def _frame(obj):
    payload = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(payload)) + payload


def _result(call_id, **fields):
    msg = {
        "t": "result",
        "id": call_id,
        "status": 200,
        "headers": [],
        "body": b"forged",
        "error": None,
        "logs": "",
    }
    msg.update(fields)
    return _frame(msg)


def handle(event, context):
    kind = event.query.get("kind", "ok")
    own = context.request_id
    if kind == "ok":
        return "ok"
    if kind == "header_4gib":  # a length of 4 GiB - 1, and nothing after it
        _send(b"\xff\xff\xff\xff")
    elif kind == "header_then_silence":  # just under the 8 MiB frame cap, then nothing
        _send(struct.pack(">I", 7 << 20) + b"\x00" * 1024)
        time.sleep(3600)
    elif kind == "not_a_map":
        _send(_frame([1, 2, 3]))
    elif kind == "no_type":
        _send(_frame({"id": own, "status": 200}))
    elif kind == "unexpected_type":
        _send(_frame({"t": "ready", "logs": ""}))
    elif kind == "forged_other_id":
        _send(_result("forged"))
    elif kind == "bad_status":
        _send(_result(own, status="two hundred"))
    elif kind == "status":  # a status the runtime itself never sends, e.g. an interim 101
        _send(_result(own, status=int(event.query["status"])))
    elif kind == "header_control":  # a value the runtime refuses (\x01), sent anyway
        _send(_result(own, headers=[["X-Evil", "a\x01b"]]))
    elif kind == "too_many_headers":
        _send(_result(own, headers=[[f"X-H{i}", "v"] for i in range(101)]))
    elif kind == "status_out_of_range":
        _send(_result(own, status=99999))
    elif kind == "body_is_a_number":  # bytes(n) would be n zero bytes, made in the server
        _send(_result(own, body=256 << 20))
    elif kind == "amplifying_frame":  # 4 MiB: an array of 4 Mi empty maps
        n = 4 << 20
        payload = b"\xdd" + struct.pack(">I", n) + b"\x80" * n
        _send(struct.pack(">I", len(payload)) + payload)
    elif kind == "nothing_then_exit":
        os._exit(0)
    elif kind == "half_frame_then_exit":
        _send(struct.pack(">I", 100) + b"\x81\xa1t")
        os._exit(0)
    elif kind == "close_then_sleep":
        os.close(CHANNEL)
        time.sleep(3600)
    elif kind == "answer_from_two_processes":  # fork, and both return the same call's result
        os.fork()
    else:
        raise ValueError(kind)
    return "genuine"
