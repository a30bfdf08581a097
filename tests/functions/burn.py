import time

# Tells a test which sandbox answered: each sandbox imports this module once.
SANDBOX = time.monotonic_ns()


def handle(event, context):
    """Burn `ms` of CPU time, measured from inside with time.process_time, then
    sleep `sleep_s`. Also the process's CPU clock at entry and exit, so a test
    can bracket what the sandbox's cgroup metered for a call."""
    entry = time.process_time()
    target = float(event.query.get("ms", "50")) / 1000
    x = 0
    while time.process_time() - entry < target:
        x += 1
    burnt = time.process_time()
    time.sleep(float(event.query.get("sleep_s", "0")))
    return {
        "cpu_ms": (burnt - entry) * 1000,
        "entry_cpu_s": entry,
        "exit_cpu_s": time.process_time(),
        "sandbox": SANDBOX,
    }
