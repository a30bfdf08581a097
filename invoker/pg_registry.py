"""The Registry in PostgreSQL, shared by every server of a cluster: the
same versions and aliases as SqliteRegistry (invoker/registry.py), tables
made by invoker/migrations/.

Every change NOTIFYs the channel `faas_registry` with the function's name
in its own transaction, so other servers hear of it once it is committed
(invoker/pg_listen.py) and reload that function.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections.abc import Iterator

import msgpack
import psycopg

from .model import Alias, FunctionConfig
from .pg_schema import connect, migrate
from .registry import LayerGone, Registry, _config_from_json

CHANNEL = "faas_registry"


class PostgresRegistry(Registry):
    shared = True

    def __init__(self, url: str) -> None:
        migrate(url)
        self._url = url
        self._lock = threading.Lock()
        self._db = connect(url)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection]:
        with self._lock:
            if (
                self._db.closed or self._db.broken
            ):  # the server restarted: one new connection, not a retry loop
                self._db = connect(self._url)
            with self._db.transaction():
                yield self._db

    def load_all(self) -> list[FunctionConfig]:
        with self._transaction() as db:
            rows = db.execute("SELECT config::text FROM versions ORDER BY name, version").fetchall()
        return [_config_from_json(row[0]) for row in rows]

    def load_function(self, name: str) -> tuple[list[FunctionConfig], list[Alias]]:
        """One function's versions and aliases, as another server left them."""
        with self._transaction() as db:
            configs = db.execute(
                "SELECT config::text FROM versions WHERE name = %s ORDER BY version", (name,)
            ).fetchall()
            aliases = db.execute(
                "SELECT alias, version, canary, weight FROM aliases WHERE name = %s ORDER BY alias", (name,)
            ).fetchall()
        return [_config_from_json(row[0]) for row in configs], [Alias(*row) for row in aliases]

    def load_aliases(self) -> list[tuple[str, Alias]]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT name, alias, version, canary, weight FROM aliases ORDER BY name, alias"
            ).fetchall()
        return [
            (name, Alias(alias, version, canary, weight)) for name, alias, version, canary, weight in rows
        ]

    def files(self, name: str, version: int) -> dict[str, bytes]:
        with self._transaction() as db:
            row = db.execute(
                "SELECT files FROM versions WHERE name = %s AND version = %s", (name, version)
            ).fetchone()
        if row is None:
            raise KeyError((name, version))
        return msgpack.unpackb(row[0])

    def put(self, config: FunctionConfig, files: dict[str, bytes]) -> tuple[FunctionConfig, bool]:
        blob = msgpack.packb(files, use_bin_type=True)
        with self._transaction() as db:
            # Two servers deploying one name take turns: the second numbers after the first.
            db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (config.name,))
            row = db.execute(
                "SELECT config::text FROM versions WHERE name = %s ORDER BY version DESC LIMIT 1",
                (config.name,),
            ).fetchone()
            if row is not None:
                newest = _config_from_json(row[0])
                if newest.same_deploy(config):
                    return newest, False
                config = dataclasses.replace(config, version=newest.version + 1, created_at=newest.created_at)
            else:
                config = dataclasses.replace(config, version=1)
            if config.layer_id:
                # Under the lock a server removing the layer as unused holds
                # (pg_layers.delete_unused): it is either still stored, and
                # this version keeps it so, or gone, and the deploy stores it again.
                db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("layer:" + config.layer_id,))
                if db.execute("SELECT 1 FROM layers WHERE id = %s", (config.layer_id,)).fetchone() is None:
                    raise LayerGone(config.layer_id)
            db.execute(
                "INSERT INTO versions (name, version, config, files) VALUES (%s, %s, %s, %s)",
                (config.name, config.version, json.dumps(dataclasses.asdict(config)), blob),
            )
            _notify(db, config.name)
        return config, True

    def delete_versions(self, name: str, versions: list[int]) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM versions WHERE name = %s AND version = ANY(%s)", (name, versions))
            _notify(db, name)

    def set_alias(self, name: str, alias: Alias) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO aliases (name, alias, version, canary, weight) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (name, alias) DO UPDATE SET version = EXCLUDED.version,"
                " canary = EXCLUDED.canary, weight = EXCLUDED.weight",
                (name, alias.name, alias.version, alias.canary, alias.weight),
            )
            _notify(db, name)

    def delete_alias(self, name: str, alias: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM aliases WHERE name = %s AND alias = %s", (name, alias))
            _notify(db, name)

    def delete(self, name: str) -> bool:
        with self._transaction() as db:
            cur = db.execute("DELETE FROM versions WHERE name = %s", (name,))
            db.execute("DELETE FROM aliases WHERE name = %s", (name,))
            _notify(db, name)
        return cur.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _notify(db: psycopg.Connection, name: str) -> None:
    db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, name))
