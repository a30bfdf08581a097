"""The Invoker: one pool per function version, in front of a SandboxFactory;
turns an Invocation into an InvocationResult. Its management methods are in
invoker/releases.py, its asynchronous calls in invoker/async_api.py (mixins).
Its public methods are all the gateway uses (what a remote invoker will stand
behind). Resources are set up in __aenter__, torn down in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from sandbox.api import NO_USAGE, CallTimedOut, SandboxError, SandboxFactory
from sandbox.factory import SandboxFactory as RealSandboxFactory

from . import eviction
from .async_api import AsyncInvocations
from .catalog import Catalog
from .config import InvokerConfig, default_warm_memory_budget_mb
from .errors import FaasError, StartupError, Unavailable
from .functions import FunctionState
from .layers import LayerStore
from .lease import Lease
from .logs import LogStore
from .metering import BillingTotals, billed_ms
from .metrics import Metrics
from .model import VERSION_HEADER, FunctionConfig, Invocation, InvocationResult
from .outbound import NetworkAdmission
from .pool import START
from .recorder import Recorder
from .registry import CodeStore
from .releases import Releases
from .stores import follow_cluster, open_ledger, open_registry, open_secrets, share_layers
from .tasks import cancel_and_wait, task_stacks
from .uids import UidRange
from .validate import Limits, host_cores
from .versions import FunctionVersions, Rerouted

log = logging.getLogger("faas.invoker")

# What tearing the invoker down may take once calls have ended.
TEARDOWN_TIMEOUT_S = 20.0


class Invoker(Releases, AsyncInvocations):
    def __init__(
        self,
        config: InvokerConfig,
        metrics: Metrics,
        factory: SandboxFactory | None = None,
        http_status: Callable[[FaasError], int] | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.ready = False
        self.draining = False
        self._uids = UidRange()
        self._background: set[asyncio.Task[Any]] = set()
        # Every lease alive, busy or idle, for the memory budget.
        self._leases: set[Lease] = set()
        self._memory_budget = (config.warm_memory_budget_mb or default_warm_memory_budget_mb()) * 1024 * 1024
        self._stack = contextlib.AsyncExitStack()
        self.factory: SandboxFactory = factory or RealSandboxFactory(config.factory_config())
        self.billing = BillingTotals()
        self._logs = LogStore(os.path.join(config.data_dir, "logs"))
        self._recorder = Recorder(None, self._logs, self.billing)
        self._secrets = open_secrets(config)
        self._secret_lock = asyncio.Lock()
        self.catalog = Catalog(
            CodeStore(os.path.join(config.data_dir, "code")),
            Limits(host_cores=host_cores(), code_limit_bytes=config.code_limit_bytes),
            config.max_functions,
            config.max_code_bytes_total,
            config.versions_kept,
            self._secrets.exists,
            LayerStore.in_data_dir(config.data_dir, config.layer_limit_bytes, config.build_timeout_s),
        )
        metrics.watch_pools(self.pool_snapshot)
        metrics.watch_billing(self.billing)
        self._async = self._make_async_calls(config, metrics, self._logs, http_status)

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
        registry = await asyncio.to_thread(open_registry, self.config)
        self._stack.callback(registry.close)
        if self.config.metering:
            ledger = await asyncio.to_thread(open_ledger, self.config)
            self._recorder.ledger = ledger
            self._stack.push_async_callback(ledger.aclose)
        self._stack.callback(self._logs.close)
        await self._stack.enter_async_context(self.factory)
        self._stack.push_async_callback(self._destroy_all)
        await asyncio.to_thread(self._secrets.load)
        share_layers(self.config, self.catalog.layers, self._stack)
        await NetworkAdmission(self.factory).load(self.catalog, registry)
        await self.catalog.publish_layers()
        for state in self.catalog.states():
            self._load_layer(state)
        await follow_cluster(self, self._secrets, self._stack)
        reaper = asyncio.create_task(self._keepalive_loop(), name="keepalive")
        self._stack.push_async_callback(cancel_and_wait, reaper)
        await self._stack.enter_async_context(self._async)
        self.ready = True

    async def __aexit__(self, *exc: object) -> None:
        self.ready = False
        try:
            # Calls in flight have ended (or hit their own timeouts) by now:
            # what is left is bounded work. A step that hangs all the same is
            # cancelled, the later ones still run, and the stacks say where.
            async with asyncio.timeout(TEARDOWN_TIMEOUT_S):
                await self._stack.aclose()
        except TimeoutError:
            log.error("teardown did not finish in %g s; tasks left: %s", TEARDOWN_TIMEOUT_S, task_stacks())

    async def _destroy_all(self) -> None:
        for state in self.catalog.states():
            state.pool.fail_waiters(Unavailable("server is shutting down"))
            await self._drain_idle(state)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def drain(self) -> None:
        """Stop taking calls (503); the ones in flight go on to their end,
        calls still waiting for a sandbox get 503 now."""
        self.draining = True
        self.ready = False
        busy = sum(state.pool.busy for state in self.catalog.states())
        log.info("shutting down: %d calls in flight", busy)
        for state in self.catalog.states():
            state.pool.fail_waiters(Unavailable("the server is shutting down"))

    # -- invocation ---------------------------------------------------------

    def admit(self, name: str, *, room: bool = True) -> FunctionConfig:
        """Whether a call of `name` (`NAME`, `NAME@VERSION` or `NAME@ALIAS`)
        can be taken now (503 while draining, 404 for no such function,
        version or alias; with `room`, 429 when its sandboxes and queue are
        full): the gateway asks before reading a body. The config of the
        version it names (for a split alias, its main one)."""
        fn, qualifier = self._admit(name)
        state = fn.resolve(qualifier)[0]
        if room:
            state.pool.check_room()
        return state.config

    def _admit(self, name: str) -> tuple[FunctionVersions, str | None]:
        if self.draining:
            raise Unavailable("the server is shutting down")
        function, at, qualifier = name.partition("@")
        return self.catalog.get(function), qualifier if at else None

    async def invoke(self, inv: Invocation, *, background: bool = False) -> InvocationResult:
        """Route the call to a version, acquire a sandbox of it, run the
        call, record it (also when it failed). `background`: an attempt of an
        asynchronous call, which shares the version's capacity with sync ones."""
        fn, qualifier = self._admit(inv.function)
        self.metrics.invocation_started(fn.name)
        try:
            while True:  # Rerouted: its alias moved while it waited, route it again
                state, alias = fn.route(qualifier)
                deadline = inv.received_at + state.config.timeout_s
                with contextlib.suppress(Rerouted):
                    lease, cold = await self._acquire(state, inv, deadline, alias, background)
                    break
            return await self._run(state, lease, cold, inv, deadline, background)
        except SandboxError as exc:
            # Answered with the version whose sandbox it came from.
            exc.headers = {**exc.headers, VERSION_HEADER: str(state.config.version)}
            raise

    async def _run(
        self,
        state: FunctionState,
        lease: Lease,
        cold: bool,
        inv: Invocation,
        deadline: float,
        background: bool,
    ) -> InvocationResult:
        config = state.config
        call = inv.to_call(deadline)
        started_at = time.time()
        sandbox = lease.sandbox
        assert sandbox.function is not None
        init_ms = sandbox.init_ms if cold else None
        try:
            outcome = await sandbox.call(call, config.cpu_ms_per_call)
        except SandboxError as exc:
            self._lost(state, lease, inv.call_id, exc, background)
            usage = sandbox.last_usage or NO_USAGE
            await self._recorder.record(
                sandbox.function, inv.call_id, started_at, usage, init_ms, exc.usage_status, cold, inv.attempt
            )
            raise
        except BaseException:
            self._lost(state, lease, inv.call_id, None, background)
            raise
        state.memory_estimate = outcome.usage.max_memory_bytes
        # The peak, read once the sandbox was frozen, also bounds what it holds
        # now (what a call left running grew until then): no second read.
        lease.memory_bytes = state.memory_estimate or sandbox.memory_bytes()
        self._release(state, lease, background)
        self._logs.append(config.name, inv.call_id, outcome.result.logs)
        status = "ok" if outcome.result.error is None else "error"
        await self._recorder.record(
            sandbox.function, inv.call_id, started_at, outcome.usage, init_ms, status, cold, inv.attempt
        )
        return InvocationResult(
            outcome, cold, billed_ms(outcome.usage.wall_ms, init_ms), init_ms, config.version
        )

    async def _acquire(
        self, state: FunctionState, inv: Invocation, deadline: float, alias: str | None, background: bool
    ) -> tuple[Lease, bool]:
        """A warm lease, or a new sandbox started in a reserved slot (cold);
        waits in the version's FIFO when neither is free (Rerouted if its
        alias moves to another version meanwhile). `background`: an async
        attempt, which may not take the last slot from sync calls."""
        got = state.pool.acquire(background)
        if isinstance(got, asyncio.Future):
            waited_from = time.monotonic()
            try:
                got = await state.wait_turn(got, deadline, alias, background)
            finally:
                self.metrics.queue_waited(state.name, time.monotonic() - waited_from)
        if got is not START and not got.sandbox.alive():  # type: ignore[union-attr]
            # It died while idle: replace it in the same capacity slot, so
            # this call does not fail for it.
            self.metrics.kills.labels(state.name, "crash").inc()
            self._forget(got)  # type: ignore[arg-type]
            got = START
        if got is not START:
            return got, False  # type: ignore[return-value]
        try:
            return await self._start(state, inv.call_id, deadline, inv.attempt), True
        except BaseException:
            state.pool.discard(background)
            raise

    async def _start(self, state: FunctionState, call_id: str, deadline: float, attempt: int) -> Lease:
        """A sandbox specialized for the function: a pre-warmed blank if one
        is ready, else a new one. Its init_ms is the whole cold start."""
        config = state.config
        t0 = time.monotonic()
        await self.catalog.materialize(state, deadline)
        secrets = self._secrets.values(config.secrets)
        self._make_room(state.memory_estimate)
        limits = self.factory.limits(config.memory_mb, config.cpu)
        image = state.layer_image(self._uids.layer_zygote())
        try:
            sandbox, prewarmed = await self.factory.take(
                limits, max(0.0, deadline - t0), image, state.outbound
            )
        except CallTimedOut:
            raise CallTimedOut(f"timed out after {config.timeout_s:g} s (creating the sandbox)") from None
        except SandboxError as exc:
            if exc.kill_reason:
                self.metrics.kills.labels(config.name, exc.kill_reason).inc()
            raise
        (self.metrics.prewarm_hits if prewarmed else self.metrics.prewarm_misses).inc()
        uid = self._uids.next()
        function = state.function_spec(sandbox.id, uid, self.config.open_files_max, self.config.lambda_region)
        started_at = time.time()
        self.catalog.hold(function.code_dir, function.layer_dir)
        try:
            await sandbox.specialize(function, max(0.0, deadline - time.monotonic()), secrets)
        except SandboxError as exc:
            self.catalog.release(function.code_dir, function.layer_dir)
            if exc.kill_reason:
                self.metrics.kills.labels(config.name, exc.kill_reason).inc()
            logs = getattr(exc, "logs", "")
            if logs:
                self._logs.append(config.name, call_id, logs)
            usage = sandbox.last_usage or NO_USAGE
            await self._recorder.record(
                function, call_id, started_at, usage, sandbox.init_ms, exc.usage_status, True, attempt
            )
            raise
        sandbox.init_ms = (time.monotonic() - t0) * 1000
        if log.isEnabledFor(logging.DEBUG):
            stages = " ".join(
                f"{b[0]}={(b[1] - a[1]) * 1e3:.2f}" for a, b in itertools.pairwise(sandbox.stamps)
            )
            log.debug("cold start of %s in %.2f ms: %s", config.name, sandbox.init_ms, stages)
        self.metrics.cold_started(config.name, sandbox.init_ms / 1000)
        if sandbox.init_logs:
            self._logs.append(config.name, call_id, sandbox.init_logs)
        lease = Lease(sandbox, function.code_dir, state.memory_estimate, layer_dir=function.layer_dir)
        self._leases.add(lease)
        return lease

    def _release(self, state: FunctionState, lease: Lease, background: bool) -> None:
        """A call ended well: the lease serves again, unless its version was
        removed (retention, or the function deleted) meanwhile."""
        lease.last_used = time.monotonic()
        if not state.deleted:
            state.pool.release(lease, background)
            return
        state.pool.discard(background)
        self._forget(lease)

    def _lost(
        self, state: FunctionState, lease: Lease, call_id: str, exc: SandboxError | None, background: bool
    ) -> None:
        """A call failed: its sandbox is destroyed (by the sandbox itself for
        a SandboxError), its slot goes to the next waiter."""
        state.pool.discard(background)
        self._forget(lease)
        if exc is not None and exc.output:
            self._logs.append(state.name, call_id, exc.output)
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
            self.catalog.release(lease.code_dir, lease.layer_dir)

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
            self.catalog.states(), used, needed_bytes, self._memory_budget
        ):
            self.metrics.evictions.labels(state.name).inc()
            self._forget(lease)

    # -- keep-alive -----------------------------------------------------------

    async def _keepalive_loop(self) -> None:
        period = max(0.05, min(5.0, self.config.keepalive_s / 4))
        while True:
            await asyncio.sleep(period)
            expired = eviction.retire_idle(self.catalog.states(), time.monotonic() - self.config.keepalive_s)
            if expired:
                await asyncio.gather(*(lease.sandbox.destroy() for lease in expired), return_exceptions=True)
            for lease in expired:
                self._drop(lease)
            await self.catalog.collect_layers(self.factory.unload_layer)

    def pool_snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        states = self.catalog.states()
        idle = sum(len(s.pool.idle) for s in states)
        busy = sum(s.pool.busy for s in states)
        warm = {name: self.warm_count(name) for name in self.catalog.functions}
        return {"prewarmed": self.factory.prewarmed, "idle": idle, "busy": busy}, warm
