"""Metering at the edge of the invoker: one usage record per call that
reached a sandbox, durable in the ledger before the call is answered, added
to the billing totals, and a REPORT line in the function's logs. Also the
usage queries of /system/usage."""

from __future__ import annotations

import asyncio

from sandbox.api import FunctionSpec, Usage

from .errors import Unavailable
from .ledger import Ledger
from .logs import LogStore
from .metering import BillingTotals, Totals, UsageRecord, report_line
from .model import UsageQuery


class Recorder:
    def __init__(self, ledger: Ledger | None, logs: LogStore, billing: BillingTotals) -> None:
        self.ledger = ledger
        self.logs = logs
        self.billing = billing

    async def record(
        self,
        function: FunctionSpec,
        call_id: str,
        started_at: float,
        usage: Usage,
        init_ms: float | None,
        status: str,
        cold: bool,
        attempt: int = 1,
    ) -> UsageRecord:
        """Meter one call that reached a sandbox: durable before we return."""
        record = UsageRecord(
            call_id=call_id,
            function=function.function_name,
            version=function.function_version,
            started_at=started_at,
            wall_ms=usage.wall_ms,
            init_ms=init_ms,
            cpu_us=usage.cpu_us,
            memory_mb=function.memory_mb,
            max_memory_bytes=usage.max_memory_bytes,
            status=status,
            cold=cold,
            attempt=attempt,
            net_rx_bytes=usage.net_rx_bytes,
            net_tx_bytes=usage.net_tx_bytes,
        )
        if self.ledger is not None:
            await self.ledger.append(record)
        self.billing.add(record)
        self.logs.append(function.function_name, call_id, report_line(record))
        return record

    def _ledger(self) -> Ledger:
        if self.ledger is None:
            raise Unavailable("metering is off on this server (metering = false)")
        return self.ledger

    async def totals(self, query: UsageQuery) -> dict[str, Totals]:
        ledger = self._ledger()
        return await asyncio.to_thread(ledger.totals, query.since, query.until, query.function)

    async def records(self, query: UsageQuery, cursor: int, limit: int) -> list[tuple[int, UsageRecord]]:
        ledger = self._ledger()
        return await asyncio.to_thread(
            ledger.records, query.since, query.until, query.function, cursor, limit
        )
