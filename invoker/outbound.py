"""Outbound network as the invoker sees it: a function with `network:
outbound` is deployed only where the host can give it one (else a 400
saying why), and a start that loads such functions prepares the host before
their first call."""

from __future__ import annotations

import asyncio
import logging

from sandbox.api import NetworkUnavailable, SandboxFactory

from .catalog import Catalog
from .errors import BadRequest
from .model import FunctionConfig
from .registry import Registry

log = logging.getLogger("faas.invoker")


class NetworkAdmission:
    def __init__(self, factory: SandboxFactory) -> None:
        self.factory = factory

    async def __call__(self, config: FunctionConfig) -> None:
        """Catalog.put's admission: BadRequest with the host's reason."""
        if config.network != "outbound":
            return
        try:
            await self.factory.prepare_network()
        except NetworkUnavailable as exc:
            raise BadRequest(exc.message) from None

    async def load(self, catalog: Catalog, registry: Registry) -> None:
        """The catalog loaded at start; for functions with outbound network the
        host prepared now, or where it cannot be, said once (their calls
        answer 503 with the reason)."""
        await asyncio.to_thread(catalog.load, registry)
        if not any(state.outbound is not None for state in catalog.states()):
            return
        try:
            await self.factory.prepare_network()
        except NetworkUnavailable as exc:
            log.error("functions with outbound network cannot start: %s", exc.message)

    async def prepare(self, name: str) -> None:
        """A version deployed on another server (invoker/cluster_sync.py): the
        host prepared now; where it cannot be, said (its calls answer 503)."""
        try:
            await self.factory.prepare_network()
        except NetworkUnavailable as exc:
            log.error("function %r with outbound network cannot start here: %s", name, exc.message)
