"""Shared pieces of the benchmarks: servers started as subprocesses, a
keep-alive HTTP client, percentiles."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Pids of the processes that own sandbox cgroups (servers, bench.creation),
# for the check that none is left behind.
CGROUP_OWNERS: list[int] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


class Client:
    """One keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        headers = {}
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def close(self) -> None:
        self.conn.close()


def first_calls(client: Client, names: list[str], pause_s: float) -> list[tuple[float, dict[str, str]]]:
    """Call each function once, `pause_s` apart, over the client's keep-alive
    connection: each call's time end to end, and its response headers.
    RuntimeError for an answer that is not a 200 from a cold start."""
    calls = []
    for name in names:
        time.sleep(pause_s)
        t0 = time.perf_counter()
        client.conn.request("GET", f"/function/{name}")
        resp = client.conn.getresponse()
        body = resp.read()
        calls.append((time.perf_counter() - t0, dict(resp.getheaders())))
        if resp.status != 200:
            raise RuntimeError(f"{name}: {resp.status} {body!r}")
    cold = sum(headers.get("X-Cold-Start") == "true" for _, headers in calls)
    if cold != len(names):
        raise RuntimeError(f"only {cold} of {len(names)} first calls were cold starts")
    return calls


def wait_http(port: int, path: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            c = Client(port)
            status, _ = c.request("GET", path)
            c.close()
            if status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answered on port {port}")


class FaasServer:
    """`faas serve` as a subprocess on a free port with a fresh data dir.

    log_path: where its stdout/stderr go (default: discarded).
    """

    def __init__(
        self, *args: str, log_path: str | None = None, entry: tuple[str, ...] = ("-m", "gateway.cli")
    ) -> None:
        """entry: how the interpreter runs the CLI (a benchmark may wrap it)."""
        self.port = free_port()
        self.data_dir = tempfile.mkdtemp(prefix="faas-bench-")
        self._log = open(log_path, "ab") if log_path else None  # noqa: SIM115
        out = self._log if self._log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *entry,
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                self.data_dir,
                *args,
            ],
            stdout=out,
            stderr=out,
            cwd=REPO,
        )
        CGROUP_OWNERS.append(self.proc.pid)
        try:
            wait_http(self.port, "/readyz")
        except BaseException:
            self.stop()
            raise

    def deploy(self, name: str, code: str, **options: Any) -> None:
        c = Client(self.port)
        body = {"name": name, "files": {"handler.py": base64.b64encode(code.encode()).decode()}, **options}
        status, out = c.request("POST", "/system/functions", body)
        c.close()
        if status not in (200, 201):
            raise RuntimeError(f"deploy {name}: {status} {out!r}")

    def stop(self) -> None:
        """SIGTERM (the server destroys its sandboxes and cgroups), SIGKILL
        after 60 s; idempotent."""
        _stop(self.proc, 60)
        if self._log is not None:
            self._log.close()
            self._log = None
        subprocess.run(["rm", "-rf", self.data_dir], check=False)


class BareServer:
    """The baseline: a bare aiohttp + uvloop hello server."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_server", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
        )
        try:
            wait_http(self.port, "/")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        _stop(self.proc, 10)


def leftover_cgroups(root: str = "/sys/fs/cgroup", depth: int = 5) -> list[str]:
    """`faas-<pid>` cgroup directories of processes this run started."""
    names = {f"faas-{pid}" for pid in CGROUP_OWNERS}
    found = []

    def walk(path: str, level: int) -> None:
        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name in names:
                    found.append(entry.path)
                elif level < depth and not entry.name.startswith(("sb-", "faas-")):
                    walk(entry.path, level + 1)

    if names:
        walk(root, 0)
    return found


def run_child(cmd: list[str], name: str, log_path: str | None, timeout_s: float) -> Any:
    """Run a benchmark's child process (it owns the cgroups it makes, and
    they go with it); its JSON output. SIGTERM unwinds it on the way out."""
    with open(log_path or os.devnull, "ab") as log:
        # Without a log, its errors go to ours.
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=log if log_path else None)
        CGROUP_OWNERS.append(proc.pid)
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        finally:
            _stop(proc, 60)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} exited with {proc.returncode} (see {log_path or 'stderr'})")
    return json.loads(out)


def _stop(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


HELLO = (REPO / "functions" / "hello.py").read_text()
os.environ.setdefault("PYTHONUNBUFFERED", "1")
