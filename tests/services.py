"""Real PostgreSQL and NATS servers for tests, on loopback, each with its own
data directory, started and stopped by the test (never a shared system one).

In CI they must run: a missing binary is a failure there, a skip elsewhere.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.helpers import free_port, wait_until


def _need(binary: str | None, what: str, package: str) -> str:
    if binary is None or not os.path.exists(binary):
        reason = f"{what} not installed (apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(found[-1]) if found else None


@dataclass(frozen=True)
class PgServer:
    listen: str
    port: int
    socket_dir: str

    def url(self, database: str = "postgres") -> str:
        """Over TCP on its listen address."""
        return f"postgresql://faas@{self.listen}:{self.port}/{database}"

    def local_url(self, database: str = "postgres") -> str:
        """Over its unix socket: from any network namespace of this machine."""
        return f"postgresql://faas@/{database}?host={self.socket_dir}&port={self.port}"


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A fresh PostgreSQL cluster on 127.0.0.1; yields its URL (superuser, trust)."""
    with postgres_at() as server:
        yield server.url()


@contextlib.contextmanager
def postgres_at(listen: str = "127.0.0.1", netns_path: str | None = None) -> Iterator[PgServer]:
    """A fresh PostgreSQL cluster listening on `listen` in the network
    namespace at `netns_path` (else this one)."""
    bindir = _need(_pg_bin(), "PostgreSQL", "postgresql")
    # PostgreSQL refuses to run as root: the cluster belongs to the postgres user.
    user = "postgres" if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
    as_user = ["runuser", "-u", user, "--"] if os.getuid() == 0 else []
    root = tempfile.mkdtemp(prefix="faas-pg-")
    data = os.path.join(root, "data")
    if os.getuid() == 0:
        shutil.chown(root, user)
    port = free_port()
    enter = ["nsenter", f"--net={netns_path}"] if netns_path else []
    pg_ctl = [*enter, *as_user, os.path.join(bindir, "pg_ctl"), "-D", data]
    try:
        subprocess.run(
            [
                *as_user,
                os.path.join(bindir, "initdb"),
                "-D",
                data,
                "-U",
                "faas",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
        )
        if listen != "127.0.0.1":  # the clients on its own subnets (a test's bridge) too
            with open(os.path.join(data, "pg_hba.conf"), "a") as hba:
                hba.write("host all all samenet trust\n")
        options = f"-p {port} -k {root} -c listen_addresses={listen} -c fsync=on"
        subprocess.run(
            [*pg_ctl, "-o", options, "-l", os.path.join(root, "log"), "-w", "-t", "60", "start"],
            check=True,
            capture_output=True,
        )
        yield PgServer(listen, port, root)
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(server_url: str, name: str) -> str:
    """An empty database of its own for one test; its URL."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


@contextlib.contextmanager
def nats_server(
    port: int | None = None, store: str | None = None, listen: str = "127.0.0.1", netns: Any = None
) -> Iterator[str]:
    """A nats-server with JetStream on `listen`; yields its URL. Given a
    port and a store directory (kept), a test can stop it and start it again
    where it was. `netns`: a tests/nettopo.py Namespace to run it in."""
    binary = _need(shutil.which("nats-server"), "nats-server", "nats-server")
    root = store or tempfile.mkdtemp(prefix="faas-nats-")
    port = port or free_port()
    enter = ["nsenter", f"--net={netns.path}"] if netns is not None else []
    proc = subprocess.Popen(
        [*enter, binary, "-js", "-a", listen, "-p", str(port), "-sd", root],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(root, "log"), "ab"),  # noqa: SIM115 - closed with the process
    )
    try:
        wait_until(lambda: _listening(port, listen, netns), 20, f"nats-server on port {port}")
        yield f"nats://{listen}:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if store is None:
            shutil.rmtree(root, ignore_errors=True)


def _listening(port: int, host: str = "127.0.0.1", netns: Any = None) -> bool:
    import socket

    with netns.socket() if netns is not None else socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0
