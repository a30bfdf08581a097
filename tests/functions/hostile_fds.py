"""Opens files until the limit and keeps them open across calls."""

import os
import resource

HELD = []


def handle(event, context):
    opened, error = 0, None
    while True:
        try:
            HELD.append(os.open("/dev/null", os.O_RDONLY))
            opened += 1
        except OSError as exc:
            error = os.strerror(exc.errno)
            break
    return {
        "opened": opened,
        "held": len(HELD),
        "error": error,
        "limit": resource.getrlimit(resource.RLIMIT_NOFILE),
    }
