import time


def handle(event, context):
    """Burn `ms` of CPU time, measured from inside with time.process_time."""
    target = float(event.query.get("ms", "50")) / 1000
    start = time.process_time()
    x = 0
    while time.process_time() - start < target:
        x += 1
    return {"cpu_ms": (time.process_time() - start) * 1000}
