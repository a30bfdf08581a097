import time


def handle(event, context):
    """Busy-loop for `s` seconds of wall time; report the CPU share we got."""
    seconds = float(event.query.get("s", "2"))
    wall0, cpu0 = time.monotonic(), time.process_time()
    while time.monotonic() - wall0 < seconds:
        pass
    return {"wall_s": time.monotonic() - wall0, "cpu_s": time.process_time() - cpu0}
