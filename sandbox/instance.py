"""One running sandbox as the invoker holds it: start, init, call, destroy.

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

from . import frames, linux
from .api import (
    CallResult,
    CallTimedOut,
    CpuBudgetExceeded,
    InitError,
    SandboxDied,
    SandboxError,
    SetupError,
    Usage,
)
from .cgroups import CgroupLimits, SandboxCgroup
from .response import response_header_problem, valid_header
from .spec import FunctionSpec, SandboxSpec
from .zygote_client import Zygote

HOST_CORES = len(os.sched_getaffinity(0))


class Sandbox:
    def __init__(self, spec: SandboxSpec, cgroup: SandboxCgroup) -> None:
        self.spec = spec
        self.cgroup = cgroup
        self.pid = 0
        self.calls = 0
        # Which deploy of its function this sandbox runs (set by the invoker).
        self.generation = 0
        self.init_ms = 0.0
        self.init_logs = ""
        # (stage, time.monotonic()) of the start, from the zygote's fork to init.
        self.stamps: list[tuple[str, float]] = []
        self.last_used = time.monotonic()
        self.dead = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._oom_baseline = 0
        self._cpu_exceeded_ms: float | None = None
        self.last_usage: Usage | None = None
        # The limits its cgroup holds now (set by the invoker).
        self.cgroup_limits: CgroupLimits | None = None
        # Memory it holds (its last call's peak), for the invoker's budget.
        self.memory_bytes = 0
        # Set by specialize(): the function this sandbox now runs.
        self.function: FunctionSpec | None = None

    def alive(self) -> bool:
        """False once the sandbox is destroyed or its channel has hit EOF
        (it died while idle: killed, crashed, or exited on its own)."""
        return not self.dead and self._reader is not None and not self._reader.at_eof()

    @property
    def id(self) -> str:
        return self.spec.sandbox_id

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
            finally:
                theirs.close()
            self._reader, self._writer = await asyncio.open_unix_connection(sock=ours, limit=1 << 20)
            msg = await self._receive(t0 + timeout_s, what="sandbox setup")
            if msg["t"] == "setup_error":
                raise SetupError(f"sandbox setup failed: {msg.get('error')}")
            if msg["t"] != "blank":
                raise SandboxDied("protocol", f"sandbox broke the protocol: expected blank, got {msg['t']!r}")
            self.stamps = [(str(stage), float(t)) for stage, t in msg.get("stamps", [])]
        except BaseException:
            ours.close()
            await self.destroy()
            raise

    async def specialize(self, function: FunctionSpec, timeout_s: float) -> None:
        """Turn the blank sandbox into an instance of `function`: send its
        spec and a read-only clone of its code's mount, wait for its init
        (the handler's import). The cgroup's limits are the caller's to set.

        Raises SetupError, InitError, SandboxDied or CallTimedOut; the
        sandbox is destroyed in every case.
        """
        assert self._writer is not None
        t0 = time.monotonic()
        self.function = function
        cpu_before = self.cgroup.cpu_usage_ns()
        try:
            code_mount = linux.clone_mount_readonly(function.code_dir)
            try:
                sock = self._writer.get_extra_info("socket")
                frames.send_with_fds(
                    sock.fileno(), {"t": "specialize", "function": function.to_wire()}, [code_mount]
                )
            finally:
                os.close(code_mount)
            msg = await self._receive(t0 + timeout_s, what="init")
            if msg["t"] == "setup_error":
                raise SetupError(f"sandbox setup failed: {msg.get('error')}")
            if msg["t"] == "init_error":
                raise InitError(f"function init failed: {msg.get('error')}", str(msg.get("logs", "")))
            if msg["t"] != "ready":
                raise SandboxDied("protocol", f"sandbox broke the protocol: expected ready, got {msg['t']!r}")
            self.init_logs = str(msg.get("logs", ""))
            self.stamps += [(str(stage), float(t)) for stage, t in msg.get("stamps", [])]
            self.init_ms = (time.monotonic() - t0) * 1000
        except BaseException:
            # What the failed init cost, for its usage record.
            self.init_ms = (time.monotonic() - t0) * 1000
            self.last_usage = self._usage(t0, cpu_before)
            await self.destroy()
            raise

    async def _receive(self, deadline: float, what: str) -> dict[str, Any]:
        assert self._reader is not None
        try:
            async with asyncio.timeout_at(_loop_time(deadline)):
                header = await self._reader.readexactly(frames.HEADER.size)
                (length,) = frames.HEADER.unpack(header)
                payload = await self._reader.readexactly(frames.check_length(length))
            return frames.decode_payload(payload)
        except TimeoutError:
            raise CallTimedOut(f"{what} timed out") from None
        except asyncio.IncompleteReadError:
            raise self._death() from None
        except (ConnectionError, OSError):
            raise self._death() from None
        except frames.FrameError as exc:
            raise SandboxDied("protocol", f"sandbox broke the protocol: {exc}") from None

    def _death(self) -> SandboxError:
        if self._cpu_exceeded_ms is not None:
            return CpuBudgetExceeded(f"CPU time limit of {self._cpu_exceeded_ms:g} ms exceeded")
        if self.cgroup.oom_kills() > self._oom_baseline:
            limit = self.function.memory_mb if self.function else "?"
            return SandboxDied("oom", f"memory limit of {limit} MiB exceeded")
        return SandboxDied("crash", "sandbox exited or crashed during the call")

    async def call(
        self, request: dict[str, Any], deadline: float, cpu_budget_ms: float | None = None
    ) -> CallResult:
        """Run one call. `deadline` is a time.monotonic() value.

        Raises CallTimedOut, CpuBudgetExceeded or SandboxDied, after
        destroying the sandbox; `last_usage` then holds what the call used.
        """
        assert self._writer is not None
        self.calls += 1
        cgroup = self.cgroup
        cgroup.reset_memory_peak()
        cpu_before = cgroup.cpu_usage_ns()
        t0 = time.monotonic()
        request["timeout_ms"] = max(0, int((deadline - t0) * 1000))
        # Encoded before the try: a request that cannot be encoded is the
        # caller's problem, not a reason to destroy a healthy sandbox.
        frame = frames.encode(request)
        watchdog = None
        if cpu_budget_ms is not None:
            watchdog = asyncio.create_task(self._cpu_watchdog(cpu_before, cpu_budget_ms))
        try:
            self._writer.write(frame)
            msg = await self._receive(deadline, what="call")
            if msg["t"] != "result" or msg.get("id") != request["id"]:
                # A stale or forged frame (a handler that wrote to the channel
                # itself, or answered twice) is caught here, not served.
                raise SandboxDied("protocol", "sandbox broke the protocol: a result for another call")
            result = _checked_result(msg, self._usage(t0, cpu_before))
        except BaseException as exc:
            self.last_usage = self._usage(t0, cpu_before)
            await self.destroy()
            if isinstance(exc, (KeyError, TypeError, ValueError)):
                raise SandboxDied("protocol", f"sandbox broke the protocol: bad result ({exc})") from None
            raise
        finally:
            if watchdog is not None:
                watchdog.cancel()
        self.last_used = time.monotonic()
        return result

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
        wall_ms = (time.monotonic() - t0) * 1000
        try:
            cpu_us = round((self.cgroup.cpu_usage_ns() - cpu_before) / 1000)
            peak = self.cgroup.memory_peak_bytes()
        except OSError:
            cpu_us, peak = 0, 0
        return Usage(wall_ms=wall_ms, cpu_us=max(0, cpu_us), max_memory_bytes=peak)

    async def destroy(self) -> None:
        """Kill every process of the sandbox and remove its cgroup. Idempotent."""
        if self.dead:
            return
        self.dead = True
        if self._writer is not None:
            self._writer.close()
        # remove() waits for the kernel to empty the cgroup: keep that off the loop.
        await asyncio.to_thread(self.cgroup.remove)


def _checked_result(msg: dict[str, Any], usage: Usage) -> CallResult:
    """The sandbox is not trusted: a result must have exactly the types the
    runtime sends (a number as the body would make us allocate that many
    bytes; a status outside 200-599 would be sent as a broken status line or
    an interim answer)."""
    status, headers, body = msg.get("status"), msg.get("headers"), msg.get("body")
    logs, error = msg.get("logs", ""), msg.get("error")
    if (
        type(status) is not int
        or not 200 <= status <= 599
        or not isinstance(body, bytes)
        or not isinstance(logs, str)
        or not (error is None or isinstance(error, str))
        or not isinstance(headers, list)
        or not all(
            isinstance(h, list)
            and len(h) == 2
            and isinstance(h[0], str)
            and isinstance(h[1], str)
            and valid_header(h[0], h[1])
            for h in headers
        )
        or response_header_problem(headers) is not None
    ):
        raise SandboxDied("protocol", "sandbox broke the protocol: malformed result")
    return CallResult(
        status=status,
        headers=tuple((k, v) for k, v in headers),
        body=body,
        logs=logs,
        error=error,
        usage=usage,
    )


def _loop_time(monotonic_deadline: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())
