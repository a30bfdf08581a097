"""`faas serve`: the gateway and the invoker in one process on uvloop."""

from __future__ import annotations

import fcntl
import logging
import os
import sys
from collections.abc import Sequence

from aiohttp import web

from invoker.errors import CgroupUnavailable, FaasError, SpawnError, StartupError

from .app import INVOKER, create_app
from .bodies import give_large_allocations_back
from .cluster.workers import run_workers
from .config import ConfigError, ServerConfig, load

log = logging.getLogger("faas.serve")

# Held (flock) by the one `faas serve` of a data directory for its lifetime.
LOCK_FILE = "lock"


def lock_data_dir(data_dir: str) -> int:
    """Lock the data directory for this process; returns the lock's fd, to keep
    open until exit. Two servers on one directory would share its registry,
    ledger and code, and each would remove the other's cgroups as a dead
    server's leftovers. The kernel drops the lock when the process ends,
    even by SIGKILL, so a crash never leaves a stale lock behind."""
    path = os.path.join(data_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(
            f"data directory {data_dir} is in use by another faas serve (pid {holder})"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def function_paths(path: str) -> list[str]:
    """What `--deploy PATH` deploys: a .py file, a function directory (one
    holding handler.py), or a directory of those."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise ConfigError(f"--deploy {path}: no such file or directory")
    if os.path.isfile(os.path.join(path, "handler.py")):
        return [path]
    found = []
    for entry in sorted(os.listdir(path)):
        full = os.path.join(path, entry)
        if entry.startswith((".", "_")):
            continue
        if entry.endswith(".py") and os.path.isfile(full):
            found.append(full)
        elif os.path.isfile(os.path.join(full, "handler.py")):
            found.append(full)
    return found


async def deploy_functions(app: web.Application, paths: Sequence[str]) -> None:
    from .bundle import build_deploy_body

    invoker = app[INVOKER]
    for path in paths:
        for fn_path in function_paths(path):
            try:
                config, _ = await invoker.deploy(build_deploy_body(fn_path))
            except FaasError as exc:
                raise ConfigError(f"--deploy {fn_path}: {exc.message}") from None
            log.info("deployed %s version %d from %s", config.name, config.version, fn_path)


def run_server(
    host: str | None = None,
    port: int | None = None,
    data_dir: str | None = None,
    config_file: str | None = None,
    token: str | None = None,
    keepalive_s: float | None = None,
    database: str | None = None,
    queue: str | None = None,
    deploy_paths: Sequence[str] | None = None,
    role: str | None = None,
    cluster_token: str | None = None,
    advertise: str | None = None,
    workers: int | None = None,
) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    try:
        config = load(
            config_file,
            host=host,
            port=port,
            data_dir=os.path.abspath(data_dir) if data_dir else None,
            token=token,
            keepalive_s=keepalive_s,
            database=database,
            queue=queue,
            deploy_paths=list(deploy_paths) if deploy_paths else None,
            role=role,
            cluster_token=cluster_token,
            advertise=advertise,
            workers=workers,
        )
        if config.role != "gateway":  # a gateway keeps nothing on disk
            os.makedirs(config.data_dir, mode=0o755, exist_ok=True)
    except (ConfigError, OSError) as exc:
        print(f"faas serve: {exc}", file=sys.stderr)
        return 2
    if config.role == "gateway":
        # A gateway keeps no state: nothing to lock, and its workers share the port.
        return run_workers(config, _serve) if config.workers > 1 else _serve(config)
    try:
        lock_fd = lock_data_dir(config.data_dir)
    except (ConfigError, OSError) as exc:
        print(f"faas serve: {exc}", file=sys.stderr)
        return 1
    try:
        return _serve(config)
    finally:
        os.close(lock_fd)


def _serve(config: ServerConfig) -> int:
    give_large_allocations_back()
    if config.role == "gateway":
        from .cluster.gateway_app import create_gateway_app

        app = create_gateway_app(config)
    else:
        app = create_app(config)
    if config.deploy_paths:

        async def on_startup(app: web.Application) -> None:
            await deploy_functions(app, config.deploy_paths)

        app.on_startup.append(on_startup)

    import uvloop

    try:
        web.run_app(
            app,
            host=config.host,
            port=config.port,
            loop=uvloop.new_event_loop(),
            shutdown_timeout=config.shutdown_timeout_s,
            access_log=None,
            reuse_port=config.workers > 1 or None,
            print=lambda _msg: log.info(
                "serving on http://%s:%d (role %s, data in %s)",
                config.host,
                config.port,
                config.role,
                config.data_dir,
            ),
        )
    except (CgroupUnavailable, ConfigError, SpawnError, StartupError) as exc:
        print(f"faas serve: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"faas serve: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    log.info("stopped")
    return 0
