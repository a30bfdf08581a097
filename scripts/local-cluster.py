"""A cluster on this machine, for a person to try (`make cluster`): PostgreSQL,
three invokers each in a network namespace of its own, one gateway, the
example functions of functions/ deployed; the gateway reachable on
127.0.0.1:PORT of this machine. Ctrl-C stops and removes all of it.

The same cluster as tests/cluster/test_three_nodes.py (tests/cluster/topology.py
draws it); needs root and Debian's postgresql package (`make cluster`
installs it). Run from the repository root:
    .venv/bin/python scripts/local-cluster.py [--port 8080]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import psycopg  # noqa: E402

from tests.cluster.topology import HUB, INVOKER_PORT, ClusterNet  # noqa: E402
from tests.helpers import REPO, Server  # noqa: E402
from tests.nettopo import Namespace  # noqa: E402
from tests.services import postgres_at  # noqa: E402

INVOKERS = 3


async def forward(port: int, hub: Namespace) -> None:
    """127.0.0.1:`port` here -> 127.0.0.1:`port` in the hub namespace (the
    same port: the gateway checks the Host header names it)."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def accepted(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        sock = hub.socket()
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        except OSError:
            sock.close()
            client_writer.close()
            return
        reader, writer = await asyncio.open_connection(sock=sock)
        await asyncio.gather(pipe(client_reader, writer), pipe(reader, client_writer))

    server = await asyncio.start_server(accepted, "127.0.0.1", port, family=socket.AF_INET)
    async with server:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="the gateway's port on 127.0.0.1 here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("local-cluster: needs root (network namespaces, cgroups)", file=sys.stderr)
        return 2
    token = secrets.token_urlsafe(24)
    base = Path(tempfile.mkdtemp(prefix="faas-cluster-"))
    net = ClusterNet(INVOKERS)
    servers: list[Server] = []
    try:
        with postgres_at(HUB, net.hub.path) as pg:
            with psycopg.connect(pg.local_url(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE faas")
            common = ("--database", pg.url("faas"), "--cluster-token", token)
            for i in range(INVOKERS):
                deploy = ("--deploy", str(REPO / "functions")) if i == 0 else ()
                invoker = Server(
                    base / f"invoker{i}" / "data",
                    netns=net.nodes[i],
                    host=net.address(i),
                    port=INVOKER_PORT,
                    extra_args=("--role", "invoker", *common, *deploy),
                )
                servers.append(invoker.start(timeout_s=120))
                print(f"invoker {i}: {net.address(i)}:{INVOKER_PORT} (log {invoker.log_path})", flush=True)
            gateway = Server(
                base / "gateway" / "data",
                netns=net.hub,
                port=args.port,
                extra_args=("--role", "gateway", *common),
            )
            servers.append(gateway.start(timeout_s=60))
            print(
                f"\ngateway: http://127.0.0.1:{args.port} (log {gateway.log_path})\n"
                f"  curl http://127.0.0.1:{args.port}/function/hello\n"
                f"  .venv/bin/faas --gateway http://127.0.0.1:{args.port} nodes\n"
                f"  .venv/bin/faas --gateway http://127.0.0.1:{args.port} deploy functions/echo.py\n"
                "Ctrl-C stops the cluster and removes it.",
                flush=True,
            )
            asyncio.run(forward(args.port, net.hub))
    finally:
        for server in reversed(servers):
            if server.proc is not None and server.proc.poll() is None:
                server.stop()
        net.close()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
