"""A deployed function as the invoker holds it: its config, its code on
disk, its layer, its pool of leases, and the spec a sandbox of it is
specialized with."""

from __future__ import annotations

from sandbox.spec import FunctionSpec, LayerImage, UidMapping

from .layers import Layer
from .lease import Lease
from .model import FunctionConfig
from .pool import Pool

# What a new sandbox is assumed to hold before its first call is measured.
NEW_SANDBOX_ESTIMATE_BYTES = 8 * 1024 * 1024


class FunctionState:
    def __init__(self, config: FunctionConfig, code_dir: str, layer: Layer | None = None) -> None:
        self.config = config
        self.code_dir = code_dir
        self.layer = layer
        self.pool: Pool[Lease] = Pool(config.max_instances, config.max_queue)
        # Peak memory of this function's last call: what a new sandbox of it will need.
        self.memory_estimate = NEW_SANDBOX_ESTIMATE_BYTES
        self.generation = 0
        self.deleted = False

    @property
    def name(self) -> str:
        return self.config.name

    def update(self, config: FunctionConfig, code_dir: str, layer: Layer | None = None) -> None:
        """A redeploy: sandboxes of the previous generation are retired as
        they come back; a higher concurrency limit lets waiters in at once."""
        self.config = config
        self.code_dir = code_dir
        self.layer = layer
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
            layer_dir=self.layer.path if self.layer is not None else "",
        )

    def layer_image(self, uids: UidMapping) -> LayerImage | None:
        """The layer as the sandbox factory's import cache takes it."""
        if self.layer is None:
            return None
        return LayerImage(self.layer.path, self.layer.imports, uids)
