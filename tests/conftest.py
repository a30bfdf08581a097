from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import leaks
from tests.helpers import Server


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """After the whole suite: no sandbox process, cgroup or mount of ours is left."""
    before = leaks.snapshot()
    yield
    # A killed server's zygote reaps its sandboxes on its own, a moment later:
    # give asynchronous cleanup a few seconds, then nothing may remain.
    deadline = time.monotonic() + 5
    leftovers = leaks.leftovers(before, only_ours=True)
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.1)
        leftovers = leaks.leftovers(before, only_ours=True)
    assert not leftovers, f"the test suite left these behind: {leftovers}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if os.geteuid() != 0:
        pytest.skip("the runtime needs root")
    srv = Server(tmp_path_factory.mktemp("data") / "d").start()
    yield srv
    code = srv.stop()
    assert code == 0, f"faas serve exited with {code}:\n{srv.log()[-4000:]}"


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data").start()
    yield srv
    if srv.proc and srv.proc.poll() is None:
        srv.stop()
