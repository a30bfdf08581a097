from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.services import fresh_database, nats_server, postgres_server

_numbers = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A database of the test's own on the session's PostgreSQL."""
    return fresh_database(pg_server, f"faas_test_{next(_numbers)}")


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """One nats-server (JetStream) for the session; tests keep apart by namespace."""
    with nats_server() as url:
        yield url
