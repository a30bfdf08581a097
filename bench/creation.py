"""Sandbox creation rate: fully isolated blank sandboxes (cgroup with limits,
fork from the zygote into new mount/pid/net/ipc/uts namespaces, private
read-only root, ready on its channel) per second, sustained, against the
real machinery without the HTTP server.

Up to K spawns are kept in flight (K = 1 and 4; the best is reported);
each sandbox is destroyed in the background as soon as it is made, so only
creation is timed (destruction still competes for the CPU). Baseline in the
same run: fork+exec of a fresh `python -c pass` per second, same K.

It runs in a child process (`python -m bench.creation --child`) so that the
cgroup backend (named after that process) and the zygote never touch the
caller's own cgroup, and go away with it.

    python -m bench.creation [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from typing import Any

from .common import percentile, run_child

KS = (1, 4)
TARGET_PER_S = 200.0


async def _measure_sandboxes(
    k: int, duration_s: float, warmup: int = 8, outbound: bool = False
) -> dict[str, Any]:
    """`outbound`: blanks with a veth (bench/network.py runs it in a
    network namespace of its own)."""
    from sandbox.factory import FactoryConfig, SandboxFactory
    from sandbox.instance import Sandbox

    data_dir = tempfile.mkdtemp(prefix="faas-bench-data-")
    # The invoker's own factory, without its pre-warmed pool: each blank is
    # made on demand, exactly as a cold start that finds the pool empty.
    factory = SandboxFactory(FactoryConfig(data_dir=data_dir, prewarm=0))
    limits = factory.limits(memory_mb=128, cpu_cores=1.0)
    make = factory.outbound_blank if outbound else factory.blank
    destroys: set[asyncio.Task[None]] = set()

    def destroy_later(sandbox: Sandbox) -> None:
        task = asyncio.create_task(sandbox.destroy())
        destroys.add(task)
        task.add_done_callback(destroys.discard)

    try:
        async with factory:
            if outbound:
                await factory.prepare_network()
            try:
                for _ in range(warmup):
                    destroy_later(await make(limits, 10.0))
                while destroys:
                    await asyncio.gather(*destroys)
                made: list[float] = []
                latencies: list[float] = []
                t0 = time.monotonic()
                end = t0 + duration_s

                async def worker() -> None:
                    while time.monotonic() < end:
                        start = time.monotonic()
                        sandbox = await make(limits, 10.0)  # destroyed by itself on failure
                        done = time.monotonic()
                        destroy_later(sandbox)
                        if done <= end:
                            made.append(done)
                            latencies.append(done - start)

                await asyncio.gather(*(worker() for _ in range(k)))
            finally:
                while destroys:
                    await asyncio.gather(*destroys, return_exceptions=True)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "k": k,
        "duration_s": duration_s,
        "created": len(made),
        "per_s": round(len(made) / duration_s, 1),
        "spawn_p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "spawn_p99_ms": round(percentile(latencies, 99) * 1000, 3),
    }


async def _measure_fork_exec(k: int, duration_s: float) -> dict[str, Any]:
    made = 0
    end = time.monotonic() + duration_s

    async def worker() -> None:
        nonlocal made
        while time.monotonic() < end:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
            await proc.wait()
            if time.monotonic() <= end:
                made += 1

    await asyncio.gather(*(worker() for _ in range(k)))
    return {"k": k, "duration_s": duration_s, "created": made, "per_s": round(made / duration_s, 1)}


async def _child(quick: bool) -> dict[str, Any]:
    duration_s = 3.0 if quick else 10.0
    baseline_s = 1.5 if quick else 3.0
    sandboxes = [await _measure_sandboxes(k, duration_s) for k in KS]
    baseline = [await _measure_fork_exec(k, baseline_s) for k in KS]
    return {
        "what": "blank sandboxes: cgroup (limits set) + zygote fork into new namespaces + private root, ready",
        "sandboxes": sandboxes,
        "fork_exec_python": baseline,
        "best": max(sandboxes, key=lambda r: r["per_s"]),
        "best_baseline": max(baseline, key=lambda r: r["per_s"]),
    }


def run(quick: bool = False, log_path: str | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.creation", "--child"] + (["--quick"] if quick else [])
    return run_child(cmd, "bench.creation", log_path, timeout_s=300)  # type: ignore[no-any-return]


def rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    best, base = r["best"], r["best_baseline"]
    return [
        {
            "benchmark": "creation",
            "metric": f"isolated sandboxes created/s (best K={best['k']})",
            "unit": "/s",
            "figure": best["per_s"],
            "baseline": base["per_s"],
            "baseline_name": f"fork+exec python -c pass (K={base['k']})",
            "target": f">= {TARGET_PER_S:g}/s",
            "pass": best["per_s"] >= TARGET_PER_S,
        }
    ]


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import signal

        import uvloop  # the server's loop

        signal.signal(signal.SIGTERM, _raise_interrupt)

        print(json.dumps(uvloop.run(_child(args.quick))))
    else:
        print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()
