"""Forks a child that outlives the call: it appends a line to /tmp/marker
every 0.1 s, forever. ?check=PID reports whether that child still runs."""

import ctypes
import os
import time

libc = ctypes.CDLL(None, use_errno=True)


def _marker_lines():
    try:
        with open("/tmp/marker") as f:
            return len(f.readlines())
    except FileNotFoundError:
        return 0


def handle(event, context):
    check = event.query.get("check")
    if check:
        try:
            with open(f"/proc/{check}/comm") as f:
                comm = f.read().strip()
        except FileNotFoundError:
            comm = None
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        return {"alive": comm is not None, "comm": comm, "marker_lines": _marker_lines(), "pids": pids}
    pid = os.fork()
    if pid == 0:
        libc.prctl(15, b"hx-orphan", 0, 0, 0)
        while True:
            with open("/tmp/marker", "a") as f:
                f.write(f"{time.time()}\n")
            time.sleep(0.1)
    time.sleep(0.25)
    return {"child": pid, "uid": os.getuid(), "marker_lines": _marker_lines()}
