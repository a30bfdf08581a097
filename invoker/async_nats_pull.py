"""Deliveries from the NATS work stream (invoker/async_queue_nats.py): pulls
of a function's durable consumer that never linger, and the deliveries held
while their calls run, kept from redelivery by `in_progress` acks.

A pull asks for what is available now (`no_wait`) and waits for it at most
its deadline: a lingering pull would leave a request on the server that
takes the next call to an invoker that stopped listening for it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

log = logging.getLogger("faas.async")


class Puller:
    """Pulls of each function's consumer, answered on one inbox of this invoker."""

    def __init__(self, nc: Client, stream: str) -> None:
        self._nc = nc
        self._stream = stream
        self._inbox = nc.new_inbox()
        self._arrived: dict[str, collections.deque[Msg]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._subs: list[Subscription] = []

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _listen(self, consumer: str) -> None:
        """The inbox of `consumer`'s pulls (a delivery's subject is its call's,
        so each consumer has an inbox of its own)."""
        arrived, wake = self._arrived[consumer], self._wake[consumer] = collections.deque(), asyncio.Event()

        async def on_message(msg: Msg) -> None:
            arrived.append(msg)
            wake.set()

        self._subs.append(await self._nc.subscribe(f"{self._inbox}.{consumer}", cb=on_message))

    async def pull(self, consumer: str, limit: int, timeout_s: float) -> list[Msg]:
        """Up to `limit` deliveries available now (and any that arrived late
        for an earlier pull)."""
        if consumer not in self._arrived:
            await self._listen(consumer)
        arrived, wake = self._arrived[consumer], self._wake[consumer]
        got: list[Msg] = []
        ended = False

        def take() -> None:
            nonlocal ended
            while arrived and len(got) < limit:
                msg = arrived.popleft()
                if JetStreamContext.is_status_msg(msg):
                    ended = True  # 404 no messages, 408 expired: nothing more for this pull
                else:
                    got.append(msg)

        take()
        if len(got) >= limit:
            return got
        ended = False
        wake.clear()
        request = f'{{"batch": {limit - len(got)}, "no_wait": true}}'.encode()
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{consumer}"
        await self._nc.publish(subject, request, reply=f"{self._inbox}.{consumer}")
        deadline = time.monotonic() + timeout_s
        while len(got) < limit and not ended:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await wake.wait()
            wake.clear()
            take()
        return got


class Held:
    """Deliveries whose calls are running here: each gets an `in_progress`
    ack every third of the ack wait, so JetStream redelivers a call only
    when its invoker has stopped (died, or lost NATS for that long)."""

    def __init__(self, ack_wait_s: float) -> None:
        self.every_s = max(0.05, ack_wait_s / 3)
        self._msgs: dict[str, Msg] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._extend(), name="async-nats-in-progress")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def ids(self) -> set[str]:
        return set(self._msgs)

    def hold(self, call_id: str, msg: Msg) -> None:
        self._msgs[call_id] = msg

    def release(self, call_id: str) -> Msg | None:
        return self._msgs.pop(call_id, None)

    async def _extend(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            for call_id, msg in list(self._msgs.items()):
                try:
                    await msg.in_progress()
                except Exception as exc:  # disconnected: nats-py reconnects, the next tick retries
                    log.warning("could not extend the ack wait of asynchronous call %s: %s", call_id, exc)
