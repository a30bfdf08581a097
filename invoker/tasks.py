"""Ending the invoker's own background tasks, and saying where they wait."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


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
