import time


def handle(event, context):
    seconds = float(event.query.get("s", "5"))
    time.sleep(seconds)
    return {"slept": seconds, "remaining_ms": context.get_remaining_time_in_millis()}
