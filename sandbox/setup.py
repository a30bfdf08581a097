"""The ordered setup pipeline a sandbox runs as PID 1 of its new namespaces,
one step per kernel subsystem (nsjail-style), then the runtime.

Runs in a child of the zygote after unshare(); never returns.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import time

from . import creds, frames, mounts, namespaces
from .runtime import Runtime
from .spec import SandboxSpec

CHANNEL_FD = 3


def _isolate_fds(channel_fd: int) -> socket.socket:
    """The channel becomes fd 3, stdio /dev/null, every other fd is closed."""
    if channel_fd != CHANNEL_FD:
        os.dup2(channel_fd, CHANNEL_FD)
        os.close(channel_fd)
    os.closerange(CHANNEL_FD + 1, 65536)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    return socket.socket(fileno=CHANNEL_FD)


def _remap(path: str, path_map: tuple[tuple[str, str], ...]) -> str:
    for host, inside in path_map:
        if path == host or path.startswith(host + "/"):
            return inside + path[len(host) :]
    return path


def remap_loaded_modules(path_map: tuple[tuple[str, str], ...]) -> None:
    """Packages the zygote imported keep host paths in __path__; their lazy
    submodule imports (encodings.idna, email.mime...) must look inside."""
    for module in list(sys.modules.values()):
        search = getattr(module, "__path__", None)
        if isinstance(search, list):
            search[:] = [_remap(p, path_map) for p in search]
        file = getattr(module, "__file__", None)
        if isinstance(file, str):
            module.__file__ = _remap(file, path_map)


def _python_environment(spec: SandboxSpec) -> None:
    sys.path[:] = ["/var/task", *spec.python_path]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    os.environ.clear()
    os.environ.update(
        {
            "PATH": "/usr/bin:/bin",
            "HOME": "/tmp",
            "LANG": "C.UTF-8",
            "TMPDIR": "/tmp",
            "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
            "FAAS_FUNCTION_NAME": spec.function_name,
            "FAAS_FUNCTION_VERSION": str(spec.function_version),
        }
    )
    os.environ.update(dict(spec.env))
    os.chdir("/var/task")


def run_sandbox(spec: SandboxSpec, channel_fd: int, stamps: list[tuple[str, float]]) -> None:
    """Set up the sandbox, then serve calls; exits the process.

    `stamps` collects (stage, time.monotonic()) pairs, reported with `ready`
    so the invoker can tell where a cold start spends its time.
    """
    status = 0
    try:
        namespaces.setup_inside(spec)
        stamps.append(("namespaces", time.monotonic()))
        mounts.enter_root(spec)
        stamps.append(("mounts", time.monotonic()))
        channel = _isolate_fds(channel_fd)
    except BaseException as exc:
        _report_setup_error(channel_fd, exc)
        os._exit(70)
    try:
        creds.set_rlimits(spec)
        creds.drop_privileges(spec)
        stamps.append(("credentials", time.monotonic()))
        _python_environment(spec)
        stamps.append(("python_env", time.monotonic()))
    except BaseException as exc:
        _report_setup_error(CHANNEL_FD, exc)
        os._exit(70)
    try:
        runtime = Runtime(spec, channel, stamps)
        runtime.install_streams()
        runtime.serve()
    except BaseException:
        status = 1
    os._exit(status)


def _report_setup_error(fd: int, exc: BaseException) -> None:
    try:
        sock = socket.socket(fileno=os.dup(fd))
        frames.send_blocking(sock, {"t": "setup_error", "error": f"{type(exc).__name__}: {exc}"})
    except BaseException:
        pass  # the invoker sees EOF and reports a crash instead
