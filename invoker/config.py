"""The invoker's settings. The server's config file and flags carry them
(gateway/config.py's ServerConfig extends this class); each is documented here only."""

from __future__ import annotations

from dataclasses import dataclass

from .validate import DEFAULT_CODE_LIMIT_BYTES


@dataclass(frozen=True)
class InvokerConfig:
    # State: the SQLite registry, code, logs and the usage ledger.
    data_dir: str
    # Seconds an idle warm sandbox is kept before it is retired.
    keepalive_s: float = 600.0
    # Processes (and threads) one sandbox may hold: bounds fork bombs.
    pids_max: int = 128
    open_files_max: int = 1024
    # Size of a function's code, decoded, in bytes.
    code_limit_bytes: int = DEFAULT_CODE_LIMIT_BYTES
    # Functions deployed at once, and the size of all their code together.
    max_functions: int = 1000
    max_code_bytes_total: int = 2 * 1024 * 1024 * 1024
    # Leave a short burst at full speed under a small cpu quota: without it a
    # 20% quota stretches a 50 ms burst to about 140 ms of wall time.
    cpu_burst_us: int = 50_000
    # Usage records in the durable ledger (off only to measure what it costs).
    metering: bool = True
    # "full": a usage record is fsynced before the response leaves (survives
    # power loss); "normal": it is in the OS before the response leaves
    # (survives a killed server, not a lost host).
    ledger_sync: str = "normal"
    # Blank sandboxes kept ready, so cold starts skip fork, unshare and cgroup attach.
    prewarm: int = 4
    # Memory limit of a blank sandbox until a function sets its own (the
    # function default, so most cold starts write no limits at all).
    blank_memory_mb: int = 128
    # Freeze a warm sandbox between calls (cgroup freezer), as Lambda freezes
    # its environments: what a call left running neither runs, uses CPU nor
    # grows until the next call. Off only to measure what freezing costs.
    freeze_idle: bool = True
    # Memory all warm sandboxes together may hold (their measured peaks);
    # past it the least recently used idle ones are evicted. 0: 75% of RAM.
    warm_memory_budget_mb: int = 0
    # Outbound network (functions deployed with network: outbound): the IPv4
    # subnet sandbox addresses come from (each server on a host takes a
    # block of it), whether public addresses are reachable unless a
    # function's allow list says so ("allow") or only as it says ("deny"),
    # the resolvers sandboxes get (empty: the host's, /etc/resolv.conf), and
    # what holds the egress policy: "auto" (nftables, else iptables),
    # "nftables" or "iptables".
    sandbox_subnet: str = "100.72.0.0/16"
    egress_default: str = "allow"
    nameservers: tuple[str, ...] = ()
    firewall: str = "auto"
