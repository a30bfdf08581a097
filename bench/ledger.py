"""Warm throughput of `hello` with metering and the durable ledger on vs off
(same build, same run), plus the bare aiohttp baseline.

    python -m bench.ledger [--duration 10] [--connections 32] [--rounds 3] [--sync full|normal]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

from .common import HELLO, BareServer, Client, FaasServer
from .load import run_load


def measure(metering: bool, connections: int, duration_s: float, sync: str) -> dict[str, object]:
    config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    config.write(f'metering = {"true" if metering else "false"}\nledger_sync = "{sync}"\n')
    config.close()
    server = FaasServer("--config", config.name)
    try:
        server.deploy("hello", HELLO)
        url = f"http://127.0.0.1:{server.port}/function/hello"
        run_load(url, connections, 2)  # warm every sandbox
        result = run_load(url, connections, duration_s)
        if metering:
            c = Client(server.port)
            _, body = c.request("GET", "/system/usage")
            c.close()
            result["records"] = json.loads(body)["totals"]["requests"]
        return result
    finally:
        server.stop()
        os.unlink(config.name)


def run(connections: int, duration_s: float, rounds: int, sync: str) -> dict[str, object]:
    bare = BareServer()
    try:
        baseline = run_load(f"http://127.0.0.1:{bare.port}/", connections, duration_s)
    finally:
        bare.stop()
    # Alternate off/on so drift on a shared machine hits both alike; report medians.
    offs, ons = [], []
    for _ in range(rounds):
        offs.append(measure(False, connections, duration_s, sync))
        ons.append(measure(True, connections, duration_s, sync))
    off = _median_run(offs)
    on = _median_run(ons)
    return {
        "connections": connections,
        "duration_s": duration_s,
        "rounds": rounds,
        "ledger_sync": sync,
        "bare_aiohttp": baseline,
        "metering_off": off,
        "metering_on": on,
        "rps_off_each_round": [r["rps"] for r in offs],
        "rps_on_each_round": [r["rps"] for r in ons],
        "on_over_off": round(on["rps"] / off["rps"], 3),  # type: ignore[operator]
        "off_over_bare": round(off["rps"] / baseline["rps"], 3),  # type: ignore[operator]
    }


def _median_run(runs: list[dict[str, object]]) -> dict[str, object]:
    return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]  # type: ignore[arg-type, return-value]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sync", choices=["full", "normal"], default="normal")
    args = parser.parse_args()
    print(json.dumps(run(args.connections, args.duration, args.rounds, args.sync), indent=2))


if __name__ == "__main__":
    main()
