"""Pre-warmed blank sandboxes: namespaces made, root built, cgroup created
and attached, waiting for a function. A cold call takes one and specializes
it, so no fork, unshare, mkdir or cgroup attach happens on its path. A
background task keeps the pool at its size; the blanks are also the pool of
ready cgroups.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable

from .cgroups import CgroupLimits
from .instance import Sandbox

log = logging.getLogger("faas.prewarm")

REFILL_DELAY_S = 0.02


class BlankPool:
    def __init__(self, size: int, make_blank: Callable[[], Awaitable[Sandbox]]) -> None:
        self.size = size
        self._make_blank = make_blank
        self.ready: collections.deque[Sandbox] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.made = 0  # blanks created since start, for tests and the benchmark

    async def take(self, limits: CgroupLimits) -> Sandbox | None:
        """The oldest ready blank, with `limits` set on its cgroup, or None
        when the pool is empty. Blanks are made with the default limits,
        which most functions keep: then nothing is written on the cold path."""
        self._wake.set()
        while self.ready:
            sandbox = self.ready.popleft()
            if not sandbox.alive():
                await sandbox.destroy()
                continue
            try:
                sandbox.set_limits(limits)
            except OSError as exc:
                log.warning("could not set the limits of a pre-warmed sandbox (%s)", exc)
                await sandbox.destroy()
                continue
            return sandbox
        return None

    async def __aenter__(self) -> BlankPool:
        if self.size > 0:
            self._task = asyncio.create_task(self._refill(), name="prewarm")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        blanks, self.ready = list(self.ready), collections.deque()
        await asyncio.gather(*(s.destroy() for s in blanks), return_exceptions=True)

    async def _refill(self) -> None:
        failures = 0
        while True:
            while len(self.ready) < self.size:
                try:
                    sandbox = await self._make_blank()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    log.warning("could not pre-warm a sandbox (%s); retrying", exc)
                    await asyncio.sleep(min(5.0, 0.05 * 2**failures))
                    continue
                failures = 0
                self.made += 1
                self.ready.append(sandbox)
            self._wake.clear()
            await self._wake.wait()
            # Let the cold start that took a blank finish first: creating
            # the next one (fork, cgroup attach) competes with it for the CPU.
            await asyncio.sleep(REFILL_DELAY_S)
