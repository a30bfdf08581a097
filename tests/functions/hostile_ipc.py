"""Looks for a neighbour: ?role=plant leaves an abstract unix socket, a SysV
shared-memory segment and a /tmp file behind (kept while the sandbox is
warm); ?role=seek, in another function, tries to reach each of them and to
kill the planter by its host pid (?pid=)."""

import ctypes
import os
import signal
import socket

libc = ctypes.CDLL(None, use_errno=True)
NAME = "\0hx-ipc-neighbour"
SHM_KEY = 0x48580001
IPC_CREAT = 0o1000
KEPT = []


def _err(exc):
    return os.strerror(exc.errno) if getattr(exc, "errno", None) else type(exc).__name__


def handle(event, context):
    role = event.query.get("role")
    if role == "plant":
        if not KEPT:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(NAME)
            s.listen()
            KEPT.append(s)
            shm = libc.shmget(SHM_KEY, 4096, IPC_CREAT | 0o666)
            KEPT.append(shm)
            with open("/tmp/hx-ipc", "w") as f:
                f.write("planted")
        return {"uid": os.getuid(), "shm": KEPT[1], "socket": KEPT[0].getsockname().decode(errors="replace")}
    out = {}
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(NAME)
        out["socket"] = "connected"
    except OSError as exc:
        out["socket"] = _err(exc)
    finally:
        s.close()
    shm = libc.shmget(SHM_KEY, 0, 0)
    out["shm"] = "found" if shm >= 0 else os.strerror(ctypes.get_errno())
    out["tmp"] = "found" if os.path.exists("/tmp/hx-ipc") else "absent"
    try:
        os.kill(int(event.query["pid"]), signal.SIGKILL)
        out["kill"] = "sent"
    except OSError as exc:
        out["kill"] = _err(exc)
    return out
