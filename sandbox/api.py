"""The sandbox contract, as the invoker sees it: one short interface.

`SandboxFactory` makes sandboxes (sandbox/factory.py does it with a zygote,
namespaces and cgroups; the invoker's tests use an in-process fake), and a
`Sandbox` goes through explicit states:

    BLANK --specialize--> SPECIALIZING --> IDLE <--call--> BUSY
      any state --destroy or any failure--> DEAD

A failure of specialize or call destroys the sandbox before the error
(sandbox/errors.py) reaches the caller, so a broken sandbox is never reused.
"""

from __future__ import annotations

import enum
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from .cgroups import CgroupLimits, CgroupUnavailable
from .egress import MAX_ALLOW_ENTRIES, OutboundSpec, parse_allow, parse_allow_list
from .errors import (
    CallTimedOut,
    CpuBudgetExceeded,
    FaasError,
    InitError,
    SandboxDied,
    SandboxError,
    SetupError,
    SpawnError,
)
from .hostfs import layer_libraries
from .network import NetworkUnavailable
from .protocol import LOG_CAP_BYTES, TRUNCATION_MARKER, Call, Result, Secrets, Stamps
from .spec import FunctionSpec, LayerImage, UidMapping

# The whole contract in one import: the invoker needs sandbox.api and
# sandbox.factory, nothing else of this package.
__all__ = [
    "LOG_CAP_BYTES",
    "MAX_ALLOW_ENTRIES",
    "NO_USAGE",
    "TRUNCATION_MARKER",
    "Call",
    "CallResult",
    "CallTimedOut",
    "CgroupLimits",
    "CgroupUnavailable",
    "CpuBudgetExceeded",
    "FaasError",
    "FunctionSpec",
    "InitError",
    "LayerImage",
    "NetworkUnavailable",
    "OutboundSpec",
    "Result",
    "Sandbox",
    "SandboxDied",
    "SandboxError",
    "SandboxFactory",
    "SandboxState",
    "SetupError",
    "SpawnError",
    "StateError",
    "UidMapping",
    "Usage",
    "check_transition",
    "layer_libraries",
    "parse_allow",
    "parse_allow_list",
]


class SandboxState(enum.Enum):
    NEW = "new"
    BLANK = "blank"
    SPECIALIZING = "specializing"
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"


_ALLOWED = {
    SandboxState.NEW: {SandboxState.BLANK, SandboxState.DEAD},
    SandboxState.BLANK: {SandboxState.SPECIALIZING, SandboxState.DEAD},
    SandboxState.SPECIALIZING: {SandboxState.IDLE, SandboxState.DEAD},
    SandboxState.IDLE: {SandboxState.BUSY, SandboxState.DEAD},
    SandboxState.BUSY: {SandboxState.IDLE, SandboxState.DEAD},
    SandboxState.DEAD: set(),
}


class StateError(RuntimeError):
    """A sandbox was asked to do what its state does not allow (a bug in
    the caller, never the sandbox's doing)."""


def check_transition(current: SandboxState, new: SandboxState) -> SandboxState:
    if new not in _ALLOWED[current]:
        raise StateError(f"a sandbox cannot go from {current.value} to {new.value}")
    return new


@dataclass(frozen=True)
class Usage:
    """What one call (or a start) cost, read from outside the sandbox."""

    wall_ms: float
    cpu_us: int
    max_memory_bytes: int
    # Bytes the sandbox received and sent (outbound network only; else 0).
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0

    @property
    def cpu_ms(self) -> float:
        return self.cpu_us / 1000


NO_USAGE = Usage(0.0, 0, 0)


@dataclass(frozen=True)
class CallResult:
    """A call's answer from the sandbox and what it cost."""

    result: Result
    usage: Usage


class Sandbox(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def state(self) -> SandboxState: ...

    # Set by specialize: the function it runs, its init time and output, and
    # (stage, time.monotonic()) stamps of its start.
    function: FunctionSpec | None
    init_ms: float
    init_logs: str
    stamps: Stamps
    # What the failed call or start cost, after a SandboxError.
    last_usage: Usage | None

    def alive(self) -> bool:
        """False once destroyed or once its channel hit EOF (it died idle)."""
        ...

    async def specialize(self, function: FunctionSpec, timeout_s: float, secrets: Secrets = ()) -> None:
        """Become an instance of `function`; `secrets` (name, value) are its
        files in /var/openfaas/secrets, readable by its uid only."""
        ...

    async def call(self, call: Call, cpu_budget_ms: float | None = None) -> CallResult:
        """Run one call until call.deadline. CPU it used between calls is
        billed to the next call."""
        ...

    def park(self) -> None:
        """Idle, no call waiting for it: frozen until its next call (where the
        host has a freezer), so nothing it left running runs meanwhile."""
        ...

    def memory_bytes(self) -> int:
        """What the sandbox holds now (for the warm-memory budget)."""
        ...

    async def destroy(self) -> None:
        """Kill every process of the sandbox and remove its cgroup. Idempotent."""
        ...


class SandboxFactory(AbstractAsyncContextManager["SandboxFactory"], Protocol):
    def limits(self, memory_mb: int, cpu_cores: float) -> CgroupLimits:
        """The cgroup limits of a sandbox of a function with these settings."""
        ...

    async def take(
        self,
        limits: CgroupLimits,
        timeout_s: float,
        layer: LayerImage | None = None,
        network: OutboundSpec | None = None,
    ) -> tuple[Sandbox, bool]:
        """A blank sandbox with these limits, and whether it was pre-warmed;
        for a function with a layer, one that has imported it already where
        the layer has an import cache; with `network`, one with outbound
        network under that policy (never from the import cache: its layer is
        imported in the sandbox). Raises SpawnError, SetupError, SandboxDied
        or CallTimedOut."""
        ...

    async def prepare_network(self) -> None:
        """Ready for sandboxes with outbound network (the host prepared, some
        pre-warmed); NetworkUnavailable, one line saying why, if it cannot be."""
        ...

    def load_layer(self, layer: LayerImage) -> None:
        """Get the layer's import cache ready, in the background."""
        ...

    async def unload_layer(self, layer_dir: str) -> None:
        """No function uses the layer any more: stop its import cache."""
        ...

    def layer_status(self, layer_dir: str) -> dict[str, Any]:
        """The state of the layer's import cache ({"state": ..., ...})."""
        ...

    @property
    def prewarmed(self) -> int:
        """Blank sandboxes ready now."""
        ...
