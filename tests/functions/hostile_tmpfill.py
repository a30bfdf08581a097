"""Fills /tmp until the kernel says no (ENOSPC, EFBIG) or the memory limit
kills it (tmpfs pages count as the sandbox's memory)."""

import os


def handle(event, context):
    chunk = b"\xaa" * (1 << 20)
    written = 0
    n = 0
    try:
        while True:
            with open(f"/tmp/fill-{n}", "wb") as f:
                for _ in range(8):
                    f.write(chunk)
                    f.flush()
                    written += 1
            n += 1
    except OSError as exc:
        return {"written_mb": written, "error": os.strerror(exc.errno)}
