"""The Invoker: the registry and one pool per function, in front of a
SandboxFactory; turns an Invocation into an InvocationResult.

Its public methods are all the gateway uses (and what a remote invoker
will stand behind). An async context manager: resources are set up in
order in __aenter__ and torn down in reverse in __aexit__.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from typing import Any

from sandbox.api import NO_USAGE, SandboxFactory
from sandbox.errors import CallTimedOut, SandboxError
from sandbox.factory import FactoryConfig
from sandbox.factory import SandboxFactory as RealSandboxFactory
from sandbox.protocol import Call

from . import eviction
from .catalog import Catalog
from .config import InvokerConfig
from .errors import CallTimeout, NotFound, StartupError, Unavailable
from .functions import FunctionState
from .lease import Lease
from .ledger import SqliteLedger
from .logs import LogStore
from .metering import BillingTotals, Totals, UsageRecord, billed_ms
from .metrics import Metrics
from .model import FunctionConfig, Invocation, InvocationResult, UsageQuery
from .outbound import NetworkAdmission, network_config
from .pool import START
from .recorder import Recorder
from .registry import CodeStore, SqliteRegistry
from .uids import UidRange
from .validate import Limits, host_cores

log = logging.getLogger("faas.invoker")


class Invoker:
    def __init__(
        self, config: InvokerConfig, metrics: Metrics, factory: SandboxFactory | None = None
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.ready = False
        self.draining = False
        self._uids = UidRange()
        self._background: set[asyncio.Task[Any]] = set()
        # Every lease alive, busy or idle, for the memory budget.
        self._leases: set[Lease] = set()
        self._memory_budget = (config.warm_memory_budget_mb or _default_budget_mb()) * 1024 * 1024
        self._stack = contextlib.AsyncExitStack()
        self.factory: SandboxFactory = factory or RealSandboxFactory(
            FactoryConfig(
                data_dir=config.data_dir,
                prewarm=config.prewarm,
                blank_memory_mb=config.blank_memory_mb,
                pids_max=config.pids_max,
                cpu_burst_us=config.cpu_burst_us,
                freeze_idle=config.freeze_idle,
                network=network_config(config),
            )
        )
        self.billing = BillingTotals()
        self._logs = LogStore(os.path.join(config.data_dir, "logs"))
        self._recorder = Recorder(None, self._logs, self.billing)
        self.catalog = Catalog(
            CodeStore(os.path.join(config.data_dir, "code")),
            Limits(host_cores=host_cores(), code_limit_bytes=config.code_limit_bytes),
            config.max_functions,
            config.max_code_bytes_total,
        )
        metrics.watch_pools(self._pool_snapshot)
        metrics.watch_billing(self.billing)

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> Invoker:
        try:
            await self._open()
        except BaseException as exc:
            await self._stack.aclose()
            if isinstance(exc, OSError):
                raise StartupError(f"cannot start the invoker: {exc}") from exc
            raise
        return self

    async def _open(self) -> None:
        self._stack.enter_context(self._uids)
        registry = SqliteRegistry(os.path.join(self.config.data_dir, "registry.db"))
        self._stack.callback(registry.close)
        if self.config.metering:
            ledger = SqliteLedger(
                os.path.join(self.config.data_dir, "usage.db"), synchronous=self.config.ledger_sync.upper()
            )
            self._recorder.ledger = ledger
            self._stack.push_async_callback(ledger.aclose)
        self._stack.callback(self._logs.close)
        await self._stack.enter_async_context(self.factory)
        self._stack.push_async_callback(self._destroy_all)
        await NetworkAdmission(self.factory).load(self.catalog, registry)
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

    def drain(self) -> None:
        """Stop taking calls (503); the ones in flight go on to their end,
        calls still waiting for a sandbox get 503 now."""
        self.draining = True
        self.ready = False
        busy = sum(state.pool.busy for state in self._functions.values())
        log.info("shutting down: %d calls in flight", busy)
        for state in self._functions.values():
            state.pool.fail_waiters(Unavailable("the server is shutting down"))

    # -- management --------------------------------------------------------

    def functions(self) -> list[FunctionConfig]:
        return [s.config for s in sorted(self._functions.values(), key=lambda s: s.name)]

    def get(self, name: str) -> FunctionConfig:
        return self._state(name).config

    def warm_count(self, name: str) -> int:
        state = self._functions.get(name)
        return state.pool.instances if state else 0

    async def deploy(self, body: Any) -> tuple[FunctionConfig, bool]:
        """Create or update a function; (config, created)."""
        state, replaced = await self.catalog.put(body, NetworkAdmission(self.factory))
        if replaced is None:
            return state.config, True
        # Calls still running on the old code keep it until they end.
        await self._drain_idle(state)
        self.catalog.collect(replaced)
        return state.config, False

    async def delete(self, name: str) -> None:
        state = await self.catalog.remove(name)
        state.pool.fail_waiters(NotFound(f"function {name!r} was deleted"))
        await self._drain_idle(state)
        self.catalog.collect(state.code_dir)
        self._logs.delete(name)

    def logs(self, name: str, tail: int) -> list[str]:
        self._state(name)
        return self._logs.tail(name, tail)

    async def usage_totals(self, query: UsageQuery) -> dict[str, Totals]:
        return await self._recorder.totals(query)

    async def usage_records(
        self, query: UsageQuery, cursor: int, limit: int
    ) -> list[tuple[int, UsageRecord]]:
        return await self._recorder.records(query, cursor, limit)

    def _state(self, name: str) -> FunctionState:
        return self.catalog.get(name)

    @property
    def _functions(self) -> dict[str, FunctionState]:
        return self.catalog.functions

    # -- invocation ---------------------------------------------------------

    def admit(self, name: str) -> FunctionConfig:
        """Whether a call of `name` can be taken now (503 while draining, 404
        for no such function): the gateway asks before reading a body."""
        return self._admit(name).config

    def _admit(self, name: str) -> FunctionState:
        if self.draining:
            raise Unavailable("the server is shutting down")
        return self._state(name)

    async def invoke(self, inv: Invocation) -> InvocationResult:
        """Acquire a sandbox, run the call, record it (also when it failed)."""
        state = self._admit(inv.function)
        config = state.config
        self.metrics.invocation_started(config.name)
        deadline = inv.received_at + config.timeout_s
        lease, cold = await self._acquire(state, inv, deadline)
        call = Call(inv.call_id, inv.method, inv.path, inv.query, inv.headers, inv.body, deadline)
        started_at = time.time()
        sandbox = lease.sandbox
        assert sandbox.function is not None
        init_ms = sandbox.init_ms if cold else None
        try:
            outcome = await sandbox.call(call, config.cpu_ms_per_call)
        except SandboxError as exc:
            self._lost(state, lease, inv.call_id, exc)
            usage = sandbox.last_usage or NO_USAGE
            await self._recorder.record(
                sandbox.function, inv.call_id, started_at, usage, init_ms, exc.usage_status, cold
            )
            raise
        except BaseException:
            self._lost(state, lease, inv.call_id, None)
            raise
        state.memory_estimate = outcome.usage.max_memory_bytes
        # What it holds now counts too: what a call left running kept growing
        # until the sandbox was frozen.
        lease.memory_bytes = max(state.memory_estimate, sandbox.memory_bytes())
        self._release(state, lease)
        self._logs.append(config.name, inv.call_id, outcome.result.logs)
        status = "ok" if outcome.result.error is None else "error"
        await self._recorder.record(
            sandbox.function, inv.call_id, started_at, outcome.usage, init_ms, status, cold
        )
        return InvocationResult(outcome, cold, billed_ms(outcome.usage.wall_ms, init_ms), init_ms)

    async def _acquire(self, state: FunctionState, inv: Invocation, deadline: float) -> tuple[Lease, bool]:
        """A warm lease, or a new sandbox started in a reserved slot (cold);
        waits in the function's FIFO when neither is free."""
        got = state.pool.acquire()
        if isinstance(got, asyncio.Future):
            waited_from = time.monotonic()
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    got = await got
            except TimeoutError:
                state.pool.abandon(got)  # type: ignore[arg-type]
                raise CallTimeout(
                    f"timed out after {state.config.timeout_s:g} s waiting for a free sandbox"
                ) from None
            except BaseException:
                state.pool.abandon(got)  # type: ignore[arg-type]
                raise
            finally:
                self.metrics.queue_wait.labels(state.name).observe(time.monotonic() - waited_from)
        if got is not START and not got.sandbox.alive():  # type: ignore[union-attr]
            # It died while idle: replace it in the same capacity slot, so
            # this call does not fail for it.
            self.metrics.kills.labels(state.name, "crash").inc()
            self._forget(got)  # type: ignore[arg-type]
            got = START
        if got is not START:
            return got, False  # type: ignore[return-value]
        try:
            return await self._start(state, inv.call_id, deadline), True
        except BaseException:
            state.pool.discard()
            raise

    async def _start(self, state: FunctionState, call_id: str, deadline: float) -> Lease:
        """A sandbox specialized for the function: a pre-warmed blank if one
        is ready, else a new one. Its init_ms is the whole cold start."""
        config = state.config
        t0 = time.monotonic()
        self._make_room(state.memory_estimate)
        limits = self.factory.limits(config.memory_mb, config.cpu)
        try:
            sandbox, prewarmed = await self.factory.take(limits, max(0.0, deadline - t0), state.outbound)
        except CallTimedOut:
            raise CallTimedOut(f"timed out after {config.timeout_s:g} s (creating the sandbox)") from None
        except SandboxError as exc:
            if exc.kill_reason:
                self.metrics.kills.labels(config.name, exc.kill_reason).inc()
            raise
        (self.metrics.prewarm_hits if prewarmed else self.metrics.prewarm_misses).inc()
        uid = self._uids.next()
        function = state.function_spec(sandbox.id, uid, self.config.open_files_max)
        started_at = time.time()
        self.catalog.hold(function.code_dir)
        try:
            await sandbox.specialize(function, max(0.0, deadline - time.monotonic()))
        except SandboxError as exc:
            self.catalog.release(function.code_dir)
            if exc.kill_reason:
                self.metrics.kills.labels(config.name, exc.kill_reason).inc()
            logs = getattr(exc, "logs", "")
            if logs:
                self._logs.append(config.name, call_id, logs)
            usage = sandbox.last_usage or NO_USAGE
            await self._recorder.record(
                function, call_id, started_at, usage, sandbox.init_ms, exc.usage_status, True
            )
            raise
        sandbox.init_ms = (time.monotonic() - t0) * 1000
        if log.isEnabledFor(logging.DEBUG):
            stages = sandbox.stamps
            log.debug(
                "cold start of %s in %.2f ms: %s",
                config.name,
                sandbox.init_ms,
                " ".join(f"{b[0]}={(b[1] - a[1]) * 1000:.2f}" for a, b in itertools.pairwise(stages)),
            )
        self.metrics.cold_starts.labels(config.name).inc()
        self.metrics.init_seconds.labels(config.name).observe(sandbox.init_ms / 1000)
        if sandbox.init_logs:
            self._logs.append(config.name, call_id, sandbox.init_logs)
        lease = Lease(sandbox, state.generation, function.code_dir, state.memory_estimate)
        self._leases.add(lease)
        return lease

    def _release(self, state: FunctionState, lease: Lease) -> None:
        """A call ended well: the lease serves again, unless its function
        was redeployed or deleted meanwhile."""
        lease.last_used = time.monotonic()
        if state.is_current(lease):
            state.pool.release(lease)
            return
        state.pool.discard()
        self._forget(lease)

    def _lost(self, state: FunctionState, lease: Lease, call_id: str, exc: SandboxError | None) -> None:
        """A call failed: its sandbox is destroyed (by the sandbox itself for
        a SandboxError), its slot goes to the next waiter."""
        state.pool.discard()
        self._forget(lease)
        if exc is not None and exc.kill_reason:
            self.metrics.kills.labels(state.name, exc.kill_reason).inc()
            self._logs.append(state.name, call_id, f"sandbox killed ({exc.usage_status}): {exc.message}")

    def _forget(self, lease: Lease) -> None:
        """Destroy a lease's sandbox in the background."""
        self._drop(lease)
        self._spawn_background(lease.sandbox.destroy())

    def _drop(self, lease: Lease) -> None:
        """A lease's sandbox is going: it no longer counts or holds its code."""
        if lease in self._leases:
            self._leases.discard(lease)
            self.catalog.release(lease.code_dir)

    def _spawn_background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _drain_idle(self, state: FunctionState) -> None:
        idle = list(state.pool.idle)
        for lease in idle:
            state.pool.remove_idle(lease)
        await asyncio.gather(*(lease.sandbox.destroy() for lease in idle))
        for lease in idle:
            self._drop(lease)

    def _make_room(self, needed_bytes: int) -> None:
        """Keep warm sandboxes within the memory budget (evict_lru)."""
        used = sum(lease.memory_bytes for lease in self._leases)
        for state, lease in eviction.evict_lru(
            self._functions.values(), used, needed_bytes, self._memory_budget
        ):
            self.metrics.evictions.labels(state.name).inc()
            self._forget(lease)

    # -- keep-alive -----------------------------------------------------------

    async def _keepalive_loop(self) -> None:
        period = max(0.05, min(5.0, self.config.keepalive_s / 4))
        while True:
            await asyncio.sleep(period)
            expired = eviction.retire_idle(
                self._functions.values(), time.monotonic() - self.config.keepalive_s
            )
            if expired:
                await asyncio.gather(*(lease.sandbox.destroy() for lease in expired), return_exceptions=True)
            for lease in expired:
                self._drop(lease)

    def _pool_snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        idle = sum(len(s.pool.idle) for s in self._functions.values())
        busy = sum(s.pool.busy for s in self._functions.values())
        warm = {name: s.pool.instances for name, s in self._functions.items()}
        return {"prewarmed": self.factory.prewarmed, "idle": idle, "busy": busy}, warm


async def _cancel_and_wait(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _default_budget_mb() -> int:
    """75% of the machine's memory."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 3 // 4 // 1024
    return 4096
