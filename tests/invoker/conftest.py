"""The fixtures of the invoker's in-process tests: a fake sandbox factory
(tests/invoker/fakes.py) and an Invoker on it, with its data in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from invoker.invoker import Invoker

from .fakes import FakeFactory, make_invoker


@pytest.fixture
def factory() -> FakeFactory:
    return FakeFactory()


@pytest.fixture
async def invoker(tmp_path: Path, factory: FakeFactory) -> AsyncIterator[Invoker]:
    async with make_invoker(tmp_path, factory) as inv:
        yield inv
