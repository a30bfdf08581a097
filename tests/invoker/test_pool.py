"""The scheduling core: capacity, FIFO hand-over, 429, abandonment."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import http_status
from invoker.errors import TooManyRequests
from invoker.pool import START, Pool


async def test_starts_up_to_max_instances_then_queues() -> None:
    pool: Pool[str] = Pool(max_instances=2, max_queue=10)
    assert pool.acquire() is START
    assert pool.acquire() is START
    waiter = pool.acquire()
    assert isinstance(waiter, asyncio.Future)
    assert pool.instances == 2


async def test_idle_is_reused_most_recent_first() -> None:
    pool: Pool[str] = Pool(max_instances=3, max_queue=10)
    for _ in range(2):
        assert pool.acquire() is START
    pool.release("a")
    pool.release("b")
    assert pool.acquire() == "b"
    assert pool.acquire() == "a"


async def test_on_idle_hears_of_sandboxes_that_go_idle_only() -> None:
    idle: list[str] = []
    pool: Pool[str] = Pool(max_instances=1, max_queue=10, on_idle=idle.append)
    assert pool.acquire() is START
    waiter = pool.acquire()
    assert isinstance(waiter, asyncio.Future)
    pool.release("sb")  # straight to the waiter
    assert waiter.result() == "sb" and idle == []
    pool.release("sb")
    assert idle == ["sb"]


async def test_a_sandbox_handed_to_a_waiter_that_gave_up_goes_idle_and_is_told() -> None:
    idle: list[str] = []
    pool: Pool[str] = Pool(max_instances=1, max_queue=10, on_idle=idle.append)
    assert pool.acquire() is START
    waiter = pool.acquire()
    assert isinstance(waiter, asyncio.Future)
    pool.release("sb")
    pool.abandon(waiter)
    assert pool.idle == ["sb"] and idle == ["sb"]


async def test_waiters_are_served_in_fifo_order_and_newcomers_do_not_overtake() -> None:
    pool: Pool[str] = Pool(max_instances=1, max_queue=10)
    assert pool.acquire() is START
    first, second = pool.acquire(), pool.acquire()
    assert isinstance(first, asyncio.Future) and isinstance(second, asyncio.Future)
    pool.release("sb")
    assert first.result() == "sb" and not second.done()
    # A newcomer arriving now queues behind `second`, even if an idle sandbox appears.
    third = pool.acquire()
    assert isinstance(third, asyncio.Future)
    pool.release("sb")
    assert second.result() == "sb" and not third.done()


async def test_full_queue_is_429() -> None:
    pool: Pool[str] = Pool(max_instances=1, max_queue=1)
    pool.acquire()
    pool.acquire()
    with pytest.raises(TooManyRequests) as err:
        pool.acquire()
    assert http_status(err.value) == 429 and "Retry-After" in err.value.headers


async def test_zero_queue_rejects_immediately_when_busy() -> None:
    pool: Pool[str] = Pool(max_instances=1, max_queue=0)
    pool.acquire()
    with pytest.raises(TooManyRequests):
        pool.acquire()


async def test_discard_grants_capacity_to_the_oldest_waiter() -> None:
    pool: Pool[str] = Pool(max_instances=1, max_queue=10)
    pool.acquire()
    waiter = pool.acquire()
    pool.discard()  # the busy sandbox died
    assert waiter.result() is START  # type: ignore[union-attr]
    assert pool.instances == 1


async def test_abandoned_waiter_passes_its_sandbox_on() -> None:
    pool: Pool[str] = Pool(max_instances=1, max_queue=10)
    pool.acquire()
    gave_up, patient = pool.acquire(), pool.acquire()
    pool.release("sb")  # handed to gave_up, which then times out before using it
    pool.abandon(gave_up)  # type: ignore[arg-type]
    assert patient.result() == "sb"  # type: ignore[union-attr]


async def test_abandoned_pending_waiter_leaves_the_queue() -> None:
    pool: Pool[str] = Pool(max_instances=1, max_queue=1)
    pool.acquire()
    waiter = pool.acquire()
    pool.abandon(waiter)  # type: ignore[arg-type]
    assert not pool.waiters
    assert isinstance(pool.acquire(), asyncio.Future)  # room in the queue again


async def test_remove_idle_frees_capacity() -> None:
    pool: Pool[str] = Pool(max_instances=1, max_queue=10)
    pool.acquire()
    pool.release("old")
    pool.remove_idle("old")
    assert pool.instances == 0 and pool.acquire() is START


# -- background (asynchronous) calls share the capacity ------------------------


async def test_background_calls_leave_one_slot_to_foreground_calls() -> None:
    pool: Pool[str] = Pool(max_instances=3, max_queue=10)
    assert pool.acquire(background=True) is START
    assert pool.acquire(background=True) is START
    third = pool.acquire(background=True)
    assert isinstance(third, asyncio.Future) and pool.background == 2
    # The slot background calls may not take is a foreground call's at once.
    assert pool.acquire() is START
    assert pool.instances == 3


async def test_a_freed_slot_goes_to_a_waiting_foreground_call_first() -> None:
    pool: Pool[str] = Pool(max_instances=2, max_queue=10)
    assert pool.acquire(background=True) is START
    assert pool.acquire() is START
    background = pool.acquire(background=True)
    foreground = pool.acquire()
    assert isinstance(background, asyncio.Future) and isinstance(foreground, asyncio.Future)
    pool.release("sb-1", background=True)  # background held 1, its cap: the foreground waiter gets it
    assert foreground.result() == "sb-1" and not background.done()
    pool.release("sb-2")
    assert background.result() == "sb-2" and pool.background == 1


async def test_with_one_instance_foreground_and_background_alternate() -> None:
    """max_instances=1: a synchronous call waits for at most the one
    background call running, and a flood of synchronous calls still lets a
    background call through whenever none runs."""
    pool: Pool[str] = Pool(max_instances=1, max_queue=10)
    assert pool.acquire(background=True) is START
    sync_1, background, sync_2 = pool.acquire(), pool.acquire(background=True), pool.acquire()
    pool.release("sb", background=True)
    assert sync_1.result() == "sb" and not background.done()  # type: ignore[union-attr]
    pool.release("sb")  # background holds nothing: its waiter goes before sync_2
    assert background.result() == "sb" and not sync_2.done()  # type: ignore[union-attr]
    pool.release("sb", background=True)
    assert sync_2.result() == "sb"  # type: ignore[union-attr]
    assert pool.background == 0


async def test_background_waiters_are_not_bounded_by_max_queue() -> None:
    pool: Pool[str] = Pool(max_instances=1, max_queue=0)
    pool.acquire()
    assert isinstance(pool.acquire(background=True), asyncio.Future)
    with pytest.raises(TooManyRequests):
        pool.acquire()


async def test_abandoned_background_grant_is_returned_and_counted() -> None:
    pool: Pool[str] = Pool(max_instances=1, max_queue=10)
    pool.acquire()
    gave_up = pool.acquire(background=True)
    pool.discard()  # the slot goes to the background waiter, which has already given up
    assert pool.background == 1
    pool.abandon(gave_up, background=True)  # type: ignore[arg-type]
    assert pool.background == 0 and pool.instances == 0
    assert pool.acquire() is START
