"""The PostgreSQL registry and ledger against a real PostgreSQL: the same
behaviour as the SQLite ones, plus migrations, partitions and NOTIFY."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from invoker.metering import UsageRecord
from invoker.model import Alias, FunctionConfig
from invoker.pg_ledger import PostgresLedger
from invoker.pg_registry import CHANNEL, PostgresRegistry
from invoker.pg_schema import ensure_partitions, migrate, migrations, partition_name


def config(name: str = "f", memory_mb: int = 128) -> FunctionConfig:
    return FunctionConfig(name=name, version=0, handler_module="handler", entry="handle", memory_mb=memory_mb,
                          env=(("K", "v"),), files=("handler.py",), secrets=("s",), created_at=1.0)  # fmt: skip


def record(i: int, function: str = "f", status: str = "ok", started_at: float = 1000.0) -> UsageRecord:
    return UsageRecord(
        call_id=f"call-{i}", function=function, version=1, started_at=started_at + i, wall_ms=10.2,
        init_ms=None if i % 3 else 4.5, cpu_us=1000 + i, memory_mb=128, max_memory_bytes=1 << 20,
        status=status, cold=i % 3 == 0,
    )  # fmt: skip


def test_migrations_apply_once_in_order(pg_url: str) -> None:
    assert migrate(pg_url) == len(migrations())
    assert migrate(pg_url) == len(migrations())  # a second server starting: nothing to do
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT version, name FROM schema_version ORDER BY version").fetchall()
        assert [r[0] for r in rows] == list(range(1, len(migrations()) + 1))
        assert rows[0][1] == "001_registry_and_ledger.sql"
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'usage'").fetchone()
        assert kind == ("p",)  # partitioned


def test_partitions_are_made_ahead_and_records_land_in_their_day(pg_url: str) -> None:
    migrate(pg_url)
    now = datetime.now(UTC)
    later = now + timedelta(days=30)
    assert ensure_partitions(pg_url, later, days_ahead=1) == [
        partition_name(later),
        partition_name(later + timedelta(days=1)),
    ]
    assert ensure_partitions(pg_url, later, days_ahead=1) == []
    with psycopg.connect(pg_url) as conn:
        today = conn.execute("SELECT to_regclass(%s)", (partition_name(now + timedelta(days=7)),)).fetchone()
        assert today is not None and today[0] is not None  # migrate made a week ahead

    async def append() -> None:
        ledger = PostgresLedger(pg_url)
        await ledger.append(record(0, started_at=time.time()))
        await ledger.append(record(1, started_at=0.0))  # 1970: no day of its own
        await ledger.aclose()

    asyncio.run(append())
    with psycopg.connect(pg_url) as conn:
        where = dict(conn.execute("SELECT call_id, tableoid::regclass::text FROM usage").fetchall())
    assert where == {"call-0": partition_name(now), "call-1": "usage_default"}


def test_registry_versions_aliases_and_delete(pg_url: str) -> None:
    registry = PostgresRegistry(pg_url)
    first, new = registry.put(config(), {"handler.py": b"def handle(e, c): return 1\n"})
    assert (first.version, new) == (1, True)
    same, new = registry.put(config(), {"handler.py": b"def handle(e, c): return 1\n"})
    assert (same.version, new) == (1, False)  # an identical deploy makes no version
    second, new = registry.put(config(memory_mb=256), {"handler.py": b"x"})
    assert (second.version, second.created_at, new) == (2, first.created_at, True)
    assert registry.load_all() == [first, second]
    assert registry.files("f", 1) == {"handler.py": b"def handle(e, c): return 1\n"}
    with pytest.raises(KeyError):
        registry.files("f", 9)
    registry.set_alias("f", Alias("live", 1))
    registry.set_alias("f", Alias("beta", 1, canary=2, weight=0.25))
    registry.set_alias("f", Alias("live", 2))  # replaces
    assert registry.load_aliases() == [("f", Alias("beta", 1, 2, 0.25)), ("f", Alias("live", 2))]
    registry.delete_alias("f", "beta")
    registry.delete_versions("f", [1])
    assert registry.load_function("f") == ([second], [Alias("live", 2)])
    assert registry.delete("f") is True
    assert registry.delete("f") is False
    assert registry.load_all() == [] and registry.load_aliases() == []
    registry.close()


def test_two_servers_deploying_one_name_number_versions_apart(pg_url: str) -> None:
    a, b = PostgresRegistry(pg_url), PostgresRegistry(pg_url)
    results = [
        r.put(dataclasses.replace(config(), memory_mb=128 + i), {"h": b"%d" % i})
        for i, r in enumerate([a, b, a, b])
    ]
    assert [c.version for c, _ in results] == [1, 2, 3, 4]
    a.close()
    b.close()


def test_registry_changes_are_notified_after_commit(pg_url: str) -> None:
    registry = PostgresRegistry(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        registry.put(config("g"), {"h": b"1"})
        registry.set_alias("g", Alias("live", 1))
        heard = [n.payload for n in listener.notifies(timeout=5, stop_after=2)]
    assert heard == ["g", "g"]
    registry.close()


async def test_ledger_group_commit_all_stored_once(pg_url: str) -> None:
    ledger = PostgresLedger(pg_url)
    await asyncio.gather(*(ledger.append(record(i)) for i in range(300)))
    assert ledger.commits < 300  # group commit: many records per transaction
    await ledger.aclose()
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT COUNT(*), COUNT(DISTINCT call_id) FROM usage").fetchone()
    assert row == (300, 300)


async def test_ledger_totals_and_records_match_sqlite_semantics(pg_url: str) -> None:
    ledger = PostgresLedger(pg_url)
    for i in range(10):
        await ledger.append(record(i, function="a" if i % 2 else "b", status="error" if i == 3 else "ok"))
    totals = ledger.totals(None, None, None)
    assert {k: v.requests for k, v in totals.items()} == {"a": 5, "b": 5}
    assert totals["a"].errors == 1
    assert totals["a"].billed_ms == sum(record(i).billed_ms for i in range(10) if i % 2)
    assert totals["a"].mb_ms == 128 * totals["a"].billed_ms
    assert totals["a"].cpu_us == sum(1000 + i for i in range(10) if i % 2)
    window = ledger.totals(1002.0, 1005.0, None)  # started_at in [1002, 1005)
    assert sum(t.requests for t in window.values()) == 3
    first = ledger.records(None, None, None, after=0, limit=4)
    assert [r.call_id for _, r in first] == [f"call-{i}" for i in range(4)]
    rest = ledger.records(None, None, "a", after=first[-1][0], limit=10)
    assert [r.call_id for _, r in rest] == ["call-5", "call-7", "call-9"]
    assert rest[0][1] == record(5, function="a")
    await ledger.aclose()
    with pytest.raises(Exception, match="closed"):
        await ledger.append(record(99))


async def test_ledger_write_failure_reaches_every_waiter(pg_url: str) -> None:
    ledger = PostgresLedger(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE usage ADD CONSTRAINT no_x CHECK (function <> 'x')")
    results = await asyncio.gather(
        ledger.append(record(1, "x")), ledger.append(record(2, "x")), return_exceptions=True
    )
    assert all(type(r).__name__ == "LedgerError" for r in results), results
    await ledger.append(record(3))  # the writer carries on
    await ledger.aclose()


async def test_ledger_keeps_every_usage_field(pg_url: str) -> None:
    """Fields added after the first schema (migration 003): the delivery of an
    asynchronous call and the bytes of outbound network, stored and summed."""
    ledger = PostgresLedger(pg_url)
    full = dataclasses.replace(record(1), attempt=3, net_rx_bytes=5_000_000_000, net_tx_bytes=42)
    await ledger.append(full)
    await ledger.append(record(2))
    [(_, first), (_, second)] = ledger.records(None, None, None, after=0, limit=10)
    assert first == full
    assert (second.attempt, second.net_rx_bytes, second.net_tx_bytes) == (1, 0, 0)
    totals = ledger.totals(None, None, None)["f"]
    assert (totals.net_rx_bytes, totals.net_tx_bytes) == (5_000_000_000, 42)
    await ledger.aclose()


def test_registry_round_trips_every_config_field(pg_url: str) -> None:
    registry = PostgresRegistry(pg_url)
    full = dataclasses.replace(
        config(),
        network="outbound",
        allow=("203.0.113.0/24:443",),
        flavour="lambda",
        layer_id="abc123",
        layer_size_bytes=1234,
        layer_packages=(("requests", "2.32.3"), ("idna", "3.7")),
        egress_mbit=5.0,
        max_event_age_s=60,
        build_ms=12.5,
    )
    with psycopg.connect(pg_url, autocommit=True) as conn:  # the layer a version names is stored first
        conn.execute(
            "INSERT INTO layers (id, tree_digest, archive_bytes, chunks) VALUES ('abc123', '', 0, 0)"
        )
    stored, created = registry.put(full, {"handler.py": b"x"})
    assert created
    assert registry.load_all() == [stored]
    assert stored == dataclasses.replace(full, version=1)
    registry.close()
