"""Frozen records that cross module boundaries."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sandbox.api import CallResult


@dataclass(frozen=True)
class FunctionConfig:
    name: str
    version: int
    handler_module: str
    entry: str
    memory_mb: int = 128
    timeout_s: float = 30.0
    cpu: float = 1.0
    cpu_ms_per_call: int | None = None
    env: tuple[tuple[str, str], ...] = ()
    max_instances: int = 10
    max_queue: int = 1000
    # "none" or "outbound"; allow: canonical CIDR[:PORT] entries (sandbox/egress.py).
    network: str = "none"
    allow: tuple[str, ...] = ()
    egress_mbit: float | None = None
    code_size_bytes: int = 0
    code_sha256: str = ""
    files: tuple[str, ...] = ()
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_record(self) -> dict[str, Any]:
        """The function record of the HTTP API."""
        return {
            "name": self.name,
            "version": self.version,
            "handler": self.handler_module.replace(".", "/") + ".py",
            "entry": self.entry,
            "memory_mb": self.memory_mb,
            "timeout_s": self.timeout_s,
            "cpu": self.cpu,
            "cpu_ms_per_call": self.cpu_ms_per_call,
            "env": dict(self.env),
            "max_instances": self.max_instances,
            "max_queue": self.max_queue,
            "network": self.network,
            "allow": list(self.allow),
            "egress_mbit": self.egress_mbit,
            "code_size_bytes": self.code_size_bytes,
            "code_sha256": self.code_sha256,
            "files": list(self.files),
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass(frozen=True)
class Invocation:
    function: str
    call_id: str
    method: str
    path: str
    query: dict[str, str]
    headers: tuple[tuple[str, str], ...]
    body: bytes
    # time.monotonic() when the gateway received the request.
    received_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class InvocationResult:
    """A call's answer from its sandbox (status, headers, body, usage) and
    how it was served and billed."""

    call: CallResult
    cold: bool
    billed_ms: int
    init_ms: float | None

    @property
    def status(self) -> int:
        return self.call.result.status

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        return self.call.result.headers

    @property
    def body(self) -> bytes:
        return self.call.result.body

    @property
    def wall_ms(self) -> float:
        return self.call.usage.wall_ms


@dataclass(frozen=True)
class UsageQuery:
    """Which usage records: started in [since, until) (Unix seconds), of one function or all."""

    since: float | None = None
    until: float | None = None
    function: str | None = None
