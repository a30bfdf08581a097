"""Bring one function of this invoker's catalog in line with the shared
registry after another server changed it (invoker/pg_listen.py): new
versions are added (their config only: their code and layer are fetched on
their first use here, Catalog.materialize), removed ones retired (waiting
calls fail, idle sandboxes go, code is collected once unused), aliases set
as stored. Reads the registry, never writes it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .errors import NotFound
from .functions import FunctionState
from .outbound import NetworkAdmission
from .pg_registry import PostgresRegistry
from .versions import FunctionVersions

if TYPE_CHECKING:
    from .invoker import Invoker


async def follow(invoker: Invoker, name: str | None) -> None:
    """Apply the stored state of `name` (None: of every function)."""
    registry = invoker.catalog.registry
    assert isinstance(registry, PostgresRegistry)
    if name is None:
        stored = {config.name for config in await asyncio.to_thread(registry.load_all)}
        for each in sorted(stored | set(invoker.catalog.functions)):
            await follow(invoker, each)
        return
    catalog = invoker.catalog
    async with catalog.locked(name):
        configs, aliases = await asyncio.to_thread(registry.load_function, name)
        fn = catalog.functions.get(name)
        if not configs:
            if fn is not None:
                del catalog.functions[name]
                states = fn.all_states()
                fn.drop(states)
                await invoker._retire(states, lambda _s: NotFound(f"function {name!r} was deleted"))
            return
        # A new function is published once it has its versions: a call
        # arriving meanwhile gets "no such function", not an empty one.
        new = fn is None
        if fn is None:
            fn = FunctionVersions(name)
        stored = {config.version: config for config in configs}
        for version, config in sorted(stored.items()):
            if version not in fn.states:
                state = FunctionState(config, "", catalog.layers.get(config.layer_id))
                if state.outbound is not None:  # the host's network, as a deploy here would
                    await NetworkAdmission(invoker.factory).prepare(name)
                fn.add(state)
        gone = [state for version, state in fn.states.items() if version not in stored]
        stored_aliases = {alias.name: alias for alias in aliases}
        for alias_name in list(fn.aliases):
            if alias_name not in stored_aliases:
                fn.remove_alias(alias_name)  # an unpinned `live` follows the newest again
        for alias in aliases:
            if alias.targets <= stored.keys():
                fn.set_alias(alias)
        if new:
            catalog.functions[name] = fn
        fn.drop(gone)
        fn.reroute_waiters()
        await invoker._retire(
            gone, lambda state: NotFound(f"version {state.config.version} of function {name!r} was removed")
        )
