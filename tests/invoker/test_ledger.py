"""The SQLite usage ledger: durable appends, group commit, totals, paging."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from invoker.ledger import SqliteLedger
from invoker.metering import UsageRecord


def record(i: int, function: str = "f", status: str = "ok", started_at: float = 1000.0) -> UsageRecord:
    return UsageRecord(
        call_id=f"call-{i}", function=function, version=1, started_at=started_at + i, wall_ms=10.2,
        init_ms=None, cpu_us=1000 + i, memory_mb=128, max_memory_bytes=1 << 20, status=status, cold=False,
    )  # fmt: skip


@pytest.mark.parametrize("sync", ["NORMAL", "FULL"])
async def test_concurrent_appends_share_commits_and_are_all_stored(tmp_path: Path, sync: str) -> None:
    ledger = SqliteLedger(str(tmp_path / "usage.db"), synchronous=sync)
    await asyncio.gather(*(ledger.append(record(i)) for i in range(200)))
    assert ledger.commits < 200  # group commit: many records per transaction
    await ledger.aclose()
    # Durable and readable by anyone once append returned.
    rows = sqlite3.connect(tmp_path / "usage.db").execute(
        "SELECT COUNT(*), COUNT(DISTINCT call_id) FROM usage"
    )
    assert rows.fetchone() == (200, 200)


async def test_totals_filter_by_time_and_function(tmp_path: Path) -> None:
    ledger = SqliteLedger(str(tmp_path / "usage.db"))
    for i in range(10):
        await ledger.append(record(i, function="a" if i % 2 else "b", status="error" if i == 3 else "ok"))
    totals = ledger.totals(None, None, None)
    assert {k: v.requests for k, v in totals.items()} == {"a": 5, "b": 5}
    assert totals["a"].errors == 1 and totals["a"].billed_ms == 5 * 11
    assert totals["a"].cpu_us == sum(1000 + i for i in range(10) if i % 2)
    window = ledger.totals(1002.0, 1005.0, None)  # started_at in [1002, 1005)
    assert sum(t.requests for t in window.values()) == 3
    assert set(ledger.totals(None, None, "a")) == {"a"}
    await ledger.aclose()


async def test_records_page_by_cursor_oldest_first(tmp_path: Path) -> None:
    ledger = SqliteLedger(str(tmp_path / "usage.db"))
    for i in range(7):
        await ledger.append(record(i))
    first = ledger.records(None, None, None, after=0, limit=4)
    assert [r.call_id for _, r in first] == [f"call-{i}" for i in range(4)]
    rest = ledger.records(None, None, None, after=first[-1][0], limit=4)
    assert [r.call_id for _, r in rest] == [f"call-{i}" for i in range(4, 7)]
    assert rest[0][1] == record(4)
    await ledger.aclose()


async def test_appends_after_close_are_refused(tmp_path: Path) -> None:
    ledger = SqliteLedger(str(tmp_path / "usage.db"))
    await ledger.aclose()
    with pytest.raises(Exception, match="closed"):
        await ledger.append(record(1))


OLD_SCHEMA = """
CREATE TABLE usage (
    seq INTEGER PRIMARY KEY, call_id TEXT NOT NULL, function TEXT NOT NULL, version INTEGER NOT NULL,
    started_at REAL NOT NULL, wall_ms REAL NOT NULL, init_ms REAL, billed_ms INTEGER NOT NULL,
    cpu_us INTEGER NOT NULL, memory_mb INTEGER NOT NULL, max_memory_bytes INTEGER NOT NULL,
    status TEXT NOT NULL, cold INTEGER NOT NULL
);
INSERT INTO usage VALUES (1, 'old-call', 'f', 1, 1000.0, 5.0, NULL, 5, 100, 128, 1024, 'ok', 0);
"""


async def test_a_ledger_from_before_attempts_gains_the_column(tmp_path: Path) -> None:
    """A usage.db written before asynchronous calls existed keeps its records
    (each a first attempt) and stores the attempt of new ones."""
    path = tmp_path / "usage.db"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.close()
    ledger = SqliteLedger(str(path))
    retry = UsageRecord(**{**record(2).__dict__, "attempt": 3})
    await ledger.append(retry)
    records = [r for _, r in ledger.records(None, None, None, 0, 10)]
    await ledger.aclose()
    assert [(r.call_id, r.attempt) for r in records] == [("old-call", 1), ("call-2", 3)]
    assert records[1].to_json()["attempt"] == 3


async def test_a_usage_db_made_before_network_metering_gains_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.close()
    ledger = SqliteLedger(str(path))
    new = UsageRecord(**{**record(1).__dict__, "call_id": "new", "net_rx_bytes": 5000, "net_tx_bytes": 700})
    await ledger.append(new)
    rows = {r.call_id: (r.net_rx_bytes, r.net_tx_bytes) for _, r in ledger.records(None, None, None, 0, 10)}
    assert rows == {"old-call": (0, 0), "new": (5000, 700)}
    totals = ledger.totals(None, None, None)["f"]
    assert (totals.requests, totals.net_rx_bytes, totals.net_tx_bytes) == (2, 5000, 700)
    await ledger.aclose()
    # Opening it again changes nothing more.
    SqliteLedger(str(path)).close()
    columns = [row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(usage)")]
    assert columns[-2:] == ["net_rx_bytes", "net_tx_bytes"] and len(columns) == len(set(columns))


async def test_appends_do_not_wait_for_a_checkpoint(tmp_path: Path) -> None:
    """A checkpoint fsyncs (tens of ms on a real disk) in the writer thread;
    the event loop's commits must not queue behind it. SQLite serializes the
    statements of one connection: here the checkpoint's connection first
    runs a statement that lasts a while, as a slow fsync would."""
    path = str(tmp_path / "usage.db")
    ledger = SqliteLedger(path)
    await ledger.append(record(0))
    checkpointer = ledger._checkpointer
    started = asyncio.Event()
    loop = asyncio.get_running_loop()
    long_statement = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) SELECT count(*) FROM c"

    class SlowCheckpoints:
        def execute(self, sql: str) -> sqlite3.Cursor:
            loop.call_soon_threadsafe(started.set)
            t0 = time.monotonic()
            checkpointer.execute(long_statement).fetchone()
            self.took = time.monotonic() - t0
            return checkpointer.execute(sql)

        def close(self) -> None:
            checkpointer.close()

    slow = SlowCheckpoints()
    ledger._checkpointer = slow  # type: ignore[assignment]
    checkpoint = loop.run_in_executor(ledger._writer, ledger._checkpoint)
    await started.wait()
    t0 = time.monotonic()
    for i in range(1, 20):
        await ledger.append(record(i))
    appends = time.monotonic() - t0
    await checkpoint
    assert slow.took > 0.1  # else the statement proves nothing on this machine
    assert appends < slow.took / 2
    assert ledger.totals(None, None, None)["f"].requests == 20
    await ledger.aclose()
