"""An endless loop that resists: ignores the catchable signals and spins in
?children= extra processes too (named hx-spin)."""

import ctypes
import os
import signal

libc = ctypes.CDLL(None, use_errno=True)


def handle(event, context):
    libc.prctl(15, b"hx-spin", 0, 0, 0)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM, signal.SIGUSR1, signal.SIGXCPU):
        signal.signal(sig, signal.SIG_IGN)
    for _ in range(int(event.query.get("children", "3"))):
        if os.fork() == 0:
            break
    while True:
        pass
