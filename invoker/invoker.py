"""The Invoker: owns the zygote, the cgroup backend, the registry and one
pool per function; turns an Invocation into an InvocationResult.

An async context manager: resources are set up in order in __aenter__ and
torn down in reverse in __aexit__.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
import uuid
from typing import Any

from sandbox import hostfs
from sandbox.api import (
    CallTimedOut,
    CpuBudgetExceeded,
    InitError,
    SandboxDied,
    SandboxError,
    SetupError,
    SpawnError,
    Usage,
)
from sandbox.cgroups import CgroupBackend, CgroupLimits, detect
from sandbox.instance import Sandbox
from sandbox.spec import FunctionSpec, SandboxSpec
from sandbox.zygote_client import Zygote

from .config import InvokerConfig
from .errors import (
    CallTimeout,
    FaasError,
    FunctionError,
    NotFound,
    SandboxFailed,
    Unavailable,
)
from .ledger import Ledger, SqliteLedger
from .logs import LogStore
from .metering import BillingTotals, UsageRecord, billed_ms, report_line
from .metrics import Metrics
from .model import FunctionConfig, Invocation, InvocationResult
from .pool import START, Pool
from .prewarm import BlankPool
from .registry import CodeStore, Registry, SqliteRegistry
from .validate import Limits, host_cores, validate_deploy

log = logging.getLogger("faas.invoker")

UID_BASE = 200_000
UID_RANGE = 65_536
# What a new sandbox is assumed to hold before its first call is measured.
NEW_SANDBOX_ESTIMATE_BYTES = 8 * 1024 * 1024


class FunctionState:
    """A deployed function: its config, its code on disk and its pool."""

    def __init__(self, config: FunctionConfig, code_dir: str) -> None:
        self.config = config
        self.code_dir = code_dir
        self.pool: Pool[Sandbox] = Pool(config.max_instances, config.max_queue)
        # Peak memory of this function's last call: what a new sandbox of it will need.
        self.memory_estimate = NEW_SANDBOX_ESTIMATE_BYTES
        self.generation = 0
        self.deleted = False

    def update(self, config: FunctionConfig, code_dir: str) -> None:
        self.config = config
        self.code_dir = code_dir
        self.generation += 1
        self.pool.max_instances = config.max_instances
        self.pool.max_queue = config.max_queue


class Invoker:
    def __init__(self, config: InvokerConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.ready = False
        self.draining = False
        self._functions: dict[str, FunctionState] = {}
        self._uids = itertools.count()
        self._background: set[asyncio.Task[Any]] = set()
        # Specialized sandboxes alive, busy or idle, for the memory budget.
        self._live: set[Sandbox] = set()
        self._memory_budget = (config.warm_memory_budget_mb or _default_budget_mb()) * 1024 * 1024
        self._stack = contextlib.AsyncExitStack()
        self.cgroups: CgroupBackend | None = None
        self.zygote: Zygote | None = None
        self.registry: Registry | None = None
        self.blanks: BlankPool | None = None
        self.ledger: Ledger | None = None
        self.billing = BillingTotals()
        self.logs = LogStore(os.path.join(config.data_dir, "logs"))
        self.code = CodeStore(os.path.join(config.data_dir, "code"))
        self._limits = Limits(host_cores=host_cores(), code_limit_bytes=config.code_limit_bytes)
        self._root_plan: hostfs.RootPlan | None = None
        self._new_root = os.path.join(config.data_dir, "run", "root")
        metrics.watch_pools(self._pool_snapshot)
        metrics.watch_billing(self.billing)

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> Invoker:
        try:
            await self._open()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _open(self) -> None:
        os.makedirs(self._new_root, mode=0o755, exist_ok=True)
        self.cgroups = detect()
        self._stack.callback(self.cgroups.close)
        stale = self.cgroups.remove_stale()
        if stale:
            log.warning("removed %d cgroups left behind by a dead server", stale)
        self.registry = SqliteRegistry(os.path.join(self.config.data_dir, "registry.db"))
        self._stack.callback(self.registry.close)
        if self.config.metering:
            self.ledger = SqliteLedger(
                os.path.join(self.config.data_dir, "usage.db"), synchronous=self.config.ledger_sync.upper()
            )
            self._stack.push_async_callback(self.ledger.aclose)
        self._stack.callback(self.logs.close)
        plan = self._root_plan = hostfs.sandbox_root_plan(self.config.data_dir)
        self.zygote = await self._stack.enter_async_context(
            Zygote(plan.python_path, plan.path_map, prefix=plan.prefix, executable=plan.executable)
        )
        self.blanks = await self._stack.enter_async_context(BlankPool(self.config.prewarm, self._new_blank))
        self._stack.push_async_callback(self._destroy_all)
        for config in self.registry.load_all():
            code_dir = self.code.write(config.name, config.version, self.registry.files(config.name))
            self.code.prune(config.name, {config.version})
            self._functions[config.name] = FunctionState(config, code_dir)
        reaper = asyncio.create_task(self._keepalive_loop(), name="keepalive")
        self._stack.push_async_callback(_cancel_and_wait, reaper)
        self.ready = True

    async def __aexit__(self, *exc: object) -> None:
        self.ready = False
        await self._stack.aclose()

    async def _destroy_all(self) -> None:
        for state in list(self._functions.values()):
            state.pool.fail_waiters(Unavailable("server is shutting down"))
            await self._drain_idle(state)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -- management --------------------------------------------------------

    def functions(self) -> list[FunctionConfig]:
        return [s.config for s in sorted(self._functions.values(), key=lambda s: s.config.name)]

    def get(self, name: str) -> FunctionConfig:
        state = self._functions.get(name)
        if state is None:
            raise NotFound(f"function {name!r} not found")
        return state.config

    def warm_count(self, name: str) -> int:
        state = self._functions.get(name)
        return state.pool.instances if state else 0

    async def deploy(self, body: Any) -> tuple[FunctionConfig, bool]:
        """Create or update a function; (config, created)."""
        assert self.registry is not None
        config, files = validate_deploy(body, self._limits, version=0, now=time.time())
        config = await asyncio.to_thread(self.registry.put, config, files)
        code_dir = await asyncio.to_thread(self.code.write, config.name, config.version, files)
        state = self._functions.get(config.name)
        if state is None:
            self._functions[config.name] = FunctionState(config, code_dir)
            return config, True
        # Keep the previous version's code for calls still running on it.
        self.code.prune(config.name, {config.version, state.config.version})
        state.update(config, code_dir)
        await self._drain_idle(state)
        return config, False

    async def delete(self, name: str) -> None:
        assert self.registry is not None
        state = self._functions.pop(name, None)
        if state is None:
            raise NotFound(f"function {name!r} not found")
        state.deleted = True
        state.pool.fail_waiters(NotFound(f"function {name!r} was deleted"))
        await asyncio.to_thread(self.registry.delete, name)
        await self._drain_idle(state)
        if state.pool.instances == 0:
            self.code.prune(name, set())
        self.logs.delete(name)

    async def _drain_idle(self, state: FunctionState) -> None:
        idle = list(state.pool.idle)
        for sandbox in idle:
            state.pool.remove_idle(sandbox)
        await asyncio.gather(*(s.destroy() for s in idle))

    # -- invocation ---------------------------------------------------------

    def drain(self) -> None:
        """Stop taking calls (503); the ones in flight go on to their end,
        calls still waiting for a sandbox get 503 now."""
        self.draining = True
        self.ready = False
        busy = sum(state.pool.busy for state in self._functions.values())
        log.info("shutting down: %d calls in flight", busy)
        for state in self._functions.values():
            state.pool.fail_waiters(Unavailable("the server is shutting down"))

    async def invoke(self, inv: Invocation) -> InvocationResult:
        if self.draining:
            raise Unavailable("the server is shutting down")
        state = self._functions.get(inv.function)
        if state is None:
            raise NotFound(f"function {inv.function!r} not found")
        config = state.config
        name = config.name
        deadline = inv.received_at + config.timeout_s
        self.metrics.invocation_started(name)
        pool = state.pool
        got = pool.acquire()
        if isinstance(got, asyncio.Future):
            waited_from = time.monotonic()
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    got = await got
            except TimeoutError:
                pool.abandon(got)  # type: ignore[arg-type]
                raise CallTimeout(
                    f"timed out after {config.timeout_s:g} s waiting for a free sandbox"
                ) from None
            except BaseException:
                pool.abandon(got)  # type: ignore[arg-type]
                raise
            finally:
                self.metrics.queue_wait.labels(name).observe(time.monotonic() - waited_from)
        if got is not START and not got.alive():  # type: ignore[union-attr]
            # It died while idle: replace it in the same capacity slot, so
            # this call does not fail for it.
            self.metrics.kills.labels(name, "crash").inc()
            self._spawn_background(got.destroy())  # type: ignore[union-attr]
            got = START
        started_at = time.time()
        cold = got is START
        if cold:
            try:
                sandbox = await self._start_sandbox(state, deadline, inv.call_id, started_at)
            except BaseException:
                pool.discard()
                raise
        else:
            sandbox = got  # type: ignore[assignment]
        request = {
            "t": "call",
            "id": inv.call_id,
            "method": inv.method,
            "path": inv.path,
            "query": inv.query,
            "headers": inv.headers,
            "body": inv.body,
        }
        init_ms = sandbox.init_ms if cold else None
        try:
            result = await sandbox.call(request, deadline, config.cpu_ms_per_call)
        except (CallTimedOut, CpuBudgetExceeded, SandboxDied) as exc:
            pool.discard()
            status, reason, error = _failure(exc, config)
            self.metrics.kills.labels(name, reason).inc()
            self.logs.append(name, inv.call_id, f"sandbox killed ({status}): {error.message}")
            usage = sandbox.last_usage or Usage(0.0, 0, 0)
            await self._record(sandbox, inv.call_id, started_at, usage, init_ms, status, cold)
            raise error from None
        except BaseException:
            pool.discard()
            raise
        sandbox.memory_bytes = result.usage.max_memory_bytes
        state.memory_estimate = result.usage.max_memory_bytes
        self._release(state, sandbox)
        if cold:
            self.metrics.cold_starts.labels(name).inc()
            self.metrics.init_seconds.labels(name).observe(sandbox.init_ms / 1000)
        self.logs.append(name, inv.call_id, result.logs)
        status = "ok" if result.error is None else "error"
        await self._record(sandbox, inv.call_id, started_at, result.usage, init_ms, status, cold)
        return InvocationResult(
            status=result.status,
            headers=result.headers,
            body=result.body,
            cold=cold,
            wall_ms=result.usage.wall_ms,
            billed_ms=billed_ms(result.usage.wall_ms, init_ms),
            init_ms=init_ms,
        )

    async def _record(
        self,
        sandbox: Sandbox,
        call_id: str,
        started_at: float,
        usage: Usage,
        init_ms: float | None,
        status: str,
        cold: bool,
    ) -> UsageRecord:
        """Meter one call that reached a sandbox: durable before we return."""
        spec = sandbox.function
        assert spec is not None
        record = UsageRecord(
            call_id=call_id,
            function=spec.function_name,
            version=spec.function_version,
            started_at=started_at,
            wall_ms=usage.wall_ms,
            init_ms=init_ms,
            cpu_us=usage.cpu_us,
            memory_mb=spec.memory_mb,
            max_memory_bytes=usage.max_memory_bytes,
            status=status,
            cold=cold,
        )
        if self.ledger is not None:
            await self.ledger.append(record)
        self.billing.add(record)
        self.logs.append(spec.function_name, call_id, report_line(record))
        return record

    def _release(self, state: FunctionState, sandbox: Sandbox) -> None:
        if state.deleted or sandbox.generation != state.generation:
            state.pool.discard()
            self._spawn_background(sandbox.destroy())
            if state.deleted and state.pool.instances == 0:
                self.code.prune(state.config.name, set())
        else:
            state.pool.release(sandbox)

    def _spawn_background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _cgroup_limits(self, memory_mb: int, cpu: float) -> CgroupLimits:
        return CgroupLimits(
            memory_mb=memory_mb,
            cpu_cores=cpu,
            pids_max=self.config.pids_max,
            cpu_burst_us=self.config.cpu_burst_us,
        )

    async def _new_blank(self, limits: CgroupLimits | None = None, timeout_s: float = 30.0) -> Sandbox:
        """Create a blank sandbox: its cgroup, then the fork into new namespaces."""
        assert self.cgroups is not None and self.zygote is not None and self._root_plan is not None
        plan = self._root_plan
        limits = limits or self._cgroup_limits(self.config.blank_memory_mb, 1.0)
        cgroup = self.cgroups.create(f"sb-{uuid.uuid4().hex[:16]}", limits)
        spec = SandboxSpec(
            sandbox_id=cgroup.name.removeprefix("sb-"),
            runtime_binds=plan.binds,
            symlinks=plan.symlinks,
            python_path=plan.python_path,
            masked_files=plan.masked_files,
            new_root_dir=self._new_root,
            cgroup_procs_files=cgroup.procs_files,
        )
        sandbox = Sandbox(spec, cgroup)
        sandbox.cgroup_limits = limits
        await sandbox.spawn(self.zygote, timeout_s)
        return sandbox

    def _function_spec(self, state: FunctionState, sandbox_id: str) -> FunctionSpec:
        config = state.config
        uid = UID_BASE + next(self._uids) % UID_RANGE
        return FunctionSpec(
            function_name=config.name,
            function_version=config.version,
            code_dir=state.code_dir,
            handler_module=config.handler_module,
            entry=config.entry,
            env=config.env,
            memory_mb=config.memory_mb,
            cpu_cores=config.cpu,
            timeout_s=config.timeout_s,
            # /tmp lives in the sandbox's memory, so it can never outgrow it.
            tmp_size_mb=config.memory_mb,
            open_files_max=self.config.open_files_max,
            uid=uid,
            gid=uid,
            hostname=f"sandbox-{sandbox_id[:12]}",
        )

    async def _start_sandbox(
        self, state: FunctionState, deadline: float, call_id: str, started_at: float
    ) -> Sandbox:
        """A sandbox specialized for the function: a pre-warmed blank if one
        is ready, else a new one. Its init_ms is the whole cold start."""
        config = state.config
        t0 = time.monotonic()
        self._make_room(state.memory_estimate)
        limits = self._cgroup_limits(config.memory_mb, config.cpu)
        sandbox = self.blanks.take() if self.blanks is not None else None
        (self.metrics.prewarm_hits if sandbox is not None else self.metrics.prewarm_misses).inc()
        if sandbox is not None and sandbox.cgroup_limits != limits:
            # Blanks are made with the default limits, which most functions
            # keep: then there is nothing to write on the cold path.
            try:
                sandbox.cgroup.set_limits(limits)
                sandbox.cgroup_limits = limits
            except OSError:
                await sandbox.destroy()
                sandbox = None
        if sandbox is None:
            try:
                sandbox = await self._new_blank(limits, max(0.0, deadline - t0))
            except OSError as exc:
                raise Unavailable(f"could not create a sandbox: {exc}") from None
            except SpawnError as exc:
                raise Unavailable(str(exc)) from None
            except CallTimedOut:
                raise CallTimeout(f"timed out after {config.timeout_s:g} s (creating the sandbox)") from None
            except (SetupError, SandboxDied) as exc:
                self.metrics.kills.labels(config.name, "crash").inc()
                raise SandboxFailed(str(exc)) from None
        sandbox.generation = state.generation
        try:
            await sandbox.specialize(
                self._function_spec(state, sandbox.id), max(0.0, deadline - time.monotonic())
            )
        except (SetupError, InitError, CallTimedOut, SandboxDied) as exc:
            status, reason, error = _start_failure(exc, config)
            if reason:
                self.metrics.kills.labels(config.name, reason).inc()
            if isinstance(exc, InitError):
                self.logs.append(config.name, call_id, exc.logs)
            usage = sandbox.last_usage or Usage(0.0, 0, 0)
            await self._record(sandbox, call_id, started_at, usage, sandbox.init_ms, status, True)
            raise error from None
        sandbox.init_ms = (time.monotonic() - t0) * 1000
        if log.isEnabledFor(logging.DEBUG):
            stages = sandbox.stamps
            log.debug(
                "cold start of %s in %.2f ms: %s",
                config.name,
                sandbox.init_ms,
                " ".join(
                    f"{b[0]}={(b[1] - a[1]) * 1000:.2f}" for a, b in zip(stages, stages[1:], strict=False)
                ),
            )
        sandbox.memory_bytes = state.memory_estimate
        self._live.add(sandbox)
        if sandbox.init_logs:
            self.logs.append(config.name, call_id, sandbox.init_logs)
        return sandbox

    def _make_room(self, needed_bytes: int) -> None:
        """Keep warm sandboxes within the memory budget: evict the least
        recently used idle ones (never a busy one) until `needed_bytes` more
        fits; Unavailable (503) if only busy ones are left."""
        live = {s for s in self._live if not s.dead}
        self._live = live
        used = sum(s.memory_bytes for s in live)
        while used + needed_bytes > self._memory_budget:
            idle = [(s.last_used, s, state) for state in self._functions.values() for s in state.pool.idle]
            if not idle:
                raise Unavailable(
                    f"no capacity: warm sandboxes hold {used >> 20} MiB of the {self._memory_budget >> 20} MiB "
                    "budget and all are busy"
                )
            _, victim, state = min(idle, key=lambda entry: entry[0])
            state.pool.remove_idle(victim)
            live.discard(victim)
            used -= victim.memory_bytes
            self.metrics.evictions.labels(state.config.name).inc()
            self._spawn_background(victim.destroy())

    # -- keep-alive -----------------------------------------------------------

    async def _keepalive_loop(self) -> None:
        period = max(0.05, min(5.0, self.config.keepalive_s / 4))
        while True:
            await asyncio.sleep(period)
            cutoff = time.monotonic() - self.config.keepalive_s
            expired: list[Sandbox] = []
            for state in self._functions.values():
                for sandbox in [s for s in state.pool.idle if s.last_used < cutoff]:
                    state.pool.remove_idle(sandbox)
                    expired.append(sandbox)
            if expired:
                await asyncio.gather(*(s.destroy() for s in expired), return_exceptions=True)

    def _pool_snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        idle = sum(len(s.pool.idle) for s in self._functions.values())
        busy = sum(s.pool.busy for s in self._functions.values())
        warm = {name: s.pool.instances for name, s in self._functions.items()}
        prewarmed = len(self.blanks.ready) if self.blanks is not None else 0
        return {"prewarmed": prewarmed, "idle": idle, "busy": busy}, warm


async def _cancel_and_wait(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _failure(exc: SandboxError, config: FunctionConfig) -> tuple[str, str, FaasError]:
    """(record status, kill reason, error for the client) of a failed call."""
    if isinstance(exc, CallTimedOut):
        return "timeout", "timeout", CallTimeout(f"timed out after {config.timeout_s:g} s")
    if isinstance(exc, CpuBudgetExceeded):
        return "cpu_limit", "cpu", CallTimeout(str(exc))
    assert isinstance(exc, SandboxDied)
    if exc.reason == "oom":
        return "oom", "oom", SandboxFailed(str(exc))
    return "crash", "crash", SandboxFailed(str(exc))


def _start_failure(exc: SandboxError, config: FunctionConfig) -> tuple[str, str | None, FaasError]:
    """(record status, kill reason or None, error for the client) of a failed start."""
    if isinstance(exc, InitError):
        return "error", None, FunctionError(str(exc))
    if isinstance(exc, SetupError):
        return "crash", "crash", SandboxFailed(str(exc))
    if isinstance(exc, CallTimedOut):
        return "timeout", "timeout", CallTimeout(f"timed out after {config.timeout_s:g} s (during init)")
    status, reason, error = _failure(exc, config)
    return status, reason, SandboxFailed(f"sandbox died during init: {error.message}")


def _default_budget_mb() -> int:
    """75% of the machine's memory."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 3 // 4 // 1024
    return 4096
