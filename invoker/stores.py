"""Where the registry and the usage ledger live: SQLite under the data
directory, or PostgreSQL shared by a cluster (`database`)."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from .config import InvokerConfig
from .ledger import Ledger, SqliteLedger
from .registry import Registry, SqliteRegistry

if TYPE_CHECKING:
    from .invoker import Invoker


def open_registry(config: InvokerConfig) -> Registry:
    if config.database:
        from .pg_registry import PostgresRegistry

        return PostgresRegistry(config.database)
    return SqliteRegistry(os.path.join(config.data_dir, "registry.db"))


def open_ledger(config: InvokerConfig) -> Ledger:
    if config.database:
        from .pg_ledger import PostgresLedger

        return PostgresLedger(config.database, synchronous_commit=config.pg_synchronous_commit)
    return SqliteLedger(os.path.join(config.data_dir, "usage.db"), synchronous=config.ledger_sync.upper())


async def follow_cluster(invoker: Invoker, stack: AsyncExitStack) -> None:
    """In a cluster (`database` set), follow the other servers' deploys until
    `stack` closes; alone, nothing."""
    if not invoker.config.database:
        return
    from .cluster_sync import follow
    from .pg_listen import RegistryListener

    listener = RegistryListener(invoker.config.database, lambda name: follow(invoker, name))
    await stack.enter_async_context(listener)
