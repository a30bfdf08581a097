"""Works between calls: ?start=ticker leaves a thread that counts
milliseconds, ?start=spin one that burns CPU, ?start=grow one that
allocates 1 MiB every 5 ms; every call answers what the threads did so far."""

import threading
import time

TICKS = [0]
GROWN = []


def _ticker():
    while True:
        time.sleep(0.001)
        TICKS[0] += 1


def _spin():
    while True:
        pass


def _grow():
    while len(GROWN) < 180:
        GROWN.append(bytearray(1024 * 1024))
        time.sleep(0.005)


def handle(event, context):
    target = {"ticker": _ticker, "spin": _spin, "grow": _grow}.get(event.query.get("start", ""))
    if target is not None:
        threading.Thread(target=target, daemon=True).start()
    return {"ticks": TICKS[0], "grown_mb": len(GROWN)}
