"""The deployed functions: their registry rows, their code directories on
disk, their layers and the FunctionState of each retained version, kept in
step. A deploy builds its layer (if it has a requirements.txt), then writes
its code and its registry row as one unit (both or neither); a code
directory or a layer is removed only once nothing uses it (not a retained
version, not a sandbox still running it, not a cold start or a deploy
under way).

With a registry shared by a cluster, a version's code and layer reach this
server's disk on its first use here (`materialize`, from a cold start),
not when it is loaded or deployed elsewhere; concurrent first uses fetch
once, and the copies stay until the version goes.

Changes to one function (deploys, aliases, retention, deletion) take its
lock, one at a time; other functions are not held up."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .errors import BadRequest, CallTimedOut, LayerUnavailable, NotFound
from .functions import FunctionState
from .layer_build import REQUIREMENTS_FILE
from .layers import Layer, LayerStore
from .model import Deployed, FunctionConfig
from .registry import CodeStore, LayerGone, Registry
from .tasks import shared_task
from .validate import Limits, validate_deploy
from .versions import FunctionVersions

log = logging.getLogger("faas.invoker")


class Catalog:
    def __init__(
        self,
        code: CodeStore,
        limits: Limits,
        max_functions: int,
        max_code_bytes_total: int,
        versions_kept: int,
        secret_exists: Callable[[str], bool],
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
        self.versions_kept = versions_kept
        self.secret_exists = secret_exists
        self.functions: dict[str, FunctionVersions] = {}
        # Users of each code directory and layer directory besides its
        # versions: sandboxes specialized from it (or being specialized).
        self._users: collections.Counter[str] = collections.Counter()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # First uses under way: a version's code and layer being fetched.
        self._materializing: dict[FunctionState, asyncio.Task[None]] = {}

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            raise RuntimeError("the catalog is not loaded")
        return self._registry

    def load(self, registry: Registry) -> None:
        """At start: every stored version that can be served, and the aliases
        between them. One that cannot (its code does not fit on this disk,
        say) is logged and left out; the others are served."""
        self._registry = registry
        self.layers.load()
        for config in registry.load_all():
            if registry.shared:  # fetched on first use
                fn = self.functions.setdefault(config.name, FunctionVersions(config.name))
                fn.add(FunctionState(config, "", self.layers.get(config.layer_id)))
                continue
            try:
                layer = self._layer_of(config)
                code_dir = self.code.write(config.name, registry.files(config.name, config.version))
            except Exception as exc:
                log.error("function %s version %d cannot be served: %s", config.name, config.version, exc)
                continue
            fn = self.functions.setdefault(config.name, FunctionVersions(config.name))
            fn.add(FunctionState(config, code_dir, layer))
        for name, alias in registry.load_aliases():
            fn = self.functions.get(name)
            if fn is not None and alias.targets <= fn.states.keys():
                fn.set_alias(alias)
            else:
                log.error("alias %s of function %s names a version that cannot be served", alias.name, name)
        for fn in self.functions.values():  # versions_kept may be lower than last time
            expired = fn.expired(self.versions_kept)
            if expired:
                registry.delete_versions(fn.name, [state.config.version for state in expired])
                fn.drop(expired)
        self.code.remove_all_but({state.code_dir for state in self.states()})

    async def materialize(self, state: FunctionState, deadline: float) -> None:
        """The version's layer and code on this server's disk, fetched now
        if they are not (a version of a shared registry, on its first use
        here) by `deadline` (monotonic: a cold start's); NotFound if it was
        removed meanwhile, LayerUnavailable if its layer cannot be had."""
        if state.code_dir and (state.layer is not None or not state.config.layer_id):
            return
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await shared_task(self._materializing, state, lambda: self._fetch(state))
        except TimeoutError:
            raise CallTimedOut(
                f"timed out after {state.config.timeout_s:g} s (fetching its code and layer)"
            ) from None

    async def _fetch(self, state: FunctionState) -> None:
        config = state.config
        gone = NotFound(f"version {config.version} of function {config.name!r} was removed")
        if config.layer_id and state.layer is None:
            state.layer = await self.layers.obtain(config.layer_id)
        if state.code_dir:
            return
        try:
            files = await asyncio.to_thread(self.registry.files, config.name, config.version)
        except KeyError:
            raise gone from None
        code_dir = await asyncio.to_thread(self.code.write, config.name, files)
        if state.deleted:  # removed while its code was fetched: nothing will collect it
            self.code.remove(code_dir)
            raise gone
        state.code_dir = code_dir
        log.info("fetched the code of %s version %d", config.name, config.version)

    async def publish_layers(self) -> None:
        """In a cluster, at start: every layer here that a stored version
        names is stored in the database unless it is (one built before
        layers were shared), so the other servers can fetch it."""
        if self.layers.archive is None:
            return
        used = {state.config.layer_id for state in self.states()}
        for layer in [layer for layer in self.layers.layers.values() if layer.id in used]:
            try:
                await self.layers.publish(layer)
            except LayerUnavailable as exc:
                log.warning("%s", exc.message)

    def _layer_of(self, config: FunctionConfig) -> Layer | None:
        if not config.layer_id:
            return None
        layer = self.layers.get(config.layer_id)
        if layer is None:
            raise FileNotFoundError(f"its layer {config.layer_id} is missing from {self.layers.root}")
        return layer

    def get(self, name: str) -> FunctionVersions:
        fn = self.functions.get(name)
        if fn is None:
            raise NotFound(f"function {name!r} not found")
        return fn

    def states(self) -> list[FunctionState]:
        """Every retained version of every function."""
        return [state for fn in self.functions.values() for state in fn.states.values()]

    @contextlib.asynccontextmanager
    async def locked(self, name: str) -> AsyncIterator[None]:
        """Hold the function `name` still: one change to it at a time."""
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        async with lock:
            yield

    async def put(
        self, body: Any, admit: Callable[[FunctionConfig], Awaitable[None]] | None = None
    ) -> tuple[FunctionVersions, Deployed]:
        """Validate and store a deploy as a new version, unless it is the same
        as the newest. The caller holds the function's lock (`locked`) and
        applies retention. `admit` may refuse a valid config (BadRequest)
        before anything is built or stored."""
        config, files = validate_deploy(body, self.limits, version=0, now=time.time())
        for secret in config.secrets:
            if not self.secret_exists(secret):
                raise BadRequest(f"secret {secret!r} does not exist: create it first (faas secret create)")
        fn = self.functions.get(config.name)
        if fn is not None and fn.newest.config.same_deploy(config):
            return fn, Deployed(fn.newest.config, created=False, changed=False)
        self._check_room(config)
        if admit is not None:
            await admit(config)
        self._deploying += 1
        try:
            config, layer = await self._with_layer(config, files)
            fn = self._check_room(config)  # again: others may have been stored while the layer was built
            code_dir = await asyncio.to_thread(self.code.write, config.name, files)
            try:
                try:
                    config, changed = await asyncio.to_thread(self.registry.put, config, files)
                except LayerGone:
                    assert layer is not None
                    await self.layers.publish(layer)  # removed meanwhile as unused: stored again
                    config, changed = await asyncio.to_thread(self.registry.put, config, files)
            except BaseException:
                self.code.remove(code_dir)
                raise
        finally:
            self._deploying -= 1
        if fn is not None and not changed:
            # Another writer of a shared registry stored this very deploy first.
            self.code.remove(code_dir)
            return fn, Deployed(fn.newest.config, created=False, changed=False)
        created = fn is None
        if fn is None:
            fn = self.functions[config.name] = FunctionVersions(config.name)
        fn.add(FunctionState(config, code_dir, layer))
        return fn, Deployed(config, created=created, changed=True)

    def _check_room(self, config: FunctionConfig) -> FunctionVersions | None:
        """The function `config` is a version of (None for a new one), if the
        limits on functions and code leave room for it."""
        fn = self.functions.get(config.name)
        if fn is None and len(self.functions) >= self.max_functions:
            raise BadRequest(f"too many functions: at most {self.max_functions} (max_functions)")
        stored = sum(state.config.code_size_bytes for state in self.states())
        if fn is not None:  # what retention will let go once this version is in
            stored -= sum(s.config.code_size_bytes for s in fn.expired(self.versions_kept, adding=1))
        if stored + config.code_size_bytes > self.max_code_bytes_total:
            raise BadRequest(
                f"code of all functions would exceed {self.max_code_bytes_total} bytes (max_code_bytes_total)"
            )
        return fn

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

    async def retain(self, fn: FunctionVersions) -> list[FunctionState]:
        """Let go of the versions retention no longer keeps (the caller holds
        the lock): out of the registry and of `fn`; the caller retires their
        sandboxes and collects their code."""
        expired = fn.expired(self.versions_kept)
        if expired:
            await asyncio.to_thread(
                self.registry.delete_versions, fn.name, [state.config.version for state in expired]
            )
            fn.drop(expired)
        return expired

    async def remove(self, name: str) -> list[FunctionState]:
        """Delete the function: every version and alias; its versions' states."""
        fn = self.get(name)
        del self.functions[name]
        states = fn.all_states()
        fn.drop(states)
        await asyncio.to_thread(self.registry.delete, name)
        return states

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
        if not code_dir:  # a version whose code was never fetched here
            return
        if self._users[code_dir] > 0 or any(state.code_dir == code_dir for state in self.states()):
            return
        del self._users[code_dir]
        self.code.remove(code_dir)

    def layer_records(self, import_cache_status: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
        """Every layer (GET /system/layers): its manifest, the functions whose
        retained versions use it and the state of its import cache, oldest first."""
        users: dict[str, list[str]] = {layer_id: [] for layer_id in self.layers.layers}
        for name in sorted(self.functions):
            for layer_id in sorted({s.layer.id for s in self.functions[name].states.values() if s.layer}):
                users.setdefault(layer_id, []).append(name)
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
            and not any(state.config.layer_id == layer.id for state in self.states())
        )

    async def collect_layers(self, unload: Callable[[str], Awaitable[None]]) -> None:
        """Remove every layer no retained version, sandbox or deploy under
        way uses; `unload` stops what serves it first (its import cache)."""
        for layer in list(self.layers.layers.values()):
            if not self._layer_unused(layer):
                continue
            await unload(layer.path)
            if self._layer_unused(layer):  # still, after the wait
                log.info("removing layer %s: no function uses it", layer.id)
                await self.layers.remove(layer.id)
