"""An in-process SandboxFactory for the invoker's tests: sandboxes that are
plain objects answering calls on the event loop, so scheduling, redeploy,
eviction and drain are tested without root, namespaces or cgroups. They
keep the real contract (sandbox/api.py): the same states and transitions,
destroy on failure, the same errors."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from invoker.config import InvokerConfig
from invoker.invoker import Invoker
from invoker.metrics import Metrics
from sandbox.api import CallResult, NetworkUnavailable, OutboundSpec, SandboxState, Usage, check_transition
from sandbox.cgroups import CgroupLimits
from sandbox.errors import SandboxError
from sandbox.protocol import Call, Result, Secrets, Stamps
from sandbox.spec import FunctionSpec, LayerImage

MIB = 1024 * 1024

Behaviour = Callable[["FakeSandbox", Call], Awaitable[Result]]


async def answer_hello(sandbox: FakeSandbox, call: Call) -> Result:
    return Result(call.id, 200, (("Content-Type", "text/plain"),), f"hello from {sandbox.id}".encode())


class FakeSandbox:
    def __init__(self, factory: FakeFactory, sandbox_id: str, limits: CgroupLimits) -> None:
        self._factory = factory
        self._id = sandbox_id
        self.limits = limits
        self.function: FunctionSpec | None = None
        self.init_ms = 0.0
        self.init_logs = ""
        self.stamps: Stamps = ()
        self.last_usage: Usage | None = None
        self.calls = 0
        self.parked = 0
        self.crashed = False
        # What specialize was given: secret name -> value.
        self.secrets: dict[str, bytes] = {}
        # The network policy it was taken with (None: no outbound network).
        self.outbound: OutboundSpec | None = None
        self._state = SandboxState.BLANK

    @property
    def id(self) -> str:
        return self._id

    @property
    def state(self) -> SandboxState:
        return self._state

    def alive(self) -> bool:
        return self._state is not SandboxState.DEAD and not self.crashed

    async def specialize(self, function: FunctionSpec, timeout_s: float, secrets: Secrets = ()) -> None:
        self._state = check_transition(self._state, SandboxState.SPECIALIZING)
        self.function = function
        self.secrets = dict(secrets)
        if self._factory.init_error is not None:
            self.last_usage = Usage(1.0, 100, MIB)
            await self.destroy()
            raise self._factory.init_error
        self.init_ms = 1.0
        self._state = check_transition(self._state, SandboxState.IDLE)

    async def call(self, call: Call, cpu_budget_ms: float | None = None) -> CallResult:
        self._state = check_transition(self._state, SandboxState.BUSY)
        self.calls += 1
        self._factory.in_flight.add(self)
        try:
            if self._factory.gate is not None:
                await self._factory.gate.wait()
            result = await self._factory.behaviour(self, call)
        except SandboxError:
            self.last_usage = Usage(2.0, 500, self._factory.memory_bytes)
            await self.destroy()
            raise
        finally:
            self._factory.in_flight.discard(self)
        self._state = check_transition(self._state, SandboxState.IDLE)
        rx, tx = self._factory.net_bytes
        return CallResult(result, Usage(1.5, 250, self._factory.memory_bytes, rx, tx))

    def park(self) -> None:
        self.parked += 1

    def memory_bytes(self) -> int:
        return self._factory.memory_bytes

    async def destroy(self) -> None:
        if self._state is not SandboxState.DEAD:
            self._state = check_transition(self._state, SandboxState.DEAD)


class FakeFactory:
    def __init__(self, prewarm: int = 0) -> None:
        self.made: list[FakeSandbox] = []
        self.in_flight: set[FakeSandbox] = set()
        # Calls wait on this while it is set and not yet set: no timing needed.
        self.gate: asyncio.Event | None = None
        self.behaviour: Behaviour = answer_hello
        # Peak memory each call reports.
        self.memory_bytes = 4 * MIB
        self.init_error: SandboxError | None = None
        self._ids = itertools.count(1)
        self._ready = prewarm
        # Layers asked for (load_layer, take) and let go (unload_layer).
        self.loaded_layers: list[LayerImage] = []
        self.unloaded_layers: list[str] = []
        # Why outbound network is unavailable (None: it is), and how often it was prepared.
        self.network_problem: str | None = None
        self.network_prepared = 0
        # (received, sent) bytes each call reports.
        self.net_bytes = (0, 0)

    async def __aenter__(self) -> FakeFactory:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sandbox in self.made:
            await sandbox.destroy()

    def limits(self, memory_mb: int, cpu_cores: float) -> CgroupLimits:
        return CgroupLimits(memory_mb=memory_mb, cpu_cores=cpu_cores, pids_max=128)

    async def take(
        self,
        limits: CgroupLimits,
        timeout_s: float,
        layer: LayerImage | None = None,
        network: OutboundSpec | None = None,
    ) -> tuple[FakeSandbox, bool]:
        if network is not None:
            await self.prepare_network()
        prewarmed = self._ready > 0
        self._ready = max(0, self._ready - 1)
        sandbox = FakeSandbox(self, f"fake-{next(self._ids)}", limits)
        sandbox.outbound = network
        self.made.append(sandbox)
        return sandbox, prewarmed

    async def prepare_network(self) -> None:
        self.network_prepared += 1
        if self.network_problem is not None:
            raise NetworkUnavailable(self.network_problem)

    @property
    def prewarmed(self) -> int:
        return self._ready

    def load_layer(self, layer: LayerImage) -> None:
        self.loaded_layers.append(layer)

    async def unload_layer(self, layer_dir: str) -> None:
        self.unloaded_layers.append(layer_dir)

    def layer_status(self, layer_dir: str) -> dict[str, Any]:
        return {"state": "off"}

    def live(self) -> list[FakeSandbox]:
        return [s for s in self.made if s.state is not SandboxState.DEAD]


def make_invoker(tmp_path: Path, factory: FakeFactory, **settings: Any) -> Invoker:
    """An Invoker on `factory`, its data under `tmp_path`."""
    return Invoker(InvokerConfig(data_dir=str(tmp_path), **settings), Metrics(), factory=factory)
