"""The invoker's kinds of error, in the runtime's one vocabulary: they
extend `FaasError` of sandbox/errors.py (where the sandbox's own kinds are),
and gateway/errors.py is the one place that maps each kind to HTTP."""

from __future__ import annotations

from sandbox.api import (
    CallTimedOut,
    CgroupUnavailable,
    CpuBudgetExceeded,
    FaasError,
    InitError,
    SandboxDied,
    SandboxError,
    SetupError,
    SpawnError,
)

# The whole vocabulary, so the gateway needs no import of sandbox/.
__all__ = [
    "FaasError",
    "SandboxError",
    "SpawnError",
    "SetupError",
    "InitError",
    "SandboxDied",
    "CallTimedOut",
    "CpuBudgetExceeded",
    "CgroupUnavailable",
    "BadRequest",
    "LayerBuildFailed",
    "Unauthorized",
    "NotFound",
    "PayloadTooLarge",
    "TooManyRequests",
    "Unavailable",
    "CallTimeout",
    "StartupError",
    "Conflict",
    "SecretMissing",
    "LayerUnavailable",
]


class BadRequest(FaasError):
    """The request is malformed or out of range; the message says how."""


class LayerBuildFailed(BadRequest):
    """pip could not resolve or install a function's requirements from binary
    wheels: the message names the package and carries pip's own lines."""


class Unauthorized(FaasError):
    """A /system request without the server's token."""


class NotFound(FaasError):
    """No such function."""


class PayloadTooLarge(FaasError):
    """A request body over its limit."""


class TooManyRequests(FaasError):
    """The function's concurrency limit and wait queue are full."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}


class Conflict(FaasError):
    """The request conflicts with the state of what it names (a Lambda function
    that already exists, an asynchronous call that is no longer queued, a
    secret that a version an alias points at uses)."""


class Unavailable(FaasError):
    """Shutting down, or no capacity."""


class LayerUnavailable(Unavailable):
    """A version's layer is on no server's disk here and cannot be had from
    the cluster's database: not stored there, or its archive refused (a
    digest that does not match, a member that would land outside the layer)."""


class CallTimeout(FaasError):
    """A call ran out of time before it reached a sandbox (waiting in the queue)."""


class SecretMissing(FaasError):
    """A version names a secret deleted since it was deployed: its sandboxes cannot start."""


class StartupError(RuntimeError):
    """The invoker cannot start; the message names the cause."""
