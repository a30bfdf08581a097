"""A deployed version of a function as the invoker holds it: its config, its
code on disk, its layer, its pool of leases, and the spec a sandbox of it
is specialized with."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sandbox.api import FunctionSpec, LayerImage, OutboundSpec, UidMapping, parse_allow

from .errors import CallTimeout
from .lambda_ids import function_arn
from .layers import Layer
from .lease import Lease
from .model import FunctionConfig
from .pool import Pool

# What a new sandbox is assumed to hold before its first call is measured.
NEW_SANDBOX_ESTIMATE_BYTES = 8 * 1024 * 1024


def _park(lease: Lease) -> None:
    lease.sandbox.park()


class FunctionState:
    """One version of a function (invoker/versions.py holds a function's
    versions); immutable like the version, but for its sandboxes."""

    def __init__(self, config: FunctionConfig, code_dir: str, layer: Layer | None = None) -> None:
        self.config = config
        # "" (and no layer) until its first use here, for a version of a
        # shared registry (Catalog.materialize).
        self.code_dir = code_dir
        self.layer = layer
        # A lease gone idle is parked (frozen); one handed straight to a waiting call is not.
        self.pool: Pool[Lease] = Pool(config.max_instances, config.max_queue, _park)
        # Peak memory of this version's last call: what a new sandbox of it will need.
        self.memory_estimate = NEW_SANDBOX_ESTIMATE_BYTES
        # Removed (retention, or the function deleted): its sandboxes retire as they come back.
        self.deleted = False
        # Calls waiting in the pool's queue that came through an alias, and its name:
        # they follow the alias if it moves to another version while they wait.
        self.alias_waiters: dict[asyncio.Future[Any], str] = {}
        # The network policy its sandboxes are taken with (None: loopback only).
        self.outbound = _outbound(config)

    @property
    def name(self) -> str:
        return self.config.name

    async def wait_turn(
        self, waiter: asyncio.Future[Any], deadline: float, alias: str | None, background: bool
    ) -> Any:
        """What the pool's FIFO hands a queued call: a lease or START. At the
        deadline (time.monotonic()) a timer cancels the waiter: one timer, not
        a cancellation scope (a third of the cost, on every queued call)."""
        if alias is not None:
            self.alias_waiters[waiter] = alias
        loop = asyncio.get_running_loop()
        timer = loop.call_at(loop.time() + max(0.0, deadline - time.monotonic()), waiter.cancel)
        try:
            return await waiter
        except asyncio.CancelledError:
            self.pool.abandon(waiter, background)
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # cancelled from outside (the client went away), not the deadline
            raise CallTimeout(
                f"timed out after {self.config.timeout_s:g} s waiting for a free sandbox"
            ) from None
        except BaseException:
            # Failed by whoever took it out of the queue (Rerouted: its alias
            # moved; the server shutting down): it holds nothing.
            if not (waiter.done() and not waiter.cancelled() and waiter.exception() is not None):
                self.pool.abandon(waiter, background)
            raise
        finally:
            timer.cancel()
            self.alias_waiters.pop(waiter, None)

    def function_spec(
        self, sandbox_id: str, uid: int, open_files_max: int, lambda_region: str
    ) -> FunctionSpec:
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
            flavour=config.flavour,
            lambda_arn=function_arn(lambda_region, config.name) if config.flavour == "lambda" else "",
            layer_dir=self.layer.path if self.layer is not None else "",
        )

    def layer_image(self, uids: UidMapping) -> LayerImage | None:
        """The layer as the sandbox factory's import cache takes it."""
        if self.layer is None:
            return None
        return LayerImage(self.layer.path, self.layer.imports, uids)


def _outbound(config: FunctionConfig) -> OutboundSpec | None:
    """The network policy its sandboxes are taken with (None: loopback only)."""
    if config.network != "outbound":
        return None
    return OutboundSpec(tuple(parse_allow(entry) for entry in config.allow), config.egress_mbit)
