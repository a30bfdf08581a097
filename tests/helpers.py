"""Test helpers: a real `faas serve` in a subprocess and a small HTTP client."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sandbox.cgroups.base import remove_tree
from tests import leaks

REPO = Path(__file__).resolve().parent.parent
TEST_FUNCTIONS = REPO / "tests" / "functions"
EXAMPLES = REPO / "functions"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    predicate: Callable[[], object],
    timeout_s: float,
    what: str,
    detail: Callable[[], object] | None = None,
    interval_s: float = 0.02,
) -> None:
    """Poll `predicate` until it is true; past `timeout_s` fail the test,
    saying what did not happen (and `detail()`, the state seen last).

    The one way tests wait for something asynchronous: a condition with a
    deadline, never a fixed sleep. The predicate is tried once more at the
    deadline, so a slow machine only ever costs time, never a false failure
    when the condition did become true."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            if predicate():
                return
            shown = f": {detail()}" if detail is not None else ""
            raise AssertionError(f"waited {timeout_s:g} s for {what}{shown}")
        time.sleep(interval_s)


def _own_cgroup(path: str | None) -> Any:
    """On cgroup v2 a server needs a cgroup of its own (it delegates
    controllers to its sandboxes, which a cgroup shared with the test runner
    cannot). Where FAAS_TEST_CGROUP_PARENT names a v2 cgroup with cpu,
    memory and pids enabled for its children, each server starts in a new
    child of it; elsewhere (cgroup v1, CI) servers share the runner's."""
    if path is None:
        return None

    def join() -> None:
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    return join


def _preexec(join_cgroup: Callable[[], None] | None, netns: Netns | None) -> Callable[[], None] | None:
    steps = [step for step in (join_cgroup, netns.join() if netns is not None else None) if step is not None]
    if not steps:
        return None

    def run() -> None:
        for step in steps:
            step()

    return run


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


class Netns(Protocol):
    """A network namespace to run a server in (tests/nettopo.py's Namespace)."""

    def join(self) -> Callable[[], None]: ...

    def socket(self) -> socket.socket: ...


class Server:
    def __init__(
        self,
        data_dir: Path,
        token: str | None = None,
        extra_args: tuple[str, ...] = (),
        netns: Netns | None = None,
        launcher: tuple[str, ...] = (),
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        # Another address than loopback only in a namespace of the test's own.
        self.host = host
        self.port = port or free_port()
        self.token = token
        self.extra_args = extra_args
        # Run in this network namespace; requests go to its 127.0.0.1.
        self.netns = netns
        # What runs the server's command line (`ip netns exec NS`, say).
        self.launcher = launcher
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"serve-{self.port}.log"
        self._starts = 0
        self._cgroups: list[str] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 20) -> Server:
        cmd = [
            *self.launcher,
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]
        env = dict(os.environ)
        env.pop("FAAS_TOKEN", None)
        env["PYTHONFAULTHANDLER"] = "1"  # tracebacks in the log if it ever has to be aborted
        if self.token:
            env["FAAS_TOKEN"] = self.token
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_preexec(_own_cgroup(self._cgroup_path()), self.netns),
        )
        leaks.SERVER_PIDS.add(self.proc.pid)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"faas serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.request("GET", "/readyz", timeout=1).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"faas serve not ready after {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        assert self.proc is not None
        leaks.ZYGOTE_PIDS.update(leaks.zygotes_of(self.proc.pid))
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                # Stuck: SIGABRT first, so faulthandler writes every thread's
                # traceback into its log, saying where.
                self.proc.send_signal(signal.SIGABRT)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self._log.close()
        while self._cgroups:  # the server's own cgroups (see _own_cgroup)
            remove_tree(self._cgroups.pop())
        return self.proc.returncode

    def _cgroup_path(self) -> str | None:
        """A fresh cgroup per start, so a restart after SIGKILL never lands
        in a cgroup whose subtree the dead server had delegated."""
        parent = os.environ.get("FAAS_TEST_CGROUP_PARENT")
        self._starts += 1
        if not parent:
            return None
        path = os.path.join(parent, f"server-{self.port}-{self._starts}")
        self._cgroups.append(path)
        return path

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
        timeout: float = 60,
        auth: bool = True,
    ) -> Response:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        if self.netns is not None:
            conn.sock = self.netns.socket()
            conn.sock.settimeout(timeout)
        try:
            if conn.sock is not None:
                conn.sock.connect((self.host, self.port))
            hdrs = dict(headers or {})
            if json_body is not None:
                body = json.dumps(json_body)
                hdrs.setdefault("Content-Type", "application/json")
            if auth and self.token and path.startswith("/system"):
                hdrs.setdefault("Authorization", f"Bearer {self.token}")
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return Response(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def deploy(self, name: str, source: str | Path, **options: Any) -> Response:
        """Deploy one file: `source` is a path or the code itself."""
        if isinstance(source, Path):
            filename, code = source.name, source.read_bytes()
        else:
            filename, code = "handler.py", source.encode()
        body = {"name": name, "files": {filename: base64.b64encode(code).decode()}, **options}
        return self.request("POST", "/system/functions", json_body=body)

    def deploy_ok(self, name: str, source: str | Path, **options: Any) -> dict[str, Any]:
        resp = self.deploy(name, source, **options)
        assert resp.status in (200, 201), resp.text
        return resp.json()

    def invoke(self, name: str, path: str = "", method: str = "GET", **kwargs: Any) -> Response:
        return self.request(method, f"/function/{name}{path}", **kwargs)


def server_with_config(base: Path, toml: str, token: str | None = None) -> Server:
    """A Server (not started yet) with its data under `base` and this TOML
    as its --config file."""
    config = base / "faas.toml"
    config.write_text(toml)
    return Server(base / "data", token=token, extra_args=("--config", str(config)))
