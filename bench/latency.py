"""Cold and warm latency of `hello`, one connection, against the baselines
measured in the same run: a bare aiohttp server (warm) and a fresh
`python` process per call (cold).

    python -m bench.latency [--n 100]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from .common import HELLO, BareServer, Client, FaasServer, summary_ms


def warm(port: int, path: str, n: int) -> list[float]:
    client = Client(port)
    for _ in range(20):
        client.request("GET", path)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        status, _ = client.request("GET", path)
        samples.append(time.perf_counter() - t0)
        assert status == 200
    client.close()
    return samples


def cold(server: FaasServer, n: int) -> list[float]:
    for i in range(n):
        server.deploy(f"cold-{i}", HELLO)
    client = Client(server.port)
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        status, body = client.request("GET", f"/function/cold-{i}")
        samples.append(time.perf_counter() - t0)
        assert status == 200, body
    client.close()
    return samples


def fresh_python(n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "print('Hello, world!')"], check=True, stdout=subprocess.DEVNULL
        )
        samples.append(time.perf_counter() - t0)
    return samples


def run(n: int) -> dict[str, object]:
    bare = BareServer()
    try:
        bare_warm = summary_ms(warm(bare.port, "/", n))
    finally:
        bare.stop()
    server = FaasServer("--keepalive", "600")
    try:
        server.deploy("hello", HELLO)
        faas_warm = summary_ms(warm(server.port, "/function/hello", n))
        faas_cold = summary_ms(cold(server, n))
    finally:
        server.stop()
    python = summary_ms(fresh_python(n))
    return {
        "warm": {
            "faas": faas_warm,
            "bare_aiohttp": bare_warm,
            "p50_overhead_us": round((faas_warm["p50_ms"] - bare_warm["p50_ms"]) * 1000, 1),
        },
        "cold": {
            "faas": faas_cold,
            "fresh_python": python,
            "p50_ratio_to_fresh_python": round(faas_cold["p50_ms"] / python["p50_ms"], 3),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    print(json.dumps(run(parser.parse_args().n), indent=2))


if __name__ == "__main__":
    main()
