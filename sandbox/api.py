"""The sandbox contract as the invoker sees it: what a call returns and the
ways a sandbox can fail. The implementation is sandbox/instance.py."""

from __future__ import annotations

from dataclasses import dataclass


class SandboxError(Exception):
    """Base of everything a sandbox can fail with."""


class SpawnError(SandboxError):
    """The zygote could not create the sandbox (fork, cgroup attach, unshare)."""


class SetupError(SandboxError):
    """The sandbox failed while building its namespaces, root or credentials."""


class InitError(SandboxError):
    """The function's module raised while loading, or has no entry function."""

    def __init__(self, message: str, logs: str) -> None:
        super().__init__(message)
        self.logs = logs


class SandboxDied(SandboxError):
    """The sandbox is gone: reason is "oom", "crash" or "protocol"."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CallTimedOut(SandboxError):
    """The call ran past its deadline; the sandbox was killed."""


class CpuBudgetExceeded(SandboxError):
    """The call used more CPU time than its budget; the sandbox was killed."""


@dataclass(frozen=True)
class Usage:
    """What one call cost, read from outside the sandbox."""

    wall_ms: float
    cpu_us: int
    max_memory_bytes: int

    @property
    def cpu_ms(self) -> float:
        return self.cpu_us / 1000


@dataclass(frozen=True)
class CallResult:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    logs: str
    # The handler raised or returned an unsupported type (status is 500).
    error: str | None
    usage: Usage
