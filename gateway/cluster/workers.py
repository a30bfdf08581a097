"""`--workers N`: N gateway processes on one port (SO_REUSEPORT, the
kernel spreads connections over them), so a gateway uses a machine's cores.
They route alike: each reads the same live invokers and builds the same
ring. The parent only watches: a worker that dies is started again; SIGTERM
or SIGINT reaches every worker, and the parent exits when they have."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable

from ..config import ServerConfig

log = logging.getLogger("faas.serve")

# A worker dying this soon after its start is not restarted: it would only die again.
MIN_LIFETIME_S = 5.0


def run_workers(config: ServerConfig, serve: Callable[[ServerConfig], int]) -> int:
    workers: dict[int, float] = {}  # pid -> start time
    stopping = False

    def start() -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                code = serve(config)
            finally:
                os._exit(code)
        workers[pid] = time.monotonic()

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            try:
                os.kill(pid, signal.SIGTERM if signum != signal.SIGINT else signal.SIGINT)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(config.workers):
        start()
    log.info("%d gateway workers on %s:%d", config.workers, config.host, config.port)
    code = 0
    while workers:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        started = workers.pop(pid, None)
        if started is None:
            continue
        exit_code = os.waitstatus_to_exitcode(status)
        if stopping:
            continue
        if time.monotonic() - started < MIN_LIFETIME_S:
            log.error("gateway worker %d exited with %d at start: stopping", pid, exit_code)
            code = exit_code or 1
            stop(signal.SIGTERM, None)
            continue
        log.warning("gateway worker %d exited with %d: starting another", pid, exit_code)
        start()
    return code
