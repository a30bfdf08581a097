"""Leaves a thread behind that sleeps forever after the call has answered."""

import threading
import time


def _forever():
    while True:
        time.sleep(3600)


def handle(event, context):
    threading.Thread(target=_forever, name="linger").start()  # not a daemon
    return {"threads": threading.active_count()}
