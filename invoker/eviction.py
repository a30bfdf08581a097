"""Which idle sandboxes go: keep-alive expiry and, under the warm-memory
budget, least recently used first. Pure: takes leases out of the pools and
returns them; the caller destroys them. A busy sandbox is never taken."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import Unavailable
from .functions import FunctionState
from .lease import Lease


def retire_idle(functions: Iterable[FunctionState], cutoff: float) -> list[Lease]:
    """Idle leases last used before `cutoff` (time.monotonic())."""
    expired: list[Lease] = []
    for state in functions:
        for lease in [lease for lease in state.pool.idle if lease.last_used < cutoff]:
            state.pool.remove_idle(lease)
            expired.append(lease)
    return expired


def evict_lru(
    functions: Iterable[FunctionState], used_bytes: int, needed_bytes: int, budget_bytes: int
) -> list[tuple[FunctionState, Lease]]:
    """Idle leases to evict, least recently used first, until `needed_bytes`
    more fits in the budget; Unavailable (and nothing evicted) if it would
    not fit even with every idle one gone: only busy ones hold the rest."""
    if used_bytes + needed_bytes <= budget_bytes:
        return []  # the common case, on every cold start's path: nothing to sort
    idle = sorted(
        ((lease.last_used, id(lease), lease, state) for state in functions for lease in state.pool.idle),
        key=lambda entry: entry[:2],
    )
    if used_bytes - sum(entry[2].memory_bytes for entry in idle) + needed_bytes > budget_bytes:
        raise Unavailable(
            f"no capacity: warm sandboxes hold {used_bytes >> 20} MiB of the {budget_bytes >> 20} MiB "
            "budget and all are busy"
        )
    evicted: list[tuple[FunctionState, Lease]] = []
    for _, _, lease, state in idle:
        if used_bytes + needed_bytes <= budget_bytes:
            break
        state.pool.remove_idle(lease)
        used_bytes -= lease.memory_bytes
        evicted.append((state, lease))
    return evicted
