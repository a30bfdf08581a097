"""Secrets in PostgreSQL, shared by every server of a cluster: the same
SecretStore as the file backend (invoker/secrets.py), the same stored bytes
(a Fernet token when secrets_key_file is set: every server of the cluster
must then have the same key file; the value as is otherwise), the same
limits. The table is made by invoker/migrations/004_secrets_and_layers.sql.

Every change NOTIFYs `faas_secrets` with the secret's name in its own
transaction; each server LISTENs (invoker/pg_listen.py) and re-reads that
row (`refresh`), so its view is current within milliseconds of the commit.
"""

from __future__ import annotations

import asyncio
import time

from .errors import BadRequest
from .model import SecretInfo
from .pg_schema import SharedConnection
from .secrets import MAX_SECRETS, SecretStore

CHANNEL = "faas_secrets"
# Any 64-bit number no other user of the database takes: "faassecr" in ASCII.
SECRETS_LOCK = 0x6661617373656372
COLUMNS = "name, size_bytes, created_at, updated_at, encrypted, data"


class PostgresSecretStore(SecretStore):
    def __init__(self, url: str, key_file: str | None = None) -> None:
        super().__init__(key_file)
        self._connection = SharedConnection(url)

    def load(self) -> None:
        """Read every secret (the schema is migrated by the registry, opened
        first); encrypt those stored in the clear when a key is set.
        StartupError if one cannot be read with the key given."""
        self._load_key()
        with self._connection.transaction() as db:
            rows = db.execute(f"SELECT {COLUMNS} FROM secrets ORDER BY name").fetchall()
        for row in rows:
            info, stored = _from_row(row)
            self._check_readable(info, stored)
            self._stored[info.name] = (info, stored)
            if not info.encrypted and self._fernet is not None:
                self._store(info.name, stored, allow_new=False)

    async def refresh(self, name: str | None) -> None:
        """Another server changed secret `name` (None: any, after a lost
        connection): read it again. The view changes on the event loop, where
        it is read."""
        current = await asyncio.to_thread(self._read, name)
        for gone in [n for n in self._stored if (name is None or n == name) and n not in current]:
            del self._stored[gone]
        self._stored.update(current)

    def _read(self, name: str | None) -> dict[str, tuple[SecretInfo, bytes]]:
        with self._connection.transaction() as db:
            if name is None:
                rows = db.execute(f"SELECT {COLUMNS} FROM secrets").fetchall()
            else:
                rows = db.execute(f"SELECT {COLUMNS} FROM secrets WHERE name = %s", (name,)).fetchall()
        return {info.name: (info, stored) for info, stored in map(_from_row, rows)}

    def put(self, name: str, value: bytes) -> tuple[SecretInfo, bool]:
        return self._store(name, value, allow_new=True)

    def _store(self, name: str, value: bytes, allow_new: bool) -> tuple[SecretInfo, bool]:
        stored = self._seal(value)
        now = time.time()
        with self._connection.transaction() as db:
            # Writers of the whole cluster take turns, so MAX_SECRETS holds for the table.
            db.execute("SELECT pg_advisory_xact_lock(%s)", (SECRETS_LOCK,))
            if (
                self._fernet is None
                and db.execute("SELECT 1 FROM secrets WHERE encrypted LIMIT 1").fetchone()
            ):
                # A server without the key would leave a value in the clear among encrypted ones.
                raise BadRequest(
                    "the cluster's secrets are encrypted and this server has no secrets_key_file:"
                    " give it the cluster's key file, or write secrets through a server that has it"
                )
            row = db.execute("SELECT created_at FROM secrets WHERE name = %s", (name,)).fetchone()
            if row is None:
                if not allow_new:
                    return self.info(name), False  # deleted by another server meanwhile
                (count,) = db.execute("SELECT count(*) FROM secrets").fetchone() or (0,)
                if count >= MAX_SECRETS:
                    raise BadRequest(f"too many secrets: at most {MAX_SECRETS}")
            created_at = row[0] if row is not None else now
            info = SecretInfo(name, len(value), created_at, now, self._fernet is not None)
            db.execute(
                f"INSERT INTO secrets ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE"
                " SET size_bytes = EXCLUDED.size_bytes, updated_at = EXCLUDED.updated_at,"
                " encrypted = EXCLUDED.encrypted, data = EXCLUDED.data",
                (name, info.size_bytes, created_at, now, info.encrypted, stored),
            )
            db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, name))
        self._stored[name] = (info, stored)
        return info, row is None

    def delete(self, name: str) -> None:
        self.info(name)  # NotFound
        with self._connection.transaction() as db:
            db.execute("DELETE FROM secrets WHERE name = %s", (name,))
            db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, name))
        self._stored.pop(name, None)

    def close(self) -> None:
        self._connection.close()


def _from_row(row: tuple[str, int, float, float, bool, bytes]) -> tuple[SecretInfo, bytes]:
    name, size, created_at, updated_at, encrypted, data = row
    return SecretInfo(name, size, created_at, updated_at, encrypted), bytes(data)
