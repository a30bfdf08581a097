"""The invoker's own background tasks: one for every caller of the same
work at once, ending them, and saying where they wait."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def shared_task(tasks: dict[Any, asyncio.Task[T]], key: Any, start: Callable[[], Awaitable[T]]) -> T:
    """One task per key for every caller at the same time; a caller that
    gives up (its request was cancelled) does not stop it for the others."""
    task = tasks.get(key)
    if task is None:
        task = asyncio.ensure_future(start())
        tasks[key] = task
        task.add_done_callback(lambda done: _finished(tasks, key, done))
    return await asyncio.shield(task)


def _finished(tasks: dict[Any, asyncio.Task[T]], key: Any, task: asyncio.Task[T]) -> None:
    tasks.pop(key, None)
    if not task.cancelled():
        task.exception()  # retrieved: every caller may have gone


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and return once it has ended."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def task_stacks() -> str:
    """Where each pending task of the loop waits, for a log line."""
    out = []
    for task in asyncio.all_tasks():
        frames = task.get_stack(limit=8)
        where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
        out.append(f"{task.get_name()}: {where}")
    return "; ".join(out)
