"""Asynchronous queue throughput, SQLite against NATS JetStream, in one run on
one machine. Starts its own nats-server (Debian's nats-server package). Run
from the repository root as root: .venv/bin/python scripts/async-queue-throughput.py

- queue alone: 5000 calls enqueued by 64 concurrent callers (each durable
  when it returns), then claimed 64 at a time and finished (no sandbox);
  for NATS also by two queues (two invokers) claiming together;
- through `faas serve`: 1000 POST /async-function/noop from 32 concurrent
  clients, from the first POST until every call has succeeded (the worker
  runs them in sandboxes, max_instances 10).
"""

import asyncio
import itertools
import os
import sys
import tempfile
import time

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import FaasServer
from invoker.async_model import SUCCEEDED, AsyncResult
from invoker.async_queue_nats import NatsAsyncQueue
from invoker.async_queue_sqlite import SqliteAsyncQueue
from tests.cluster.test_nats_queue import request
from tests.services import nats_server

N, CONC, BATCH, E2E_N, E2E_CONC = 5000, 64, 64, 1000, 32
_namespaces = itertools.count()
OK = AsyncResult(200, (), b"ok")


async def queue_alone(make_queues):
    queues = await make_queues()
    sem = asyncio.Semaphore(CONC)

    async def one(i):
        async with sem:
            await queues[0].enqueue(request(i))

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(N)))
    enqueued = N / (time.perf_counter() - t0)
    done = 0

    async def drain(queue):
        nonlocal done
        while done < N:
            claimed = await queue.claim("f", time.time(), BATCH)
            await asyncio.gather(*(queue.finish(c.request.call_id, SUCCEEDED, None, OK) for c in claimed))
            done += len(claimed)

    t0 = time.perf_counter()
    await asyncio.gather(*(drain(q) for q in queues))
    ran = N / (time.perf_counter() - t0)
    for q in queues:
        await q.aclose()
    return enqueued, ran


def through_serve(*args):
    server = FaasServer(*args)
    try:
        server.deploy("noop", "def handle(event, context):\n    return 'ok'\n", max_instances=10)
        base = f"http://127.0.0.1:{server.port}"

        async def run():
            async with aiohttp.ClientSession() as session:
                sem = asyncio.Semaphore(E2E_CONC)

                async def post(i):
                    async with sem, session.post(f"{base}/async-function/noop", data=b"x") as resp:
                        assert resp.status == 202, await resp.text()

                t0 = time.perf_counter()
                await asyncio.gather(*(post(i) for i in range(E2E_N)))
                accepted = time.perf_counter() - t0
                while True:
                    async with session.get(f"{base}/metrics") as resp:
                        text = await resp.text()
                    line = [x for x in text.splitlines() if x.startswith("faas_async_completed_total{")]
                    if sum(float(x.rsplit(" ", 1)[1]) for x in line) >= E2E_N:
                        return E2E_N / accepted, E2E_N / (time.perf_counter() - t0)
                    await asyncio.sleep(0.05)

        return asyncio.run(run())
    finally:
        server.stop()


with nats_server() as url:

    def nats_queues(count):
        async def make():
            ns = f"bench{next(_namespaces)}"
            return [await NatsAsyncQueue.open(url, 10**6, 3600, namespace=ns) for _ in range(count)]

        return make

    with tempfile.TemporaryDirectory() as d:

        async def sqlite():
            return [SqliteAsyncQueue(os.path.join(d, "async.db"), 10**6, 3600)]

        for label, make in [("sqlite", sqlite), ("nats", nats_queues(1)), ("nats, 2 queues", nats_queues(2))]:
            enq, ran = asyncio.run(queue_alone(make))
            print(f"queue alone  {label:15s} enqueue {enq:7.0f} calls/s   claim+finish {ran:7.0f} calls/s")
    for label, args in [("sqlite", ()), ("nats", ("--queue", url))]:
        accepted, whole = through_serve(*args)
        print(f"faas serve   {label:15s} accepted {accepted:6.0f} calls/s   enqueue+run {whole:6.0f} calls/s")
