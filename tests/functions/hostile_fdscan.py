"""Looks for a way into another sandbox's channel or the invoker's: every
open fd in its PID namespace, the unix sockets of its network namespace,
and fd numbers it did not open."""

import os
import socket


def handle(event, context):
    fds = {}
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            entries = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in entries:
            try:
                fds[f"{pid}/{fd}"] = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                pass
    with open("/proc/net/unix") as f:
        unix = f.read().splitlines()[1:]
    adopted = []
    for fd in range(4, 1024):
        try:
            s = socket.socket(fileno=fd)
        except OSError:
            continue
        adopted.append(fd)
        s.detach()
    return {"fds": fds, "unix": unix, "adopted": adopted}
