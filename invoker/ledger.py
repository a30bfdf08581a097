"""The usage ledger: append-only usage records in SQLite (WAL), durable
before a call's response leaves.

Group commit: callers queue records and await; one flusher task hands
everything queued since the last commit to the writer thread as one
transaction with one fsync, so concurrent calls share a commit.
Behind the `Ledger` interface so a cluster can put a shared database there.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .errors import Unavailable
from .metering import Totals, UsageRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    seq INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    function TEXT NOT NULL,
    version INTEGER NOT NULL,
    started_at REAL NOT NULL,
    wall_ms REAL NOT NULL,
    init_ms REAL,
    billed_ms INTEGER NOT NULL,
    cpu_us INTEGER NOT NULL,
    memory_mb INTEGER NOT NULL,
    max_memory_bytes INTEGER NOT NULL,
    status TEXT NOT NULL,
    cold INTEGER NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    net_rx_bytes INTEGER NOT NULL DEFAULT 0,
    net_tx_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS usage_started ON usage (started_at);
"""
# Columns added since the first schema: a ledger made before them gains them
# on open, its old records taking the default.
MIGRATIONS = (
    ("attempt", "ALTER TABLE usage ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1"),
    ("net_rx_bytes", "ALTER TABLE usage ADD COLUMN net_rx_bytes INTEGER NOT NULL DEFAULT 0"),
    ("net_tx_bytes", "ALTER TABLE usage ADD COLUMN net_tx_bytes INTEGER NOT NULL DEFAULT 0"),
)

COLUMNS = (
    "call_id, function, version, started_at, wall_ms, init_ms, billed_ms, cpu_us, memory_mb, "
    "max_memory_bytes, status, cold, attempt, net_rx_bytes, net_tx_bytes"
)


def record_from_row(row: Sequence[Any], started_at: float) -> UsageRecord:
    """A usage record from a ledger row in COLUMNS order, SQLite's or
    PostgreSQL's; `started_at` as Unix seconds (each database stores its own
    kind). billed_ms is stored for queries and derived again here."""
    call_id, fn, version, _started, wall, init, _billed, cpu_us, mem, peak, status, cold, attempt, rx, tx = (
        row
    )
    return UsageRecord(
        call_id,
        fn,
        version,
        started_at,
        wall,
        init,
        cpu_us,
        mem,
        peak,
        status,
        bool(cold),
        attempt=attempt,
        net_rx_bytes=rx,
        net_tx_bytes=tx,
    )


ROW_PLACEHOLDERS = "(" + ",".join("?" * 15) + ")"
# SQLite allows 32766 parameters per statement; 15 per row.
MAX_ROWS_PER_STATEMENT = 2000
CHECKPOINT_EVERY_S = 2.0


class LedgerError(Unavailable):
    """A record could not be made durable: the call is answered 503."""


class Ledger(ABC):
    @abstractmethod
    async def append(self, record: UsageRecord) -> None:
        """Return once the record is durable."""

    @abstractmethod
    def totals(self, since: float | None, until: float | None, function: str | None) -> dict[str, Totals]: ...

    @abstractmethod
    def records(
        self, since: float | None, until: float | None, function: str | None, after: int, limit: int
    ) -> list[tuple[int, UsageRecord]]: ...

    @abstractmethod
    def close(self) -> None: ...

    async def aclose(self) -> None:
        """Write what is queued, then close."""
        self.close()


def _row(record: UsageRecord) -> tuple[Any, ...]:
    return (
        record.call_id,
        record.function,
        record.version,
        record.started_at,
        record.wall_ms,
        record.init_ms,
        record.billed_ms,
        record.cpu_us,
        record.memory_mb,
        record.max_memory_bytes,
        record.status,
        int(record.cold),
        record.attempt,
        record.net_rx_bytes,
        record.net_tx_bytes,
    )


def _where(since: float | None, until: float | None, function: str | None) -> tuple[str, list[Any]]:
    clauses, args = [], []
    if since is not None:
        clauses.append("started_at >= ?")
        args.append(since)
    if until is not None:
        clauses.append("started_at < ?")
        args.append(until)
    if function is not None:
        clauses.append("function = ?")
        args.append(function)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


class GroupCommit:
    """Group commit, shared by the SQLite and PostgreSQL ledgers: rows queued
    while a batch is being written go in the next batch (one transaction
    each), and every appender waits until its row is written.

    `writer`: the thread batches are written in; None: on the event loop
    itself, at the end of the loop iteration in which the rows arrived."""

    def __init__(
        self, write: Callable[[list[tuple[Any, ...]]], None], writer: ThreadPoolExecutor | None
    ) -> None:
        self._write = write
        self._writer = writer
        self._pending: list[tuple[Any, ...]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self.flushing = False

    async def add(self, row: tuple[Any, ...]) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append(row)
        self._waiters.append(fut)
        if not self.flushing:
            self.flushing = True
            if self._writer is None:
                loop.call_soon(self._flush_inline)
            else:
                loop.create_task(self._flush())
        # A caller cancelled here (client gone) cancels only its wait: the
        # row is already queued, so the call is still billed.
        await fut

    async def drained(self) -> None:
        """Once every queued row is written."""
        while self.flushing:
            await asyncio.sleep(0.001)

    async def _flush(self) -> None:
        """While one batch is being written, the next gathers."""
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                rows, waiters = self._take()
                error: BaseException | None = None
                try:
                    await loop.run_in_executor(self._writer, self._write, rows)
                except Exception as exc:  # whatever it is, every waiter must hear of it
                    error = _failed(exc)
                _settle(waiters, error)  # on the loop: futures are not thread-safe
        finally:
            self.flushing = False

    def _flush_inline(self) -> None:
        self.flushing = False
        rows, waiters = self._take()
        error: BaseException | None = None
        try:
            self._write(rows)
        except Exception as exc:
            error = _failed(exc)
        _settle(waiters, error)

    def _take(self) -> tuple[list[tuple[Any, ...]], list[asyncio.Future[None]]]:
        rows, waiters = self._pending, self._waiters
        self._pending, self._waiters = [], []
        return rows, waiters


def _failed(exc: Exception) -> LedgerError:
    return LedgerError(f"usage ledger write failed: {exc}")


class SqliteLedger(Ledger):
    def __init__(self, path: str, synchronous: str = "NORMAL") -> None:
        self.path = path
        self._closed = False
        self.commits = 0  # transactions written, for the benchmark's batching figure
        setup = sqlite3.connect(path)
        setup.execute("PRAGMA journal_mode=WAL")
        setup.executescript(SCHEMA)
        _migrate(setup)
        setup.close()
        # FULL: a commit is fsynced, so it may take a millisecond: one writer
        # thread does it, handed whole batches (one hand-off per commit).
        # NORMAL: a commit is a write() into the WAL, tens of microseconds:
        # the event loop does it itself at the end of the loop iteration in
        # which the records arrived (no thread hand-off), and checkpoints,
        # which do fsync, run in the writer thread.
        self._inline = synchronous.upper() != "FULL"
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-writer")
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        if self._inline:
            self._db.execute("PRAGMA wal_autocheckpoint=0")
        # Checkpoints on a connection of their own: on the writers' one, the
        # checkpoint's fsyncs (~15 ms) held its mutex, and the event loop's
        # next commit waited for them, stalling every call in flight every
        # CHECKPOINT_EVERY_S. A PASSIVE checkpoint and a WAL writer do not
        # wait for each other.
        self._checkpointer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._checkpointer.execute(f"PRAGMA synchronous={synchronous}")
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._group = GroupCommit(self._write, None if self._inline else self._writer)
        self._reader = sqlite3.connect(path, check_same_thread=False)
        self._reader_lock = threading.Lock()

    async def append(self, record: UsageRecord) -> None:
        if self._closed:
            raise LedgerError("ledger is closed")
        if self._inline and self._checkpoint_task is None:
            self._checkpoint_task = asyncio.get_running_loop().create_task(self._checkpoints())
        await self._group.add(_row(record))

    async def _checkpoints(self) -> None:
        """Fold the WAL into the database now and then, off the event loop."""
        loop = asyncio.get_running_loop()
        while not self._closed:
            await asyncio.sleep(CHECKPOINT_EVERY_S)
            await loop.run_in_executor(self._writer, self._checkpoint)

    def _checkpoint(self) -> None:
        try:
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass  # busy readers: the next one will do it

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        """One INSERT statement per batch, not one per row: the sqlite3 module
        releases and retakes the GIL around every statement, and each of
        those hand-offs stalls the event loop thread."""
        if len(rows) > MAX_ROWS_PER_STATEMENT:
            self._db.execute("BEGIN")
        try:
            for i in range(0, len(rows), MAX_ROWS_PER_STATEMENT):
                chunk = rows[i : i + MAX_ROWS_PER_STATEMENT]
                sql = f"INSERT INTO usage ({COLUMNS}) VALUES " + ",".join([ROW_PLACEHOLDERS] * len(chunk))
                # Outside BEGIN, one statement is one transaction with one fsync.
                self._db.execute(sql, [value for row in chunk for value in row])
            if self._db.in_transaction:
                self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self.commits += 1

    def totals(self, since: float | None, until: float | None, function: str | None) -> dict[str, Totals]:
        where, args = _where(since, until, function)
        sql = (
            "SELECT function, COUNT(*), SUM(status != 'ok'), SUM(billed_ms), SUM(memory_mb * billed_ms), "
            f"SUM(cpu_us), SUM(net_rx_bytes), SUM(net_tx_bytes) FROM usage{where} "
            "GROUP BY function ORDER BY function"
        )
        with self._reader_lock:
            rows = self._reader.execute(sql, args).fetchall()
        return {row[0]: Totals(*row[1:]) for row in rows}

    def records(
        self, since: float | None, until: float | None, function: str | None, after: int, limit: int
    ) -> list[tuple[int, UsageRecord]]:
        where, args = _where(since, until, function)
        where = (where + " AND" if where else " WHERE") + " seq > ?"
        sql = f"SELECT seq, {COLUMNS} FROM usage{where} ORDER BY seq LIMIT ?"
        with self._reader_lock:
            rows = self._reader.execute(sql, [*args, after, limit]).fetchall()
        return [(row[0], record_from_row(row[1:], row[4])) for row in rows]

    async def aclose(self) -> None:
        """Flush what is queued, then stop the writer."""
        await self._group.drained()
        self._closed = True
        if self._checkpoint_task is not None:
            self._checkpoint_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoint_task
        self.close()

    def close(self) -> None:
        self._closed = True
        self._writer.shutdown(wait=True)
        self._checkpoint()
        self._checkpointer.close()
        self._db.close()
        with self._reader_lock:
            self._reader.close()


def _migrate(db: sqlite3.Connection) -> None:
    """Add the columns a ledger made by an older version lacks."""
    present = {row[1] for row in db.execute("PRAGMA table_info(usage)")}
    for column, statement in MIGRATIONS:
        if column not in present:
            db.execute(statement)
    db.commit()


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for fut in futures:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)
