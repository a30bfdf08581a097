"""A cluster's throughput with one invoker and with three, same run, same
machine, against one `--role all` server (the one-machine runtime) on the
same PostgreSQL: `python -m bench.cluster [--duration S] [--connections N]`.

Everything runs in network namespaces of its own (tests/cluster/topology.py):
PostgreSQL and the gateway in the hub, each invoker in its own; wrk runs
in the hub. Also reports the CPU each process kind spent per call
(/proc/PID/stat, children included once they exit: the invokers' zygotes
and sandboxes are counted through the cgroup CPU of the usage records)
and what a host of C cores would serve at that cost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import psycopg

from tests.cluster.topology import HUB, INVOKER_PORT, ClusterNet
from tests.helpers import Server, wait_until
from tests.services import postgres_at

from .load import _wrk

TOKEN = "bench-cluster-token-0123456789"
HELLO = 'def handle(event, context):\n    return "hi"\n'
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def sandbox_cpu_s(database: str) -> float:
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT coalesce(sum(cpu_us), 0) FROM usage").fetchone()
    return float(row[0]) / 1e6 if row else 0.0


def measure(
    label: str, net: ClusterNet, port: int, servers: dict[str, list[Server]], database: str, args: Any
) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/function/hello"
    launcher = ("nsenter", f"--net={net.hub.path}")
    _wrk(url, args.connections, 2, launcher)  # warm every invoker the calls spill to
    before = {kind: sum(cpu_s(s.proc.pid) for s in group if s.proc) for kind, group in servers.items()}
    sandbox_before = sandbox_cpu_s(database)
    result = _wrk(url, args.connections, args.duration, launcher)
    calls = result["rps"] * args.duration
    per_call_us = {
        kind: (sum(cpu_s(s.proc.pid) for s in group if s.proc) - before[kind]) / calls * 1e6
        for kind, group in servers.items()
    }
    per_call_us["sandbox"] = (sandbox_cpu_s(database) - sandbox_before) / calls * 1e6
    total_us = sum(per_call_us.values())
    row = {
        "setup": label,
        **result,
        "cpu_us_per_call": {k: round(v, 1) for k, v in per_call_us.items()},
        "cpu_us_total": round(total_us, 1),
        "rps_per_16_cores_at_this_cost": round(16 / (total_us / 1e6)) if total_us else None,
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    base = Path(f"/tmp/faas-bench-cluster-{os.getpid()}")
    net = ClusterNet(3)
    started: list[Server] = []
    rows = []
    try:
        with postgres_at(HUB, net.hub.path) as pg:
            with psycopg.connect(pg.local_url(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE faas")
                conn.execute("CREATE DATABASE alone")
            common = ("--database", pg.url("faas"), "--cluster-token", TOKEN)

            def invoker(i: int) -> Server:
                server = Server(
                    base / f"invoker{i}" / "data",
                    netns=net.nodes[i],
                    host=net.address(i),
                    port=INVOKER_PORT,
                    extra_args=("--role", "invoker", *common),
                )
                started.append(server.start(timeout_s=120))
                return server

            # One machine's runtime (role all), on its own database, for the ratio.
            alone = Server(base / "alone" / "data", netns=net.hub, extra_args=("--database", pg.url("alone")))
            started.append(alone.start(timeout_s=120))
            alone.deploy_ok("hello", HELLO)
            rows.append(
                measure("role all", net, alone.port, {"server": [alone]}, pg.local_url("alone"), args)
            )
            alone.stop()
            started.remove(alone)

            invokers = [invoker(0)]
            gateway = Server(
                base / "gateway" / "data", netns=net.hub, extra_args=("--role", "gateway", *common)
            )
            started.append(gateway.start(timeout_s=60))
            gateway.deploy_ok("hello", HELLO)
            groups = {"gateway": [gateway], "invokers": invokers}
            rows.append(measure("1 invoker", net, gateway.port, groups, pg.local_url("faas"), args))
            invokers += [invoker(1), invoker(2)]
            wait_until(lambda: len(gateway.request("GET", "/system/nodes").json()) == 3, 10, "3 invokers")
            rows.append(measure("3 invokers", net, gateway.port, groups, pg.local_url("faas"), args))
    finally:
        for server in reversed(started):
            if server.proc is not None and server.proc.poll() is None:
                server.stop()
        net.close()
    first = rows[0]["rps"]
    print(
        "\n| setup | req/s | ratio to role all | p50 ms | p99 ms | CPU µs per call | 16 cores at that cost |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['setup']} | {row['rps']:.0f} | {row['rps'] / first:.2f} | {row['p50_ms']:.2f} |"
            f" {row['p99_ms']:.2f} | {row['cpu_us_total']:.0f} {row['cpu_us_per_call']} |"
            f" {row['rps_per_16_cores_at_this_cost']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
