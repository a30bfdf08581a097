"""The usage ledger: append-only usage records in SQLite (WAL), durable
before a call's response leaves.

Group commit: callers hand records to one writer thread and await; the
writer takes everything queued since its last commit and writes it in one
transaction with one fsync, so many concurrent calls share a commit.
Behind the `Ledger` interface so a cluster can put a shared database there.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from abc import ABC, abstractmethod
from typing import Any

from .metering import Totals, UsageRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    seq INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL UNIQUE,
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
    cold INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_started ON usage (started_at);
CREATE INDEX IF NOT EXISTS usage_function_started ON usage (function, started_at);
"""

COLUMNS = (
    "call_id, function, version, started_at, wall_ms, init_ms, billed_ms, cpu_us, memory_mb, "
    "max_memory_bytes, status, cold"
)


class LedgerError(RuntimeError):
    pass


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


class SqliteLedger(Ledger):
    def __init__(self, path: str) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._queue: list[tuple[UsageRecord, asyncio.Future[None]]] = []
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.commits = 0  # transactions written, for the benchmark's batching figure
        setup = sqlite3.connect(path)
        setup.execute("PRAGMA journal_mode=WAL")
        setup.executescript(SCHEMA)
        setup.close()
        self._reader = sqlite3.connect(path, check_same_thread=False)
        self._reader_lock = threading.Lock()
        self._thread = threading.Thread(target=self._write_loop, name="ledger-writer", daemon=True)
        self._thread.start()

    async def append(self, record: UsageRecord) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        fut: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._closing:
                raise LedgerError("ledger is closed")
            self._queue.append((record, fut))
            self._cond.notify()
        # Shielded: a client that hangs up does not un-bill its call.
        await asyncio.shield(fut)

    def _write_loop(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
        insert = f"INSERT INTO usage ({COLUMNS}) VALUES ({', '.join('?' * 12)})"
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                batch, self._queue = self._queue, []
                if not batch and self._closing:
                    break
            error: BaseException | None = None
            try:
                db.execute("BEGIN")
                db.executemany(insert, [_row(record) for record, _ in batch])
                db.execute("COMMIT")
                self.commits += 1
            except sqlite3.Error as exc:
                error = LedgerError(f"usage ledger write failed: {exc}")
                if db.in_transaction:
                    db.execute("ROLLBACK")
            futures = [fut for _, fut in batch]
            loop = futures[0].get_loop()
            loop.call_soon_threadsafe(_settle, futures, error)
        db.close()

    def totals(self, since: float | None, until: float | None, function: str | None) -> dict[str, Totals]:
        where, args = _where(since, until, function)
        sql = (
            "SELECT function, COUNT(*), SUM(status != 'ok'), SUM(billed_ms), SUM(memory_mb * billed_ms), "
            f"SUM(cpu_us) FROM usage{where} GROUP BY function ORDER BY function"
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
        out = []
        for seq, call_id, fn, version, started, wall, init, _billed, cpu_us, mem, peak, status, cold in rows:
            out.append(
                (
                    seq,
                    UsageRecord(
                        call_id, fn, version, started, wall, init, cpu_us, mem, peak, status, bool(cold)
                    ),
                )
            )
        return out

    def close(self) -> None:
        """Flush what is queued, then stop the writer."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        with self._reader_lock:
            self._reader.close()


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for fut in futures:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)
