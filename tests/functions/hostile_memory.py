"""Grows its memory 1 MiB at a time until something stops it. ?where=child
does it in a child process and reports how the child ended."""

import os


def _grow():
    hoard = []
    while True:
        hoard.append(b"\x01" * (1 << 20))  # written, so every page is really used


def handle(event, context):
    if event.query.get("where") != "child":
        _grow()
    pid = os.fork()
    if pid == 0:
        try:
            _grow()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return {"child_signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None}
