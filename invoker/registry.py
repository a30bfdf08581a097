"""The function registry: every retained version (config and code) and the
aliases in SQLite under the data directory, and each version's code
materialized on disk for the sandboxes.

Behind the `Registry` interface so a cluster can put a shared database there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sqlite3
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator

import msgpack

from .model import Alias, FunctionConfig


class LayerGone(Exception):
    """A shared registry refused a version whose layer is no longer stored
    (removed by another server as unused since this one resolved it)."""


class Registry(ABC):
    """Every retained version of every function (config and code) and the
    aliases pointing at them. Versions are immutable: put adds one, and only
    retention (delete_versions) or a function's deletion removes them."""

    # Shared by the servers of a cluster: a version's code is written to this
    # server's disk on its first use here, not when it is loaded or heard of.
    shared = False

    @abstractmethod
    def load_all(self) -> list[FunctionConfig]:
        """Every stored version, by name then version."""

    @abstractmethod
    def load_aliases(self) -> list[tuple[str, Alias]]:
        """(function, alias) for every stored alias; `live` is stored only while pinned."""

    @abstractmethod
    def files(self, name: str, version: int) -> dict[str, bytes]: ...

    @abstractmethod
    def put(self, config: FunctionConfig, files: dict[str, bytes]) -> tuple[FunctionConfig, bool]:
        """Store a new version, numbered after the newest, unless it is the
        same deploy as the newest; (the version's config, whether it is new)."""

    @abstractmethod
    def delete_versions(self, name: str, versions: list[int]) -> None: ...

    @abstractmethod
    def set_alias(self, name: str, alias: Alias) -> None: ...

    @abstractmethod
    def delete_alias(self, name: str, alias: str) -> None: ...

    @abstractmethod
    def delete(self, name: str) -> bool:
        """Remove the function: every version and alias."""

    @abstractmethod
    def close(self) -> None: ...


class SqliteRegistry(Registry):
    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        with self._transaction():
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS versions (name TEXT NOT NULL, version INTEGER NOT NULL,"
                " config TEXT NOT NULL, files BLOB NOT NULL, PRIMARY KEY (name, version))"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS aliases (name TEXT NOT NULL, alias TEXT NOT NULL,"
                " version INTEGER NOT NULL, canary INTEGER, weight REAL NOT NULL DEFAULT 0,"
                " PRIMARY KEY (name, alias))"
            )
            # A registry from before versions: one row per function, its only version.
            if self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'functions'"
            ).fetchone():
                self._db.execute(
                    "INSERT OR IGNORE INTO versions (name, version, config, files)"
                    " SELECT name, version, config, files FROM functions"
                )
                self._db.execute("DROP TABLE functions")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def load_all(self) -> list[FunctionConfig]:
        with self._lock:
            rows = self._db.execute("SELECT config FROM versions ORDER BY name, version").fetchall()
        return [_config_from_json(row[0]) for row in rows]

    def load_aliases(self) -> list[tuple[str, Alias]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, alias, version, canary, weight FROM aliases ORDER BY name, alias"
            ).fetchall()
        return [
            (name, Alias(alias, version, canary, weight)) for name, alias, version, canary, weight in rows
        ]

    def files(self, name: str, version: int) -> dict[str, bytes]:
        with self._lock:
            row = self._db.execute(
                "SELECT files FROM versions WHERE name = ? AND version = ?", (name, version)
            ).fetchone()
        if row is None:
            raise KeyError((name, version))
        return msgpack.unpackb(row[0])

    def put(self, config: FunctionConfig, files: dict[str, bytes]) -> tuple[FunctionConfig, bool]:
        blob = msgpack.packb(files, use_bin_type=True)
        with self._transaction():
            row = self._db.execute(
                "SELECT config FROM versions WHERE name = ? ORDER BY version DESC LIMIT 1", (config.name,)
            ).fetchone()
            if row is not None:
                newest = _config_from_json(row[0])
                if newest.same_deploy(config):
                    return newest, False
                config = dataclasses.replace(config, version=newest.version + 1, created_at=newest.created_at)
            else:
                config = dataclasses.replace(config, version=1)
            self._db.execute(
                "INSERT INTO versions (name, version, config, files) VALUES (?, ?, ?, ?)",
                (config.name, config.version, json.dumps(dataclasses.asdict(config)), blob),
            )
        return config, True

    def delete_versions(self, name: str, versions: list[int]) -> None:
        with self._transaction():
            self._db.executemany(
                "DELETE FROM versions WHERE name = ? AND version = ?", [(name, v) for v in versions]
            )

    def set_alias(self, name: str, alias: Alias) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO aliases (name, alias, version, canary, weight) VALUES (?, ?, ?, ?, ?)",
                (name, alias.name, alias.version, alias.canary, alias.weight),
            )

    def delete_alias(self, name: str, alias: str) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM aliases WHERE name = ? AND alias = ?", (name, alias))

    def delete(self, name: str) -> bool:
        with self._transaction():
            cur = self._db.execute("DELETE FROM versions WHERE name = ?", (name,))
            self._db.execute("DELETE FROM aliases WHERE name = ?", (name,))
        return cur.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _config_from_json(text: str) -> FunctionConfig:
    data = json.loads(text)
    data["env"] = tuple(tuple(kv) for kv in data["env"])
    data["files"] = tuple(data["files"])
    data["secrets"] = tuple(data.get("secrets", ()))
    data["layer_packages"] = tuple(tuple(p) for p in data.get("layer_packages", ()))
    # Rows stored before outbound network have no allow list.
    data["allow"] = tuple(data.get("allow", ()))
    return FunctionConfig(**data)


class CodeStore:
    """Each deploy's files in a directory of its own, <root>/<name>/<id>/,
    read-only to sandboxes (bound at /var/task). Never shared between two
    deploys, not even two of the same name and version (a function deleted
    and created again), and removed only by whoever owns it."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, mode=0o755, exist_ok=True)

    def write(self, name: str, files: dict[str, bytes]) -> str:
        """A new directory holding `files`; whole, or not there at all."""
        base = os.path.join(self.root, name)
        os.makedirs(base, mode=0o755, exist_ok=True)
        final = os.path.join(base, uuid.uuid4().hex)
        staging = final + ".tmp"
        try:
            os.makedirs(staging, mode=0o755)
            for rel, data in files.items():
                dest = os.path.join(staging, rel)
                os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
                with open(dest, "wb") as f:
                    f.write(data)
                os.chmod(dest, 0o644)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return final

    def remove(self, path: str) -> None:
        """Remove one deploy's directory (and its name's, once empty)."""
        if os.path.dirname(os.path.dirname(path)) != self.root:
            raise ValueError(f"{path} is not a code directory of {self.root}")
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))

    def remove_all_but(self, keep: set[str]) -> None:
        """At start: every directory but `keep` is left over from an earlier run."""
        for name in os.listdir(self.root):
            base = os.path.join(self.root, name)
            for entry in os.listdir(base) if os.path.isdir(base) else []:
                if os.path.join(base, entry) not in keep:
                    shutil.rmtree(os.path.join(base, entry), ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rmdir(base)
