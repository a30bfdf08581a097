"""A layer's zygote, inside: a sandbox that imports a layer's packages once
and then forks the sandboxes of the functions using the layer, so that
none of them pays for the imports (the import cache of SOCK, ATC'18).

It starts as any blank sandbox (namespaces, a read-only root, its cgroup,
made by the main zygote as root) and is told to become a layer zygote
instead of a function (`become`):

1. as root still: the layer at /opt, the root read-only, its hostname;
2. it enters a user namespace of its own (unshare CLONE_NEWUSER), whose uid
   and gid maps the invoker writes from outside: uid 0 inside is an
   unprivileged host uid of its own, and uids 1.. are the sandbox uids;
3. it becomes uid 0 of that namespace and keeps only CAP_SYS_ADMIN,
   CAP_NET_ADMIN, CAP_SETUID, CAP_SETGID and CAP_SETPCAP, which count only
   for namespaces its user namespace owns (none of the host's, not its own
   mount, pid or net namespace, which the host's root made); no_new_privs;
   a seccomp filter (sandbox/seccomp.py) that allows of a sandbox's denied
   calls only mount, move_mount, sethostname and clone into new mount, pid,
   net, ipc and uts namespaces (never a user namespace);
4. only then it imports the layer's modules (third-party code), checks it
   is still one thread, freezes its objects, and answers LayerReady.

Each fork request gets a child in new mount, pid, net, ipc and uts
namespaces (owned by the zygote's user namespace; one clone, so the child
is PID 1 of its pid namespace at once). It sends the fork reply (the
kernel attaches its host pid; the invoker moves it into the sandbox's own
cgroup), mounts its own /proc, /tmp and /etc, brings up its loopback and
waits to be specialized like any blank. Specialized, it mounts its code at
/var/task, drops to its own uid with no capabilities and adds the full
sandbox seccomp filter before the function's code runs.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import os
import signal
import socket
import sys
import time
from typing import Any, NoReturn

from . import (
    creds,
    frames,
    layer_protocol,
    linux,
    mounts,
    namespaces,
    procfs,
    protocol,
    runtime,
    seccomp,
    setup,
)
from .layer_protocol import BecomeLayerZygote, ForkReply, ForkRequest
from .spec import FunctionSpec, SandboxSpec, UidMapping

ROLE = layer_protocol.ROLE
# CAP_SETGID, CAP_SETUID, CAP_SETPCAP, CAP_NET_ADMIN, CAP_SYS_ADMIN: what a
# fork needs (new namespaces, mounts, loopback, hostname, dropping to a uid).
CAPABILITIES = (6, 7, 8, 12, 21)
SANDBOX_NAMESPACES = (
    linux.CLONE_NEWNS | linux.CLONE_NEWPID | linux.CLONE_NEWNET | linux.CLONE_NEWIPC | linux.CLONE_NEWUTS
)
# Native thread pools (OpenBLAS, OpenMP, MKL) start threads at import: a
# zygote must stay one thread to fork safely, and its sandboxes (a core or
# less each) gain nothing from them.
SINGLE_THREADED_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def become(
    spec: SandboxSpec,
    channel: socket.socket,
    raw: dict[str, Any],
    fds: list[int],
    programs: seccomp.Programs,
) -> NoReturn:
    """Turn this blank sandbox into the layer's zygote; serves until the
    invoker closes the control socket."""
    stamps = [("layer_zygote", time.monotonic())]
    try:
        if len(fds) != 2:
            raise ValueError(f"expected the layer's mount and a control socket, got {len(fds)} fds")
        message = BecomeLayerZygote.from_wire(raw)
        layer_fd, control_fd = fds
        mounts.attach_layer(layer_fd)
        os.close(layer_fd)
        linux.mount(None, "/", None, linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV)
        if "uts" in spec.namespaces:
            linux.sethostname(message.hostname)
        creds.limit_resources(message.open_files_max, None)
        _enter_user_namespace(channel)
        creds.keep_only(CAPABILITIES)
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        seccomp.install(programs.layer_zygote)
        stamps.append(("confined", time.monotonic()))
    except BaseException as exc:
        setup.report_setup_error(setup.CHANNEL_FD, exc)
        os._exit(70)
    ready = _import_layer(message.imports, stamps)
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        error = f"importing {', '.join(message.imports)} left {threads} threads running; a zygote must be one"
        setup.report_setup_error(setup.CHANNEL_FD, RuntimeError(error))
        os._exit(70)
    # What exists now is shared with every sandbox forked from here: keep
    # the collector off it, so its pages are not copied for nothing.
    gc.collect()
    gc.freeze()
    uids = UidMapping(zygote_uid=0, first=message.uid_first, count=message.uid_count)
    control = socket.socket(fileno=control_fd)
    try:
        channel.sendall(protocol.encode(ready.to_wire()))
    except OSError:
        os._exit(1)
    _serve(spec, channel, control, uids, programs)


def _enter_user_namespace(channel: socket.socket) -> None:
    """A user namespace of its own, mapped from outside; then its root."""
    linux.unshare(linux.CLONE_NEWUSER)
    frames.send_blocking(channel, layer_protocol.simple(layer_protocol.USERNS_READY))
    answer = frames.recv_blocking(channel)
    if answer is None or answer.get("t") != layer_protocol.USERNS_MAPPED:
        raise RuntimeError("the invoker did not map the user namespace")
    os.setresgid(0, 0, 0)
    os.setgroups([])
    os.setresuid(0, 0, 0)


def _import_layer(modules: tuple[str, ...], stamps: list[tuple[str, float]]) -> layer_protocol.LayerReady:
    """Import what the layer's functions will (third-party code, confined by
    now); a module that fails is reported, the others are still served."""
    sys.path_importer_cache.clear()
    sys.path.insert(1, mounts.LAYER_PYTHON_PATH)
    os.environ.update(
        {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "TMPDIR": "/tmp", **SINGLE_THREADED_ENV}
    )
    os.chdir("/tmp")
    runtime.SINK.logs = runtime.LogBuffer()
    imported, failed = [], []
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # a package's import may raise anything, SystemExit included
            failed.append((name, f"{type(exc).__name__}: {exc}"))
        else:
            imported.append(name)
    # A sandbox's environment is its function's (setup._python_environment).
    os.environ.clear()
    stamps.append(("imports", time.monotonic()))
    return layer_protocol.LayerReady(tuple(imported), tuple(failed), runtime.SINK.logs.text(), tuple(stamps))


def _serve(
    spec: SandboxSpec,
    channel: socket.socket,
    control: socket.socket,
    uids: UidMapping,
    programs: seccomp.Programs,
) -> NoReturn:
    """Fork a sandbox per request until the invoker closes the control
    socket (or the channel), then let the sandboxes go with us: we are PID 1
    of the namespace they are nested in."""
    signal.signal(signal.SIGCHLD, procfs.reap_exited_children)
    while True:
        received = frames.recv_datagram_with_fds(control, layer_protocol.MAX_REQUEST_BYTES)
        if received is None:
            break
        payload, fds = received
        request_id = -1
        try:
            request_id = ForkRequest.unpack(payload).id
            if len(fds) != 1:
                raise ValueError(f"expected one channel fd, got {len(fds)}")
            _fork(spec, control, request_id, fds[0], uids, programs)
        except Exception as exc:
            control.send(ForkReply(request_id, f"{type(exc).__name__}: {exc}").pack())
        finally:
            for fd in fds:
                os.close(fd)
    os._exit(0)


def _fork(
    spec: SandboxSpec,
    control: socket.socket,
    request_id: int,
    channel_fd: int,
    uids: UidMapping,
    programs: seccomp.Programs,
) -> None:
    """Fork the sandbox into new namespaces (PID 1 of its pid namespace),
    which answers the request itself."""
    stamps = [("fork", time.monotonic())]
    if linux.fork_into_namespaces(SANDBOX_NAMESPACES) != 0:
        return
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.send(ForkReply(request_id).pack())  # the kernel adds our host pid
        control.close()
        stamps.append(("forked", time.monotonic()))
    except BaseException:
        os._exit(1)
    _run_sandbox(spec, channel_fd, uids, programs, stamps)


def _run_sandbox(
    spec: SandboxSpec,
    channel_fd: int,
    uids: UidMapping,
    programs: seccomp.Programs,
    stamps: list[tuple[str, float]],
) -> NoReturn:
    """A blank sandbox of this layer: what is its own besides the zygote's
    read-only root (/proc, /tmp, /etc, its loopback), then as any blank."""
    try:
        mounts.enter_layer_zygote_blank(spec.tmp_size_mb)
        if "net" in spec.namespaces:
            namespaces.bring_loopback_up()
        stamps.append(("mounts", time.monotonic()))
        channel = setup.isolate_fds(channel_fd)
        creds.empty_bounding_set()
    except BaseException as exc:
        setup.report_setup_error(channel_fd, exc)
        os._exit(70)

    def inside(function: FunctionSpec) -> FunctionSpec:
        """Its uid and gid as the zygote's user namespace numbers them."""
        return dataclasses.replace(function, uid=uids.inside(function.uid), gid=uids.inside(function.gid))

    setup.serve_blank(spec, channel, stamps, programs, {}, uids=inside)
