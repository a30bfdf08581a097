"""PostgreSQL for a cluster: connections with deadlines, the schema's
versioned migrations (invoker/migrations/NNN_*.sql, applied in order, each
once, recorded in schema_version) and the usage table's daily partitions.

Every server of a cluster runs `migrate` at start; an advisory lock makes
them take turns, so two starting at once apply each migration once.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
# Any 64-bit number no other user of the database takes: "faas" in ASCII.
MIGRATION_LOCK = 0x66616173
PARTITION_LOCK = MIGRATION_LOCK + 1
CONNECT_TIMEOUT_S = 5
# A statement that takes longer is cancelled: no call waits on the database forever.
STATEMENT_TIMEOUT_MS = 10_000
PARTITION_DAYS_AHEAD = 7


def connect(url: str, synchronous_commit: str = "on", autocommit: bool = False) -> psycopg.Connection:
    """A connection whose connect and every statement have a deadline."""
    return psycopg.connect(
        url,
        connect_timeout=CONNECT_TIMEOUT_S,
        autocommit=autocommit,
        options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c synchronous_commit={synchronous_commit}",
        application_name=f"faas-{os.getpid()}",
    )


class SharedConnection:
    """One connection used from worker threads one transaction at a time,
    made on first use and made again once after the server dropped it (a
    restart): no retry loop, the statement's own error otherwise."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.Lock()
        self._db: psycopg.Connection | None = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        with self._lock:
            if self._db is None or self._db.closed or self._db.broken:
                self._db = connect(self._url)
            with self._db.transaction():
                yield self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()


def migrations() -> list[tuple[int, Path]]:
    """The repository's migrations, by number; a gap or a duplicate is a bug."""
    found = []
    for path in MIGRATIONS.iterdir():
        match = MIGRATION_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    found.sort()
    numbers = [n for n, _ in found]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RuntimeError(f"migrations must be numbered 001, 002, ... without gaps: {numbers}")
    return found


def migrate(url: str) -> int:
    """Apply every migration the database lacks, in order, each in its own
    transaction with its schema_version row; the schema's version now."""
    with connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
            current = row[0] if row else 0
            for number, path in migrations():
                if number <= current:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())  # type: ignore[arg-type]  # our own files, no parameters
                    conn.execute(
                        "INSERT INTO schema_version (version, name) VALUES (%s, %s)", (number, path.name)
                    )
                current = number
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    ensure_partitions(url, datetime.now(UTC))
    return current


def partition_name(day: datetime) -> str:
    return f"usage_{day:%Y%m%d}"


def ensure_partitions(url: str, now: datetime, days_ahead: int = PARTITION_DAYS_AHEAD) -> list[str]:
    """The usage partitions of today and the next `days_ahead` days; the
    names of those it created."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    created = []
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (PARTITION_LOCK,))
        try:
            for i in range(days_ahead + 1):
                day = today + timedelta(days=i)
                name = partition_name(day)
                exists = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
                if exists and exists[0] is not None:
                    continue
                # DDL takes no parameters: the bounds are quoted as literals.
                conn.execute(
                    sql.SQL("CREATE TABLE {} PARTITION OF usage FOR VALUES FROM ({}) TO ({})").format(
                        sql.Identifier(name), sql.Literal(day), sql.Literal(day + timedelta(days=1))
                    )
                )
                created.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (PARTITION_LOCK,))
    return created
