"""Run every benchmark; write bench/results/<UTC timestamp>/results.json,
chart.png and summary.md, and print the summary table.

    python -m bench [--quick] [--only warm,cpu,cold,creation,density,imports,network] [--out DIR]

Each figure comes with a baseline measured in the same run (the machine is
shared and noisy, so only the ratio is meaningful), and with its target
(pass/fail) where the issue sets one:

- warm: `hello` through /function/hello vs a bare aiohttp+uvloop server, wrk
  at 1 and 32 connections, alternating rounds, medians. Targets: 32-conn
  throughput >= 0.6x bare; 1-conn p50 within 100 µs of bare.
- cpu: server and sandbox CPU per warm `hello` call (/proc/PID/stat and the
  usage records' cgroup CPU) vs the bare server's CPU per request, with the
  sandbox frozen between calls and not (the cost of freezing). Targets:
  server <= 80 µs, sandbox <= 25 µs.
- cold: first call of freshly deployed functions (end to end, 20 ms apart)
  vs a fresh `python -c 'print(1)'`. Targets: p50 <= 5 ms, p99 <= 15 ms.
- creation: isolated blank sandboxes created per second, sustained, through
  the real machinery without the HTTP server, vs fork+exec of a fresh
  python. Target: >= 200/s.
- density: PSS per idle warm sandbox (N of them, through the server) vs a
  fresh sleeping python; projected count in 24 GiB. Target: >= 2000.
- network: outbound cold start vs `none` (same run; target: p50 within
  2 ms), warm call overhead of an outbound function, sandboxes with a veth
  created per second; in a network namespace of its own.

Every server, sandbox and cgroup a benchmark starts is torn down when it
ends, also on failure or Ctrl-C/SIGTERM. Exit status 1 if a benchmark
failed to run (a missed target is a result, not a failure).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from typing import Any

from sandbox import procfs

from . import cold, cpu, creation, density, imports, network, report, warm
from .common import REPO, leftover_cgroups

BENCHMARKS = {
    "warm": warm,
    "cpu": cpu,
    "cold": cold,
    "creation": creation,
    "density": density,
    "imports": imports,
    "network": network,
}


def _on_sigterm(signum: int, frame: Any) -> None:
    # Unwind through every try/finally, so servers and sandboxes are torn down.
    raise KeyboardInterrupt


def _meminfo(key: str) -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _cgroup_version() -> str:
    with open("/proc/self/mountinfo") as f:
        text = f.read()
    if " - cgroup " in text:
        return "v1"
    return "v2" if " - cgroup2 " in text else "none"


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


def _meta(stamp: str, quick: bool) -> dict[str, Any]:
    return {
        "timestamp": stamp,
        "quick": quick,
        "command": " ".join(["python", "-m", "bench", *sys.argv[1:]]),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "git": _git(),
        "host": {
            "cpus": os.cpu_count(),
            "memtotal_gib": round(_meminfo("MemTotal") / 2**30, 2),
            "kernel": platform.release(),
            "cgroups": _cgroup_version(),
        },
    }


def _children_alive() -> list[str]:
    """Processes this run started that are still alive (should be none)."""
    return [f"{pid} {name}" for pid, name in procfs.children_of(os.getpid(), include_zombies=False)]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a shorter run, for a smoke check (~1 minute)")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset of: %(default)s")
    parser.add_argument("--out", help="results folder (default bench/results/<UTC timestamp>)")
    parser.add_argument("--replot", metavar="DIR", help="redraw DIR/chart.png from DIR/results.json and exit")
    args = parser.parse_args()
    if args.replot:
        with open(os.path.join(args.replot, "results.json")) as f:
            results = json.load(f)
        report.chart(results, results["summary"], os.path.join(args.replot, "chart.png"))
        print(report.table(results["summary"]))
        return 0
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    if os.geteuid() != 0:
        print("python -m bench needs root (the server creates namespaces and cgroups)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = args.out or os.path.join(REPO, "bench", "results", stamp)
    os.makedirs(out_dir, exist_ok=True)
    log_path = os.path.join(out_dir, "servers.log")
    results: dict[str, Any] = {"meta": _meta(stamp, args.quick), "benchmarks": {}, "summary": []}
    rows: list[dict[str, Any]] = []
    failed = False
    for name in chosen:
        module = BENCHMARKS[name]
        print(f"[bench] {name}{' (quick)' if args.quick else ''} ...", flush=True)
        t0 = time.monotonic()
        load_before = os.getloadavg()[0]
        try:
            result = module.run(args.quick, log_path=log_path)
            rows.extend(module.rows(result))
        except Exception:
            failed = True
            result = {"error": traceback.format_exc()}
            print(result["error"], file=sys.stderr, flush=True)
        result["elapsed_s"] = round(time.monotonic() - t0, 1)
        result["loadavg_1m_before"] = round(load_before, 2)
        results["benchmarks"][name] = result
        print(f"[bench] {name} done in {result['elapsed_s']} s", flush=True)

    results["summary"] = report.finish_rows(rows)
    results["meta"]["leftover_processes"] = _children_alive()
    results["meta"]["leftover_cgroups"] = leftover_cgroups()
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    summary = report.table(results["summary"])
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(f"# {results['meta']['command']} ({stamp})\n\n{summary}\n")
    try:
        report.chart(results, results["summary"], os.path.join(out_dir, "chart.png"))
    except ImportError:
        print("[bench] matplotlib is missing: no chart (pip install -e '.[bench]')", file=sys.stderr)
    print()
    print(summary)
    print(f"\n[bench] results in {os.path.relpath(out_dir)}/ (results.json, chart.png, summary.md)")
    for what in ("leftover_processes", "leftover_cgroups"):
        if results["meta"][what]:
            print(f"[bench] WARNING: {what}: {results['meta'][what]}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\n[bench] interrupted (servers and sandboxes torn down)", file=sys.stderr)
        sys.exit(130)
