"""Outbound network: what a veth, an address and the egress policy cost.

- cold: the first call of freshly deployed `hello` functions, `network:
  outbound` against `none`, alternating in the same run (both kinds come
  from their pool of pre-warmed blanks). Target: outbound p50 within 2 ms
  of none. Reported too: outbound with an allow list, and with a bandwidth
  cap (`egress_mbit`).
- warm: sequential calls of a warm `hello` over one keep-alive connection,
  outbound against none, alternating rounds: the per-call overhead (the
  byte counters read after each call).
- creation: blank sandboxes created per second through the factory, with a
  veth against without, sustained (bench/creation.py's measurement).

Everything runs in a network namespace of its own (`unshare --net`): the
server's veths, nftables table and IP forwarding never touch the host's.

    python -m bench.network [--quick]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import Any

from .common import HELLO, Client, FaasServer, percentile, run_child, summary_ms

COLD_PAUSE_S = 0.030
TARGET_COLD_DELTA_MS = 2.0
KINDS = {"none": {}, "outbound": {"network": "outbound"}}
# Cold starts only, reported: what an allow list and a bandwidth cap add.
COLD_ONLY = {
    "outbound-allow": {"network": "outbound", "allow": ["10.0.0.0/8", "192.168.1.5:5432"]},
    "outbound-mbit": {"network": "outbound", "egress_mbit": 100},
}


def _timed_get(client: Client, path: str) -> tuple[float, bool]:
    t0 = time.perf_counter()
    client.conn.request("GET", path)
    resp = client.conn.getresponse()
    body = resp.read()
    elapsed = time.perf_counter() - t0
    if resp.status != 200:
        raise RuntimeError(f"{path}: {resp.status} {body!r}")
    return elapsed, resp.getheader("X-Cold-Start") == "true"


def _wait_prewarmed(server: FaasServer, count: int, timeout_s: float = 60) -> None:
    client = Client(server.port)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            _, body = client.request("GET", "/metrics")
            match = re.search(rb'^faas_sandboxes\{state="prewarmed"\} (\S+)$', body, re.MULTILINE)
            if match and float(match.group(1)) >= count:
                return
            time.sleep(0.05)
    finally:
        client.close()
    raise RuntimeError(f"the pools did not fill to {count} blanks")


def cold_and_warm(quick: bool, log_path: str | None) -> dict[str, Any]:
    n = 30 if quick else 100
    rounds, per_round = (4, 250) if quick else (10, 500)
    server = FaasServer(log_path=log_path)
    try:
        for kind, options in (KINDS | COLD_ONLY).items():
            for i in range(n):
                server.deploy(f"cold-{kind}-{i}", HELLO, **options)
        for kind, options in KINDS.items():
            server.deploy(f"warm-{kind}", HELLO, **options)
        _wait_prewarmed(server, 8)  # 4 + 4: both pools full
        client = Client(server.port)
        try:
            cold: dict[str, list[float]] = {kind: [] for kind in KINDS | COLD_ONLY}
            for i in range(n):
                # Alternate which goes first, so none always follows a refill.
                for kind in list(cold)[:: 1 if i % 2 == 0 else -1]:
                    time.sleep(COLD_PAUSE_S)
                    elapsed, was_cold = _timed_get(client, f"/function/cold-{kind}-{i}")
                    if not was_cold:
                        raise RuntimeError(f"cold-{kind}-{i}: the first call was not a cold start")
                    cold[kind].append(elapsed)
            warm: dict[str, list[float]] = {kind: [] for kind in KINDS}
            for kind in KINDS:
                _timed_get(client, f"/function/warm-{kind}")
            for _ in range(rounds):
                for kind in KINDS:
                    warm[kind] += [_timed_get(client, f"/function/warm-{kind}")[0] for _ in range(per_round)]
        finally:
            client.close()
    finally:
        server.stop()
    return {
        "cold": {kind: summary_ms(samples) for kind, samples in cold.items()},
        "cold_pacing": f"{n} functions of each kind, one first call each, {COLD_PAUSE_S * 1000:g} ms apart, "
        "alternating kinds; end to end on the client over one keep-alive connection",
        "warm": {
            kind: {
                "n": len(samples),
                "p50_us": round(percentile(samples, 50) * 1e6, 1),
                "p99_us": round(percentile(samples, 99) * 1e6, 1),
            }
            for kind, samples in warm.items()
        },
    }


async def _creation(quick: bool) -> dict[str, Any]:
    from .creation import _measure_sandboxes

    duration_s = 3.0 if quick else 8.0
    return {
        kind: max(
            [await _measure_sandboxes(k, duration_s, outbound=kind == "outbound") for k in (1, 4)],
            key=lambda r: r["per_s"],
        )
        for kind in KINDS
    }


def _child(quick: bool, log_path: str | None) -> dict[str, Any]:
    import uvloop

    from sandbox.namespaces import bring_loopback_up

    bring_loopback_up()  # a new namespace's lo is down
    result = cold_and_warm(quick, log_path)
    result["creation"] = uvloop.run(_creation(quick))
    return result


def run(quick: bool = False, log_path: str | None = None) -> dict[str, Any]:
    cmd = ["unshare", "--net", sys.executable, "-m", "bench.network", "--child"] + (
        ["--quick"] if quick else []
    )
    if log_path:
        cmd += ["--log", log_path]
    return run_child(cmd, "bench.network", log_path, timeout_s=900)  # type: ignore[no-any-return]


def _row(metric: str, unit: str, figure: float, baseline: float, baseline_name: str) -> dict[str, Any]:
    return {
        "benchmark": "network",
        "metric": metric,
        "unit": unit,
        "figure": figure,
        "baseline": baseline,
        "baseline_name": baseline_name,
        "target": "reported",
        "pass": None,
    }


def rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    cold, warm, creation = r["cold"], r["warm"], r["creation"]
    same_run = "network: none, same run"
    delta = round(cold["outbound"]["p50_ms"] - cold["none"]["p50_ms"], 3)
    p50 = _row("outbound cold start p50", "ms", cold["outbound"]["p50_ms"], cold["none"]["p50_ms"], same_run)
    p50 |= {"target": f"<= none + {TARGET_COLD_DELTA_MS:g} ms", "pass": delta <= TARGET_COLD_DELTA_MS}
    return [
        p50,
        _row("outbound cold start p99", "ms", cold["outbound"]["p99_ms"], cold["none"]["p99_ms"], same_run),
        *(
            _row(f"{kind} cold start p50", "ms", cold[kind]["p50_ms"], cold["none"]["p50_ms"], same_run)
            for kind in COLD_ONLY
        ),
        _row(
            "outbound warm call p50 (1 connection)",
            "us",
            warm["outbound"]["p50_us"],
            warm["none"]["p50_us"],
            same_run,
        ),
        _row(
            f"sandboxes with a veth created/s (best K={creation['outbound']['k']})",
            "/s",
            creation["outbound"]["per_s"],
            creation["none"]["per_s"],
            "without network, same run",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import signal

        from .creation import _raise_interrupt

        signal.signal(signal.SIGTERM, _raise_interrupt)
        print(json.dumps(_child(args.quick, args.log)))
    else:
        result = run(args.quick)
        print(json.dumps(result, indent=2))
        for row in rows(result):
            print(
                f"{row['metric']}: {row['figure']} {row['unit']} (baseline {row['baseline']}: {row['baseline_name']})"
            )


if __name__ == "__main__":
    main()
