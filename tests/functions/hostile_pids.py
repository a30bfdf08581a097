"""Tries to see and signal processes outside its sandbox. The request body
names host pids (the server, the zygote, the test runner); they must be out
of reach."""

import os
import signal


def _try(fn, *args):
    try:
        fn(*args)
        return "ok"
    except OSError as exc:
        return os.strerror(exc.errno) if exc.errno else type(exc).__name__


def handle(event, context):
    req = event.json()
    scan_max = int(req.get("scan_max", 32768))
    me = os.getpid()
    # signal 0 tells whether a pid exists (ESRCH) without touching it.
    visible = []
    for pid in range(1, scan_max + 1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        visible.append(pid)
    attempts = {}
    for pid in req["terminate"]:  # the server and the zygote: SIGTERM would stop them
        attempts[f"SIGTERM {pid}"] = _try(os.kill, pid, signal.SIGTERM)
        attempts[f"killpg {pid}"] = _try(os.killpg, pid, signal.SIGTERM)
        attempts[f"/proc/{pid}"] = "exists" if os.path.exists(f"/proc/{pid}") else "absent"
    for pid in req["probe"]:  # the test runner: only harmless signals
        attempts[f"SIGCONT {pid}"] = _try(os.kill, pid, signal.SIGCONT)
        attempts[f"/proc/{pid}"] = "exists" if os.path.exists(f"/proc/{pid}") else "absent"
    # kill(-1): every process this one may signal, except itself and init.
    attempts["kill(-1, SIGKILL)"] = _try(os.kill, -1, signal.SIGKILL)
    return {
        "me": me,
        "visible": visible,
        "proc": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "attempts": attempts,
    }
