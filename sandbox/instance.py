"""One running sandbox as the invoker holds it: spawn, specialize, call,
destroy (the real implementation of the contract in sandbox/api.py).

Destroy-on-error lives here: any failure of a call (timeout, death,
protocol) kills the whole sandbox (every process in its cgroup) before the
error reaches the caller, so a broken sandbox is never reused.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

from . import frames, linux, procfs, protocol
from .api import CallResult, SandboxState, Usage, check_transition
from .cgroups import CgroupLimits, SandboxCgroup
from .channel import FrameChannel
from .errors import CallTimedOut, CpuBudgetExceeded, InitError, SandboxDied, SandboxError, SetupError
from .network import NetworkAttachment
from .protocol import Call, Secrets, Stamps
from .spec import FunctionSpec, SandboxSpec
from .zygote_client import Zygote

HOST_CORES = len(os.sched_getaffinity(0))


class Sandbox:
    def __init__(
        self, spec: SandboxSpec, cgroup: SandboxCgroup, limits: CgroupLimits, freeze_idle: bool = True
    ) -> None:
        self.spec = spec
        self.cgroup = cgroup
        # Frozen between calls: what a call left running (threads, children)
        # neither runs, uses CPU nor grows until the next call.
        self._freeze_idle = freeze_idle
        # Frozen now (parked idle); a call handed straight to the next is not.
        self._frozen = False
        # The cgroup's CPU counter when the last call (or init) ended: the
        # next call is billed from here, so CPU used between calls is billed too.
        self._cpu_mark = 0
        # The limits its cgroup holds now.
        self.cgroup_limits = limits
        self.pid = 0
        self.function: FunctionSpec | None = None
        self.init_ms = 0.0
        self.init_logs = ""
        self.stamps: Stamps = ()
        self.last_usage: Usage | None = None
        self._state = SandboxState.NEW
        self._channel: FrameChannel | None = None
        self._oom_baseline = 0
        self._cpu_exceeded_ms: float | None = None
        # The output area (a memfd shared with the sandbox), from specialize on.
        self._output_fd = -1
        # Its PID 1's /proc/PID/stat, kept open (see alive()).
        self._stat: procfs.ProcessStat | None = None
        # Set when a call's deadline passed: the channel was cut (see _receive).
        self._expired = False
        # The layer it was forked with, already mounted and imported (a layer
        # zygote's sandbox, sandbox/import_cache.py); "": none.
        self.preloaded_layer = ""
        # Its veth, for a sandbox with outbound network (set by the factory).
        self.network: NetworkAttachment | None = None

    @property
    def id(self) -> str:
        return self.spec.sandbox_id

    @property
    def state(self) -> SandboxState:
        return self._state

    def _to(self, state: SandboxState) -> None:
        self._state = check_transition(self._state, state)

    def alive(self) -> bool:
        if self._state is SandboxState.DEAD or self._channel is None or self._channel.at_eof():
            return False
        # Frozen and idle, it may have been killed without knowing it yet.
        return not (self._frozen and self._stat is not None and self._stat.killed())

    def set_limits(self, limits: CgroupLimits) -> None:
        if limits != self.cgroup_limits:
            self.cgroup.set_limits(limits)
            self.cgroup_limits = limits

    async def spawn(self, zygote: Zygote, timeout_s: float) -> None:
        """Fork a blank sandbox (namespaces, root, cgroup; no function yet)
        and wait until it reports ready to be specialized.

        Raises SpawnError, SetupError, SandboxDied or CallTimedOut; the
        sandbox is destroyed in every case.
        """
        t0 = time.monotonic()
        # Read once: a later death with more OOM kills than this was the
        # memory limit (also when an earlier kill took only a child process).
        self._oom_baseline = self.cgroup.oom_kills()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                self.pid = await zygote.spawn(self.spec, theirs, timeout_s)
                self._stat = procfs.ProcessStat(self.pid)
            finally:
                theirs.close()
            _, self._channel = await asyncio.get_running_loop().create_unix_connection(
                FrameChannel, sock=ours
            )
            msg = await self._receive(t0 + timeout_s, "the sandbox's setup")
            if isinstance(msg, protocol.SetupFailed):
                raise SetupError(f"sandbox setup failed: {msg.error}")
            if not isinstance(msg, protocol.Blank):
                raise _protocol_error(f"expected blank, got {type(msg).__name__}")
            self.stamps = msg.stamps
            self._make_output_area()  # here, off the cold start's path
            self._to(SandboxState.BLANK)
        except BaseException:
            ours.close()
            await self.destroy()
            raise

    async def specialize(self, function: FunctionSpec, timeout_s: float, secrets: Secrets = ()) -> None:
        """Turn the blank sandbox into an instance of `function`: send its
        spec, its secrets and a read-only clone of its code's mount, wait for
        its init (the handler's import). The cgroup's limits are the caller's to set.

        Raises SetupError, InitError, SandboxDied or CallTimedOut; the
        sandbox is destroyed in every case.
        """
        self._to(SandboxState.SPECIALIZING)
        assert self._channel is not None
        t0 = time.monotonic()
        self.function = function
        cpu_before = self.cgroup.cpu_usage_ns()
        try:
            if self.preloaded_layer and function.layer_dir != self.preloaded_layer:
                raise SetupError(f"a sandbox of layer {self.preloaded_layer} cannot run this function")
            if self._output_fd < 0:  # a blank made ahead has one already
                self._make_output_area()
            mounts = [linux.clone_mount_readonly(function.code_dir)]
            try:
                if function.layer_dir and not self.preloaded_layer:
                    mounts.append(linux.clone_mount_readonly(function.layer_dir))
                frame = protocol.pack(protocol.Specialize(function, secrets))
                sent = self.send_frame(frame, [mounts[0], self._output_fd, *mounts[1:]])
            finally:
                for fd in mounts:
                    os.close(fd)
            if sent < len(frame):
                await self._send_rest(frame[sent:], t0 + timeout_s)
            msg = await self._receive(t0 + timeout_s, "init")
            if isinstance(msg, protocol.SetupFailed):
                raise SetupError(f"sandbox setup failed: {msg.error}")
            if isinstance(msg, protocol.InitFailed):
                raise InitError(f"function init failed: {msg.error}", msg.logs)
            if not isinstance(msg, protocol.Ready):
                raise _protocol_error(f"expected ready, got {type(msg).__name__}")
            self.init_logs = msg.logs
            self.stamps += msg.stamps
            self.init_ms = (time.monotonic() - t0) * 1000
            self._cpu_mark = self.cgroup.cpu_usage_ns()
            self._to(SandboxState.IDLE)
        except BaseException as exc:
            # What the failed init cost, for its usage record.
            self.init_ms = (time.monotonic() - t0) * 1000
            self.last_usage = self._usage(t0, cpu_before)
            await self.destroy()
            if isinstance(exc, CallTimedOut):
                raise CallTimedOut(f"timed out after {function.timeout_s:g} s (during init)") from None
            if isinstance(exc, SandboxDied):
                raise SandboxDied(exc.reason, f"sandbox died during init: {exc.message}") from None
            raise

    def _make_output_area(self) -> None:
        """The memory the runtime writes a call's output into (a memfd it maps)."""
        self._output_fd = os.memfd_create("faas-output", os.MFD_CLOEXEC)
        os.ftruncate(self._output_fd, protocol.OUTPUT_AREA_BYTES)

    async def _send_rest(self, data: bytes, deadline: float) -> None:
        """The part of a frame the socket buffer did not take at once."""
        assert self._channel is not None
        self._channel.write(data)
        try:
            async with asyncio.timeout_at(_loop_time(deadline)):
                await self._channel.drain()
        except TimeoutError:
            raise CallTimedOut("init timed out") from None
        except (ConnectionError, OSError):
            raise self._death() from None

    def send_frame(self, frame: bytes, fds: list[int]) -> int:
        """The start of one encoded frame, with file descriptors; how many
        bytes went (a large frame's rest: _send_rest)."""
        assert self._channel is not None and self._channel.transport is not None
        return frames.send_with_fds(self._channel.transport.get_extra_info("socket").fileno(), frame, fds)

    async def _receive(self, deadline: float, what: str) -> protocol.Message:
        """The next message, by `deadline`."""
        try:
            return protocol.parse_from_sandbox(await self.receive_frame(deadline, what))
        except protocol.ProtocolError as exc:
            raise _protocol_error(str(exc)) from None

    async def receive_frame(self, deadline: float, what: str) -> dict[str, Any]:
        """The next frame by `deadline`, decoded but not parsed as a message
        (a blank turned into a layer zygote sends its own). Past the deadline
        the channel is cut: one timer per message, not a cancellation scope
        (a third of the cost)."""
        assert self._channel is not None
        loop = asyncio.get_running_loop()
        timer = loop.call_at(_loop_time(deadline), self._expire)
        try:
            return protocol.decode_payload(await self._channel.receive())
        except (ConnectionError, OSError):
            if self._expired:
                raise CallTimedOut(f"{what} timed out") from None
            raise self._death() from None
        except protocol.ProtocolError as exc:
            raise _protocol_error(str(exc)) from None
        finally:
            timer.cancel()

    def _expire(self) -> None:
        """The deadline passed: cut the channel, so the read waiting on it ends."""
        self._expired = True
        if self._channel is not None:
            self._channel.abort()

    def _death(self) -> SandboxError:
        if self._cpu_exceeded_ms is not None:
            return CpuBudgetExceeded(f"CPU time limit of {self._cpu_exceeded_ms:g} ms exceeded")
        if self.cgroup.oom_kills() > self._oom_baseline:
            limit = self.function.memory_mb if self.function else "?"
            return SandboxDied("oom", f"memory limit of {limit} MiB exceeded")
        return SandboxDied("crash", "sandbox exited or crashed during the call")

    async def call(self, call: Call, cpu_budget_ms: float | None = None) -> CallResult:
        """Run one call until `call.deadline` (a time.monotonic() value).

        Raises CallTimedOut, CpuBudgetExceeded or SandboxDied, after
        destroying the sandbox; `last_usage` then holds what the call used.
        """
        # Encoded before the state changes: a request that cannot be encoded
        # is the caller's problem, not a reason to destroy a healthy sandbox.
        frame = protocol.pack(call)
        self._to(SandboxState.BUSY)
        assert self._channel is not None and self.function is not None
        cgroup = self.cgroup
        cgroup.reset_memory_peak()  # frozen (or idle) meanwhile: nothing allocates
        cpu_before = self._cpu_mark
        t0 = time.monotonic()
        watchdog = None
        if cpu_budget_ms is not None:
            watchdog = asyncio.create_task(self._cpu_watchdog(cpu_before, cpu_budget_ms))
        try:
            self._channel.write(frame)
            if self._frozen:
                # After the write: thawed, the runtime finds the call already
                # waiting, one wake-up instead of two (thaw, then the frame).
                cgroup.thaw()
                self._frozen = False
            msg = await self._receive(call.deadline, "call")
            if not isinstance(msg, protocol.Result) or msg.id != call.id:
                # A stale or forged frame (a handler that wrote to the channel
                # itself, or answered twice) is caught here, not served.
                raise _protocol_error("a result for another call")
        except BaseException as exc:
            self.last_usage = self._usage(t0, cpu_before)
            output = self._output_of_failed_call()
            await self.destroy()
            if isinstance(exc, CallTimedOut):
                exc = CallTimedOut(f"timed out after {self.function.timeout_s:g} s")
            if isinstance(exc, SandboxError):
                exc.output = output
                raise exc from None
            raise
        finally:
            if watchdog is not None:
                watchdog.cancel()
        usage = self._usage(t0, cpu_before)
        self._to(SandboxState.IDLE)
        return CallResult(msg, usage)

    def park(self) -> None:
        """Idle with no call waiting for it: freeze it (where the host has a
        freezer), so that nothing a call left running runs until the next.
        A sandbox handed straight to a waiting call is not parked: freezing
        and thawing it at once would cost two wake-ups of its tasks for
        nothing."""
        if self._freeze_idle and not self._frozen and self._state is SandboxState.IDLE:
            self.cgroup.freeze()
            self._frozen = True

    def _output_of_failed_call(self) -> str:
        """What the call printed before it failed, from the output area (the
        sandbox may have written anything there: bounded, decoded leniently)."""
        if self._output_fd < 0:
            return ""
        try:
            header = os.pread(self._output_fd, protocol.OUTPUT_LENGTH.size, 0)
            (length,) = protocol.OUTPUT_LENGTH.unpack(header)
            data = os.pread(self._output_fd, min(length, protocol.LOG_CAP_BYTES), protocol.OUTPUT_LENGTH.size)
        except (OSError, ValueError):
            return ""
        return data.decode("utf-8", "replace")

    def memory_bytes(self) -> int:
        """What the sandbox holds now (its cgroup's memory)."""
        try:
            return self.cgroup.memory_current_bytes()
        except OSError:
            return 0

    async def _cpu_watchdog(self, cpu_before: int, budget_ms: float) -> None:
        """Kill the sandbox once the call's CPU time passes its budget.

        CPU time cannot accrue faster than the host's cores, so sleep until
        the earliest moment the budget could run out, then look again: few
        reads for a long budget, ~1 ms between reads near its end.
        """
        budget_ns = budget_ms * 1e6
        while True:
            remaining_ns = budget_ns - (self.cgroup.cpu_usage_ns() - cpu_before)
            if remaining_ns <= 0:
                self._cpu_exceeded_ms = budget_ms
                self.cgroup.kill()
                return
            await asyncio.sleep(min(0.25, max(0.001, remaining_ns / 1e9 / HOST_CORES)))

    def _usage(self, t0: float, cpu_before: int) -> Usage:
        """What was used since t0 and cpu_before; the CPU counter read here
        is where the next call's bill starts."""
        wall_ms = (time.monotonic() - t0) * 1000
        try:
            self._cpu_mark = self.cgroup.cpu_usage_ns()
            cpu_us = round((self._cpu_mark - cpu_before) / 1000)
            peak = self.cgroup.memory_peak_bytes()
        except OSError:
            cpu_us, peak = 0, 0
        rx, tx = self.network.usage_since_mark() if self.network is not None else (0, 0)
        return Usage(wall_ms, max(0, cpu_us), peak, net_rx_bytes=rx, net_tx_bytes=tx)

    async def destroy(self) -> None:
        """Kill every process of the sandbox and remove its cgroup (its veth
        goes with its network namespace). Idempotent."""
        if self._state is SandboxState.DEAD:
            return
        self._to(SandboxState.DEAD)
        if self._channel is not None:
            self._channel.close()
        if self._output_fd >= 0:
            os.close(self._output_fd)
            self._output_fd = -1
        if self._stat is not None:
            self._stat.close()
        # remove() waits for the kernel to empty the cgroup: keep that off the loop.
        try:
            await asyncio.to_thread(self.cgroup.remove)
        finally:
            if self.network is not None:
                await self.network.release()


def _protocol_error(what: str) -> SandboxDied:
    return SandboxDied("protocol", f"sandbox broke the protocol: {what}")


def _loop_time(monotonic_deadline: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())
