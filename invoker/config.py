"""The invoker's settings. The server's config file and flags carry them
(gateway/config.py's ServerConfig extends this class); each is documented here only."""

from __future__ import annotations

from dataclasses import dataclass, fields

from sandbox.factory import FactoryConfig, NetworkConfig

from .layers import DEFAULT_BUILD_TIMEOUT_S, DEFAULT_LAYER_LIMIT_BYTES
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
    # Versions kept per function besides those an alias points at; older
    # ones (their code and sandboxes) are removed.
    versions_kept: int = 10
    # A file holding a Fernet key (URL-safe base64 of 32 bytes, mode 0600):
    # secrets are then encrypted at rest. None: stored as given (mode 0600).
    secrets_key_file: str | None = None
    # Layers (a function's requirements.txt, invoker/layers.py): the largest
    # one, in bytes, and how long a deploy may spend resolving and building one.
    layer_limit_bytes: int = DEFAULT_LAYER_LIMIT_BYTES
    build_timeout_s: float = DEFAULT_BUILD_TIMEOUT_S
    # The import cache (sandbox/import_cache.py): a zygote per layer that has
    # imported the layer's packages forks its functions' sandboxes, so a cold
    # start does not pay for the imports. Off only to measure what it saves.
    import_cache: bool = True
    # Memory limit of a layer's zygote (the packages it has imported), and the
    # blank sandboxes each layer's zygote keeps forked ahead of cold starts.
    layer_zygote_memory_mb: int = 1024
    layer_prewarm: int = 2

    # -- asynchronous calls (docs/HTTP-API.md, "Asynchronous calls") ----------
    # Calls queued or running at once, all functions together; past it
    # POST /async-function answers 429.
    max_async_queue: int = 100_000
    # How long a finished call and its result are kept (GET /system/async/ID).
    async_result_ttl_s: float = 86400.0
    # A call not done this long after it was queued is dropped as failed,
    # unless its function sets max_event_age_s.
    max_event_age_s: float = 21600.0
    # CIDRs callbacks may reach besides public addresses: the host's own
    # addresses, loopback and private ranges are refused unless listed here;
    # link-local addresses always are.
    callback_allow: tuple[str, ...] = ()
    # One callback delivery's time limit, and how many times a failed one is
    # tried again (after 1, 2, 4 ... s) before it is recorded as failed.
    callback_timeout_s: float = 10.0
    callback_retries: int = 3
    # The region in the ARNs of functions (Lambda's invoked_function_arn, FunctionArn).
    lambda_region: str = "us-east-1"

    # -- outbound network (docs/SANDBOX.md, "Network") ----------------------
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

    # -- cluster (docs/CLUSTER.md) ---------------------------------------
    # A cluster's shared store (postgresql://USER:PASSWORD@HOST:PORT/DB): the
    # registry (versions, code, aliases) and the usage ledger. None: SQLite
    # under data_dir.
    database: str | None = None
    # PostgreSQL's synchronous_commit for usage records: "on" (a record is
    # flushed to the WAL before its answer leaves), "remote_apply",
    # "remote_write", "local" or "off" (faster, loses the last records on a crash).
    pg_synchronous_commit: str = "on"
    # The asynchronous queue of a cluster (nats://HOST:PORT, JetStream on):
    # every invoker takes calls from it and a call whose invoker died runs
    # on another. None: SQLite under data_dir, this server's alone.
    queue: str | None = None
    # Seconds without a sign of life (an in_progress ack, sent every third of
    # it while a call runs) after which JetStream redelivers a call to
    # another invoker: how long a call whose invoker died waits.
    queue_ack_wait_s: float = 30.0

    def factory_config(self) -> FactoryConfig:
        """The sandbox factory's part of these settings (the same names)."""
        return FactoryConfig(
            **{f.name: getattr(self, f.name) for f in fields(FactoryConfig) if hasattr(self, f.name)},
            network=NetworkConfig(self.sandbox_subnet, self.egress_default, self.nameservers, self.firewall),
        )


def default_warm_memory_budget_mb() -> int:
    """warm_memory_budget_mb = 0: 75% of the machine's memory."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 3 // 4 // 1024
    return 4096
