"""What a cluster's gateway makes of the answers of every invoker: a
function's logs as one log, oldest first (routes/logs.py merge_tails), and
function records with every invoker's warm sandboxes counted
(routes/functions.py instances_summed)."""

from __future__ import annotations

from gateway.routes.functions import instances_summed
from gateway.routes.logs import merge_tails


def _line(second: int, ms: int, call: str, text: str) -> str:
    return f"2026-11-29T10:00:{second:02d}.{ms:03d}Z {call} {text}"


def test_lines_interleave_by_time_and_the_tail_is_the_newest() -> None:
    a = [_line(1, 0, "a1", "x"), _line(3, 0, "a2", "y"), _line(5, 999, "a3", "z")]
    b = [_line(2, 500, "b1", "p"), _line(5, 100, "b2", "q")]
    c: list[str] = []
    merged = merge_tails([a, b, c], 100)
    assert merged == [a[0], b[0], a[1], b[1], a[2]]
    assert merge_tails([a, b, c], 2) == [b[1], a[2]]
    assert merge_tails([a, b], 0) == []


def test_one_stamp_in_two_logs_keeps_each_logs_own_order() -> None:
    a = [_line(1, 0, "a", "out"), _line(1, 0, "a", "REPORT")]
    b = [_line(1, 0, "b", "out"), _line(1, 0, "b", "REPORT")]
    merged = merge_tails([a, b], 10)
    assert merged.index(a[0]) < merged.index(a[1]) and merged.index(b[0]) < merged.index(b[1])
    assert sorted(merged) == sorted(a + b)


def test_function_records_count_every_servers_instances() -> None:
    a = [{"name": "f", "version": 2, "instances": 1}, {"name": "g", "version": 1, "instances": 0}]
    b = [{"name": "f", "version": 2, "instances": 2}]  # has not heard of g yet
    c = [{"name": "e", "version": 1, "instances": 1}, {"name": "f", "version": 2, "instances": 0}]
    assert instances_summed([a, b, c]) == [
        {"name": "e", "version": 1, "instances": 1},
        {"name": "f", "version": 2, "instances": 3},
        {"name": "g", "version": 1, "instances": 0},
    ]
    assert instances_summed([a[0], b[0], c[1]]) == {"name": "f", "version": 2, "instances": 3}


def test_a_server_behind_on_a_deploy_does_not_hide_the_new_version() -> None:
    behind = [{"name": "f", "version": 1, "instances": 2}]
    current = [{"name": "f", "version": 2, "instances": 1}]
    assert instances_summed([behind, current]) == [{"name": "f", "version": 2, "instances": 3}]
    assert instances_summed([behind[0], current[0]]) == {"name": "f", "version": 2, "instances": 3}
