"""The function registry: configs and code in SQLite under the data
directory, and each version's code materialized on disk for the sandboxes.

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
