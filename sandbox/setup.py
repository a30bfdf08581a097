"""The ordered setup pipeline a sandbox runs as PID 1 of its new namespaces,
one step per kernel subsystem (nsjail-style), then the runtime.

Two phases. Blank: namespaces, the root without code, fds; then report
"blank" and wait (this is what a pre-warmed sandbox is). Specialize: on a
"specialize" message carrying the function's spec and a read-only mount of
its code (and of its layer), attach them, set the hostname and /tmp, drop
privileges, and hand over to the runtime, which imports the handler. A
blank may instead be given another role (a layer's zygote,
sandbox/layer_zygote.py), which runs its own specialization.

Runs in a child of the zygote after unshare(); never returns.
"""

from __future__ import annotations

import importlib
import mmap
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from . import creds, frames, mounts, namespaces, protocol, relocate, runtime, seccomp
from .spec import FunctionSpec, SandboxSpec

CHANNEL_FD = 3

# A role a blank may be given instead of a function: (spec, channel, the
# request, its fds, the seccomp programs); never returns.
Role = Callable[[SandboxSpec, socket.socket, dict[str, Any], list[int], seccomp.Programs], None]


def isolate_fds(channel_fd: int) -> socket.socket:
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
    # Finders cached before the pivot saw no /python/N (None), and /var/task
    # was empty: look again. The others (a layer zygote's, for every
    # package it imported) stay valid: clearing them costs a layer's sandbox
    # milliseconds of copy-on-write.
    cache = sys.path_importer_cache
    for path in [path for path, finder in cache.items() if finder is None or path == "/var/task"]:
        del cache[path]
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
    if function.layer_dir and mounts.LAYER_PYTHON_PATH not in sys.path:
        sys.path.insert(1, mounts.LAYER_PYTHON_PATH)  # after /var/task
    os.chdir("/var/task")


def _stamp(stamps: list[tuple[str, float]], stage: str) -> None:
    stamps.append((stage, time.monotonic()))


def run_sandbox(
    spec: SandboxSpec,
    channel_fd: int,
    stamps: list[tuple[str, float]],
    seccomp_programs: seccomp.Programs,
    roles: Mapping[str, Role],
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
        channel = isolate_fds(channel_fd)
        creds.empty_bounding_set()
    except BaseException as exc:
        report_setup_error(channel_fd, exc)
        os._exit(70)
    serve_blank(spec, channel, stamps, seccomp_programs, roles)


def serve_blank(
    spec: SandboxSpec,
    channel: socket.socket,
    stamps: list[tuple[str, float]],
    seccomp_programs: seccomp.Programs,
    roles: Mapping[str, Role],
    uids: Callable[[FunctionSpec], FunctionSpec] | None = None,
) -> NoReturn:
    """Report "blank", wait for the request that says what to become, and
    become it: a function, or one of `roles`. A blank a layer zygote forked
    has the layer already and its own way of numbering uids (`uids`)."""
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
    role = roles.get(raw["t"])
    if role is not None:
        role(spec, channel, raw, fds, seccomp_programs)
        os._exit(1)
    if raw["t"] != "specialize" or len(fds) != _specialize_fds(raw, layer_preloaded=uids is not None):
        os._exit(1)
    code_fd, output_fd, *layer_fd = fds
    stamps = [("specialize", time.monotonic())]
    try:
        message = protocol.parse_from_invoker(raw)
        assert isinstance(message, protocol.Specialize)
        function = message.function
        if uids is not None:
            function = uids(function)
            mounts.specialize_in_layer_zygote(function, code_fd)
        else:
            mounts.specialize(function, code_fd, *layer_fd)
        for fd in (code_fd, *layer_fd):
            os.close(fd)
        mounts.install_secrets(message.secrets, function.uid, function.gid, as_owner=uids is not None)
        output_area = mmap.mmap(output_fd, protocol.OUTPUT_AREA_BYTES)
        os.close(output_fd)
        _stamp(stamps, "code_mounted")
        namespaces.specialize(spec, function)
        creds.set_rlimits(function)
        creds.drop_privileges(function)
        seccomp.install(seccomp_programs.sandbox)
        _stamp(stamps, "credentials")
        _python_environment(function)
        _stamp(stamps, "python_env")
    except BaseException as exc:
        report_setup_error(CHANNEL_FD, exc)
        os._exit(70)
    status = 0
    try:
        runtime.Runtime(function, channel, stamps, output_area).serve()
    except BaseException:
        status = 1
    os._exit(status)


def _specialize_fds(raw: dict[str, Any], layer_preloaded: bool) -> int:
    """How many fds a specialize request carries: the code's mount, the output
    area, and the layer's mount if the function has one the blank has not."""
    layer = bool((raw.get("function") or {}).get("layer_dir"))
    return 3 if layer and not layer_preloaded else 2


def report_setup_error(fd: int, exc: BaseException) -> None:
    try:
        sock = socket.socket(fileno=os.dup(fd))
        sock.sendall(protocol.pack(protocol.SetupFailed(f"{type(exc).__name__}: {exc}")))
    except BaseException:
        pass  # the invoker sees EOF and reports a crash instead
