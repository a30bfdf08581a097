"""A deployed function as the invoker holds it: its config, its code on
disk, its pool of leases, and the spec a sandbox of it is specialized with."""

from __future__ import annotations

from sandbox.egress import OutboundSpec, parse_allow
from sandbox.spec import FunctionSpec

from .lease import Lease
from .model import FunctionConfig
from .pool import Pool

# What a new sandbox is assumed to hold before its first call is measured.
NEW_SANDBOX_ESTIMATE_BYTES = 8 * 1024 * 1024


class FunctionState:
    def __init__(self, config: FunctionConfig, code_dir: str) -> None:
        self.config = config
        self.code_dir = code_dir
        self.pool: Pool[Lease] = Pool(config.max_instances, config.max_queue)
        # Peak memory of this function's last call: what a new sandbox of it will need.
        self.memory_estimate = NEW_SANDBOX_ESTIMATE_BYTES
        self.generation = 0
        self.deleted = False
        self.outbound = _outbound(config)

    @property
    def name(self) -> str:
        return self.config.name

    def update(self, config: FunctionConfig, code_dir: str) -> None:
        """A redeploy: sandboxes of the previous generation are retired as
        they come back; a higher concurrency limit lets waiters in at once."""
        self.config = config
        self.code_dir = code_dir
        self.outbound = _outbound(config)
        self.generation += 1
        self.pool.resize(config.max_instances, config.max_queue)

    def is_current(self, lease: Lease) -> bool:
        return not self.deleted and lease.generation == self.generation

    def function_spec(self, sandbox_id: str, uid: int, open_files_max: int) -> FunctionSpec:
        config = self.config
        return FunctionSpec(
            function_name=config.name,
            function_version=config.version,
            code_dir=self.code_dir,
            handler_module=config.handler_module,
            entry=config.entry,
            env=config.env,
            memory_mb=config.memory_mb,
            cpu_cores=config.cpu,
            timeout_s=config.timeout_s,
            # /tmp lives in the sandbox's memory, so it can never outgrow it.
            tmp_size_mb=config.memory_mb,
            open_files_max=open_files_max,
            uid=uid,
            gid=uid,
            hostname=f"sandbox-{sandbox_id[:12]}",
        )


def _outbound(config: FunctionConfig) -> OutboundSpec | None:
    """The network policy its sandboxes are taken with (None: loopback only)."""
    if config.network != "outbound":
        return None
    return OutboundSpec(tuple(parse_allow(entry) for entry in config.allow), config.egress_mbit)
