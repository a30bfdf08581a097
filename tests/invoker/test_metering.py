"""Metering arithmetic (pure): billed duration, totals, cost, REPORT, times."""

from __future__ import annotations

import pytest

from invoker.errors import BadRequest
from invoker.metering import PricePlan, Totals, UsageRecord, billed_ms, iso, parse_time, report_line


def record(**overrides: object) -> UsageRecord:
    fields = dict(
        call_id="c1", function="f", version=2, started_at=1_795_000_000.5, wall_ms=12.3, init_ms=None,
        cpu_us=4567, memory_mb=256, max_memory_bytes=10 * 1024 * 1024, status="ok", cold=False,
    )  # fmt: skip
    fields.update(overrides)
    return UsageRecord(**fields)  # type: ignore[arg-type]


def test_billed_is_ceil_of_wall_plus_init_and_at_least_one() -> None:
    assert billed_ms(12.3, None) == 13
    assert billed_ms(12.0, None) == 12
    assert billed_ms(0.2, None) == 1
    assert billed_ms(10.5, 4.6) == 16


def test_totals_and_cost_use_integer_units() -> None:
    totals = Totals()
    totals.add(record())
    totals.add(record(status="error", wall_ms=1000.0, cpu_us=1_000_000))
    assert (totals.requests, totals.errors, totals.billed_ms) == (2, 1, 13 + 1000)
    assert totals.mb_ms == 256 * 1013
    assert totals.gb_seconds == 256 * 1013 / (1024 * 1000)
    plan = PricePlan(per_request=0.5, per_gb_second=2.0, per_cpu_second=3.0)
    assert totals.cost(plan) == pytest.approx(2 * 0.5 + totals.gb_seconds * 2.0 + totals.cpu_seconds * 3.0)
    assert totals.cpu_seconds == 1.004567


def test_default_prices_match_the_spec() -> None:
    plan = PricePlan()
    assert (
        plan.per_request == 0.20 / 1_000_000
        and plan.per_gb_second == 0.0000166667
        and plan.per_cpu_second == 0
        and plan.per_gb_transfer == 0
    )


def test_transfer_is_summed_and_priced_per_gib_received_plus_sent() -> None:
    parts = [Totals(), Totals()]
    parts[0].add(record(net_rx_bytes=3 * 1024**3, net_tx_bytes=1024**3))
    parts[1].add(record(net_rx_bytes=512 * 1024**2))
    totals = Totals.sum(parts)
    assert (totals.net_rx_bytes, totals.net_tx_bytes) == (3 * 1024**3 + 512 * 1024**2, 1024**3)
    assert totals.transfer_gb == 4.5
    plan = PricePlan(per_request=0, per_gb_second=0, per_gb_transfer=0.09)
    assert totals.cost(plan) == pytest.approx(4.5 * 0.09)
    data = totals.to_json(plan)
    assert (data["net_rx_bytes"], data["net_tx_bytes"], data["transfer_gb"]) == (
        totals.net_rx_bytes,
        1024**3,
        4.5,
    )


def test_report_line() -> None:
    line = report_line(record(init_ms=3.21, cold=True))
    assert line == (
        "REPORT RequestId: c1 Duration: 12.30 ms Billed Duration: 16 ms Memory Size: 256 MB "
        "Max Memory Used: 10 MB CPU Time: 4.57 ms Init Duration: 3.21 ms"
    )
    assert "Init Duration" not in report_line(record())


def test_record_json_fields_are_the_specs() -> None:
    data = record(init_ms=1.0, cold=True).to_json()
    assert set(data) == {
        "call_id", "function", "version", "started_at", "wall_ms", "billed_ms", "init_ms", "cpu_ms",
        "memory_mb", "max_memory_mb", "status", "cold", "attempt", "net_rx_bytes", "net_tx_bytes",
    }  # fmt: skip
    assert data["started_at"] == "2026-11-18T11:06:40.500Z"
    assert data["cpu_ms"] == 4.567 and data["max_memory_mb"] == 10.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1795000000", 1795000000.0),
        ("1795000000.25", 1795000000.25),
        ("2026-11-18T11:06:40Z", 1795000000.0),
        ("2026-11-18T11:06:40+00:00", 1795000000.0),
        ("2026-11-18T12:06:40+01:00", 1795000000.0),
        ("2026-11-18T11:06:40", 1795000000.0),
        ("", None),
        (None, None),
    ],
)
def test_parse_time(text: str | None, expected: float | None) -> None:
    assert parse_time("since", text) == expected


@pytest.mark.parametrize("text", ["yesterday", "nan", "inf", "2026-13-01", "12:00"])
def test_parse_time_rejects_with_the_format(text: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_time("until", text)
    assert "until=" in err.value.message and "ISO 8601" in err.value.message


def test_iso_round_trip() -> None:
    assert parse_time("since", iso(1795000000.123)) == pytest.approx(1795000000.123)
