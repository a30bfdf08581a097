"""The usage ledger in PostgreSQL, shared by a cluster's invokers: records
appended by group commit (everything queued while the previous batch was
being written goes in one COPY, one transaction), durable before the call
is answered (synchronous_commit on by default: `pg_synchronous_commit`).
The table is partitioned by day of started_at (invoker/migrations/); the
partitions of the coming days are created ahead, at start and daily.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from .ledger import GroupCommit, Ledger, LedgerError, record_from_row
from .metering import Totals, UsageRecord
from .pg_schema import connect, ensure_partitions, migrate

COLUMNS = (
    "call_id",
    "function",
    "version",
    "started_at",
    "wall_ms",
    "init_ms",
    "billed_ms",
    "cpu_us",
    "memory_mb",
    "max_memory_bytes",
    "status",
    "cold",
    "attempt",
    "net_rx_bytes",
    "net_tx_bytes",
)
COPY_SQL = f"COPY usage ({', '.join(COLUMNS)}) FROM STDIN"
PARTITIONS_EVERY_S = 6 * 3600.0


def _row(record: UsageRecord) -> tuple[Any, ...]:
    return (
        record.call_id,
        record.function,
        record.version,
        datetime.fromtimestamp(record.started_at, UTC),
        record.wall_ms,
        record.init_ms,
        record.billed_ms,
        record.cpu_us,
        record.memory_mb,
        record.max_memory_bytes,
        record.status,
        record.cold,
        record.attempt,
        record.net_rx_bytes,
        record.net_tx_bytes,
    )


def _where(since: float | None, until: float | None, function: str | None) -> tuple[str, list[Any]]:
    clauses, args = [], []
    if since is not None:
        clauses.append("started_at >= %s")
        args.append(datetime.fromtimestamp(since, UTC))
    if until is not None:
        clauses.append("started_at < %s")
        args.append(datetime.fromtimestamp(until, UTC))
    if function is not None:
        clauses.append("function = %s")
        args.append(function)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


class PostgresLedger(Ledger):
    def __init__(self, url: str, synchronous_commit: str = "on") -> None:
        migrate(url)
        self._url = url
        self._closed = False
        self.commits = 0  # transactions written, for the benchmark's batching figure
        # One writer thread and its connection: a commit waits for the WAL
        # flush (and a standby, if synchronous_commit says so) off the event loop.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-ledger-writer")
        self._group = GroupCommit(self._write, self._writer)
        self._db = connect(url, synchronous_commit=synchronous_commit)
        self._reader = connect(url, autocommit=True)
        self._reader_lock = threading.Lock()
        self._partitions_task: asyncio.Task[None] | None = None

    async def append(self, record: UsageRecord) -> None:
        if self._closed:
            raise LedgerError("ledger is closed")
        if self._partitions_task is None:
            self._partitions_task = asyncio.get_running_loop().create_task(self._partitions())
        await self._group.add(_row(record))

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        if self._db.closed or self._db.broken:  # the server restarted: reconnect once
            self._db = connect(self._url)
        with self._db.transaction(), self._db.cursor() as cur, cur.copy(COPY_SQL) as copy:
            for row in rows:
                copy.write_row(row)
        self.commits += 1

    async def _partitions(self) -> None:
        """Keep a week of partitions ahead of today, off the event loop."""
        while not self._closed:
            await asyncio.sleep(PARTITIONS_EVERY_S)
            with contextlib.suppress(
                Exception
            ):  # the next round tries again; the default partition holds meanwhile
                await asyncio.to_thread(ensure_partitions, self._url, datetime.now(UTC))

    def totals(self, since: float | None, until: float | None, function: str | None) -> dict[str, Totals]:
        where, args = _where(since, until, function)
        query = (
            "SELECT function, COUNT(*), COUNT(*) FILTER (WHERE status <> 'ok'), SUM(billed_ms),"
            f" SUM(memory_mb::bigint * billed_ms), SUM(cpu_us), SUM(net_rx_bytes), SUM(net_tx_bytes)"
            f" FROM usage{where}"
            " GROUP BY function ORDER BY function"
        )
        with self._reader_lock:
            rows = self._reader.execute(query, args).fetchall()  # type: ignore[arg-type]
        return {row[0]: Totals(*(int(v) for v in row[1:])) for row in rows}

    def records(
        self, since: float | None, until: float | None, function: str | None, after: int, limit: int
    ) -> list[tuple[int, UsageRecord]]:
        where, args = _where(since, until, function)
        where = (where + " AND" if where else " WHERE") + " seq > %s"
        query = f"SELECT seq, {', '.join(COLUMNS)} FROM usage{where} ORDER BY seq LIMIT %s"
        with self._reader_lock:
            rows = self._reader.execute(query, [*args, after, limit]).fetchall()  # type: ignore[arg-type]
        return [(row[0], record_from_row(row[1:], row[4].timestamp())) for row in rows]

    async def aclose(self) -> None:
        """Flush what is queued, then stop the writer."""
        await self._group.drained()
        self._closed = True
        if self._partitions_task is not None:
            self._partitions_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._partitions_task
        self.close()

    def close(self) -> None:
        self._closed = True
        self._writer.shutdown(wait=True)
        self._db.close()
        with self._reader_lock:
            self._reader.close()
