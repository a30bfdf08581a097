"""Asynchronous calls: how fast they are accepted, how long from the 202 to
the callback, and what a backlog does to synchronous calls of the same function.

    python -m bench.async_calls [--duration 5] [--connections 32] [--callbacks 300] [--backlog 10000]

- accepted per second: POSTs to /async-function/ from `connections`
  keep-alive connections for `duration` s (each 202 is durable: committed
  to the queue), with the latency of the 202: to a function whose calls stay
  queued (wrk when installed), and to one that runs them meanwhile;
- 202 to callback: `callbacks` calls, one at a time and then 8 at a time,
  each timed from its 202 to its callback's arrival at a receiver on
  127.0.0.1 (p50/p99);
- sync under a backlog: a function that sleeps 20 ms (max_instances 10)
  called synchronously 200 times one after another, first with an empty
  queue (the baseline), then with `backlog` asynchronous calls of it queued.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
from typing import Any

import aiohttp
from aiohttp import web

from .common import FaasServer, summary_ms

NOOP = "def handle(event, context):\n    return 'ok'\n"
PARKED = "import time\n\ndef handle(event, context):\n    time.sleep(3600)\n"
SLEEPS_20MS = "import time\n\ndef handle(event, context):\n    time.sleep(0.02)\n    return 'ok'\n"


def accepted_per_second_wrk(url: str, connections: int, duration_s: float) -> dict[str, Any] | None:
    """POSTs from wrk (a Lua script sets the method), when wrk is installed."""
    if shutil.which("wrk") is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write('wrk.method = "POST"\nwrk.body = "x"\n')
        script.flush()
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{duration_s:g}s", "--latency", "-s", script.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "tool": "wrk",
        "connections": connections,
        "accepted_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "refused": int(errors.group(1)) if errors else 0,
        "p50": re.search(r"\s50%\s+(\S+)", out).group(1),  # type: ignore[union-attr]
        "p99": re.search(r"\s99%\s+(\S+)", out).group(1),  # type: ignore[union-attr]
    }


async def accepted_per_second(
    base: str, connections: int, duration_s: float, function: str
) -> dict[str, Any]:
    """POSTs from aiohttp in this process: the fallback without wrk, and the load of a run
    that also executes the calls."""
    latencies: list[float] = []
    refused = 0
    end = time.monotonic() + duration_s
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:

        async def worker() -> None:
            nonlocal refused
            while time.monotonic() < end:
                t0 = time.perf_counter()
                async with session.post(f"{base}/async-function/{function}", data=b"x") as resp:
                    await resp.read()
                    if resp.status != 202:
                        refused += 1
                        continue
                latencies.append(time.perf_counter() - t0)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.monotonic() - started
    return {
        "connections": connections,
        "accepted": len(latencies),
        "refused": refused,
        "accepted_per_s": round(len(latencies) / elapsed, 1),
        "accept_latency": summary_ms(latencies),
    }


async def accepted_to_callback(base: str, calls: int, concurrency: int) -> dict[str, Any]:
    arrived: dict[str, float] = {}
    done = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        arrived[request.headers["X-Call-Id"]] = time.perf_counter()
        await request.read()
        if len(arrived) >= calls:
            done.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/cb", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    accepted: dict[str, float] = {}
    limit = asyncio.Semaphore(concurrency)
    try:
        async with aiohttp.ClientSession() as session:

            async def one() -> None:
                async with (
                    limit,
                    session.post(
                        f"{base}/async-function/noop",
                        headers={"X-Callback-Url": f"http://127.0.0.1:{port}/cb"},
                    ) as resp,
                ):
                    await resp.read()
                    accepted[resp.headers["X-Call-Id"]] = time.perf_counter()

            await asyncio.gather(*(one() for _ in range(calls)))
            await asyncio.wait_for(done.wait(), 120)
    finally:
        await runner.cleanup()
    samples = [arrived[call_id] - at for call_id, at in accepted.items() if call_id in arrived]
    return {"calls": calls, "concurrency": concurrency, "to_callback": summary_ms(samples)}


async def sync_latency(base: str, calls: int) -> dict[str, Any]:
    samples = []
    async with aiohttp.ClientSession() as session:
        for _ in range(calls):
            t0 = time.perf_counter()
            async with session.get(f"{base}/function/sleeper") as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            samples.append(time.perf_counter() - t0)
    return summary_ms(samples)


async def queue_depth(base: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as resp:
        text = await resp.text()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("faas_async_queue_depth{")
    )


async def sync_under_backlog(base: str, backlog: int, calls: int) -> dict[str, Any]:
    baseline = await sync_latency(base, calls)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session:
        limit = asyncio.Semaphore(32)

        async def one() -> None:
            async with limit, session.post(f"{base}/async-function/sleeper") as resp:
                await resp.read()

        t0 = time.monotonic()
        await asyncio.gather(*(one() for _ in range(backlog)))
        queued_in_s = time.monotonic() - t0
    depth_before = await queue_depth(base)
    loaded = await sync_latency(base, calls)
    depth_after = await queue_depth(base)
    return {
        "backlog": backlog,
        "queued_in_s": round(queued_in_s, 2),
        "queue_depth_before": depth_before,
        "queue_depth_after": depth_after,
        "sync_empty_queue": baseline,
        "sync_with_backlog": loaded,
        "p50_ratio": round(loaded["p50_ms"] / baseline["p50_ms"], 3),
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    config.write(f'callback_allow = ["127.0.0.0/8"]\nmax_async_queue = {max(100_000, args.backlog * 2)}\n')
    config.close()
    server = FaasServer("--config", config.name)
    try:
        server.deploy("noop", NOOP, max_instances=10)
        server.deploy("sleeper", SLEEPS_20MS, max_instances=10)
        # Accepted and kept queued: its one sandbox is busy with a call that outlasts the run.
        server.deploy("parked", PARKED, max_instances=1, timeout_s=args.duration + 5)
        base = f"http://127.0.0.1:{server.port}"
        queued_only = accepted_per_second_wrk(
            f"{base}/async-function/parked", args.connections, args.duration
        )
        if queued_only is None:
            queued_only = await accepted_per_second(base, args.connections, args.duration, "parked")
        await cancel_queued(base, "parked")
        executed = await accepted_per_second(base, args.connections, args.duration, "noop")
        await wait_drained(base)
        one_at_a_time = await accepted_to_callback(base, args.callbacks, 1)
        await wait_drained(base)
        eight_at_a_time = await accepted_to_callback(base, args.callbacks, 8)
        await wait_drained(base)
        backlog = await sync_under_backlog(base, args.backlog, 200)
        return {
            "accepted_kept_queued": queued_only,
            "accepted_while_executing": executed,
            "callbacks_one_at_a_time": one_at_a_time,
            "callbacks_eight_at_a_time": eight_at_a_time,
            "sync_under_backlog": backlog,
        }
    finally:
        server.stop()


async def cancel_queued(base: str, function: str) -> None:
    """Cancel every queued call of `function` (its parked one ends by its timeout)."""
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(
                f"{base}/system/async?function={function}&status=queued&limit=1000"
            ) as resp:
                calls = (await resp.json())["calls"]
            if not calls:
                return
            for call in calls:
                async with session.delete(f"{base}/system/async/{call['call_id']}") as resp:
                    await resp.read()


async def wait_drained(base: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while await queue_depth(base) > 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the asynchronous queue did not drain")
        await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--callbacks", type=int, default=300)
    parser.add_argument("--backlog", type=int, default=10_000)
    result = asyncio.run(measure(parser.parse_args()))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
