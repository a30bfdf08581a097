"""Usage-ledger throughput, SQLite against PostgreSQL, in one run on one machine:
64 concurrent appenders, 20000 records, group commit. Starts its own PostgreSQL
(Debian's postgresql package). Run from the repository root:
.venv/bin/python scripts/ledger-throughput.py"""

import asyncio
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from invoker.ledger import SqliteLedger
from invoker.pg_ledger import PostgresLedger
from tests.cluster.test_pg_store import record
from tests.services import fresh_database, postgres_server

N, CONC = 20000, 64


async def run(ledger):
    sem = asyncio.Semaphore(CONC)

    async def one(i):
        async with sem:
            await ledger.append(record(i))

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(N)))
    dt = time.perf_counter() - t0
    commits = ledger.commits
    await ledger.aclose()
    return N / dt, commits


async def _measure(make, directory):
    return await run(make(directory))


with postgres_server() as url:
    for label, make in [
        ("sqlite normal", lambda d: SqliteLedger(os.path.join(d, "u.db"), "NORMAL")),
        ("sqlite full", lambda d: SqliteLedger(os.path.join(d, "u.db"), "FULL")),
        ("postgres on", lambda d: PostgresLedger(fresh_database(url, "b1"), "on")),
        ("postgres off", lambda d: PostgresLedger(fresh_database(url, "b2"), "off")),
    ]:
        with tempfile.TemporaryDirectory() as d:
            rate, commits = asyncio.run(_measure(make, d))
            print(
                f"{label:14s} {rate:9.0f} records/s  {commits} commits for {N} records ({CONC} concurrent appenders)"
            )
