"""SandboxFactory: everything it takes to make a sandbox, in one owner.

It holds the cgroup backend, what of the host a sandbox's root binds, the
directory roots are built on, the zygote that forks sandboxes, and the pool
of pre-warmed blanks. An async context manager: set up in order, torn down
in reverse. The invoker (and bench/) ask it for sandboxes and never see
cgroups, binds or the zygote.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any

from . import hostfs
from .cgroups import CgroupBackend, CgroupLimits, detect
from .egress import OutboundSpec
from .errors import SandboxError, SpawnError
from .import_cache import ImportCache, LayerZygote
from .instance import Sandbox
from .network import NetworkConfig, NetworkManager, sandbox_nameservers
from .prewarm import BlankPool
from .spec import LayerImage, SandboxSpec
from .zygote_client import Zygote

log = logging.getLogger("faas.sandbox")


@dataclass(frozen=True)
class FactoryConfig:
    # Where the sandboxes' own runtime is built (DATA_DIR/runtime) and, in
    # run/root, the empty directory each sandbox mounts its private root on
    # (in its own mount namespace, so the host never sees it).
    data_dir: str
    # Blank sandboxes kept ready for cold starts.
    prewarm: int = 4
    # Limits of a blank sandbox until a function sets its own (the function
    # defaults, so most cold starts write no limits at all).
    blank_memory_mb: int = 128
    blank_cpu_cores: float = 1.0
    pids_max: int = 128
    # Leave a short burst at full speed under a small cpu quota.
    cpu_burst_us: int = 50_000
    # Freeze a warm sandbox's cgroup between calls.
    freeze_idle: bool = True
    open_files_max: int = 1024
    # A zygote per layer that has imported it forks the layer's sandboxes
    # (sandbox/import_cache.py), with this memory limit, keeping this many
    # blanks forked ahead.
    import_cache: bool = True
    layer_zygote_memory_mb: int = 1024
    layer_prewarm: int = 2
    # Outbound network (functions with `network: outbound`).
    network: NetworkConfig = NetworkConfig()


class SandboxFactory:
    def __init__(self, config: FactoryConfig) -> None:
        self.config = config
        self.cgroups: CgroupBackend | None = None
        self.zygote: Zygote | None = None
        self.blanks: BlankPool | None = None
        self.import_cache: ImportCache | None = None
        # Blanks with a veth, kept from the first function with outbound network on.
        self.outbound_blanks: BlankPool | None = None
        self.network: NetworkManager | None = None
        self._template: SandboxSpec | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> SandboxFactory:
        try:
            root_dir = os.path.join(self.config.data_dir, "run", "root")
            os.makedirs(root_dir, mode=0o755, exist_ok=True)
            # Empty on the host: the zygote mounts the runtime's template on
            # it in its own mount namespace.
            template_dir = os.path.join(self.config.data_dir, "run", "template")
            os.makedirs(template_dir, mode=0o700, exist_ok=True)
            self.cgroups = detect()
            self._stack.callback(self.cgroups.close)
            stale = self.remove_stale()
            if stale:
                log.warning("removed %d cgroups left behind by a dead server", stale)
            # Before the zygote: torn down after it, once every sandbox is dead.
            self.network = await self._stack.enter_async_context(
                NetworkManager(self.config.network, self.config.data_dir)
            )
            plan = await asyncio.to_thread(hostfs.sandbox_root_plan, self.config.data_dir)
            self._template = SandboxSpec(
                sandbox_id="",
                runtime_binds=plan.binds,
                runtime_template_dir=template_dir,
                symlinks=plan.symlinks,
                python_path=plan.python_path,
                masked_files=plan.masked_files,
                new_root_dir=root_dir,
            )
            self.zygote = await self._stack.enter_async_context(
                Zygote(
                    plan.python_path,
                    plan.path_map,
                    prefix=plan.prefix,
                    executable=plan.executable,
                    runtime_template=(template_dir, plan.binds),
                )
            )
            self.blanks = await self._stack.enter_async_context(BlankPool(self.config.prewarm, self.blank))
            if self.config.import_cache:
                self.import_cache = ImportCache(
                    self.blank,
                    self.limits(self.config.layer_zygote_memory_mb, self.config.blank_cpu_cores),
                    self.limits(self.config.blank_memory_mb, self.config.blank_cpu_cores),
                    self.config.layer_prewarm,
                    self.config.open_files_max,
                )
                self._stack.push_async_callback(self.import_cache.aclose)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    def remove_stale(self) -> int:
        """Remove the cgroups a dead server left behind; how many."""
        assert self.cgroups is not None
        return self.cgroups.remove_stale()

    def limits(self, memory_mb: int, cpu_cores: float) -> CgroupLimits:
        return CgroupLimits(
            memory_mb=memory_mb,
            cpu_cores=cpu_cores,
            pids_max=self.config.pids_max,
            cpu_burst_us=self.config.cpu_burst_us,
        )

    @property
    def prewarmed(self) -> int:
        return sum(len(pool.ready) for pool in (self.blanks, self.outbound_blanks) if pool is not None)

    async def prepare_network(self) -> None:
        """Outbound network from now on: the host made ready, blanks with a
        veth pre-warmed. NetworkUnavailable (one line why) where it cannot be."""
        assert self.network is not None
        await self.network.activate()
        if self.outbound_blanks is None:
            # Set before entering it: a second caller meanwhile must not make another.
            self.outbound_blanks = BlankPool(self.config.prewarm, self.outbound_blank)
            await self._stack.enter_async_context(self.outbound_blanks)

    async def outbound_blank(self, limits: CgroupLimits | None = None, timeout_s: float = 30.0) -> Sandbox:
        """A new blank sandbox with a veth: eth0 addressed and routed, its
        resolvers in /etc/resolv.conf."""
        assert self.network is not None
        attachment = self.network.reserve()
        try:
            resolvers = sandbox_nameservers(self.network.nameservers, attachment.gateway)
            sandbox = await self.blank(limits, timeout_s, nameservers=resolvers)
        except BaseException:
            await attachment.release()
            raise
        sandbox.network = attachment
        try:
            await self.network.attach(attachment, sandbox.pid)
        except BaseException as exc:
            await sandbox.destroy()
            if isinstance(exc, Exception):
                raise SpawnError(f"could not give the sandbox its network: {exc}") from None
            raise
        return sandbox

    async def blank(
        self,
        limits: CgroupLimits | None = None,
        timeout_s: float = 30.0,
        zygote: LayerZygote | None = None,
        nameservers: tuple[str, ...] = (),
    ) -> Sandbox:
        """A new blank sandbox: its cgroup, then the fork into new namespaces
        (by the main zygote, or by a layer's); `nameservers` for one with
        outbound network. Raises SpawnError (also for a cgroup that cannot be
        made), SetupError, SandboxDied or CallTimedOut."""
        assert self.cgroups is not None and self.zygote is not None and self._template is not None
        limits = limits or self.limits(self.config.blank_memory_mb, self.config.blank_cpu_cores)
        sandbox_id = uuid.uuid4().hex[:16]
        try:
            cgroup = self.cgroups.create(f"sb-{sandbox_id}", limits)
        except OSError as exc:
            raise SpawnError(f"could not create a sandbox: {exc}") from None
        spec = SandboxSpec(
            sandbox_id=sandbox_id,
            runtime_binds=self._template.runtime_binds,
            runtime_template_dir=self._template.runtime_template_dir,
            symlinks=self._template.symlinks,
            python_path=self._template.python_path,
            masked_files=self._template.masked_files,
            new_root_dir=self._template.new_root_dir,
            cgroup_procs_files=cgroup.procs_files,
            thaw_command=cgroup.thaw_command or (),
            nameservers=nameservers,
        )
        sandbox = Sandbox(spec, cgroup, limits, self.config.freeze_idle)
        await sandbox.spawn(zygote or self.zygote, timeout_s)  # type: ignore[arg-type]
        return sandbox

    async def take(
        self,
        limits: CgroupLimits,
        timeout_s: float,
        layer: LayerImage | None = None,
        network: OutboundSpec | None = None,
    ) -> tuple[Sandbox, bool]:
        """A blank with `limits`, and whether it was pre-warmed: forked from
        its layer's zygote if it has one, else a pre-warmed blank if one is
        ready, else a new one. With `network`, a blank with outbound network
        under that policy, never from the import cache (the sandbox imports
        its layer itself)."""
        if network is not None:
            return await self._take_outbound(limits, timeout_s, network)
        if layer is not None and self.import_cache is not None:
            try:
                forked = await self.import_cache.sandbox(layer, limits, timeout_s)
            except SandboxError as exc:
                # This cold start is served all the same, importing the layer itself.
                log.warning("the zygote of layer %s could not fork a sandbox: %s", layer.layer_dir, exc)
                forked = None
            if forked is not None:
                return forked, False
        sandbox = await self.blanks.take(limits) if self.blanks is not None else None
        if sandbox is not None:
            return sandbox, True
        return await self.blank(limits, timeout_s), False

    def load_layer(self, layer: LayerImage) -> None:
        """Start the layer's import cache now, in the background, so the first
        cold start finds it ready."""
        if self.import_cache is not None:
            self.import_cache.load(layer)

    async def unload_layer(self, layer_dir: str) -> None:
        """No function will use the layer again: stop its import cache."""
        if self.import_cache is not None:
            await self.import_cache.unload(layer_dir)

    def layer_status(self, layer_dir: str) -> dict[str, Any]:
        if self.import_cache is None:
            return {"state": "off"}
        return self.import_cache.status(layer_dir)

    async def _take_outbound(
        self, limits: CgroupLimits, timeout_s: float, network: OutboundSpec
    ) -> tuple[Sandbox, bool]:
        """A blank with a veth, under the function's egress policy."""
        await self.prepare_network()
        assert self.network is not None and self.outbound_blanks is not None
        sandbox = await self.outbound_blanks.take(limits)
        prewarmed = sandbox is not None
        if sandbox is None:
            sandbox = await self.outbound_blank(limits, timeout_s)
        assert sandbox.network is not None
        try:
            await self.network.apply(sandbox.network, network)
        except BaseException as exc:
            await sandbox.destroy()
            if isinstance(exc, Exception):
                raise SpawnError(f"could not apply the function's network policy: {exc}") from None
            raise
        return sandbox, prewarmed
