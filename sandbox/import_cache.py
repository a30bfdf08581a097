"""The import cache, outside: a zygote per layer that has imported the
layer's packages (sandbox/layer_zygote.py) forks the sandboxes of the
functions using it, so a cold start of a function that imports pandas does
not pay for the import.

A layer zygote is a blank sandbox of the main zygote (its own namespaces,
cgroup and read-only root) turned into one: the invoker sends it the
layer's mount and a control socket, maps the user namespace it enters
(its root is an unprivileged host uid of its own, uids 1.. the sandbox
uids), and waits until it has imported the layer. Each sandbox it then
forks answers its fork request itself; the kernel attaches its host pid
(SO_PASSCRED), which is checked to be PID 1 of a pid namespace right
below the zygote's and moved into the sandbox's own cgroup before anything
of the function runs.

A zygote that fails to start (a module that starts threads, a kernel
without user namespaces) is remembered with its reason; that layer's
sandboxes then come from the main zygote, importing the layer themselves.
One that dies is started again at the next cold start.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import itertools
import logging
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import layer_protocol, linux, protocol
from .cgroups import CgroupLimits
from .errors import SandboxDied, SetupError, SpawnError
from .instance import Sandbox
from .layer_protocol import BecomeLayerZygote, ForkReply, ForkRequest
from .prewarm import BlankPool
from .spec import LayerImage, SandboxSpec

log = logging.getLogger("faas.import_cache")

# Importing a large layer (torch, pandas with its dependencies) takes seconds.
STARTUP_TIMEOUT_S = 120.0
_UCRED = struct.Struct("iII")

# A blank sandbox made by a given zygote (the main one, or a layer's).
MakeBlank = Callable[[CgroupLimits, float, Any], Awaitable[Sandbox]]


class LayerZygote:
    """The server's side of one layer's zygote: a Zygote for Sandbox.spawn."""

    def __init__(self, image: LayerImage, own: Sandbox, control: socket.socket) -> None:
        self.image = image
        self.own = own  # the zygote's own sandbox: its cgroup, its death
        self.imported: tuple[str, ...] = ()
        self.failed: tuple[tuple[str, str], ...] = ()
        self._control = control
        self._pending: dict[int, asyncio.Future[tuple[ForkReply, int]]] = {}
        self._ids = itertools.count(1)
        self._loop = asyncio.get_running_loop()
        self._dead: str | None = None
        self._own_nspid = _nspid(own.pid)
        # Blanks forked ahead of the cold starts that take them.
        self.blanks: BlankPool | None = None

    @classmethod
    async def start(cls, image: LayerImage, own: Sandbox, open_files_max: int) -> LayerZygote:
        """Turn the blank `own` into the layer's zygote; SetupError (or the
        sandbox's errors) if it cannot be, the sandbox destroyed then."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        ours.setblocking(False)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        try:
            become = BecomeLayerZygote(
                image.imports,
                image.uids.first,
                image.uids.count,
                hostname=f"layer-{os.path.basename(image.layer_dir)[:12]}",
                open_files_max=open_files_max,
            )
            layer_mount = linux.clone_mount_readonly(image.layer_dir)
            try:
                _send_whole(own, protocol.encode(become.to_wire()), [layer_mount, theirs.fileno()])
            finally:
                os.close(layer_mount)
                theirs.close()
            _expect(
                await own.receive_frame(deadline, "the layer zygote's setup"), layer_protocol.USERNS_READY
            )
            for name in ("uid_map", "gid_map"):
                with open(f"/proc/{own.pid}/{name}", "w") as f:
                    f.write(image.uids.lines())
            _send_whole(own, protocol.encode(layer_protocol.simple(layer_protocol.USERNS_MAPPED)), [])
            raw = _expect(
                await own.receive_frame(deadline, "the layer's imports"), layer_protocol.LAYER_READY
            )
            ready = layer_protocol.parse_layer_ready(raw)
            _check_alone(own)
        except BaseException as exc:
            ours.close()
            await own.destroy()
            if isinstance(exc, (OSError, protocol.ProtocolError)):
                raise SetupError(f"layer zygote: {exc}") from None
            raise
        zygote = cls(image, own, ours)
        zygote.imported, zygote.failed = ready.imported, ready.failed
        zygote._loop.add_reader(ours.fileno(), zygote._on_readable)
        return zygote

    @property
    def alive(self) -> bool:
        return self._dead is None and self.own.alive()

    async def spawn(self, spec: SandboxSpec, channel: socket.socket, timeout_s: float) -> int:
        """Fork a sandbox whose end of the channel is `channel`, in the
        cgroup `spec` names; its host pid."""
        if self._dead is not None:
            raise SpawnError(self._dead)
        request_id = next(self._ids)
        fut: asyncio.Future[tuple[ForkReply, int]] = self._loop.create_future()
        self._pending[request_id] = fut
        try:
            self._control.sendmsg(
                [ForkRequest(request_id).pack()],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [channel.fileno()]))],
            )
            reply, pid = await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            raise SpawnError(f"the layer zygote did not fork within {timeout_s:g} s") from None
        except OSError as exc:
            raise SpawnError(f"the layer zygote cannot be reached: {exc}") from None
        finally:
            self._pending.pop(request_id, None)
        if reply.error is not None:
            raise SpawnError(f"the layer zygote could not fork: {reply.error}")
        nspid = _nspid(pid)
        if len(nspid) != len(self._own_nspid) + 1 or nspid[-1] != 1:
            raise SpawnError(f"a fork reply came from pid {pid}, not from a new sandbox of the layer zygote")
        await asyncio.to_thread(_attach, pid, spec.cgroup_procs_files)
        return pid

    def _on_readable(self) -> None:
        try:
            data, ancdata, _flags, _addr = self._control.recvmsg(
                layer_protocol.MAX_REPLY_BYTES + 1, socket.CMSG_SPACE(_UCRED.size)
            )
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(f"the layer zygote's channel failed: {exc}")
            return
        if not data:
            self._fail("the layer zygote exited")
            return
        try:
            reply = ForkReply.unpack(data)
        except protocol.ProtocolError as exc:
            self._fail(f"the layer zygote broke the protocol: {exc}")
            return
        pid = 0
        for level, kind, cmsg in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(cmsg) >= _UCRED.size:
                pid = _UCRED.unpack_from(cmsg)[0]
        fut = self._pending.pop(reply.id, None)
        if fut is not None and not fut.done():
            fut.set_result((reply, pid))

    def _fail(self, why: str) -> None:
        self._dead = why
        self._loop.remove_reader(self._control.fileno())
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(SpawnError(why))

    async def close(self) -> None:
        """Stop it: every sandbox it forked dies with it (they are in pid
        namespaces nested in its own)."""
        if self.blanks is not None:
            await self.blanks.__aexit__(None, None, None)
        if self._dead is None:
            self._fail("the layer zygote was stopped")
        self._control.close()
        await self.own.destroy()


def _send_whole(own: Sandbox, frame: bytes, fds: list[int]) -> None:
    """A small frame, which the socket buffer takes at once."""
    if own.send_frame(frame, fds) != len(frame):
        raise protocol.ProtocolError("the layer zygote's channel took part of a frame")


def _expect(message: dict[str, Any], kind: str) -> dict[str, Any]:
    if message["t"] == "setup_error":
        raise SetupError(f"layer zygote setup failed: {str(message.get('error', ''))[:2048]}")
    if message["t"] != kind:
        raise SandboxDied("protocol", f"layer zygote sent {str(message['t'])[:64]!r}, expected {kind!r}")
    return message


def _check_alone(own: Sandbox) -> None:
    """After the imports, the zygote is one process of one thread: nothing
    the packages started runs on in it, or next to it in its cgroup."""
    with open(f"/proc/{own.pid}/status") as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    others = [pid for pid in own.cgroup.pids() if pid != own.pid]
    if threads != 1 or others:
        raise SetupError(
            f"the layer's imports left {threads} threads and {len(others)} other processes running"
        )


def _nspid(pid: int) -> list[int]:
    """The pid in each pid namespace it is in, the host's first."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(v) for v in line.split()[1:]]
    except (OSError, ValueError):
        pass
    return []


def _attach(pid: int, procs_files: tuple[str, ...]) -> None:
    for procs in procs_files:
        with open(procs, "w") as f:
            f.write(str(pid))


class ImportCache:
    """The layer zygotes of one factory, by layer directory."""

    def __init__(
        self,
        make_blank: MakeBlank,
        zygote_limits: CgroupLimits,
        blank_limits: CgroupLimits,
        prewarm: int,
        open_files_max: int,
    ) -> None:
        self._make_blank = make_blank
        self._zygote_limits = zygote_limits
        self._blank_limits = blank_limits
        # Blanks each layer zygote keeps forked ahead.
        self._prewarm = prewarm
        self._open_files_max = open_files_max
        self._starting: dict[str, asyncio.Task[LayerZygote | None]] = {}
        self._ready: dict[str, LayerZygote] = {}
        self._failed: dict[str, str] = {}
        # Dead zygotes being cleaned up (their blanks, their cgroup).
        self._closing: set[asyncio.Future[None]] = set()

    def load(self, image: LayerImage) -> None:
        """Start the layer's zygote in the background (again, if it failed)."""
        self._failed.pop(image.layer_dir, None)
        self._zygote(image)

    def _zygote(self, image: LayerImage) -> asyncio.Task[LayerZygote | None] | LayerZygote | None:
        """The layer's zygote, the task starting it, or None if it failed."""
        ready = self._ready.get(image.layer_dir)
        if ready is not None and ready.alive:
            return ready
        if ready is not None:
            log.warning("the zygote of layer %s died; starting another", image.layer_dir)
            del self._ready[image.layer_dir]
            closing = asyncio.ensure_future(ready.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closed)
        if image.layer_dir in self._failed:
            return None
        task = self._starting.get(image.layer_dir)
        if task is None:
            task = asyncio.ensure_future(self._start(image))
            self._starting[image.layer_dir] = task
        return task

    async def _start(self, image: LayerImage) -> LayerZygote | None:
        t0 = time.monotonic()
        try:
            own = await self._make_blank(self._zygote_limits, STARTUP_TIMEOUT_S, None)
            zygote = await LayerZygote.start(image, own, self._open_files_max)
        except Exception as exc:
            reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            log.warning("no import cache for layer %s: %s", image.layer_dir, reason)
            self._failed[image.layer_dir] = reason
            return None
        finally:
            self._starting.pop(image.layer_dir, None)
        if zygote.failed:
            log.warning("layer %s: could not import %s", image.layer_dir, dict(zygote.failed))
        zygote.blanks = BlankPool(
            self._prewarm, lambda: self._fork(image, zygote, self._blank_limits, STARTUP_TIMEOUT_S)
        )
        await zygote.blanks.__aenter__()
        log.info(
            "zygote of layer %s ready in %.0f ms (imported %s)",
            image.layer_dir,
            (time.monotonic() - t0) * 1000,
            ", ".join(zygote.imported) or "nothing",
        )
        self._ready[image.layer_dir] = zygote
        return zygote

    async def sandbox(self, image: LayerImage, limits: CgroupLimits, timeout_s: float) -> Sandbox | None:
        """A blank sandbox forked from the layer's zygote (waiting for it to
        start, within `timeout_s`), or None when the layer has none."""
        zygote = self._zygote(image)
        if isinstance(zygote, asyncio.Task):
            try:
                zygote = await asyncio.wait_for(asyncio.shield(zygote), timeout_s)
            except TimeoutError:
                return None  # not ready in time for this call: it goes on starting for the next
        if zygote is None:
            return None
        blank = await zygote.blanks.take(limits) if zygote.blanks is not None else None
        return blank or await self._fork(image, zygote, limits, timeout_s)

    async def _fork(
        self, image: LayerImage, zygote: LayerZygote, limits: CgroupLimits, timeout_s: float
    ) -> Sandbox:
        sandbox = await self._make_blank(limits, timeout_s, zygote)
        sandbox.preloaded_layer = image.layer_dir
        return sandbox

    async def unload(self, layer_dir: str) -> None:
        self._failed.pop(layer_dir, None)
        task = self._starting.pop(layer_dir, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        zygote = self._ready.pop(layer_dir, None)
        if zygote is not None:
            await zygote.close()

    def status(self, layer_dir: str) -> dict[str, Any]:
        """What /system/layers shows of a layer's import cache."""
        zygote = self._ready.get(layer_dir)
        if zygote is not None and zygote.alive:
            return {"state": "ready", "imported": list(zygote.imported), "failed": dict(zygote.failed)}
        if layer_dir in self._starting:
            return {"state": "starting"}
        if layer_dir in self._failed:
            return {"state": "failed", "error": self._failed[layer_dir]}
        return {"state": "stopped"}

    def _closed(self, task: asyncio.Future[None]) -> None:
        self._closing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a dead layer zygote's cleanup failed: %s", task.exception())

    async def aclose(self) -> None:
        for layer_dir in list({*self._starting, *self._ready}):
            await self.unload(layer_dir)
        await asyncio.gather(*self._closing, return_exceptions=True)
