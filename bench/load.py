"""Load from a separate process: wrk if installed, else an aiohttp client.

run_load(url, connections, duration_s) -> {"rps", "p50_ms", "p99_ms", "errors", "tool"}
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from typing import Any

from .common import percentile

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)$", text)
    if not match:
        raise ValueError(f"unparsable wrk time {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _wrk(url: str, connections: int, duration_s: float, launcher: tuple[str, ...] = ()) -> dict[str, Any]:
    """`launcher`: what runs wrk (`nsenter --net=...` for a server in a network namespace)."""
    threads = min(2, connections)
    out = subprocess.run(
        [
            *launcher,
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{duration_s:g}s",
            "--latency",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "errors": int(errors.group(1)) if errors else 0,
        "tool": "wrk",
    }


async def _aiohttp_load(url: str, connections: int, duration_s: float) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    end = time.monotonic() + duration_s
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < end:
                t0 = time.perf_counter()
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status >= 400:
                        errors += 1
                latencies.append((time.perf_counter() - t0) * 1000)

        await asyncio.gather(*(worker() for _ in range(connections)))
    return {
        "rps": len(latencies) / duration_s,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "errors": errors,
        "tool": "aiohttp",
    }


def run_load(url: str, connections: int, duration_s: float) -> dict[str, Any]:
    if shutil.which("wrk"):
        return _wrk(url, connections, duration_s)
    # The fallback runs in its own process so it does not share the caller's loop or GIL.
    code = (
        "import asyncio, json, sys; from bench.load import _aiohttp_load; "
        "print(json.dumps(asyncio.run(_aiohttp_load(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, url, str(connections), str(duration_s)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)
