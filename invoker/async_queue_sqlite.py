"""The asynchronous queue in SQLite (WAL) under the data directory.

One server holds a data directory (its lock), so this queue has one
consumer: a call found running when it opens was interrupted by the end of
the previous server (the worker decides whether to retry it).

Writes go to one writer thread; enqueues are group-committed (every call
accepted while a commit is under way shares the next one). Reads use a
connection of their own: WAL lets them run beside the writer.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import msgpack

from .async_model import (
    CALLBACK_PENDING,
    CANCELLED,
    FINAL_STATUSES,
    QUEUED,
    RUNNING,
    AsyncCall,
    AsyncQuery,
    AsyncRequest,
    AsyncResult,
)
from .async_queue import AsyncQueue, Claimed, QueueFull
from .errors import Conflict, NotFound, Unavailable

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    seq INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL UNIQUE,
    function TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    not_before REAL NOT NULL,
    request BLOB NOT NULL,
    callback_url TEXT,
    callback_status TEXT,
    result_status INTEGER,
    result BLOB,
    error TEXT
);
CREATE INDEX IF NOT EXISTS calls_due ON calls (function, status, not_before, seq);
CREATE INDEX IF NOT EXISTS calls_status ON calls (status, seq);
CREATE INDEX IF NOT EXISTS calls_function ON calls (function, seq);
CREATE INDEX IF NOT EXISTS calls_callbacks ON calls (callback_status) WHERE callback_status = 'pending';
"""

RECORD_COLUMNS = (
    "seq, call_id, function, status, attempts, created_at, updated_at, not_before, callback_url, "
    "callback_status, result_status, error"
)


def _result_columns(result: AsyncResult | None) -> tuple[int | None, bytes | None]:
    """(result_status, result) of a row."""
    if result is None:
        return None, None
    headers = [list(h) for h in result.headers]
    blob = msgpack.packb([result.status, headers, result.body, result.duration_s], use_bin_type=True)
    return result.status, blob


def _result_from(blob: bytes | None) -> AsyncResult | None:
    if not blob:
        return None
    status, headers, body, duration_s = msgpack.unpackb(blob)
    return AsyncResult(status, tuple((k, v) for k, v in headers), body, duration_s)


def _request_from(
    call_id: str, function: str, created_at: float, url: str | None, blob: bytes
) -> AsyncRequest:
    return AsyncRequest.from_wire(call_id, function, created_at, url, msgpack.unpackb(blob))


def _call_from(row: tuple[Any, ...], result: AsyncResult | None = None) -> AsyncCall:
    _, call_id, function, status, attempts, created, updated, not_before = row[:8]
    url, callback, result_status, error = row[8:]
    return AsyncCall(
        call_id=call_id,
        function=function,
        status=status,
        attempts=attempts,
        created_at=created,
        updated_at=updated,
        callback_url=url,
        callback_status=callback,
        error=error,
        result=result,
        next_attempt_at=not_before if status == QUEUED and attempts > 0 else None,
        result_status=result_status,
    )


class SqliteAsyncQueue(AsyncQueue):
    def __init__(self, path: str, max_pending: int, result_ttl_s: float, synchronous: str = "NORMAL") -> None:
        self.max_pending = max_pending
        self.result_ttl_s = result_ttl_s
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(SCHEMA)
        self._reader = sqlite3.connect(path, check_same_thread=False)
        self._reader_lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="async-queue")
        self._queued: collections.Counter[str] = collections.Counter(
            dict(
                self._db.execute(
                    "SELECT function, COUNT(*) FROM calls WHERE status = ? GROUP BY function", (QUEUED,)
                )
            )
        )
        (self._running,) = self._db.execute(
            "SELECT COUNT(*) FROM calls WHERE status = ?", (RUNNING,)
        ).fetchone()
        self._batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        return sum(self._queued.values()) + self._running

    def queued_by_function(self) -> dict[str, int]:
        return {name: n for name, n in self._queued.items() if n > 0}

    # -- the writer: the writes of one event-loop turn in one transaction -------

    async def _write(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run `operation` in the writer thread, in the next transaction:
        operations queued while one commits share the next commit (group
        commit), each in a savepoint of its own, so that one that fails
        fails alone."""
        if self._closed:
            raise Unavailable("the asynchronous queue is closed")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        self._batch.append((operation, done))
        if self._flush_task is None:
            self._flush_task = loop.create_task(self._flush())
        return await done  # type: ignore[no-any-return]

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                try:
                    outcomes = await loop.run_in_executor(
                        self._writer, self._execute, [op for op, _ in batch]
                    )
                except Exception as exc:  # the commit failed: every caller must hear of it
                    outcomes = [exc] * len(batch)
                for (_, done), outcome in zip(batch, outcomes, strict=True):
                    if done.done():
                        continue
                    if isinstance(outcome, BaseException):
                        done.set_exception(outcome)
                    else:
                        done.set_result(outcome)
        finally:
            self._flush_task = None

    def _execute(self, operations: list[Callable[[sqlite3.Connection], Any]]) -> list[Any]:
        outcomes: list[Any] = []
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for operation in operations:
                db.execute("SAVEPOINT operation")
                try:
                    outcomes.append(operation(db))
                except Exception as exc:
                    db.execute("ROLLBACK TO operation")
                    outcomes.append(exc)
                db.execute("RELEASE operation")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return outcomes

    # -- accepting -------------------------------------------------------------

    async def enqueue(self, request: AsyncRequest) -> None:
        if self.pending >= self.max_pending:
            raise QueueFull(f"{self.pending} asynchronous calls are queued or running (max_async_queue)")
        row = (
            request.call_id,
            request.function,
            QUEUED,
            request.created_at,
            request.created_at,
            request.created_at,
            msgpack.packb(request.to_wire(), use_bin_type=True),
            request.callback_url,
        )
        self._queued[request.function] += 1  # counted now, so the bound holds for a whole batch
        try:
            await self._write(
                lambda db: db.execute(
                    "INSERT INTO calls (call_id, function, status, created_at, updated_at, not_before, "
                    "request, callback_url) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            )
        except Exception as exc:
            self._queued[request.function] -= 1
            raise Unavailable(f"the asynchronous queue could not store the call: {exc}") from None

    # -- running ---------------------------------------------------------------

    async def claim(self, function: str, now: float, limit: int) -> list[Claimed]:
        def work(db: sqlite3.Connection) -> list[Claimed]:
            rows = db.execute(
                "SELECT seq, call_id, attempts, created_at, callback_url, request FROM calls "
                "WHERE function = ? AND status = ? AND not_before <= ? ORDER BY not_before, seq LIMIT ?",
                (function, QUEUED, now, limit),
            ).fetchall()
            db.executemany(
                "UPDATE calls SET status = ?, attempts = attempts + 1, updated_at = ? WHERE seq = ?",
                [(RUNNING, now, row[0]) for row in rows],
            )
            return [
                Claimed(_request_from(call_id, function, created, url, blob), attempts + 1)
                for _, call_id, attempts, created, url, blob in rows
            ]

        claimed = await self._write(work)
        self._queued[function] -= len(claimed)
        self._running += len(claimed)
        return claimed

    async def retry_at(
        self, call_id: str, when: float, error: str | None, result: AsyncResult | None, counted: bool = True
    ) -> None:
        def work(db: sqlite3.Connection) -> str:
            (function,) = db.execute("SELECT function FROM calls WHERE call_id = ?", (call_id,)).fetchone()
            db.execute(
                "UPDATE calls SET status = ?, not_before = ?, updated_at = ?, error = ?, result_status = ?, "
                "result = ?, attempts = attempts - ? WHERE call_id = ?",
                (QUEUED, when, time.time(), error, *_result_columns(result), 0 if counted else 1, call_id),
            )
            return str(function)

        function = await self._write(work)
        self._running -= 1
        self._queued[function] += 1

    async def finish(
        self, call_id: str, status: str, error: str | None, result: AsyncResult | None, counted: bool = True
    ) -> None:
        values = (
            status,
            time.time(),
            error,
            *_result_columns(result),
            CALLBACK_PENDING,
            0 if counted else 1,
            call_id,
        )
        await self._write(
            lambda db: db.execute(
                "UPDATE calls SET status = ?, updated_at = ?, error = ?, result_status = ?, result = ?, "
                "request = x'', callback_status = CASE WHEN callback_url IS NULL THEN NULL ELSE ? END, "
                "attempts = attempts - ? WHERE call_id = ?",
                values,
            )
        )
        self._running -= 1

    async def set_callback_status(self, call_id: str, status: str) -> None:
        await self._write(
            lambda db: db.execute("UPDATE calls SET callback_status = ? WHERE call_id = ?", (status, call_id))
        )

    async def cancel(self, call_id: str) -> AsyncCall:
        def work(db: sqlite3.Connection) -> tuple[str | None, str | None]:
            row = db.execute("SELECT function, status FROM calls WHERE call_id = ?", (call_id,)).fetchone()
            if row is None or row[1] != QUEUED:
                return None, row[1] if row else None
            db.execute(
                "UPDATE calls SET status = ?, updated_at = ?, request = x'' WHERE call_id = ?",
                (CANCELLED, time.time(), call_id),
            )
            return row[0], None

        function, status = await self._write(work)
        if function is None:
            if status is None:
                raise NotFound(f"asynchronous call {call_id!r} not found")
            raise Conflict(f"asynchronous call {call_id!r} is {status}: only a queued call can be cancelled")
        self._queued[function] -= 1
        call, _ = await self.get(call_id)
        return call

    # -- reading ---------------------------------------------------------------

    def _read(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._reader_lock:
            return self._reader.execute(sql, args).fetchall()

    async def get(self, call_id: str, with_request: bool = False) -> tuple[AsyncCall, AsyncRequest | None]:
        rows = await asyncio.to_thread(
            self._read, f"SELECT {RECORD_COLUMNS}, result, request FROM calls WHERE call_id = ?", (call_id,)
        )
        expired = rows and rows[0][3] in FINAL_STATUSES and rows[0][6] < time.time() - self.result_ttl_s
        if not rows or expired:
            raise NotFound(f"asynchronous call {call_id!r} not found (or its result has expired)")
        row = rows[0]
        call = _call_from(row[:-2], _result_from(row[-2]))
        request = (
            _request_from(call_id, call.function, call.created_at, call.callback_url, row[-1])
            if (with_request and row[-1])
            else None
        )
        return call, request

    async def list(self, query: AsyncQuery, after: int, limit: int) -> list[tuple[int, AsyncCall]]:
        final = tuple(FINAL_STATUSES)
        kept = f"NOT (status IN ({','.join('?' * len(final))}) AND updated_at < ?)"
        clauses, args = ["seq > ?", kept], [after, *final, time.time() - self.result_ttl_s]
        if query.function is not None:
            clauses.append("function = ?")
            args.append(query.function)
        if query.status is not None:
            clauses.append("status = ?")
            args.append(query.status)
        sql = f"SELECT {RECORD_COLUMNS} FROM calls WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ?"
        rows = await asyncio.to_thread(self._read, sql, (*args, limit))
        return [(row[0], _call_from(row)) for row in rows]

    async def interrupted(self) -> list[Claimed]:
        rows = await asyncio.to_thread(
            self._read,
            "SELECT call_id, function, attempts, created_at, callback_url, request FROM calls WHERE status = ?",
            (RUNNING,),
        )
        return [
            Claimed(_request_from(call_id, function, created, url, blob), attempts)
            for call_id, function, attempts, created, url, blob in rows
        ]

    async def pending_callbacks(self) -> list[str]:
        rows = await asyncio.to_thread(
            self._read,
            "SELECT call_id FROM calls WHERE callback_status = ? ORDER BY seq",
            (CALLBACK_PENDING,),
        )
        return [row[0] for row in rows]

    async def purge(self, finished_before: float) -> int:
        final = tuple(FINAL_STATUSES)

        def work(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                f"DELETE FROM calls WHERE status IN ({','.join('?' * len(final))}) AND updated_at < ?",
                (*final, finished_before),
            )
            return cursor.rowcount

        return await self._write(work)

    def oldest_queued_at(self) -> float | None:
        rows = self._read("SELECT created_at FROM calls WHERE status = ? ORDER BY seq LIMIT 1", (QUEUED,))
        return rows[0][0] if rows else None

    async def aclose(self) -> None:
        """Commit what is being accepted, then close."""
        if self._flush_task is not None:
            await self._flush_task
        self._closed = True
        self._writer.shutdown(wait=True)
        self._db.close()
        with self._reader_lock:
            self._reader.close()
