"""Metering arithmetic: usage records, billed duration, GB-seconds, cost,
the REPORT line, and the time filters of /system/usage. Pure: no I/O.

Amounts are kept as integers where they are summed (billed ms, MB-ms of
memory, µs of CPU), so the Prometheus counters and the usage API, which add
the same integers, agree exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import BadRequest

STATUSES = ("ok", "error", "timeout", "cpu_limit", "oom", "crash")
MB_MS_PER_GB_SECOND = 1024 * 1000
BYTES_PER_GB = 1024**3


@dataclass(frozen=True)
class UsageRecord:
    call_id: str
    function: str
    version: int
    started_at: float  # Unix seconds, UTC
    wall_ms: float
    init_ms: float | None
    cpu_us: int
    memory_mb: int
    max_memory_bytes: int
    status: str
    cold: bool
    # Which delivery of an asynchronous call this was (1 for synchronous calls).
    attempt: int = 1
    # Bytes the sandbox received and sent during the call (outbound network).
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0

    @property
    def billed_ms(self) -> int:
        return billed_ms(self.wall_ms, self.init_ms)

    @property
    def cpu_ms(self) -> float:
        return self.cpu_us / 1000

    @property
    def max_memory_mb(self) -> float:
        return round(self.max_memory_bytes / (1024 * 1024), 3)

    def to_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "function": self.function,
            "version": self.version,
            "started_at": iso(self.started_at),
            "wall_ms": round(self.wall_ms, 3),
            "billed_ms": self.billed_ms,
            "init_ms": None if self.init_ms is None else round(self.init_ms, 3),
            "cpu_ms": self.cpu_ms,
            "memory_mb": self.memory_mb,
            "max_memory_mb": self.max_memory_mb,
            "status": self.status,
            "cold": self.cold,
            "attempt": self.attempt,
            "net_rx_bytes": self.net_rx_bytes,
            "net_tx_bytes": self.net_tx_bytes,
        }


def billed_ms(wall_ms: float, init_ms: float | None) -> int:
    """ceil(wall + init), at least 1 ms (docs/METRICS.md)."""
    return max(1, math.ceil(wall_ms + (init_ms or 0.0)))


def report_line(record: UsageRecord) -> str:
    line = (
        f"REPORT RequestId: {record.call_id} Duration: {record.wall_ms:.2f} ms "
        f"Billed Duration: {record.billed_ms} ms Memory Size: {record.memory_mb} MB "
        f"Max Memory Used: {math.ceil(record.max_memory_bytes / (1024 * 1024))} MB "
        f"CPU Time: {record.cpu_ms:.2f} ms"
    )
    if record.init_ms is not None:
        line += f" Init Duration: {record.init_ms:.2f} ms"
    return line


@dataclass(frozen=True)
class PricePlan:
    per_request: float = 0.20 / 1_000_000
    per_gb_second: float = 0.0000166667
    per_cpu_second: float = 0.0
    # Per GiB (2^30 bytes) a sandbox received plus sent.
    per_gb_transfer: float = 0.0


@dataclass
class Totals:
    """Sums over usage records, in integer units."""

    requests: int = 0
    errors: int = 0
    billed_ms: int = 0
    mb_ms: int = 0
    cpu_us: int = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0

    def add(self, record: UsageRecord) -> None:
        self.requests += 1
        self.errors += record.status != "ok"
        billed = record.billed_ms
        self.billed_ms += billed
        self.mb_ms += record.memory_mb * billed
        self.cpu_us += record.cpu_us
        self.net_rx_bytes += record.net_rx_bytes
        self.net_tx_bytes += record.net_tx_bytes

    @classmethod
    def sum(cls, parts: Iterable[Totals]) -> Totals:
        total = cls()
        for part in parts:
            total.requests += part.requests
            total.errors += part.errors
            total.billed_ms += part.billed_ms
            total.mb_ms += part.mb_ms
            total.cpu_us += part.cpu_us
            total.net_rx_bytes += part.net_rx_bytes
            total.net_tx_bytes += part.net_tx_bytes
        return total

    @property
    def gb_seconds(self) -> float:
        return self.mb_ms / MB_MS_PER_GB_SECOND

    @property
    def cpu_seconds(self) -> float:
        return self.cpu_us / 1_000_000

    @property
    def transfer_gb(self) -> float:
        """GiB received plus sent."""
        return (self.net_rx_bytes + self.net_tx_bytes) / BYTES_PER_GB

    def cost(self, plan: PricePlan) -> float:
        return (
            self.requests * plan.per_request
            + self.gb_seconds * plan.per_gb_second
            + self.cpu_seconds * plan.per_cpu_second
            + self.transfer_gb * plan.per_gb_transfer
        )

    def to_json(self, plan: PricePlan) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "billed_ms": self.billed_ms,
            "gb_seconds": self.gb_seconds,
            "cpu_seconds": self.cpu_seconds,
            "net_rx_bytes": self.net_rx_bytes,
            "net_tx_bytes": self.net_tx_bytes,
            "transfer_gb": self.transfer_gb,
            "cost": round(self.cost(plan), 12),
        }


@dataclass
class BillingTotals:
    """Per-function totals since the server started (for /metrics)."""

    by_function: dict[str, Totals] = field(default_factory=dict)

    def add(self, record: UsageRecord) -> None:
        totals = self.by_function.get(record.function)
        if totals is None:  # not setdefault: that would build a Totals for every call
            totals = self.by_function[record.function] = Totals()
        totals.add(record)


TIME_FORMAT_HELP = "ISO 8601 (e.g. 2026-11-26T14:00:00Z) or Unix seconds (e.g. 1795000000)"


def parse_time(name: str, value: str | None) -> float | None:
    """A query-string time as Unix seconds; BadRequest if it is neither
    ISO 8601 nor a number. Naive ISO times are taken as UTC."""
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
        if math.isfinite(seconds):
            return seconds
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise BadRequest(f"{name}={value!r} is not a time: use {TIME_FORMAT_HELP}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
