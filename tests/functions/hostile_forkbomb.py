"""A fork bomb: every process forks as fast as it can, forever (or for ?s=
seconds). Its processes are named hx-forkbomb so the host can count them."""

import ctypes
import os
import time

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NAME = 15


def handle(event, context):
    libc.prctl(PR_SET_NAME, b"hx-forkbomb", 0, 0, 0)
    end = time.monotonic() + float(event.query.get("s", "inf"))
    refused = 0
    while time.monotonic() < end:
        try:
            os.fork()  # parent and child both carry on
        except OSError:
            refused += 1
    if os.getpid() != 1:
        os._exit(0)
    return {"refused": refused}
