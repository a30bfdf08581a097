"""Where the registry, the usage ledger, the secrets and the layers live:
SQLite and files under the data directory, or PostgreSQL shared by a
cluster (`database`)."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from .config import InvokerConfig
from .layers import LayerStore
from .ledger import Ledger, SqliteLedger
from .registry import Registry, SqliteRegistry
from .secrets import FileSecretStore, SecretStore

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


def open_secrets(config: InvokerConfig) -> SecretStore:
    """Not loaded yet: `load` once the registry has migrated the schema."""
    if config.database:
        from .pg_secrets import PostgresSecretStore

        return PostgresSecretStore(config.database, config.secrets_key_file)
    return FileSecretStore(os.path.join(config.data_dir, "secrets"), config.secrets_key_file)


def share_layers(config: InvokerConfig, layers: LayerStore, stack: AsyncExitStack) -> None:
    """In a cluster, `layers` shared through the database until `stack`
    closes; alone, nothing."""
    if config.database:
        from .pg_layers import PostgresLayerArchive

        archive = PostgresLayerArchive(config.database)
        layers.share(archive)
        stack.callback(archive.close)


async def follow_cluster(invoker: Invoker, secrets: SecretStore, stack: AsyncExitStack) -> None:
    """In a cluster (`database` set), follow the other servers' deploys and
    secrets until `stack` closes (then the secrets' connection closes too);
    alone, nothing."""
    if not invoker.config.database:
        return
    from .cluster_sync import follow
    from .pg_listen import ClusterListener
    from .pg_registry import CHANNEL as REGISTRY_CHANNEL
    from .pg_secrets import CHANNEL as SECRETS_CHANNEL
    from .pg_secrets import PostgresSecretStore

    assert isinstance(secrets, PostgresSecretStore)
    stack.callback(secrets.close)
    listener = ClusterListener(
        invoker.config.database,
        {REGISTRY_CHANNEL: lambda name: follow(invoker, name), SECRETS_CHANNEL: secrets.refresh},
    )
    await stack.enter_async_context(listener)
