"""Scheduling core of one function: idle sandboxes, capacity and a FIFO of
waiting calls. No I/O: the invoker starts and destroys sandboxes; this
decides who gets what, in order.

A call asks `acquire()` and gets an idle sandbox, START (a capacity slot is
reserved for it: start a new sandbox), or a future to await, which resolves
to one of those two. A freed sandbox or slot goes straight to the oldest
waiter, never back into a shared queue a newcomer could grab it from (the
asyncio.Queue overtaking problem: a newcomer overtaking a woken waiter
made p99 go from 4 ms to over 100 ms at 32 connections).

Background calls (asynchronous invocations) share the capacity with
foreground (synchronous) ones without starving them or being starved:
they hold at most `background_cap` (max_instances - 1, at least 1) slots,
so a synchronous call finds a free slot or waits for at most one call to
end; a freed slot goes to a waiting foreground call first, except when
background calls hold none and the slot was not theirs, so a flood of
synchronous calls cannot starve them either. Background waiters are bounded by that cap, not by max_queue
(the asynchronous queue is their queue).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import TooManyRequests

S = TypeVar("S")


class _Start:
    def __repr__(self) -> str:
        return "START"


START = _Start()


def background_cap(max_instances: int) -> int:
    """How many slots of a function background calls may hold at once."""
    return max(1, max_instances - 1)


Waiter = asyncio.Future[S | _Start]


class Pool(Generic[S]):
    def __init__(
        self, max_instances: int, max_queue: int, on_idle: Callable[[S], None] | None = None
    ) -> None:
        self.max_instances = max_instances
        self.max_queue = max_queue
        # Told of each sandbox that goes idle (not of one handed straight to a waiter).
        self._on_idle = on_idle
        self.idle: list[S] = []  # LIFO: the most recently used stays warm
        self.instances = 0  # live sandboxes plus reserved slots, busy or idle
        self.waiters: collections.deque[Waiter[S]] = collections.deque()
        self.background_waiters: collections.deque[Waiter[S]] = collections.deque()
        # Sandboxes and reserved slots held by background calls.
        self.background = 0

    @property
    def busy(self) -> int:
        return self.instances - len(self.idle)

    def acquire(self, background: bool = False) -> S | _Start | Waiter[S]:
        if background:
            return self._acquire_background()
        if not self.waiters:
            if self.idle:
                return self.idle.pop()
            if self.instances < self.max_instances:
                self.instances += 1
                return START
        if len(self.waiters) >= self.max_queue:
            raise self._full()
        fut: Waiter[S] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        return fut

    def check_room(self) -> None:
        """TooManyRequests if a call arriving now would find no sandbox, no
        slot and no place in the queue: asked before its body is read."""
        if len(self.waiters) >= self.max_queue and not self.idle and self.instances >= self.max_instances:
            raise self._full()

    def _full(self) -> TooManyRequests:
        return TooManyRequests(
            f"concurrency limit of {self.max_instances} reached and {len(self.waiters)} calls already waiting"
        )

    def _acquire_background(self) -> S | _Start | Waiter[S]:
        if (
            not self.waiters
            and not self.background_waiters
            and self.background < background_cap(self.max_instances)
        ):
            if self.idle:
                self.background += 1
                return self.idle.pop()
            if self.instances < self.max_instances:
                self.instances += 1
                self.background += 1
                return START
        fut: Waiter[S] = asyncio.get_running_loop().create_future()
        self.background_waiters.append(fut)
        return fut

    def _next_waiter(self, freed_by_background: bool = False) -> Waiter[S] | None:
        """Who gets a freed sandbox or slot: the oldest foreground waiter,
        unless background calls hold nothing and it was not theirs (then the
        oldest background one, so that neither kind starves the other); a
        background waiter only while background holds less than its cap.
        Counts the grant."""
        for queue in (self.waiters, self.background_waiters):
            while queue and queue[0].done():  # gave up; abandon() normally removes them
                queue.popleft()
        background_may = bool(self.background_waiters) and self.background < background_cap(
            self.max_instances
        )
        if background_may and (not self.waiters or (self.background == 0 and not freed_by_background)):
            self.background += 1
            return self.background_waiters.popleft()
        if self.waiters:
            return self.waiters.popleft()
        return None

    def _hand_over(self, item: S | _Start, freed_by_background: bool) -> bool:
        fut = self._next_waiter(freed_by_background)
        if fut is None:
            return False
        fut.set_result(item)
        return True

    def release(self, sandbox: S, background: bool = False) -> None:
        """A call finished and the sandbox can serve again: the oldest waiting
        call takes it, else it goes idle."""
        if background:
            self.background -= 1
        if not self._hand_over(sandbox, background):
            self.idle.append(sandbox)
            if self._on_idle is not None:
                self._on_idle(sandbox)

    def discard(self, background: bool = False) -> None:
        """A busy sandbox (or a reserved slot) is gone; its capacity is free."""
        self.instances -= 1
        if background:
            self.background -= 1
        self._grant_capacity(background)

    def remove_idle(self, sandbox: S) -> None:
        """Take an idle sandbox out (keep-alive expiry, eviction, redeploy)."""
        self.idle.remove(sandbox)
        self.instances -= 1
        self._grant_capacity()

    def resize(self, max_instances: int, max_queue: int) -> None:
        """New limits (a redeploy): every slot a higher limit allows goes to a
        waiter at once. A lower one takes effect as sandboxes go."""
        self.max_instances = max_instances
        self.max_queue = max_queue
        self._grant_capacity()

    def _grant_capacity(self, freed_by_background: bool = False) -> None:
        """Hand each free capacity slot to a waiter, oldest first."""
        while self.instances < self.max_instances:
            fut = self._next_waiter(freed_by_background)
            if fut is None:
                return
            self.instances += 1
            fut.set_result(START)

    def abandon(self, fut: Waiter[S], background: bool = False) -> None:
        """A waiter gave up (timeout, cancellation). If it had already been
        handed something, pass that on rather than lose it."""
        if fut.done() and not fut.cancelled():
            item = fut.result()
            if item is START:
                self.discard(background)
            else:
                self.release(item, background)  # type: ignore[arg-type]
        else:
            fut.cancel()
            for queue in (self.waiters, self.background_waiters):
                try:
                    queue.remove(fut)
                except ValueError:
                    pass

    def fail_waiters(self, exc: BaseException) -> None:
        for queue in (self.waiters, self.background_waiters):
            while queue:
                fut = queue.popleft()
                if not fut.done():
                    fut.set_exception(exc)
