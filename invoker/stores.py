"""Where the registry and the usage ledger live: SQLite under the data
directory, or PostgreSQL shared by a cluster (`database`)."""

from __future__ import annotations

import os

from .config import InvokerConfig
from .ledger import Ledger, SqliteLedger
from .registry import Registry, SqliteRegistry


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
