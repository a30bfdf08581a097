"""CPU per warm call, the figure a loaded machine cannot blur: the server
process's CPU time (/proc/PID/stat utime+stime) and the sandboxes' (the
usage records' cgroup CPU, which includes what a sandbox used between
calls) over a fixed number of `hello` calls at 32 connections, with
metering, the ledger, logs, metrics and freezing all on. Baseline in the
same run: the bare aiohttp+uvloop hello server's CPU per request.

    python -m bench.cpu [--quick] [--calls N]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from .common import HELLO, BareServer, Client, FaasServer
from .load import run_load

TARGET_SERVER_US = 80.0
TARGET_SANDBOX_US = 25.0
CONNECTIONS = 32
TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _usage(port: int) -> tuple[int, float]:
    c = Client(port)
    _, out = c.request("GET", "/system/usage?function=hello")
    c.close()
    totals = json.loads(out)["totals"]
    return int(totals["requests"]), float(totals["cpu_seconds"])


def _measure(url: str, pid: int, duration_s: float, usage_port: int | None) -> dict[str, Any]:
    before_cpu = process_cpu_s(pid)
    before_usage = _usage(usage_port) if usage_port else (0, 0.0)
    t0 = time.monotonic()
    load = run_load(url, CONNECTIONS, duration_s)
    wall = time.monotonic() - t0
    server_cpu = process_cpu_s(pid) - before_cpu
    out: dict[str, Any] = {"rps": load["rps"], "errors": load["errors"]}
    if usage_port:
        requests, sandbox_cpu = (a - b for a, b in zip(_usage(usage_port), before_usage, strict=True))
        out["calls"] = requests
        out["server_cpu_us_per_call"] = round(server_cpu / requests * 1e6, 1)
        out["sandbox_cpu_us_per_call"] = round(sandbox_cpu / requests * 1e6, 1)
    else:
        calls = load["rps"] * wall
        out["calls"] = round(calls)
        out["server_cpu_us_per_call"] = round(server_cpu / calls * 1e6, 1)
    return out


def run(quick: bool = False, log_path: str | None = None) -> dict[str, Any]:
    duration_s = 3.0 if quick else 8.0
    bare = faas = None
    try:
        bare = BareServer()
        faas = FaasServer(log_path=log_path)
        faas.deploy("hello", HELLO)
        faas_url = f"http://127.0.0.1:{faas.port}/function/hello"
        bare_url = f"http://127.0.0.1:{bare.port}/"
        run_load(faas_url, CONNECTIONS, 1)  # warm every sandbox the load will use
        run_load(bare_url, CONNECTIONS, 1)
        return {
            "connections": CONNECTIONS,
            "duration_s": duration_s,
            "faas": _measure(faas_url, faas.proc.pid, duration_s, faas.port),
            "bare": _measure(bare_url, bare.proc.pid, duration_s, None),
        }
    finally:
        if faas is not None:
            faas.stop()
        if bare is not None:
            bare.stop()


def rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    faas, bare = r["faas"], r["bare"]
    return [
        {
            "benchmark": "cpu",
            "metric": "server CPU per warm call",
            "unit": "µs",
            "figure": faas["server_cpu_us_per_call"],
            "baseline": bare["server_cpu_us_per_call"],
            "baseline_name": "bare aiohttp+uvloop, per request",
            "target": f"<= {TARGET_SERVER_US:g} µs",
            "pass": faas["server_cpu_us_per_call"] <= TARGET_SERVER_US,
        },
        {
            "benchmark": "cpu",
            "metric": "sandbox CPU per warm call",
            "unit": "µs",
            "figure": faas["sandbox_cpu_us_per_call"],
            "baseline": None,
            "baseline_name": "",
            "target": f"<= {TARGET_SANDBOX_US:g} µs",
            "pass": faas["sandbox_cpu_us_per_call"] <= TARGET_SANDBOX_US,
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
