"""Floods its output: ?mb= MiB of print() lines, plus the same straight to
fd 1 and 2. ?tamper=1 first lifts the runtime's 64 KiB cap from inside (the
cap lives in the sandbox, where the function can reach it)."""

import os
import sys


def handle(event, context):
    mb = int(event.query.get("mb", "10"))
    if event.query.get("tamper"):
        sys.stdout._sink.logs._cap = 1 << 40
    line = "x" * 1023
    for _ in range(mb * 1024):
        print(line)
    raw = b"y" * (1 << 20)
    os.write(1, raw)
    os.write(2, raw)
    return "flooded"
