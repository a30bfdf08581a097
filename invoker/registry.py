"""The function registry: configs and code in SQLite under the data
directory, and each version's code materialized on disk for the sandboxes.

Behind the `Registry` interface so a cluster can put a shared database there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import threading
from abc import ABC, abstractmethod

import msgpack

from .model import FunctionConfig


class Registry(ABC):
    @abstractmethod
    def load_all(self) -> list[FunctionConfig]: ...

    @abstractmethod
    def files(self, name: str) -> dict[str, bytes]: ...

    @abstractmethod
    def put(self, config: FunctionConfig, files: dict[str, bytes]) -> FunctionConfig:
        """Store a new version; returns the config with its version and created_at set."""

    @abstractmethod
    def delete(self, name: str) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...


class SqliteRegistry(Registry):
    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS functions ("
            " name TEXT PRIMARY KEY, version INTEGER NOT NULL, config TEXT NOT NULL, files BLOB NOT NULL)"
        )

    def load_all(self) -> list[FunctionConfig]:
        with self._lock:
            rows = self._db.execute("SELECT config FROM functions ORDER BY name").fetchall()
        return [_config_from_json(row[0]) for row in rows]

    def files(self, name: str) -> dict[str, bytes]:
        with self._lock:
            row = self._db.execute("SELECT files FROM functions WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise KeyError(name)
        return msgpack.unpackb(row[0])

    def put(self, config: FunctionConfig, files: dict[str, bytes]) -> FunctionConfig:
        blob = msgpack.packb(files, use_bin_type=True)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT config FROM functions WHERE name = ?", (config.name,)
                ).fetchone()
                if row is not None:
                    old = _config_from_json(row[0])
                    config = dataclasses.replace(config, version=old.version + 1, created_at=old.created_at)
                else:
                    config = dataclasses.replace(config, version=1)
                self._db.execute(
                    "INSERT OR REPLACE INTO functions (name, version, config, files) VALUES (?, ?, ?, ?)",
                    (config.name, config.version, json.dumps(dataclasses.asdict(config)), blob),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return config

    def delete(self, name: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM functions WHERE name = ?", (name,))
        return cur.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _config_from_json(text: str) -> FunctionConfig:
    data = json.loads(text)
    data["env"] = tuple(tuple(kv) for kv in data["env"])
    data["files"] = tuple(data["files"])
    return FunctionConfig(**data)


class CodeStore:
    """Each function version's files under <root>/<name>/v<version>/, read-only
    to sandboxes (bound at /var/task)."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, mode=0o755, exist_ok=True)

    def path(self, name: str, version: int) -> str:
        return os.path.join(self.root, name, f"v{version}")

    def write(self, name: str, version: int, files: dict[str, bytes]) -> str:
        final = self.path(name, version)
        if os.path.isdir(final):
            return final
        staging = final + ".tmp"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging, mode=0o755)
        for rel, data in files.items():
            dest = os.path.join(staging, rel)
            os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
            with open(dest, "wb") as f:
                f.write(data)
            os.chmod(dest, 0o644)
        os.chmod(staging, 0o755)
        os.rename(staging, final)
        return final

    def prune(self, name: str, keep: set[int]) -> None:
        """Remove versions of `name` not in `keep` (all of them if keep is empty)."""
        base = os.path.join(self.root, name)
        if not os.path.isdir(base):
            return
        for entry in os.listdir(base):
            if not (entry.startswith("v") and entry[1:].isdigit() and int(entry[1:]) in keep):
                shutil.rmtree(os.path.join(base, entry), ignore_errors=True)
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
