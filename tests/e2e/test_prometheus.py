"""A real Prometheus server scrapes `faas serve` and stores the counters we expect.

Prometheus runs as our own process on a free loopback port, with a
temporary TSDB and a config that scrapes the server's /metrics every second.
Skipped only where the `prometheus` binary is missing outside CI (CI unset);
in CI a missing binary is a failure (.ci/run installs the Debian package).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import EXAMPLES, TEST_FUNCTIONS, Server, free_port

HELLO_CALLS = 7
RAISER_CALLS = 2
JOB = "faas"
# Loopback only: never through an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary:
        return binary
    if os.environ.get("CI"):
        pytest.fail("prometheus is not installed, and CI is set: .ci/run should have installed it")
    pytest.skip("the prometheus binary is not installed (apt-get install prometheus); CI runs this test")


def _api(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with _OPENER.open(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]


def _query(port: int, expr: str) -> list[dict[str, Any]]:
    data = _api(port, "/api/v1/query", query=expr)
    assert data["resultType"] == "vector", data
    return data["result"]


class Prometheus:
    def __init__(self, binary: str, target_port: int) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="faas-prometheus-"))
        config = self.dir / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            f"  - job_name: {JOB}\n"
            "    metrics_path: /metrics\n"
            "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n"
        )
        self.log_path = self.dir / "prometheus.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
        )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with _OPENER.open(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"prometheus not ready after {timeout_s} s:\n{self.log()}")

    def wait_scrape_after(self, t: float, timeout_s: float) -> None:
        """Until a successful scrape of our target that started after wall time t."""
        deadline = time.monotonic() + timeout_s
        last: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            last = _query(self.port, f'timestamp(up{{job="{JOB}"}} == 1)')
            if last and float(last[0]["value"][1]) > t:
                return
            time.sleep(0.2)
        raise AssertionError(
            f"no successful scrape after the calls in {timeout_s} s (last: {last}):\n{self.log()}"
        )

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            self._log.close()
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.mark.timeout(60)
def test_prometheus_stores_the_invocation_counters(fresh_server: Server) -> None:
    binary = _prometheus_binary()
    srv = fresh_server
    srv.deploy_ok("hello", EXAMPLES / "hello.py")
    srv.deploy_ok("raiser", TEST_FUNCTIONS / "raiser.py")
    prom = Prometheus(binary, srv.port)
    try:
        prom.wait_ready(20)
        for _ in range(HELLO_CALLS):
            assert srv.invoke("hello").status == 200
        for _ in range(RAISER_CALLS):
            assert srv.invoke("raiser").status == 500
        calls_done = time.time()

        prom.wait_scrape_after(calls_done, 15)

        series = _query(prom.port, f'gateway_function_invocation_total{{job="{JOB}"}}')
        stored = {(s["metric"]["function_name"], s["metric"]["code"]): float(s["value"][1]) for s in series}
        assert stored == {("hello", "200"): HELLO_CALLS, ("raiser", "500"): RAISER_CALLS}, (
            f"stored in prometheus: {series}"
        )
        # prometheus_client exposes this counter with a _total suffix; accept either name.
        started = _query(
            prom.port, f'{{__name__=~"gateway_function_invocation_started(_total)?",job="{JOB}"}}'
        )
        assert {s["metric"]["function_name"]: float(s["value"][1]) for s in started} == {
            "hello": HELLO_CALLS,
            "raiser": RAISER_CALLS,
        }
    finally:
        prom.stop()
