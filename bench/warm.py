"""Warm path: `hello` through /function/hello against a bare aiohttp+uvloop
hello server, load from wrk at 1 and 32 connections. Rounds alternate
(bare, faas, bare, faas, ...) on two servers kept running, so drift on a
shared machine hits both alike; each figure is the median over rounds.

    python -m bench.warm [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from .common import HELLO, BareServer, FaasServer
from .load import run_load

CONNECTIONS = (1, 32)
TARGET_RPS_RATIO = 0.6  # throughput at 32 connections >= 0.6 of bare
TARGET_P50_OVERHEAD_US = 100.0  # p50 at 1 connection within 100 µs of bare


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 3)


def run(quick: bool = False, log_path: str | None = None) -> dict[str, Any]:
    rounds, duration_s = (1, 2.0) if quick else (3, 5.0)
    samples: dict[str, dict[int, list[dict[str, Any]]]] = {
        "bare": {c: [] for c in CONNECTIONS},
        "faas": {c: [] for c in CONNECTIONS},
    }
    bare = faas = None
    try:
        bare = BareServer()
        faas = FaasServer(log_path=log_path)
        faas.deploy("hello", HELLO)
        urls = {
            "bare": f"http://127.0.0.1:{bare.port}/",
            "faas": f"http://127.0.0.1:{faas.port}/function/hello",
        }
        # Warm-up: every sandbox the 32-connection load will use, and both servers' code paths.
        for url in urls.values():
            run_load(url, max(CONNECTIONS), 1)
        for _ in range(rounds):
            for which in ("bare", "faas"):
                for conns in CONNECTIONS:
                    result = run_load(urls[which], conns, duration_s)
                    if result["errors"]:
                        raise RuntimeError(f"{which} at {conns} connections: {result['errors']} errors")
                    samples[which][conns].append(result)
    finally:
        if faas is not None:
            faas.stop()
        if bare is not None:
            bare.stop()

    out: dict[str, Any] = {
        "rounds": rounds,
        "duration_s": duration_s,
        "tool": samples["faas"][1][0]["tool"],
        "function": "hello (functions/hello.py), default limits (max_instances 10), metering on",
    }
    for conns in CONNECTIONS:
        entry: dict[str, Any] = {}
        for which in ("bare", "faas"):
            runs = samples[which][conns]
            entry[which] = {
                "rps": _median(runs, "rps"),
                "p50_ms": _median(runs, "p50_ms"),
                "p99_ms": _median(runs, "p99_ms"),
                "rps_each_round": [r["rps"] for r in runs],
                "p50_ms_each_round": [r["p50_ms"] for r in runs],
            }
        entry["rps_ratio"] = round(entry["faas"]["rps"] / entry["bare"]["rps"], 3)
        entry["p50_overhead_us"] = round((entry["faas"]["p50_ms"] - entry["bare"]["p50_ms"]) * 1000, 1)
        out[f"c{conns}"] = entry
    return out


def rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    c1, c32 = r["c1"], r["c32"]
    return [
        {
            "benchmark": "warm",
            "metric": "throughput, 32 connections",
            "unit": "req/s",
            "figure": c32["faas"]["rps"],
            "baseline": c32["bare"]["rps"],
            "baseline_name": "bare aiohttp+uvloop",
            "target": f"ratio >= {TARGET_RPS_RATIO}",
            "pass": c32["rps_ratio"] >= TARGET_RPS_RATIO,
        },
        {
            "benchmark": "warm",
            "metric": "p50 latency, 1 connection",
            "unit": "µs",
            "figure": round(c1["faas"]["p50_ms"] * 1000, 1),
            "baseline": round(c1["bare"]["p50_ms"] * 1000, 1),
            "baseline_name": "bare aiohttp+uvloop",
            "target": f"<= bare + {TARGET_P50_OVERHEAD_US:g} µs (is +{c1['p50_overhead_us']:g})",
            "pass": c1["p50_overhead_us"] <= TARGET_P50_OVERHEAD_US,
        },
        {
            "benchmark": "warm",
            "metric": "throughput, 1 connection",
            "unit": "req/s",
            "figure": c1["faas"]["rps"],
            "baseline": c1["bare"]["rps"],
            "baseline_name": "bare aiohttp+uvloop",
        },
        {
            "benchmark": "warm",
            "metric": "p99 latency, 1 connection",
            "unit": "µs",
            "figure": round(c1["faas"]["p99_ms"] * 1000, 1),
            "baseline": round(c1["bare"]["p99_ms"] * 1000, 1),
            "baseline_name": "bare aiohttp+uvloop",
        },
        {
            "benchmark": "warm",
            "metric": "p50 latency, 32 connections",
            "unit": "ms",
            "figure": c32["faas"]["p50_ms"],
            "baseline": c32["bare"]["p50_ms"],
            "baseline_name": "bare aiohttp+uvloop",
        },
        {
            "benchmark": "warm",
            "metric": "p99 latency, 32 connections",
            "unit": "ms",
            "figure": c32["faas"]["p99_ms"],
            "baseline": c32["bare"]["p99_ms"],
            "baseline_name": "bare aiohttp+uvloop",
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
