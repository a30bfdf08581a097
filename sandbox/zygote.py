"""The zygote: a single-threaded, pre-imported process that forks sandboxes.

Started once per server, before any event loop or thread exists. It reads
spawn requests ({"id", "spec": SandboxSpec} plus the sandbox's end of a
socketpair, passed with SCM_RIGHTS) from its control socket, clones each
sandbox straight into its new namespaces and answers with its host pid.
Every sandbox is its child and is reaped here (it is also a child
subreaper, for their orphans). When the server goes away (EOF on the
control socket) it kills every sandbox it made and exits.

    FAAS_SANDBOX_PYTHON=JSON python -m sandbox.zygote CONTROL_FD

JSON: {"path", "path_map", "prefix", "executable"} of the interpreter
inside sandboxes (sandbox/hostfs.py), applied by sandbox/relocate.py, and
"template": {"dir", "binds"}, the runtime's binds to hold read-only in the
zygote's own mount namespace (mounts.build_runtime_template).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import sys
import time

# Pre-import what every sandbox needs, so that forks share it.
from . import frames, layer_zygote, linux, mounts, namespaces, procfs, relocate, seccomp, setup  # noqa: F401
from .protocol import MAX_CONTROL_BYTES, ZYGOTE_READY, SpawnReply, SpawnRequest
from .spec import BindMount, SandboxSpec

# What a blank sandbox may become besides a function.
ROLES: dict[str, setup.Role] = {layer_zygote.ROLE: layer_zygote.become}


def _spawn(
    control: socket.socket, spec: SandboxSpec, channel_fd: int, seccomp_programs: seccomp.Programs
) -> int:
    """Clone the sandbox straight into its new namespaces (PID 1 of its pid
    namespace) and return its host pid. One clone instead of fork, unshare
    and a second fork: each fork of this pre-imported interpreter copies its
    page tables (~2 ms here). The sandbox joins its cgroup itself, first
    thing, before anything else runs in it; the zygote does not wait for
    that (on cgroup v1 the first write may wait for an RCU grace period)."""
    if not {"mount", "pid"} <= set(spec.namespaces):
        raise ValueError(f"a sandbox needs its own mount and pid namespaces, got {spec.namespaces}")
    stamps = [("fork", time.monotonic())]
    pid = linux.fork_into_namespaces(namespaces.unshare_flags(spec))
    if pid != 0:
        return pid
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.close()  # only the zygote talks to the server
        stamps.append(("forked", time.monotonic()))
        join_cgroup(spec.cgroup_procs_files)
        stamps.append(("cgroup_attach", time.monotonic()))
    except BaseException as exc:
        setup.report_setup_error(channel_fd, exc)
        os._exit(70)
    setup.run_sandbox(spec, channel_fd, stamps, seccomp_programs, ROLES)  # never returns
    os._exit(70)


def join_cgroup(procs_files: tuple[str, ...]) -> None:
    """Move the calling process into its cgroup ("0": the writer itself,
    whatever pid namespace it sees itself in)."""
    for procs in procs_files:
        with open(procs, "w") as f:
            f.write("0")


def serve(control: socket.socket, seccomp_programs: seccomp.Programs) -> None:
    mounts.HOST_MOUNT_NS[0] = os.stat("/proc/self/ns/mnt").st_ino
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    signal.signal(signal.SIGCHLD, procfs.reap_exited_children)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when we stop
    thaw_commands = ThawCommands()
    try:
        _serve_requests(control, seccomp_programs, thaw_commands)
    finally:
        # However the loop ended (the server closed the socket, or died so
        # that the socket broke mid-request), no sandbox outlives its server.
        _kill_sandboxes(thaw_commands)


def _serve_requests(
    control: socket.socket, seccomp_programs: seccomp.Programs, thaw_commands: ThawCommands
) -> None:
    while True:
        try:
            request = frames.recv_datagram_with_fds(control, MAX_CONTROL_BYTES)
        except OSError:
            return  # the server is gone
        if request is None:
            return
        payload, fds = request
        request_id = None
        try:
            message = SpawnRequest.unpack(payload)
            request_id = message.id
            if len(fds) != 1:
                raise ValueError(f"expected one channel fd, got {len(fds)}")
            pid = _spawn(control, message.spec, fds[0], seccomp_programs)
            thaw_commands.add(message.spec.thaw_command)
            control.send(SpawnReply(request_id, pid=pid).pack())
        except Exception as exc:
            try:
                control.send(SpawnReply(request_id, error=f"{type(exc).__name__}: {exc}").pack())
            except OSError:
                return
        finally:
            for fd in fds:
                os.close(fd)


def _kill_sandboxes(thaw_commands: ThawCommands) -> None:
    # Killing a sandbox's PID 1 takes down its whole PID namespace. Reap
    # them before leaving, so no zombie is handed to the host's init.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for pid, _name in procfs.children_of(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # A frozen sandbox acts on its SIGKILL only once thawed (cgroup v1).
    thaw_commands.run()
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break


class ThawCommands:
    """How to thaw each sandbox's cgroup. Those whose cgroup is gone are
    forgotten whenever the list has doubled, so a long-lived zygote does not
    grow and a spawn pays for the pruning only once in a while."""

    def __init__(self) -> None:
        self.commands: dict[str, str] = {}
        self._prune_at = 1024

    def add(self, command: tuple[str, ...]) -> None:
        if len(command) != 2:
            return
        self.commands[command[0]] = command[1]
        if len(self.commands) >= self._prune_at:
            for path in [p for p in self.commands if not os.path.exists(p)]:
                del self.commands[path]
            self._prune_at = max(1024, 2 * len(self.commands))

    def run(self) -> None:
        """Thaw every sandbox cgroup of the server: those of the sandboxes this
        zygote made, and their siblings, the sandboxes layer zygotes forked
        (killed with their layer zygote, they too die only once thawed)."""
        commands = dict(self.commands)
        server_dirs = {
            (os.path.dirname(os.path.dirname(p)), os.path.basename(p), v) for p, v in commands.items()
        }
        for server_dir, name, value in server_dirs:
            try:
                siblings = [e.path for e in os.scandir(server_dir) if e.is_dir() and e.name.startswith("sb-")]
            except OSError:
                continue
            commands.update({os.path.join(sibling, name): value for sibling in siblings})
        for path, value in commands.items():
            try:
                with open(path, "w") as f:
                    f.write(value)
            except OSError:
                pass  # that sandbox's cgroup is gone already


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    python = json.loads(os.environ.get("FAAS_SANDBOX_PYTHON", "{}"))
    template = python.get("template")
    if template:
        binds = tuple(BindMount(**bind) for bind in template["binds"])
        mounts.build_runtime_template(template["dir"], binds)
    # Compiled once, with the host's libseccomp, before the paths change.
    seccomp_programs = seccomp.build_programs()
    # Its bindings are not needed after this and have no path inside.
    sys.modules.pop("pyseccomp", None)
    # Once here rather than in every sandbox: modules already imported get
    # the paths they will have inside (their lazy submodule imports look
    # there), and no sandbox pays copy-on-write faults to rewrite them.
    setup.prepare_interpreter(
        tuple(python.get("path", ())),
        tuple(tuple(pair) for pair in python.get("path_map", ())),  # type: ignore[misc]
        python.get("prefix", sys.prefix),
        python.get("executable", sys.executable),
    )
    if python.get("prefix"):
        stray = relocate.host_named_modules((python["prefix"] + "/",))
        if stray:
            # sys.stderr is captured by now: say it on the server's stderr.
            os.write(2, f"zygote: modules with no path inside the sandbox: {', '.join(stray)}\n".encode())
            os._exit(1)
    # Objects that exist now are never collected; keeping the GC off them
    # keeps their pages shared with every sandbox instead of copied.
    gc.freeze()
    control.send(ZYGOTE_READY)
    serve(control, seccomp_programs)


if __name__ == "__main__":
    main()
