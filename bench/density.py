"""Density: memory per idle warm (specialized) sandbox, through the real
server. N calls are fired at once at a handler that sleeps, spread over 3
functions deployed with max_instances=1000, so every call gets its own
sandbox; once they have all answered, every sandbox is idle and warm. Then
the PSS of each sandbox's processes (/proc/PID/smaps_rollup) is read.

Sandboxes are found as the descendants of this server's zygote (a child
subreaper: every sandbox is its child) running under a sandbox uid
(>= 200000), so other servers on the machine are never counted. Baseline:
the PSS of one fresh `python -c 'import time; time.sleep(5)'` (the same
interpreter).

    python -m bench.density [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from .common import FaasServer

SLEEPER = (
    'import time\n\n\ndef handle(e, c):\n    time.sleep(float(e.query.get("s", "0")))\n    return "ok"\n'
)
FUNCTIONS = 3
UID_BASE = 200_000
BUDGET_GIB = 24
TARGET_IN_BUDGET = 2000
KIB = 1024
MIB = 1024 * 1024
GIB = 1024 * MIB


def _status_fields(pid: int) -> dict[str, str]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, real uid) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = _status_fields(int(entry))
            table[int(entry)] = (int(status["PPid"]), int(status["Uid"].split()[0]))
        except (OSError, KeyError, ValueError):
            continue
    return table


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def pss_bytes(pid: int) -> dict[str, int]:
    """Pss, Rss and private (USS) bytes of one process, from smaps_rollup."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                out[parts[0][:-1]] = int(parts[1]) * KIB
    return {
        "pss": out.get("Pss", 0),
        "rss": out.get("Rss", 0),
        "uss": out.get("Private_Clean", 0) + out.get("Private_Dirty", 0),
    }


def _cgroup_key(pid: int) -> str:
    """The process's memory cgroup (v1) or unified cgroup (v2): one per sandbox."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
    return next((line.split(":", 2)[2] for line in lines if line.startswith("0::")), str(pid))


def sandbox_processes(server_pid: int) -> tuple[int, dict[str, list[int]], int]:
    """(zygote pid, specialized sandbox processes grouped by cgroup, blank ones)."""
    table = _process_table()
    zygotes = [p for p, (pp, _) in table.items() if pp == server_pid and "sandbox.zygote" in _cmdline(p)]
    if len(zygotes) != 1:
        raise RuntimeError(f"expected one zygote under the server (pid {server_pid}), found {zygotes}")
    zygote = zygotes[0]
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    descendants, todo = [], list(children.get(zygote, []))
    while todo:
        pid = todo.pop()
        descendants.append(pid)
        todo.extend(children.get(pid, []))
    groups: dict[str, list[int]] = {}
    blanks = 0
    for pid in descendants:
        if table[pid][1] >= UID_BASE:
            try:
                groups.setdefault(_cgroup_key(pid), []).append(pid)
            except OSError:
                continue
        else:
            blanks += 1
    return zygote, groups, blanks


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * KIB
    return 0


def mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * KIB
    return 0


async def _fire(port: int, n: int, sleep_s: float) -> list[tuple[int, str]]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int) -> tuple[int, str]:
            url = f"http://127.0.0.1:{port}/function/idle-{i % FUNCTIONS}?s={sleep_s}"
            async with session.get(url) as resp:
                await resp.read()
                return resp.status, resp.headers.get("X-Cold-Start", "")

        return await asyncio.gather(*(one(i) for i in range(n)))


def baseline_python() -> dict[str, int]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        time.sleep(1.0)
        return pss_bytes(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def run(quick: bool = False, log_path: str | None = None) -> dict[str, Any]:
    n = 50 if quick else 300
    # Every call must still be running when the last sandbox is created, so the
    # sleep grows with N (sandboxes are created at roughly 100/s on 2 cores).
    sleep_s = round(1.0 + n * 0.02, 1)
    base = baseline_python()
    server = FaasServer(log_path=log_path)
    try:
        for i in range(FUNCTIONS):
            server.deploy(f"idle-{i}", SLEEPER, max_instances=1000, timeout_s=60)
        time.sleep(0.5)  # let the pre-warmed blanks settle before the reference reading
        available_before = mem_available()
        t0 = time.monotonic()
        answers = asyncio.run(_fire(server.port, n, sleep_s))
        fired_s = time.monotonic() - t0
        bad = [a for a in answers if a[0] != 200]
        if bad:
            raise RuntimeError(f"{len(bad)} of {n} calls failed, e.g. {bad[0]}")
        cold = sum(1 for _, c in answers if c == "true")
        time.sleep(1.0)  # the sandboxes are idle now; let the freed request buffers go
        zygote, groups, blanks = sandbox_processes(server.proc.pid)
        per_sandbox = []
        for pids in groups.values():
            total = {"pss": 0, "rss": 0, "uss": 0}
            for pid in pids:
                try:
                    for key, value in pss_bytes(pid).items():
                        total[key] += value
                except OSError:
                    continue
            per_sandbox.append(total)
        available_after = mem_available()
        server_pss = pss_bytes(server.proc.pid)["pss"]
        zygote_pss = pss_bytes(zygote)["pss"]
    finally:
        server.stop()
    if not per_sandbox:
        raise RuntimeError("no sandbox processes found")
    pss = [s["pss"] for s in per_sandbox]
    mean_pss = statistics.fmean(pss)
    fixed = server_pss + zygote_pss
    total_mem = mem_total()
    budget = BUDGET_GIB * GIB
    host_budget = total_mem - 2 * GIB
    drop = max(1.0, (available_before - available_after) / len(pss))
    return {
        "requested": n,
        "calls_cold": cold,
        "sandboxes_found": len(per_sandbox),
        "processes_per_sandbox": round(sum(len(p) for p in groups.values()) / len(groups), 2),
        "blank_sandboxes_besides": blanks,
        "handler_sleep_s": sleep_s,
        "fire_s": round(fired_s, 2),
        "pss_median_mib": round(statistics.median(pss) / MIB, 3),
        "pss_mean_mib": round(mean_pss / MIB, 3),
        "pss_p99_mib": round(sorted(pss)[int(0.99 * (len(pss) - 1))] / MIB, 3),
        "pss_total_mib": round(sum(pss) / MIB, 1),
        "uss_mean_mib": round(statistics.fmean(s["uss"] for s in per_sandbox) / MIB, 3),
        "rss_mean_mib": round(statistics.fmean(s["rss"] for s in per_sandbox) / MIB, 3),
        "server_pss_mib": round(server_pss / MIB, 1),
        "zygote_pss_mib": round(zygote_pss / MIB, 1),
        # Kernel memory (page tables, namespaces, cgroups, tmpfs) is not in PSS:
        # the drop of MemAvailable per sandbox is the cross-check.
        "memavailable_drop_per_sandbox_mib": round((available_before - available_after) / len(pss) / MIB, 3),
        "fits_in_24gib": int((budget - fixed) // mean_pss),
        "fits_in_24gib_by_memavailable_drop": int((budget - fixed) // drop),
        "memtotal_gib": round(total_mem / GIB, 2),
        "fits_in_memtotal_minus_2gib": int((host_budget - fixed) // mean_pss),
        "fits_in_memtotal_minus_2gib_by_memavailable_drop": int((host_budget - fixed) // drop),
        "baseline_python": {
            "pss_mib": round(base["pss"] / MIB, 3),
            "uss_mib": round(base["uss"] / MIB, 3),
            "rss_mib": round(base["rss"] / MIB, 3),
            "fits_in_24gib": int(budget // base["pss"]),
            "fits_in_memtotal_minus_2gib": int(host_budget // base["pss"]),
        },
    }


def rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    base = r["baseline_python"]
    return [
        {
            "benchmark": "density",
            "metric": f"PSS per idle warm sandbox, mean ({r['sandboxes_found']} sandboxes)",
            "unit": "MiB",
            "figure": r["pss_mean_mib"],
            "baseline": base["pss_mib"],
            "baseline_name": "fresh python (sleeping)",
        },
        {
            "benchmark": "density",
            "metric": "idle warm sandboxes in 24 GiB (mean PSS)",
            "unit": "",
            "figure": r["fits_in_24gib"],
            "baseline": base["fits_in_24gib"],
            "baseline_name": "fresh python (sleeping)",
            "target": f">= {TARGET_IN_BUDGET}",
            "pass": r["fits_in_24gib"] >= TARGET_IN_BUDGET,
        },
        {
            "benchmark": "density",
            "metric": "idle warm sandboxes in 24 GiB (MemAvailable drop, incl. kernel memory)",
            "unit": "",
            "figure": r["fits_in_24gib_by_memavailable_drop"],
            "baseline": None,
            "baseline_name": "",
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
