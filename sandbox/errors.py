"""The runtime's one error vocabulary, from the sandbox up to the gateway.

`FaasError` is the base of every error a client can be answered with; the
invoker adds its own kinds (invoker/errors.py) and gateway/errors.py is the
one place that maps each kind to an HTTP status. Errors of a sandbox also
say how the call that hit them is recorded: `usage_status` for its usage
record and `kill_reason` for the kill counter (None: nothing was killed).
"""

from __future__ import annotations


class FaasError(Exception):
    # Extra response headers (Retry-After, ...).
    headers: dict[str, str] = {}

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SandboxError(FaasError):
    """Base of everything a sandbox can fail with; the sandbox is destroyed
    before the error reaches the caller."""

    usage_status = "crash"
    kill_reason: str | None = "crash"
    # What the call printed before it failed (the sandbox's output area).
    output = ""


class SpawnError(SandboxError):
    """The sandbox could not be created (fork, cgroup attach, unshare): no
    capacity right now. Nothing ran, so nothing was killed."""

    kill_reason = None


class SetupError(SandboxError):
    """The sandbox failed while building its namespaces, root or credentials."""


class InitError(SandboxError):
    """The function's module raised while loading, or has no entry function."""

    usage_status = "error"
    kill_reason = None

    def __init__(self, message: str, logs: str = "") -> None:
        super().__init__(message)
        self.logs = logs


class SandboxDied(SandboxError):
    """The sandbox is gone: out of memory, crashed, exited, or broke the protocol."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # "oom", "crash" or "protocol"
        self.usage_status = "oom" if reason == "oom" else "crash"
        self.kill_reason = self.usage_status


class CallTimedOut(SandboxError):
    """The call (or the sandbox's start) ran past its deadline; the sandbox was killed."""

    usage_status = "timeout"
    kill_reason = "timeout"


class CpuBudgetExceeded(SandboxError):
    """The call used more CPU time than its budget; the sandbox was killed."""

    usage_status = "cpu_limit"
    kill_reason = "cpu"
