"""What a handler receives: `event` (the HTTP request) and `context`.

Runs inside the sandbox; the contract is docs/HANDLER.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any


class Headers(Mapping[str, str]):
    """A read-only, case-insensitive mapping of request headers.

    Repeated headers are joined with ", " as RFC 9110 allows; `getall`
    returns each value.
    """

    __slots__ = ("_pairs", "_values", "_names")

    def __init__(self, pairs: Sequence[tuple[str, str]] | Sequence[list[str]]) -> None:
        # Indexed on first use: a handler that never reads a header pays nothing.
        self._pairs = pairs
        self._values: dict[str, list[str]] | None = None
        self._names: dict[str, str] = {}

    def _index(self) -> dict[str, list[str]]:
        values = self._values
        if values is None:
            values = self._values = {}
            for name, value in self._pairs:
                key = name.lower()
                values.setdefault(key, []).append(value)
                self._names.setdefault(key, name)
        return values

    def __getitem__(self, name: str) -> str:
        return ", ".join(self._index()[name.lower()])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index()

    def __iter__(self) -> Iterator[str]:
        self._index()
        return iter(self._names.values())

    def __len__(self) -> int:
        return len(self._index())

    def getall(self, name: str) -> list[str]:
        return list(self._index().get(name.lower(), []))

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


class Event:
    __slots__ = ("method", "path", "query", "headers", "body", "_raw_query", "_query_list")

    def __init__(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: Headers,
        body: bytes,
        raw_query: str = "",
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self._raw_query = raw_query
        self._query_list: dict[str, list[str]] | None = None

    @property
    def query_list(self) -> dict[str, list[str]]:
        """Every value of each query key, in order (`query` keeps the last);
        parsed on first use."""
        if self._query_list is None:
            from urllib.parse import parse_qs  # only a call that asks pays for it

            self._query_list = parse_qs(self._raw_query, keep_blank_values=True)
        return self._query_list

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; ValueError (json.JSONDecodeError) if it is not."""
        try:
            return json.loads(self.body)
        except UnicodeDecodeError as exc:
            raise ValueError(f"body is not UTF-8 JSON: {exc}") from None

    def __repr__(self) -> str:
        return (
            f"Event(method={self.method!r}, path={self.path!r}, query={self.query!r}, {len(self.body)} bytes)"
        )


class Context:
    def __init__(
        self,
        request_id: str,
        function_name: str,
        function_version: str,
        memory_limit_in_mb: int,
        timeout_s: float,
        cold_start: bool,
        deadline_monotonic: float,
    ) -> None:
        self.request_id = request_id
        self.aws_request_id = request_id
        self.function_name = function_name
        self.function_version = function_version
        self.memory_limit_in_mb = memory_limit_in_mb
        self.timeout_s = timeout_s
        self.cold_start = cold_start
        self._deadline = deadline_monotonic

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self) -> str:
        return f"Context(request_id={self.request_id!r}, function_name={self.function_name!r})"
