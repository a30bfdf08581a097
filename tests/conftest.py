from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import leaks
from tests.helpers import Server, wait_until

TESTS = Path(__file__).resolve().parent
# Every test here runs a real server (or attacks one): namespaces, mounts, cgroups.
ROOT_DIRECTORIES = (TESTS / "e2e", TESTS / "security")
# Fixtures that start a server.
ROOT_FIXTURES = {"server", "fresh_server"}
NEEDS_ROOT = (
    "needs root (starts a server: namespaces, mounts, cgroups); "
    "`pytest -m 'not root'` runs only the unit tests"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark with `root` every test that needs it: by directory, or by its use
    of a server fixture. A test elsewhere that needs root for another reason
    carries the marker itself (`pytestmark = pytest.mark.root`)."""
    for item in items:
        path = Path(str(item.path))
        if any(path.is_relative_to(d) for d in ROOT_DIRECTORIES) or _uses_a_server(item):
            item.add_marker(pytest.mark.root)


def _uses_a_server(item: pytest.Item) -> bool:
    """Whether the test gets `server` or `fresh_server` from this conftest (a
    module may define its own fixture of that name, e.g. an in-process aiohttp
    test server, which needs no root)."""
    resolved = getattr(item, "_fixtureinfo", None)
    if resolved is None:
        return False
    for name in ROOT_FIXTURES:
        definitions = resolved.name2fixturedefs.get(name)
        if definitions and definitions[-1].func.__module__ == __name__:
            return True
    return False


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None and os.geteuid() != 0:
        pytest.skip(NEEDS_ROOT)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """After the whole suite: no sandbox process, cgroup or mount of ours is left."""
    before = leaks.snapshot()
    yield
    # A killed server's zygote reaps its sandboxes on its own, a moment later:
    # give asynchronous cleanup a few seconds, then nothing may remain.
    wait_until(
        lambda: not leaks.leftovers(before, only_ours=True),
        5,
        "the test suite's sandboxes, cgroups and mounts to go",
        detail=lambda: leaks.leftovers(before, only_ours=True),
    )


@pytest.fixture(scope="module", autouse=True)
def host_devices_intact() -> Iterator[None]:
    """After each test module: the host's /dev/null, /dev/zero, /dev/random and
    /dev/urandom are still the kernel's character devices. A sandbox mount
    set up on the wrong side of a pivot, or a cleanup that follows a bind,
    could replace or remove one; catch it in the module that did it."""
    before = leaks.host_device_problems()
    yield
    after = leaks.host_device_problems()
    if before:
        assert not after, f"host devices broken (already before this module): {sorted(after)}"
    assert not after, f"this module broke host devices: {sorted(after)}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
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
