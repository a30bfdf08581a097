"""GET /system/usage?function=F&since=T&until=T[&records=1&limit=N&cursor=C]"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from invoker.errors import BadRequest
from invoker.invoker import Invoker
from invoker.metering import PricePlan, Totals, iso, parse_time
from invoker.model import UsageQuery
from invoker.validate import validate_name

MAX_LIMIT = 100_000


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer from {lo} to {hi}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be an integer from {lo} to {hi}, got {value}")
    return value


def _time_param(request: web.Request, name: str) -> float | None:
    """parse_time, and a BadRequest (not a 500) for times it or iso() cannot
    represent (e.g. since=1e18, year 0 after a UTC offset)."""
    raw = request.query.get(name)
    try:
        value = parse_time(name, raw)
        if value is not None:
            iso(value)
    except (ValueError, OverflowError, OSError):
        raise BadRequest(f"{name}={raw!r} is not a time between the years 1 and 9999") from None
    return value


def make_usage_handler(invoker: Invoker, plan: PricePlan) -> web.RequestHandler:  # type: ignore[name-defined]
    async def usage(request: web.Request) -> web.Response:
        since = _time_param(request, "since")
        until = _time_param(request, "until")
        if since is not None and until is not None and until < since:
            raise BadRequest("until is before since")
        function = request.query.get("function") or None
        if function is not None:
            validate_name(function)
        want_records = request.query.get("records", "0").lower() in ("1", "true", "yes")
        limit = int_param(request, "limit", 1000, 1, MAX_LIMIT)
        cursor = int_param(request, "cursor", 0, 0, 2**62)
        query = UsageQuery(since, until, function)
        by_function = await invoker.usage_totals(query)
        overall = Totals.sum(by_function.values())
        body: dict[str, Any] = {
            "since": iso(since) if since is not None else None,
            "until": iso(until) if until is not None else None,
            "function": function,
            "pricing": {
                "per_request": plan.per_request,
                "per_gb_second": plan.per_gb_second,
                "per_cpu_second": plan.per_cpu_second,
                "per_gb_transfer": plan.per_gb_transfer,
            },
            "functions": [{"function": name, **t.to_json(plan)} for name, t in by_function.items()],
            "totals": overall.to_json(plan),
        }
        if want_records:
            rows = await invoker.usage_records(query, cursor, limit + 1)
            more = len(rows) > limit
            rows = rows[:limit]
            body["records"] = [record.to_json() for _, record in rows]
            body["next_cursor"] = rows[-1][0] if more and rows else None
        return web.json_response(body)

    return usage
