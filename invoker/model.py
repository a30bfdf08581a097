"""Frozen records that cross module boundaries."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from sandbox.api import Call, CallResult


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
    # Names of the secrets mounted at /var/openfaas/secrets/NAME (never their values).
    secrets: tuple[str, ...] = ()
    # -- asynchronous calls and the Lambda convention (docs/HANDLER.md, HTTP-API.md)
    # "faas": handle(event, context) with an HTTP event; "lambda": AWS Lambda's convention.
    flavour: str = "faas"
    async_retries: int = 2
    # None: the server's max_event_age_s.
    max_event_age_s: int | None = None
    # The layer its requirements.txt resolved to ("": none; invoker/layers.py)
    # and what the deploy spent resolving and building it (None: no requirements).
    layer_id: str = ""
    layer_size_bytes: int = 0
    layer_packages: tuple[tuple[str, str], ...] = ()
    build_ms: float | None = None

    def to_record(self) -> dict[str, Any]:
        """The function record of the HTTP API."""
        return {
            "name": self.name,
            "version": self.version,
            "handler": self.handler_text,
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
            "flavour": self.flavour,
            "async_retries": self.async_retries,
            "max_event_age_s": self.max_event_age_s,
            "secrets": list(self.secrets),
            "layer": (
                {
                    "id": self.layer_id,
                    "size_bytes": self.layer_size_bytes,
                    "packages": dict(self.layer_packages),
                }
                if self.layer_id
                else None
            ),
            "build_ms": None if self.build_ms is None else round(self.build_ms, 1),
        }

    @property
    def handler_text(self) -> str:
        """The file holding the entry; for the Lambda flavour, Lambda's handler string."""
        path = self.handler_module.replace(".", "/")
        return f"{path}.{self.entry}" if self.flavour == "lambda" else f"{path}.py"

    def same_deploy(self, other: FunctionConfig) -> bool:
        """Whether two configs are the same code and configuration: a deploy
        identical to the newest version makes no new one."""
        blank = dict.fromkeys(DEPLOY_BOOKKEEPING, 0)
        return dataclasses.replace(self, **blank) == dataclasses.replace(other, **blank)


# FunctionConfig's fields that say when and as what a version was made, not
# what it runs: left out when deciding whether a deploy changed anything (a
# field such as a build's duration belongs here too). The layer is made from
# requirements.txt, one of the files: the same files resolve to it again.
DEPLOY_BOOKKEEPING = (
    "version", "created_at", "updated_at", "layer_id", "layer_size_bytes", "layer_packages", "build_ms",
)  # fmt: skip


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
    # The query string as sent (a Lambda event's rawQueryString).
    raw_query: str = ""
    # The Lambda API's Invoke: the body is the event itself (JSON), not an HTTP request.
    raw_event: bool = False
    # The client's address (a Lambda event's requestContext.http.sourceIp).
    source_ip: str = ""
    # Which delivery of an asynchronous call this is (1 for synchronous calls).
    attempt: int = 1

    def to_call(self, deadline: float) -> Call:
        """The message that runs it in a sandbox, by `deadline` (time.monotonic())."""
        return Call(
            self.call_id, self.method, self.path, self.query, self.headers, self.body, deadline,
            self.raw_query, self.source_ip, self.raw_event,
        )  # fmt: skip


@dataclass(frozen=True)
class InvocationResult:
    """A call's answer from its sandbox (status, headers, body, usage) and
    how it was served and billed."""

    call: CallResult
    cold: bool
    billed_ms: int
    init_ms: float | None
    # The function version that ran (X-Faas-Version).
    version: int = 0

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

    @property
    def error(self) -> str | None:
        """Set when the handler raised or returned what cannot be answered."""
        return self.call.result.error


@dataclass(frozen=True)
class UsageQuery:
    """Which usage records: started in [since, until) (Unix seconds), of one function or all."""

    since: float | None = None
    until: float | None = None
    function: str | None = None


# -- versions, aliases, secrets ------------------------------------------------

LIVE = "live"
# On every answer from a sandbox: the version that ran.
VERSION_HEADER = "X-Faas-Version"


@dataclass(frozen=True)
class Alias:
    """Where an alias sends calls: `version`, or a share `weight` of them to
    `canary` (a split between two versions). `live` with version None
    follows the newest version (it is not pinned)."""

    name: str
    version: int | None
    canary: int | None = None
    weight: float = 0.0

    @property
    def targets(self) -> frozenset[int]:
        """The versions it may send a call to (None: the newest)."""
        return frozenset(v for v in (self.version, self.canary) if v is not None)

    def to_record(self, newest: int) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": newest if self.version is None else self.version,
            "weights": {} if self.canary is None else {str(self.canary): self.weight},
            "follows_newest": self.version is None,
        }


@dataclass(frozen=True)
class Deployed:
    """What a deploy did: the version it made (or the newest, when nothing
    changed), whether the function is new, and whether a version was made."""

    config: FunctionConfig
    created: bool
    changed: bool


@dataclass(frozen=True)
class SecretInfo:
    """A secret's metadata: what the API shows. Its value is never here."""

    name: str
    size_bytes: int
    created_at: float
    updated_at: float
    encrypted: bool

    def to_record(self, used_by: dict[str, list[int]]) -> dict[str, Any]:
        return {
            "name": self.name,
            "size_bytes": self.size_bytes,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "encrypted": self.encrypted,
            "used_by": used_by,
        }
