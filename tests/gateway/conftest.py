"""The CLI's tests share a canned gateway (tests/canned_http.py) and a stdin
that is, or is not, a terminal."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator

import pytest

from tests.canned_http import Canned, serving


@pytest.fixture
def gw(monkeypatch: pytest.MonkeyPatch) -> Iterator[Canned]:
    monkeypatch.delenv("FAAS_GATEWAY", raising=False)
    monkeypatch.delenv("FAAS_TOKEN", raising=False)
    with serving() as canned:
        yield canned


class FakeStdin(io.TextIOWrapper):
    def __init__(self, data: bytes, tty: bool) -> None:
        super().__init__(io.BytesIO(data))
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.fixture
def tty_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", FakeStdin(b"", tty=True))
