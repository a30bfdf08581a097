import time


def handle(event, context):
    """Sleep `s` seconds; say when the sleep began and ended (time.monotonic:
    the host's clock too, as a sandbox has no time namespace)."""
    seconds = float(event.query.get("s", "5"))
    began = time.monotonic()
    time.sleep(seconds)
    return {
        "slept": seconds,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "began": began,
        "ended": time.monotonic(),
    }
