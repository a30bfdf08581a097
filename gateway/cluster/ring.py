"""Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam,
"Consistent Hashing with Bounded Loads", 2018). Pure: no I/O.

Each invoker has `VNODES` points on a 64-bit ring; a function's home is the
first invoker clockwise from its name's hash, so a function's calls go to
one invoker (warm sandboxes there) and adding or removing an invoker moves
only about 1/n of the functions. With bounded loads no invoker takes more
than ceil((1 + epsilon) * (in-flight calls + 1) / n): a call whose home is
at the bound walks on clockwise to the first invoker under it.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

VNODES = 64
DEFAULT_EPSILON = 0.25


def point(key: str) -> int:
    """A key's place on the ring: stable across processes and machines (not hash())."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class Candidate:
    node_id: str
    # Under the load bound: the call goes to the first such candidate; the
    # others are the order to fall back in when it is unreachable or full.
    under_bound: bool


class Ring:
    def __init__(self, node_ids: Iterable[str], vnodes: int = VNODES) -> None:
        self.node_ids = frozenset(node_ids)
        points = sorted((point(f"{node}#{i}"), node) for node in self.node_ids for i in range(vnodes))
        self._hashes = [h for h, _ in points]
        self._owners = [node for _, node in points]

    def walk(self, key: str) -> list[str]:
        """Every invoker once, clockwise from `key`'s point: its home first."""
        if not self._hashes:
            return []
        start = bisect.bisect_right(self._hashes, point(key))
        seen: dict[str, None] = {}
        for i in range(len(self._owners)):
            seen.setdefault(self._owners[(start + i) % len(self._owners)], None)
            if len(seen) == len(self.node_ids):
                break
        return list(seen)

    def home(self, key: str) -> str | None:
        walked = self.walk(key)
        return walked[0] if walked else None


def load_bound(total_in_flight: int, nodes: int, epsilon: float) -> int:
    """The most calls one invoker may hold, counting the one being placed."""
    return math.ceil((1 + epsilon) * (total_in_flight + 1) / nodes)


def candidates(
    ring: Ring,
    key: str,
    in_flight: Mapping[str, int],
    epsilon: float = DEFAULT_EPSILON,
    usable: Iterable[str] | None = None,
) -> list[Candidate]:
    """The invokers to try for a call of `key`, in order: those under the load
    bound clockwise from its home, then those at it (a fallback when every
    one under it fails). `usable`: the invokers that are alive and ready
    (default all); the bound is over them alone."""
    allowed = ring.node_ids if usable is None else ring.node_ids & frozenset(usable)
    order = [node for node in ring.walk(key) if node in allowed]
    if not order:
        return []
    bound = load_bound(sum(in_flight.get(node, 0) for node in order), len(order), epsilon)
    under = [Candidate(node, True) for node in order if in_flight.get(node, 0) + 1 <= bound]
    over = [Candidate(node, False) for node in order if in_flight.get(node, 0) + 1 > bound]
    return under + over
