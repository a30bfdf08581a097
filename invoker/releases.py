"""The Invoker's methods for what a release is made of: deploys that make
versions, the function's versions and aliases, rollback, deletion, and
secrets. A mixin of the
Invoker (invoker/invoker.py), so that they are its public methods, as the
gateway's contract asks; kept here so that each module stays one subject.

After any change to a function's versions or aliases (`_settle`): calls
waiting for a version their alias no longer points at follow the alias,
and retention lets go of the versions it no longer keeps (their idle
sandboxes are destroyed, busy ones when their call ends, their code once
nothing uses it). A deploy leaves the previous version's warm sandboxes
alone: a rollback while they are warm starts nothing; they go by keep-alive
or the warm-memory budget like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sandbox.api import SandboxFactory

from .catalog import Catalog
from .config import InvokerConfig
from .errors import BadRequest, Conflict, FaasError, NotFound
from .functions import FunctionState
from .logs import LogStore
from .metering import Totals, UsageRecord
from .model import LIVE, Alias, Deployed, FunctionConfig, UsageQuery
from .outbound import NetworkAdmission
from .recorder import Recorder
from .release_validate import (
    parse_alias,
    parse_rollback,
    parse_secret,
    validate_alias_name,
    validate_secret_name,
)
from .secrets import SecretStore
from .uids import UidRange
from .versions import FunctionVersions


class Releases:
    catalog: Catalog
    _secrets: SecretStore
    _logs: LogStore
    _recorder: Recorder
    _uids: UidRange
    factory: SandboxFactory
    # Secret writes one at a time: a file each, written whole then renamed.
    _secret_lock: asyncio.Lock
    config: InvokerConfig

    if TYPE_CHECKING:

        async def _drain_idle(self, state: FunctionState) -> None: ...

        def admit(self, name: str, *, room: bool = True) -> FunctionConfig: ...

    # -- deploy and delete -------------------------------------------------------

    async def deploy(self, body: Any) -> tuple[FunctionConfig, bool]:
        """Create or update a function; (config, created)."""
        deployed = await self.deploy_version(body)
        return deployed.config, deployed.created

    async def deploy_version(self, body: Any) -> Deployed:
        """A deploy: a new version unless it is the same as the newest."""
        name = body.get("name") if isinstance(body, dict) else None
        async with self.catalog.locked(name if isinstance(name, str) else ""):
            fn, deployed = await self.catalog.put(body, NetworkAdmission(self.factory))
            if deployed.changed:
                self._load_layer(fn.newest)  # its import cache starts now, not at the first call
                await self._settle(fn)
        return deployed

    async def delete(self, name: str) -> None:
        """Delete the function: every version and alias; its sandboxes are drained."""
        async with self.catalog.locked(name):
            states = await self.catalog.remove(name)
        await self._retire(states, lambda state: NotFound(f"function {name!r} was deleted"))
        self._logs.delete(name)

    async def admit_current(self, name: str) -> FunctionConfig:
        """admit(), and in a cluster once more after reading the shared
        registry when the function (or version, or alias) is unknown here:
        a deploy committed through another server may not have been
        followed here yet (milliseconds), and its caller must find it."""
        try:
            return self.admit(name)
        except NotFound:
            if not self.config.database:
                raise
        from .cluster_sync import follow

        await follow(self, name.partition("@")[0])  # type: ignore[arg-type]
        return self.admit(name)

    async def _settle(self, fn: FunctionVersions) -> None:
        fn.reroute_waiters()
        expired = await self.catalog.retain(fn)
        await self._retire(
            expired,
            lambda state: NotFound(
                f"version {state.config.version} of function {fn.name!r} was removed (versions_kept)"
            ),
        )

    async def _retire(
        self, states: Iterable[FunctionState], error: Callable[[FunctionState], FaasError]
    ) -> None:
        for state in states:
            state.pool.fail_waiters(error(state))
            await self._drain_idle(state)
            self.catalog.collect(state.code_dir)
        await self.catalog.collect_layers(self.factory.unload_layer)

    # -- versions and aliases --------------------------------------------------------

    def functions(self) -> list[FunctionConfig]:
        """The newest version of each function."""
        return [self.catalog.functions[name].newest.config for name in sorted(self.catalog.functions)]

    def layers(self) -> list[dict[str, Any]]:
        """Every layer: its manifest, the functions using it, its import cache's state."""
        return self.catalog.layer_records(self.factory.layer_status)

    def _load_layer(self, state: FunctionState) -> None:
        """Start the version's layer's import cache now, not at its first cold start."""
        image = state.layer_image(self._uids.layer_zygote())
        if image is not None:
            self.factory.load_layer(image)

    def logs(self, name: str, tail: int) -> list[str]:
        self.catalog.get(name)
        return self._logs.tail(name, tail)

    async def usage_totals(self, query: UsageQuery) -> dict[str, Totals]:
        return await self._recorder.totals(query)

    async def usage_records(
        self, query: UsageQuery, cursor: int, limit: int
    ) -> list[tuple[int, UsageRecord]]:
        return await self._recorder.records(query, cursor, limit)

    def function_files(self, name: str) -> dict[str, bytes]:
        """The newest version's files (the Lambda API's UpdateFunctionConfiguration redeploys them)."""
        newest = self.get(name)
        return self.catalog.registry.files(newest.name, newest.version)

    def get(self, name: str) -> FunctionConfig:
        """The function's newest version."""
        return self.catalog.get(name).newest.config

    def warm_count(self, name: str) -> int:
        """Warm sandboxes of the function, all versions together."""
        fn = self.catalog.functions.get(name)
        return sum(state.pool.instances for state in fn.states.values()) if fn else 0

    def versions(self, name: str) -> list[tuple[FunctionConfig, int]]:
        """Every retained version, oldest first, with its warm sandboxes."""
        fn = self.catalog.get(name)
        return [(state.config, state.pool.instances) for _, state in sorted(fn.states.items())]

    def aliases(self, name: str) -> list[dict[str, Any]]:
        """The function's aliases as records, `live` first."""
        fn = self.catalog.get(name)
        newest = fn.newest.config.version
        return [alias.to_record(newest) for alias in fn.all_aliases()]

    async def put_alias(self, name: str, alias_name: str, body: Any) -> tuple[dict[str, Any], bool]:
        """Point an alias at a version, or split it between two; (its record, created)."""
        async with self.catalog.locked(name):
            fn = self.catalog.get(name)
            alias = parse_alias(validate_alias_name(alias_name), body)
            fn.check_alias(alias)
            self._check_secrets(fn, alias)
            created = alias.name != LIVE and alias.name not in fn.aliases
            await self._store_alias(fn, alias)
        return alias.to_record(fn.newest.config.version), created

    async def delete_alias(self, name: str, alias_name: str) -> dict[str, Any] | None:
        """Remove an alias; for `live`, unpin it (it follows the newest
        version again) and return its record."""
        async with self.catalog.locked(name):
            fn = self.catalog.get(name)
            fn.alias(alias_name)  # NotFound for no such alias
            if alias_name in fn.aliases:
                await asyncio.to_thread(self.catalog.registry.delete_alias, name, alias_name)
                fn.remove_alias(alias_name)
                await self._settle(fn)
            if alias_name == LIVE:
                return fn.alias(LIVE).to_record(fn.newest.config.version)
        return None

    async def rollback(self, name: str, body: Any) -> dict[str, Any]:
        """Pin live to version `to`, by default the retained version before
        the one live points at now."""
        async with self.catalog.locked(name):
            fn = self.catalog.get(name)
            to = parse_rollback(body)
            current = fn.resolve(None)[0].config.version
            if to is None:
                earlier = [number for number in fn.states if number < current]
                if not earlier:
                    raise BadRequest(f"no version before {current} to roll back to ({fn.retained_text()})")
                to = max(earlier)
            alias = Alias(LIVE, to)
            fn.check_alias(alias)
            self._check_secrets(fn, alias)
            await self._store_alias(fn, alias)
        return {"function": name, "previous": current, "live": alias.to_record(fn.newest.config.version)}

    async def _store_alias(self, fn: FunctionVersions, alias: Alias) -> None:
        await asyncio.to_thread(self.catalog.registry.set_alias, fn.name, alias)
        fn.set_alias(alias)
        await self._settle(fn)

    def _check_secrets(self, fn: FunctionVersions, alias: Alias) -> None:
        """An alias may not send calls to a version whose secret is gone."""
        for number in sorted(alias.targets):
            for secret in fn.states[number].config.secrets:
                if not self._secrets.exists(secret):
                    raise BadRequest(f"version {number} uses secret {secret!r}, which no longer exists")

    # -- secrets --------------------------------------------------------------------

    def secrets(self) -> list[dict[str, Any]]:
        """Every secret's name and metadata (never a value)."""
        return [info.to_record(self._secret_users(info.name)) for info in self._secrets.list()]

    def secret(self, name: str) -> dict[str, Any]:
        info = self._secrets.info(validate_secret_name(name))
        return info.to_record(self._secret_users(name))

    async def put_secret(self, body: Any) -> tuple[dict[str, Any], bool]:
        """Create a secret, or rotate it (sandboxes started from now on read
        the new value); (its record, created)."""
        name, value = parse_secret(body)
        async with self._secret_lock:
            info, created = await asyncio.to_thread(self._secrets.put, name, value)
        return info.to_record(self._secret_users(name)), created

    async def delete_secret(self, name: str) -> None:
        """Delete a secret no alias's version uses (409 otherwise)."""
        self._secrets.info(validate_secret_name(name))  # NotFound
        in_use = sorted(
            f"{fn.name} version {number}"
            for fn in self.catalog.functions.values()
            for number in fn.aliased_versions()
            if name in fn.states[number].config.secrets
        )
        if in_use:
            raise Conflict(
                f"secret {name!r} is in use by {', '.join(in_use)}: deploy without it "
                "(or point the aliases elsewhere) first"
            )
        async with self._secret_lock:
            await asyncio.to_thread(self._secrets.delete, name)

    def _secret_users(self, name: str) -> dict[str, list[int]]:
        """Function name -> its retained versions that use secret `name`."""
        users: dict[str, list[int]] = {}
        for fn in self.catalog.functions.values():
            numbers = sorted(v for v, state in fn.states.items() if name in state.config.secrets)
            if numbers:
                users[fn.name] = numbers
        return users
