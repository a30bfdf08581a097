"""Soak: a steady load for a fixed time, watching the server for leaks.

    python -m bench.soak [--minutes 10] [--rate R] [--interval 10] [--drivers N]

1. Start `faas serve` (bench.common.FaasServer), deploy hello, echo and
   stats (functions/), call each once.
2. Peak: wrk at 32 connections for 5 s on /function/hello
   (bench.load.run_load; its aiohttp fallback where wrk is missing).
3. Steady load at --rate (default: half that peak) for --minutes, then stop.
   wrk has no rate control (wrk2 is not packaged), so the load comes from
   our own driver process(es) (`--drivers`, default 1): an aiohttp + uvloop
   client running an open-loop schedule, request i due at t0 + i/rate,
   round-robin over GET /function/hello, POST /function/echo and
   POST /function/stats, with at most --max-in-flight requests outstanding
   over keep-alive connections. When that bound is reached (the server is
   slower than the schedule) the driver waits for a slot, so the achieved
   rate drops below the target; both are reported. A request is an error
   when it fails or answers anything but 200.
4. Every --interval seconds: the server's VmRSS (/proc/PID/status), its open
   fds (/proc/PID/fd; the zygote's too), the sandboxes (processes below the
   server's zygote, by cgroup, as bench.density counts them, and the
   faas_sandboxes gauge of /metrics), requests done and errors (driver
   counts, and non-200 codes of gateway_function_invocation_total).

"start" is the first sample after the warm-up (--warmup-s, default 10% of
the run, at most 60 s: every function has its sandboxes and the allocator
has settled), "end" the last sample under load (none is taken in the last
second, while the drivers wind down); growth = (end - start) / start,
target < 10% for RSS, fds and sandboxes. Open fds include the clients'
keep-alive connections, so the idle server is sampled too, just before the
load starts and 2 s after it ends ("idle_change"; no verdict: the sandboxes
the load needed stay warm for the keep-alive, 600 s by default).
Writes bench/results/soak-<UTC timestamp>.json (and the server's log next
to it) and prints a summary. Tears everything down on exit, SIGTERM and
Ctrl-C included. Needs root, like the server.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import REPO, Client, FaasServer, leftover_cgroups, percentile
from .density import sandbox_processes
from .load import run_load

FUNCTIONS = ("hello", "echo", "stats")
PEAK_CONNECTIONS = 32
PEAK_SECONDS = 5.0
TARGET_GROWTH_PCT = 10.0
IDLE_SETTLE_S = 2.0
ECHO_BODY = b"soak " * 20
STATS_BODY = json.dumps({"numbers": list(range(50))}).encode()


# --- the load driver (runs in its own process) --------------------------------


async def _drive(
    port: int, rate: float, seconds: float, max_in_flight: int, offset: int, stats_path: str
) -> dict[str, Any]:
    import aiohttp

    base = f"http://127.0.0.1:{port}/function/"
    requests = [
        ("GET", base + "hello?name=soak", None, {}),
        ("POST", base + "echo", ECHO_BODY, {"Content-Type": "text/plain"}),
        ("POST", base + "stats", STATS_BODY, {"Content-Type": "application/json"}),
    ]
    stats: dict[str, Any] = {"sent": 0, "done": 0, "ok": 0, "errors": 0, "exceptions": 0, "status": {}}
    window: list[float] = []  # latencies (ms) since the last stats write
    slots = asyncio.Semaphore(max_in_flight)
    pending: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    def write_stats(final: bool = False) -> None:
        nonlocal window
        out = dict(stats)
        out["in_flight"] = len(pending)
        out["elapsed_s"] = round(loop.time() - t0, 3)
        out["window_p50_ms"] = round(percentile(window, 50), 3) if window else None
        out["window_p99_ms"] = round(percentile(window, 99), 3) if window else None
        out["final"] = final
        window = []
        tmp = stats_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f)
        os.replace(tmp, stats_path)

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        method, url, body, headers = requests[(i + offset) % len(requests)]
        start = time.perf_counter()
        try:
            async with session.request(method, url, data=body, headers=headers) as resp:
                await resp.read()
                key = str(resp.status)
                stats["status"][key] = stats["status"].get(key, 0) + 1
                if resp.status == 200:
                    stats["ok"] += 1
                else:
                    stats["errors"] += 1
        except (TimeoutError, aiohttp.ClientError, OSError):
            stats["exceptions"] += 1
            stats["errors"] += 1
        finally:
            stats["done"] += 1
            window.append((time.perf_counter() - start) * 1000)
            slots.release()

    async def reporter() -> None:
        while True:
            await asyncio.sleep(1.0)
            write_stats()

    connector = aiohttp.TCPConnector(limit=max_in_flight, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    t0 = loop.time()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        report = asyncio.create_task(reporter())
        end, i = t0 + seconds, 0
        while True:
            due = t0 + i / rate
            if due >= end:
                break
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            task = asyncio.create_task(one(session, i))
            pending.add(task)
            task.add_done_callback(pending.discard)
            stats["sent"] += 1
            i += 1
        if pending:
            await asyncio.wait(pending, timeout=35)
        report.cancel()
    stats["elapsed_s"] = round(loop.time() - t0, 3)
    write_stats(final=True)
    return stats


def _driver_main(args: argparse.Namespace) -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    stats = asyncio.run(
        _drive(args.port, args.rate, args.seconds, args.max_in_flight, args.offset, args.stats_path)
    )
    print(json.dumps(stats))
    return 0


# --- sampling -------------------------------------------------------------------


def _vm_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def _scrape(port: int) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    client = Client(port)
    try:
        status, body = client.request("GET", "/metrics")
    finally:
        client.close()
    if status != 200:
        return {}
    gauge: dict[str, float] = {}
    codes: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "faas_sandboxes":
                gauge[sample.labels["state"]] = sample.value
            elif sample.name == "gateway_function_invocation_total":
                code = sample.labels.get("code", "?")
                codes[code] = codes.get(code, 0) + sample.value
    return {"faas_sandboxes": gauge, "invocations_by_code": codes}


def _driver_totals(paths: list[str]) -> dict[str, Any]:
    totals: dict[str, Any] = {"sent": 0, "done": 0, "errors": 0, "exceptions": 0, "in_flight": 0}
    p50s, p99s = [], []
    for path in paths:
        try:
            with open(path) as f:
                stats = json.load(f)
        except (OSError, ValueError):
            continue
        for key in totals:
            totals[key] += stats.get(key, 0)
        if stats.get("window_p50_ms") is not None:
            p50s.append(stats["window_p50_ms"])
            p99s.append(stats["window_p99_ms"])
    totals["p50_ms"] = max(p50s) if p50s else None
    totals["p99_ms"] = max(p99s) if p99s else None
    return totals


def sample(server: FaasServer, t: float, driver_stats: list[str]) -> dict[str, Any]:
    pid = server.proc.pid
    out: dict[str, Any] = {"t_s": round(t, 1), "rss_kib": _vm_rss_kib(pid), "fds": _fds(pid)}
    try:
        zygote, groups, blanks = sandbox_processes(pid)
        out.update(
            zygote_rss_kib=_vm_rss_kib(zygote),
            zygote_fds=_fds(zygote),
            sandboxes=len(groups),
            blank_sandboxes=blanks,
            sandbox_processes=sum(len(p) for p in groups.values()),
        )
    except (RuntimeError, OSError) as exc:
        out["sandboxes_error"] = str(exc)
    try:
        scraped = _scrape(server.port)
        out["faas_sandboxes"] = scraped.get("faas_sandboxes")
        out["sandboxes_gauge"] = sum(scraped.get("faas_sandboxes", {}).values())
        by_code = scraped.get("invocations_by_code", {})
        out["invocations_by_code"] = by_code
        out["server_non200"] = sum(v for code, v in by_code.items() if code != "200")
    except OSError as exc:
        out["metrics_error"] = str(exc)
    out["load"] = _driver_totals(driver_stats)
    return out


def _growth(start: float | None, end: float | None) -> float | None:
    if start is None or end is None or start == 0:
        return None
    return round((end - start) / start * 100, 2)


def _compare(first: dict[str, Any], last: dict[str, Any], key: str) -> dict[str, Any]:
    start, end = first.get(key), last.get(key)
    growth = _growth(start, end)
    return {
        "start": start,
        "end": end,
        "growth_pct": growth,
        "ok": None if growth is None else growth < TARGET_GROWTH_PCT,
    }


def _meta(stamp: str) -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return {
        "timestamp": stamp,
        "command": " ".join(["python", "-m", "bench.soak", *sys.argv[1:]]),
        "python": sys.version.split()[0],
        "git": {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))},
        "host": {"cpus": os.cpu_count(), "kernel": platform.release()},
    }


def _call_each(port: int) -> None:
    client = Client(port)
    try:
        for method, path, body in (
            ("GET", "/function/hello?name=soak", None),
            ("POST", "/function/echo", ECHO_BODY),
            ("POST", "/function/stats", STATS_BODY),
        ):
            status, out = client.request(method, path, body)
            if status != 200:
                raise RuntimeError(f"{method} {path}: {status} {out[:200]!r}")
    finally:
        client.close()


def run(
    minutes: float,
    rate: float | None,
    interval_s: float,
    drivers: int,
    max_in_flight: int,
    warmup_s: float | None,
    log_path: str | None,
) -> dict[str, Any]:
    seconds = minutes * 60
    if warmup_s is None:
        warmup_s = min(60.0, seconds / 10)
    result: dict[str, Any] = {}
    server = FaasServer(log_path=log_path)
    procs: list[subprocess.Popen[bytes]] = []
    stats_dir = tempfile.mkdtemp(prefix="faas-soak-")
    stats_paths = [os.path.join(stats_dir, f"driver-{k}.json") for k in range(drivers)]
    try:
        for name in FUNCTIONS:
            server.deploy(name, (REPO / "functions" / f"{name}.py").read_text())
        _call_each(server.port)
        peak = run_load(f"http://127.0.0.1:{server.port}/function/hello", PEAK_CONNECTIONS, PEAK_SECONDS)
        result["peak"] = {"connections": PEAK_CONNECTIONS, "seconds": PEAK_SECONDS, **peak}
        target = rate if rate else peak["rps"] / 2
        result["load"] = {
            "target_rps": round(target, 1),
            "rate_source": "--rate" if rate else "half of peak",
            "drivers": drivers,
            "max_in_flight_per_driver": max_in_flight,
            "functions": list(FUNCTIONS),
            "seconds": seconds,
            "warmup_s": warmup_s,
        }
        print(
            f"[soak] peak {peak['rps']:.0f} req/s ({peak['tool']}); steady load at {target:.0f} req/s "
            f"for {minutes:g} min, sampling every {interval_s:g} s",
            flush=True,
        )
        for k in range(drivers):
            cmd = [
                sys.executable, "-m", "bench.soak", "--driver",
                "--port", str(server.port),
                "--rate", repr(target / drivers),
                "--seconds", repr(seconds),
                "--max-in-flight", str(max_in_flight),
                "--offset", str(k),
                "--stats-path", stats_paths[k],
            ]  # fmt: skip
            procs.append(subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE))
        t0 = time.monotonic()
        before = sample(server, 0.0, stats_paths)
        _print_sample(before, "idle before")
        samples = [before]
        next_at = t0 + interval_s
        while any(p.poll() is None for p in procs):
            if time.monotonic() - t0 > seconds + 60:
                raise RuntimeError("the load drivers did not stop on time")
            # Samples under load only: none in the last second, when the drivers wind down.
            if time.monotonic() >= next_at and next_at - t0 < seconds - 1:
                samples.append(sample(server, time.monotonic() - t0, stats_paths))
                _print_sample(samples[-1])
                next_at += interval_s
            time.sleep(0.1)
        finals = []
        for p in procs:
            out, _ = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"load driver exited with {p.returncode}")
            finals.append(json.loads(out.decode().strip().splitlines()[-1]))
        time.sleep(IDLE_SETTLE_S)  # the clients' connections close
        after = sample(server, time.monotonic() - t0, stats_paths)
        _print_sample(after, "idle after")
        elapsed = max(f["elapsed_s"] for f in finals)
        done = sum(f["done"] for f in finals)
        status: dict[str, int] = {}
        for f in finals:
            for code, n in f["status"].items():
                status[code] = status.get(code, 0) + n
        result["load"].update(
            requests_sent=sum(f["sent"] for f in finals),
            requests_done=done,
            ok=sum(f["ok"] for f in finals),
            errors=sum(f["errors"] for f in finals),
            exceptions=sum(f["exceptions"] for f in finals),
            status=status,
            achieved_rps=round(done / elapsed, 1) if elapsed else None,
        )
        start = next((s for s in samples if s["t_s"] >= warmup_s), samples[0])
        end = samples[-1]
        keys = ("rss_kib", "fds", "sandboxes", "sandboxes_gauge", "zygote_rss_kib", "zygote_fds")
        result["start_t_s"] = start["t_s"]
        result["end_t_s"] = end["t_s"]
        result["growth"] = {key: _compare(start, end, key) for key in keys}
        # Idle before the load vs idle after it (client connections closed in both).
        result["idle_before"] = before
        result["idle_after"] = after
        result["idle_change"] = {key: {"before": before.get(key), "after": after.get(key)} for key in keys}
        result["server_non200"] = after.get("server_non200")
        result["samples"] = samples
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        server.stop()
        subprocess.run(["rm", "-rf", stats_dir], check=False)
    result["server_exit_code"] = server.proc.returncode
    result["leftover_cgroups"] = leftover_cgroups()
    return result


def _print_sample(s: dict[str, Any], note: str = "") -> None:
    load = s.get("load", {})
    print(
        f"[soak] t={s['t_s']:>6.1f}s {note + ' ' if note else ''}rss={s.get('rss_kib')} KiB fds={s.get('fds')} "
        f"sandboxes={s.get('sandboxes')} (gauge {s.get('sandboxes_gauge')}) "
        f"done={load.get('done')} errors={load.get('errors')} in_flight={load.get('in_flight')} "
        f"p99={load.get('p99_ms')} ms",
        flush=True,
    )


def summary(result: dict[str, Any]) -> str:
    load = result["load"]
    lines = [
        f"peak {result['peak']['rps']:.0f} req/s at {PEAK_CONNECTIONS} connections ({result['peak']['tool']}); "
        f"target {load['target_rps']:.0f} req/s, achieved {load['achieved_rps']} req/s",
        f"requests done {load['requests_done']}, errors {load['errors']} "
        f"(exceptions {load['exceptions']}, status {load['status']}); server non-200: {result['server_non200']}",
        f"under load, start t={result['start_t_s']} s vs end t={result['end_t_s']} s "
        f"(growth target < {TARGET_GROWTH_PCT:g}%):",
    ]
    for key, g in result["growth"].items():
        verdict = "n/a" if g["ok"] is None else ("ok" if g["ok"] else "OVER")
        lines.append(f"  {key:16} start {g['start']}  end {g['end']}  growth {g['growth_pct']}%  {verdict}")
    lines.append("idle, before the load vs after it (warm sandboxes stay for the keep-alive):")
    for key, change in result["idle_change"].items():
        lines.append(f"  {key:16} before {change['before']}  after {change['after']}")
    return "\n".join(lines)


def _on_sigterm(signum: int, frame: Any) -> None:
    # Unwind through every try/finally, so the drivers, server and sandboxes are torn down.
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="steady-load duration (default 10)")
    parser.add_argument("--rate", type=float, help="requests/s in all (default: half the measured peak)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--drivers", type=int, default=1, help="load driver processes (default 1)")
    parser.add_argument("--max-in-flight", type=int, default=64, help="outstanding requests per driver")
    parser.add_argument(
        "--warmup-s", type=float, help="start sample at/after this (default 10%% of run, <= 60)"
    )
    parser.add_argument("--out", help="JSON path (default bench/results/soak-<UTC timestamp>.json)")
    # The load driver's own entry point (started by the soak itself).
    parser.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--stats-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        return _driver_main(args)
    if (
        args.minutes <= 0
        or args.interval <= 0
        or args.drivers < 1
        or (args.rate is not None and args.rate <= 0)
    ):
        parser.error("--minutes, --interval, --rate and --drivers must be positive")
    if os.geteuid() != 0:
        print("python -m bench.soak needs root (the server creates namespaces and cgroups)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_path = Path(args.out or REPO / "bench" / "results" / f"soak-{stamp}.json")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    log_path = str(out_path.with_suffix(".log"))
    result: dict[str, Any] = {"meta": _meta(stamp)}
    result.update(
        run(args.minutes, args.rate, args.interval, args.drivers, args.max_in_flight, args.warmup_s, log_path)
    )
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result))
    print(f"[soak] wrote {out_path}")
    if result["leftover_cgroups"] or result["server_exit_code"] != 0:
        print(f"[soak] teardown: exit {result['server_exit_code']}, cgroups {result['leftover_cgroups']}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\n[soak] interrupted (server and sandboxes torn down)", file=sys.stderr)
        sys.exit(130)
