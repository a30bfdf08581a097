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
import statistics
import tempfile
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


def _faas(freeze_idle: bool, log_path: str | None) -> FaasServer:
    config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)  # noqa: SIM115
    config.write(f"freeze_idle = {'true' if freeze_idle else 'false'}\n")
    config.close()
    server = FaasServer("--config", config.name, log_path=log_path)
    os.unlink(config.name)
    server.deploy("hello", HELLO)
    return server


def run(quick: bool = False, log_path: str | None = None, rounds: int | None = None) -> dict[str, Any]:
    """Rounds alternate bare, faas (frozen between calls), faas (not frozen):
    the cost of freezing is the difference of the two faas figures, same run."""
    duration_s = 3.0 if quick else 6.0
    rounds = rounds or (1 if quick else 3)
    servers: dict[str, Any] = {}
    samples: dict[str, list[dict[str, Any]]] = {"bare": [], "faas": [], "faas_unfrozen": []}
    try:
        servers["bare"] = BareServer()
        servers["faas"] = _faas(True, log_path)
        servers["faas_unfrozen"] = _faas(False, log_path)
        urls = {
            name: f"http://127.0.0.1:{srv.port}/" + ("" if name == "bare" else "function/hello")
            for name, srv in servers.items()
        }
        for url in urls.values():
            run_load(url, CONNECTIONS, 1)  # warm every sandbox the load will use
        for _ in range(rounds):
            for name, srv in servers.items():
                usage_port = None if name == "bare" else srv.port
                samples[name].append(_measure(urls[name], srv.proc.pid, duration_s, usage_port))
    finally:
        for srv in servers.values():
            srv.stop()
    out: dict[str, Any] = {"connections": CONNECTIONS, "duration_s": duration_s, "rounds": rounds}
    for name, runs in samples.items():
        out[name] = {
            key: statistics.median(r[key] for r in runs)
            for key in runs[0]
            if isinstance(runs[0][key], (int, float))
        }
    frozen, unfrozen = out["faas"], out["faas_unfrozen"]
    out["freezing_cost_us_per_call"] = {
        "server": round(frozen["server_cpu_us_per_call"] - unfrozen["server_cpu_us_per_call"], 1),
        "sandbox": round(frozen["sandbox_cpu_us_per_call"] - unfrozen["sandbox_cpu_us_per_call"], 1),
        "rps_ratio": round(frozen["rps"] / unfrozen["rps"], 3),
    }
    return out


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
            "metric": "throughput with freezing between calls, vs without",
            "unit": "req/s",
            "figure": faas["rps"],
            "baseline": r["faas_unfrozen"]["rps"],
            "baseline_name": "the same server with freeze_idle = false",
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
