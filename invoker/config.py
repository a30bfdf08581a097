"""The invoker's settings (the server's config file and flags carry them)."""

from __future__ import annotations

from dataclasses import dataclass

from .validate import DEFAULT_CODE_LIMIT_BYTES


@dataclass(frozen=True)
class InvokerConfig:
    data_dir: str
    keepalive_s: float = 600.0
    pids_max: int = 128
    open_files_max: int = 1024
    code_limit_bytes: int = DEFAULT_CODE_LIMIT_BYTES
    # Leave a short burst at full speed under a small cpu quota (LINUX-NOTES).
    cpu_burst_us: int = 50_000
    # Usage records in the durable ledger (off only to measure what it costs).
    metering: bool = True
    ledger_sync: str = "normal"
    # Blank sandboxes kept ready for cold starts.
    prewarm: int = 4
    # Memory limit of a blank sandbox until a function sets its own (the
    # function default, so most cold starts write no limits at all).
    blank_memory_mb: int = 128
    # Memory all warm sandboxes together may hold (their measured peaks);
    # past it the least recently used idle ones are evicted. 0: 75% of RAM.
    warm_memory_budget_mb: int = 0
