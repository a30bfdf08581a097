"""The ordered setup pipeline a sandbox runs as PID 1 of its new namespaces,
one step per kernel subsystem (nsjail-style), then the runtime.

Two phases. Blank: namespaces, the root without code, fds; then report
"blank" and wait (this is what a pre-warmed sandbox is). Specialize: on a
"specialize" message carrying the function's spec and a read-only mount of
its code, attach the code, set the hostname and /tmp, drop privileges, and
hand over to the runtime, which imports the handler.

Runs in a child of the zygote after unshare(); never returns.
"""

from __future__ import annotations

import importlib
import mmap
import os
import socket
import sys
import time

from . import creds, frames, mounts, namespaces, protocol, relocate, runtime, seccomp
from .spec import FunctionSpec, SandboxSpec

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


def prepare_interpreter(
    python_path: tuple[str, ...], path_map: tuple[tuple[str, str], ...], prefix: str, executable: str
) -> None:
    """Put the zygote's interpreter in the state every sandbox needs, once,
    before any fork: every path it holds as it is inside (no host path in
    sys.path, module files, tracebacks, sys.prefix, sys.executable or
    /proc/self/cmdline), no inherited environment, output captured. After
    this the zygote itself imports nothing more."""
    # Before the paths change: on 3.12 this lazily imports importlib.metadata.
    importlib.invalidate_caches()
    os.environ.clear()
    relocate.relocate(python_path, path_map, prefix, executable)
    runtime.install_streams()


def _python_environment(function: FunctionSpec) -> None:
    # Finders cached before the pivot saw no /python/N: look again.
    sys.path_importer_cache.clear()
    os.environ.update(
        {
            "PATH": "/usr/bin:/bin",
            "HOME": "/tmp",
            "LANG": "C.UTF-8",
            "TMPDIR": "/tmp",
            "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
            "FAAS_FUNCTION_NAME": function.function_name,
            "FAAS_FUNCTION_VERSION": str(function.function_version),
        }
    )
    os.environ.update(dict(function.env))
    os.chdir("/var/task")


def _stamp(stamps: list[tuple[str, float]], stage: str) -> None:
    stamps.append((stage, time.monotonic()))


def run_sandbox(
    spec: SandboxSpec, channel_fd: int, stamps: list[tuple[str, float]], seccomp_program: bytes
) -> None:
    """Set up the sandbox, wait to be specialized, then serve calls; exits.

    `stamps` collects (stage, time.monotonic()) pairs, reported with "blank"
    and "ready" so the invoker can tell where a start spends its time.
    """
    try:
        namespaces.setup_inside(spec)
        _stamp(stamps, "namespaces")
        mounts.enter_root(spec)
        _stamp(stamps, "mounts")
        channel = _isolate_fds(channel_fd)
        creds.empty_bounding_set()
    except BaseException as exc:
        _report_setup_error(channel_fd, exc)
        os._exit(70)
    runtime.warm_up()
    _stamp(stamps, "warm_up")
    try:
        channel.sendall(protocol.pack(protocol.Blank(tuple(stamps))))
        request = frames.recv_with_fds(channel)
    except (OSError, protocol.ProtocolError):
        os._exit(1)
    if request is None:
        os._exit(0)  # retired before it was used
    raw, fds = request
    if raw["t"] != "specialize" or len(fds) != 2:
        os._exit(1)
    code_fd, output_fd = fds
    stamps = [("specialize", time.monotonic())]
    try:
        message = protocol.parse_from_invoker(raw)
        assert isinstance(message, protocol.Specialize)
        function = message.function
        mounts.specialize(function, code_fd)
        os.close(code_fd)
        mounts.install_secrets(message.secrets, function.uid, function.gid)
        output_area = mmap.mmap(output_fd, protocol.OUTPUT_AREA_BYTES)
        os.close(output_fd)
        _stamp(stamps, "code_mounted")
        namespaces.specialize(spec, function)
        creds.set_rlimits(function)
        creds.drop_privileges(function)
        seccomp.install(seccomp_program)
        _stamp(stamps, "credentials")
        _python_environment(function)
        _stamp(stamps, "python_env")
    except BaseException as exc:
        _report_setup_error(CHANNEL_FD, exc)
        os._exit(70)
    status = 0
    try:
        runtime.Runtime(function, channel, stamps, output_area).serve()
    except BaseException:
        status = 1
    os._exit(status)


def _report_setup_error(fd: int, exc: BaseException) -> None:
    try:
        sock = socket.socket(fileno=os.dup(fd))
        sock.sendall(protocol.pack(protocol.SetupFailed(f"{type(exc).__name__}: {exc}")))
    except BaseException:
        pass  # the invoker sees EOF and reports a crash instead
