"""The deployed functions: their registry rows, their code directories on
disk and the FunctionState of each, kept in step. A deploy writes its code
and its registry row as one unit (both or neither); a code directory is
removed only once nothing uses it (not the function, not a sandbox still
running it, not a cold start under way)."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import BadRequest, NotFound
from .functions import FunctionState
from .model import FunctionConfig
from .registry import CodeStore, Registry
from .validate import Limits, validate_deploy

log = logging.getLogger("faas.invoker")


class Catalog:
    def __init__(
        self, code: CodeStore, limits: Limits, max_functions: int, max_code_bytes_total: int
    ) -> None:
        self._registry: Registry | None = None
        self.code = code
        self.limits = limits
        self.max_functions = max_functions
        self.max_code_bytes_total = max_code_bytes_total
        self.functions: dict[str, FunctionState] = {}
        # Users of each code directory besides its function: sandboxes
        # specialized from it (or being specialized).
        self._users: collections.Counter[str] = collections.Counter()

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            raise RuntimeError("the catalog is not loaded")
        return self._registry

    def load(self, registry: Registry) -> None:
        """At start: every stored function that can be served. One that
        cannot (its code does not fit on this disk, say) is logged and left
        out; the others are served."""
        self._registry = registry
        for config in self.registry.load_all():
            try:
                code_dir = self.code.write(config.name, self.registry.files(config.name))
            except Exception as exc:
                log.error("function %s cannot be served: %s", config.name, exc)
                continue
            self.functions[config.name] = FunctionState(config, code_dir)
        self.code.remove_all_but({state.code_dir for state in self.functions.values()})

    def get(self, name: str) -> FunctionState:
        state = self.functions.get(name)
        if state is None:
            raise NotFound(f"function {name!r} not found")
        return state

    async def put(
        self, body: Any, admit: Callable[[FunctionConfig], Awaitable[None]] | None = None
    ) -> tuple[FunctionState, str | None]:
        """Validate and store a deploy: (its state, the code directory it
        replaced, or None for a new function). `admit` may refuse a valid
        config (BadRequest) before anything is stored."""
        config, files = validate_deploy(body, self.limits, version=0, now=time.time())
        current = self.functions.get(config.name)
        if current is None and len(self.functions) >= self.max_functions:
            raise BadRequest(f"too many functions: at most {self.max_functions} (max_functions)")
        stored = sum(s.config.code_size_bytes for s in self.functions.values() if s is not current)
        if stored + config.code_size_bytes > self.max_code_bytes_total:
            raise BadRequest(
                f"code of all functions would exceed {self.max_code_bytes_total} bytes (max_code_bytes_total)"
            )
        if admit is not None:
            await admit(config)
        code_dir = await asyncio.to_thread(self.code.write, config.name, files)
        try:
            config = await asyncio.to_thread(self.registry.put, config, files)
        except BaseException:
            self.code.remove(code_dir)
            raise
        if current is None:
            state = self.functions[config.name] = FunctionState(config, code_dir)
            return state, None
        replaced = current.code_dir
        current.update(config, code_dir)
        return current, replaced

    async def remove(self, name: str) -> FunctionState:
        state = self.get(name)
        del self.functions[name]
        state.deleted = True
        await asyncio.to_thread(self.registry.delete, name)
        return state

    def hold(self, code_dir: str) -> None:
        self._users[code_dir] += 1

    def release(self, code_dir: str) -> None:
        self._users[code_dir] -= 1
        self.collect(code_dir)

    def collect(self, code_dir: str) -> None:
        """Remove `code_dir` if nothing uses it any more."""
        if self._users[code_dir] > 0 or any(s.code_dir == code_dir for s in self.functions.values()):
            return
        del self._users[code_dir]
        self.code.remove(code_dir)
