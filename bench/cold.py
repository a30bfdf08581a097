"""Cold start: the first call of freshly deployed functions, end to end on
the client (one keep-alive connection), against starting a fresh
`python -c 'print(1)'` per call (the same interpreter).

Every function is deployed first, then each is called once, with a pause
between calls: the server keeps a few pre-warmed blank sandboxes (default
4) and refills them in the background, so the pacing says what arrival rate
the figures hold for.

    python -m bench.cold [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from .common import HELLO, Client, FaasServer, first_calls, summary_ms

PAUSE_S = 0.020
TARGET_P50_MS = 5.0
TARGET_P99_MS = 15.0


def faas_cold(n: int, log_path: str | None = None) -> dict[str, Any]:
    server = FaasServer(log_path=log_path)
    try:
        for i in range(n):
            server.deploy(f"cold-{i}", HELLO)
        client = Client(server.port)
        try:
            samples = [
                seconds for seconds, _ in first_calls(client, [f"cold-{i}" for i in range(n)], PAUSE_S)
            ]
        finally:
            client.close()
    finally:
        server.stop()
    return summary_ms(samples) | {"samples_ms": [round(s * 1000, 3) for s in samples]}


def fresh_python(n: int) -> dict[str, Any]:
    samples = []
    for _ in range(n):
        time.sleep(PAUSE_S)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "print(1)"], check=True, stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - t0)
    return summary_ms(samples)


def run(quick: bool = False, log_path: str | None = None) -> dict[str, Any]:
    n = 30 if quick else 100
    return {
        "functions": n,
        "pacing": (
            f"all {n} functions deployed first, then one call each with a {PAUSE_S * 1000:g} ms pause "
            "between calls (the server keeps 4 pre-warmed blank sandboxes, refilled in the background); "
            "latency measured end to end on the client over one keep-alive connection"
        ),
        "faas": faas_cold(n, log_path),
        "fresh_python": fresh_python(n),
    }


def rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    faas, py = r["faas"], r["fresh_python"]
    return [
        {
            "benchmark": "cold",
            "metric": f"first call p50 ({r['functions']} functions)",
            "unit": "ms",
            "figure": faas["p50_ms"],
            "baseline": py["p50_ms"],
            "baseline_name": "fresh python -c",
            "target": f"<= {TARGET_P50_MS:g} ms",
            "pass": faas["p50_ms"] <= TARGET_P50_MS,
        },
        {
            "benchmark": "cold",
            "metric": f"first call p99 ({r['functions']} functions)",
            "unit": "ms",
            "figure": faas["p99_ms"],
            "baseline": py["p99_ms"],
            "baseline_name": "fresh python -c",
            "target": f"<= {TARGET_P99_MS:g} ms",
            "pass": faas["p99_ms"] <= TARGET_P99_MS,
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
