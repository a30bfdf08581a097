"""The deployed functions: their registry rows, their code directories on
disk, their layers and the FunctionState of each, kept in step. A deploy
builds its layer (if it has a requirements.txt), then writes its code and
its registry row as one unit (both or neither); a code directory or a layer
is removed only once nothing uses it (not a function, not a sandbox still
running it, not a cold start or a deploy under way)."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import BadRequest, NotFound
from .functions import FunctionState
from .layer_build import REQUIREMENTS_FILE
from .layers import Layer, LayerStore
from .model import FunctionConfig
from .registry import CodeStore, Registry
from .validate import Limits, validate_deploy

log = logging.getLogger("faas.invoker")


class Catalog:
    def __init__(
        self,
        code: CodeStore,
        limits: Limits,
        max_functions: int,
        max_code_bytes_total: int,
        layers: LayerStore,
    ) -> None:
        self._registry: Registry | None = None
        self.code = code
        self.layers = layers
        # Deploys under way: no layer is removed meanwhile (one may be about to be used).
        self._deploying = 0
        self.limits = limits
        self.max_functions = max_functions
        self.max_code_bytes_total = max_code_bytes_total
        self.functions: dict[str, FunctionState] = {}
        # Users of each code directory and layer directory besides its
        # function: sandboxes specialized from it (or being specialized).
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
        self.layers.load()
        for config in self.registry.load_all():
            try:
                layer = self._layer_of(config)
                code_dir = self.code.write(config.name, self.registry.files(config.name))
            except Exception as exc:
                log.error("function %s cannot be served: %s", config.name, exc)
                continue
            self.functions[config.name] = FunctionState(config, code_dir, layer)
        self.code.remove_all_but({state.code_dir for state in self.functions.values()})

    def _layer_of(self, config: FunctionConfig) -> Layer | None:
        if not config.layer_id:
            return None
        layer = self.layers.get(config.layer_id)
        if layer is None:
            raise FileNotFoundError(f"its layer {config.layer_id} is missing from {self.layers.root}")
        return layer

    def get(self, name: str) -> FunctionState:
        state = self.functions.get(name)
        if state is None:
            raise NotFound(f"function {name!r} not found")
        return state

    async def put(self, body: Any) -> tuple[FunctionState, str | None]:
        """Validate and store a deploy: (its state, the code directory it
        replaced, or None for a new function)."""
        config, files = validate_deploy(body, self.limits, version=0, now=time.time())
        self._check_room(config)
        self._deploying += 1
        try:
            config, layer = await self._with_layer(config, files)
            # Checked again: other deploys may have been stored while this one's layer was built.
            current = self._check_room(config)
            code_dir = await asyncio.to_thread(self.code.write, config.name, files)
            try:
                config = await asyncio.to_thread(self.registry.put, config, files)
            except BaseException:
                self.code.remove(code_dir)
                raise
        finally:
            self._deploying -= 1
        if current is None:
            state = self.functions[config.name] = FunctionState(config, code_dir, layer)
            return state, None
        replaced = current.code_dir
        current.update(config, code_dir, layer)
        return current, replaced

    def _check_room(self, config: FunctionConfig) -> FunctionState | None:
        """The function `config` replaces (None for a new one), if the limits
        on functions and code leave room for it."""
        current = self.functions.get(config.name)
        if current is None and len(self.functions) >= self.max_functions:
            raise BadRequest(f"too many functions: at most {self.max_functions} (max_functions)")
        stored = sum(s.config.code_size_bytes for s in self.functions.values() if s is not current)
        if stored + config.code_size_bytes > self.max_code_bytes_total:
            raise BadRequest(
                f"code of all functions would exceed {self.max_code_bytes_total} bytes (max_code_bytes_total)"
            )
        return current

    async def _with_layer(
        self, config: FunctionConfig, files: dict[str, bytes]
    ) -> tuple[FunctionConfig, Layer | None]:
        """The config with the layer its requirements.txt resolves to, built
        now unless it exists; the deploy answers once it is ready."""
        raw = files.get(REQUIREMENTS_FILE)
        if raw is None:
            return config, None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"{REQUIREMENTS_FILE} is not UTF-8 text") from None
        t0 = time.monotonic()
        layer = await self.layers.ensure(text)
        build_ms = (time.monotonic() - t0) * 1000
        if layer is None:
            return dataclasses.replace(config, build_ms=build_ms), None
        return dataclasses.replace(
            config,
            layer_id=layer.id,
            layer_size_bytes=layer.size_bytes,
            layer_packages=layer.packages,
            build_ms=build_ms,
        ), layer

    async def remove(self, name: str) -> FunctionState:
        state = self.get(name)
        del self.functions[name]
        state.deleted = True
        await asyncio.to_thread(self.registry.delete, name)
        return state

    def hold(self, code_dir: str, layer_dir: str = "") -> None:
        self._users[code_dir] += 1
        if layer_dir:
            self._users[layer_dir] += 1

    def release(self, code_dir: str, layer_dir: str = "") -> None:
        """A sandbox is gone: its code goes now if nothing else uses it, its
        layer at the next collect_layers()."""
        self._users[code_dir] -= 1
        if layer_dir:
            self._users[layer_dir] -= 1
            if self._users[layer_dir] <= 0:
                del self._users[layer_dir]
        self.collect(code_dir)

    def collect(self, code_dir: str) -> None:
        """Remove `code_dir` if nothing uses it any more."""
        if self._users[code_dir] > 0 or any(s.code_dir == code_dir for s in self.functions.values()):
            return
        del self._users[code_dir]
        self.code.remove(code_dir)

    def layer_records(self, import_cache_status: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
        """Every layer (GET /system/layers): its manifest, the functions using
        it and the state of its import cache, oldest first."""
        users: dict[str, list[str]] = {layer_id: [] for layer_id in self.layers.layers}
        for name, state in sorted(self.functions.items()):
            if state.layer is not None:
                users.setdefault(state.layer.id, []).append(name)
        return [
            {
                **layer.manifest(),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(layer.created_at)),
                "functions": users[layer.id],
                "import_cache": import_cache_status(layer.path),
            }
            for layer in sorted(self.layers.layers.values(), key=lambda layer: layer.created_at)
        ]

    def _layer_unused(self, layer: Layer) -> bool:
        return (
            not self._deploying
            and not self.layers.building
            and self._users[layer.path] <= 0
            and not any(s.layer is not None and s.layer.id == layer.id for s in self.functions.values())
        )

    async def collect_layers(self, unload: Callable[[str], Awaitable[None]]) -> None:
        """Remove every layer no function, sandbox or deploy under way uses;
        `unload` stops what serves it first (its import cache)."""
        for layer in list(self.layers.layers.values()):
            if not self._layer_unused(layer):
                continue
            await unload(layer.path)
            if self._layer_unused(layer):  # still, after the wait
                log.info("removing layer %s: no function uses it", layer.id)
                await self.layers.remove(layer.id)
