"""A function's versions and aliases, and which version a call runs.

Each retained version is a FunctionState of its own (config, code, pool of
sandboxes), so calls to two versions never share a sandbox and a version's
warm sandboxes stay warm while calls go elsewhere. Pure: no I/O.

A call names the function (`f`: its `live` alias), a version (`f@3`) or an
alias (`f@beta`). An alias that splits calls between two versions picks per
call from a golden-ratio (Weyl) sequence: as even as a counter over any run
of calls (the share sent to the canary is within a call or two of its
weight), without the period a counter would have.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

from .errors import BadRequest, NotFound
from .functions import FunctionState
from .model import LIVE, Alias

# The fractional part of the golden ratio: the step of the sequence.
GOLDEN_STEP = (math.sqrt(5) - 1) / 2
MAX_ALIASES = 100


class Rerouted(Exception):
    """A call waiting for a sandbox of a version its alias no longer points
    at: it is routed again (not a FaasError: it never reaches a client)."""


class _Splitter:
    """Which of two versions each call of a weighted alias goes to."""

    def __init__(self) -> None:
        # A random start, so two aliases (or two servers) do not move in step.
        self._x = random.random()

    def to_canary(self, weight: float) -> bool:
        self._x = (self._x + GOLDEN_STEP) % 1.0
        return self._x < weight


class FunctionVersions:
    def __init__(self, name: str) -> None:
        self.name = name
        self.states: dict[int, FunctionState] = {}
        # Stored aliases; `live` is here only while pinned.
        self.aliases: dict[str, Alias] = {}
        self._splitters: dict[str, _Splitter] = {}

    # -- versions ------------------------------------------------------------

    @property
    def newest(self) -> FunctionState:
        if not self.states:  # deleted while a call held on to it
            raise NotFound(f"function {self.name!r} was deleted")
        return self.states[max(self.states)]

    def add(self, state: FunctionState) -> None:
        self.states[state.config.version] = state

    def version(self, number: int) -> FunctionState:
        state = self.states.get(number)
        if state is None:
            raise BadRequest(f"function {self.name!r} has no version {number} ({self.retained_text()})")
        return state

    def retained_text(self) -> str:
        return "versions: " + ", ".join(str(v) for v in sorted(self.states))

    def all_states(self) -> list[FunctionState]:
        return list(self.states.values())

    def expired(self, versions_kept: int, adding: int = 0) -> list[FunctionState]:
        """Versions retention lets go (once `adding` newer ones are in): not
        among the newest `versions_kept` and pointed at by no alias."""
        numbers = sorted(self.states)
        newest = max(0, versions_kept - adding)
        keep = set(numbers[len(numbers) - newest :]) | self.aliased_versions()
        return [state for number, state in sorted(self.states.items()) if number not in keep]

    def drop(self, states: Iterable[FunctionState]) -> None:
        for state in states:
            del self.states[state.config.version]
            state.deleted = True

    # -- aliases ---------------------------------------------------------------

    def alias(self, name: str) -> Alias:
        """The alias `name` (live always exists: unpinned, it follows the newest)."""
        found = self.aliases.get(name)
        if found is None:
            if name == LIVE:
                return Alias(LIVE, None)
            raise NotFound(f"function {self.name!r} has no alias {name!r}")
        return found

    def all_aliases(self) -> list[Alias]:
        return [self.alias(LIVE)] + [a for name, a in sorted(self.aliases.items()) if name != LIVE]

    def targets(self, alias: Alias) -> frozenset[int]:
        return alias.targets or frozenset({self.newest.config.version})

    def aliased_versions(self) -> set[int]:
        return {v for alias in self.all_aliases() for v in self.targets(alias)}

    def check_alias(self, alias: Alias) -> None:
        """BadRequest unless every version the alias names is retained."""
        for number in sorted(alias.targets):
            self.version(number)
        if alias.name not in self.aliases and len(self.aliases) >= MAX_ALIASES:
            raise BadRequest(f"function {self.name!r} has {MAX_ALIASES} aliases already (at most)")

    def set_alias(self, alias: Alias) -> None:
        self.aliases[alias.name] = alias
        self._splitters.pop(alias.name, None)

    def remove_alias(self, name: str) -> None:
        self.alias(name)  # NotFound for no such alias
        self.aliases.pop(name, None)
        self._splitters.pop(name, None)

    # -- routing -----------------------------------------------------------------

    def resolve(self, qualifier: str | None) -> tuple[FunctionState, Alias | None]:
        """The version a qualifier names, or (for an alias) its main
        version and the alias; NotFound for one that names nothing."""
        if qualifier is not None and qualifier.isascii() and qualifier.isdigit():
            state = self.states.get(int(qualifier))
            if state is None:
                raise NotFound(f"function {self.name!r} has no version {qualifier}")
            return state, None
        alias = self.alias(LIVE if qualifier is None else qualifier)
        main = self.newest if alias.version is None else self.states[alias.version]
        return main, alias

    def route(self, qualifier: str | None) -> tuple[FunctionState, str | None]:
        """The version this call runs, and the alias it came through."""
        state, alias = self.resolve(qualifier)
        if alias is None:
            return state, None
        if alias.canary is not None:
            splitter = self._splitters.setdefault(alias.name, _Splitter())
            if splitter.to_canary(alias.weight):
                state = self.states[alias.canary]
        return state, alias.name

    def reroute_waiters(self) -> None:
        """Calls waiting for a sandbox of a version their alias no longer
        points at (a deploy moved live, an alias was changed or removed)
        leave that queue and are routed again, in the order they came."""
        for state in self.states.values():
            for fut, alias_name in list(state.alias_waiters.items()):
                if fut.done() or self._points_at(alias_name, state.config.version):
                    continue
                del state.alias_waiters[fut]
                state.pool.waiters.remove(fut)
                fut.set_exception(Rerouted())

    def _points_at(self, alias_name: str, version: int) -> bool:
        try:
            return version in self.targets(self.alias(alias_name))
        except NotFound:
            return False
