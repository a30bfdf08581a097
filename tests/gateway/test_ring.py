"""Consistent hashing with bounded loads: homes are stable, spread, and no
invoker goes over the bound."""

from __future__ import annotations

import collections
import random

from gateway.cluster.ring import Ring, candidates, load_bound

NODES = ["inv-a", "inv-b", "inv-c"]
FUNCTIONS = [f"fn-{i}" for i in range(600)]


def test_home_is_stable_and_functions_spread_over_every_invoker() -> None:
    ring = Ring(NODES)
    homes = collections.Counter(ring.home(f) for f in FUNCTIONS)
    assert set(homes) == set(NODES)
    assert min(homes.values()) > len(FUNCTIONS) / len(NODES) / 2  # 64 points each: roughly even
    assert all(Ring(reversed(NODES)).home(f) == ring.home(f) for f in FUNCTIONS)  # order-free


def test_removing_an_invoker_moves_only_its_functions() -> None:
    before, after = Ring(NODES), Ring(["inv-a", "inv-b"])
    for f in FUNCTIONS:
        if before.home(f) != "inv-c":
            assert after.home(f) == before.home(f)
        else:
            assert after.home(f) == before.walk(f)[1]  # the next one clockwise


def test_walk_names_every_invoker_once_home_first() -> None:
    ring = Ring(NODES)
    for f in FUNCTIONS[:50]:
        walked = ring.walk(f)
        assert sorted(walked) == sorted(NODES) and walked[0] == ring.home(f)
    assert Ring([]).walk("f") == [] and Ring([]).home("f") is None


def test_an_idle_cluster_sends_a_call_home() -> None:
    ring = Ring(NODES)
    first = candidates(ring, "fn-1", {})
    assert first[0].node_id == ring.home("fn-1") and all(c.under_bound for c in first)


def test_a_home_at_the_bound_spills_clockwise() -> None:
    ring = Ring(NODES)
    home, second, third = ring.walk("fn-1")
    loads = {home: 5, second: 0, third: 0}  # bound = ceil(1.25 * 6 / 3) = 3
    order = candidates(ring, "fn-1", loads, epsilon=0.25)
    assert [c.node_id for c in order] == [second, third, home]
    assert [c.under_bound for c in order] == [True, True, False]


def test_unusable_invokers_are_left_out_and_the_bound_is_over_the_rest() -> None:
    ring = Ring(NODES)
    home, second, third = ring.walk("fn-1")
    order = candidates(ring, "fn-1", {home: 0, second: 1, third: 0}, usable=[second, third])
    assert [c.node_id for c in order] == [second, third]
    assert candidates(ring, "fn-1", {}, usable=[]) == []


def test_no_invoker_goes_over_the_bound_under_any_placement_sequence() -> None:
    rng = random.Random(7)
    ring = Ring(NODES + ["inv-d", "inv-e"])
    loads = dict.fromkeys(ring.node_ids, 0)
    for _ in range(5000):
        if rng.random() < 0.45 and any(loads.values()):  # a call ends somewhere
            node = rng.choice([n for n, v in loads.items() if v])
            loads[node] -= 1
            continue
        key = rng.choice(FUNCTIONS[:8])  # a few hot functions: the worst case for plain hashing
        bound = load_bound(sum(loads.values()), len(loads), 0.25)
        chosen = candidates(ring, key, loads, epsilon=0.25)[0]
        assert chosen.under_bound
        loads[chosen.node_id] += 1
        assert loads[chosen.node_id] <= bound
