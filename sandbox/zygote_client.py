"""The server's side of the zygote: start it, ask it for sandboxes.

`Zygote` is an async context manager. Requests and replies are one
SEQPACKET datagram each; replies carry the request's id and may come in any
order (each is sent by the zygote's child that did the work).
"""

from __future__ import annotations

import array
import asyncio
import itertools
import json
import os
import socket
import subprocess
import sys
from typing import Any

from .errors import SpawnError
from .protocol import ZYGOTE_READY, SpawnReply, SpawnRequest
from .spec import BindMount, SandboxSpec

STARTUP_TIMEOUT_S = 60
# How the zygote learns the sandbox's Python paths (sys.path, path map, prefix).
PYTHON_ENV_VAR = "FAAS_SANDBOX_PYTHON"


class Zygote:
    def __init__(
        self,
        python_path: tuple[str, ...] = (),
        python_path_map: tuple[tuple[str, str], ...] = (),
        python: str = sys.executable,
        prefix: str = "",
        executable: str = "",
        runtime_template: tuple[str, tuple[BindMount, ...]] | None = None,
    ) -> None:
        """python_path: sys.path inside sandboxes; python_path_map: (host
        prefix, sandbox prefix) pairs for modules the zygote imports;
        prefix, executable: sys.prefix and sys.executable inside (from
        hostfs.sandbox_root_plan; empty keeps the host's); runtime_template:
        (an empty directory, the runtime's binds) the zygote holds mounted
        for its sandboxes (mounts.build_runtime_template)."""
        self._python = python
        self._sandbox_python: dict[str, Any] = {
            "path": list(python_path),
            "path_map": [list(p) for p in python_path_map],
        }
        if prefix:
            self._sandbox_python["prefix"] = prefix
        if executable:
            self._sandbox_python["executable"] = executable
        if runtime_template is not None:
            template_dir, binds = runtime_template
            self._sandbox_python["template"] = {"dir": template_dir, "binds": [vars(b) for b in binds]}
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending: dict[int, asyncio.Future[SpawnReply]] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dead: str | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def __aenter__(self) -> Zygote:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [
                    self._python,
                    "-m",
                    "sandbox.zygote",
                    str(theirs.fileno()),
                ],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                cwd="/",
                env={
                    **{k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "LANG", "LC_ALL")},
                    # In the environment, not argv: argv's memory is overwritten
                    # with a short title, and what it held is the title's length.
                    PYTHON_ENV_VAR: json.dumps(self._sandbox_python),
                },
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._loop = asyncio.get_running_loop()
        try:
            # The zygote says "ready" once it has imported and prepared
            # everything; an empty read means it died trying (its error is
            # on our stderr).
            hello = await asyncio.wait_for(self._loop.sock_recv(ours, 65536), STARTUP_TIMEOUT_S)
        except TimeoutError:
            hello = b""
        if hello != ZYGOTE_READY:
            await self.close()
            raise SpawnError("the zygote failed to start (see the error above)")
        self._loop.add_reader(ours.fileno(), self._on_readable)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()  # EOF tells the zygote to kill its sandboxes and exit
            self._sock = None
        self._fail_pending("zygote closed")
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(proc.wait), 5)
            except TimeoutError:
                proc.kill()
                await asyncio.to_thread(proc.wait)

    def _fail_pending(self, why: str) -> None:
        self._dead = why
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(SpawnError(why))

    def _on_readable(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            data = b""
            why = f"zygote channel failed: {exc}"
        else:
            why = "zygote exited"
        if not data:
            assert self._loop is not None
            self._loop.remove_reader(self._sock.fileno())
            self._fail_pending(why)
            return
        reply = SpawnReply.unpack(data)
        # A reply nobody waits for any more (its spawn timed out) is dropped:
        # the waiter removed that sandbox's cgroup, killing what it held.
        fut = self._pending.pop(reply.id, None)  # type: ignore[arg-type]
        if fut is not None and not fut.done():
            fut.set_result(reply)

    async def spawn(self, spec: SandboxSpec, channel: socket.socket, timeout_s: float) -> int:
        """Create a sandbox whose end of the channel is `channel`; its host pid."""
        if self._sock is None or self._dead:
            raise SpawnError(self._dead or "zygote not started")
        assert self._loop is not None
        request_id = next(self._ids)
        payload = SpawnRequest(request_id, spec).pack()
        fds = array.array("i", [channel.fileno()])
        fut: asyncio.Future[SpawnReply] = self._loop.create_future()
        self._pending[request_id] = fut
        try:
            while True:
                try:
                    self._sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.001)
            reply = await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            raise SpawnError(f"the zygote did not create the sandbox within {timeout_s:g} s") from None
        finally:
            self._pending.pop(request_id, None)
        if reply.error is not None:
            raise SpawnError(f"could not create sandbox: {reply.error}")
        return reply.pid
