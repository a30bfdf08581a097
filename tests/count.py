"""How many tests of each kind the suite holds, by collecting it:

    python -m tests.count [PYTEST ARGS...]

unit: a pure module, no root (`pytest -m "not root"`); in-process: the
machinery itself inside the test process, no server (marked `inprocess`: the
Invoker on a fake sandbox factory, real cgroups); end-to-end: a real server
in a subprocess (tests/e2e, tests/security).
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT_DIRECTORIES


def kind(item: pytest.Item) -> str:
    if any(Path(str(item.path)).is_relative_to(d) for d in ROOT_DIRECTORIES):
        return "end-to-end"
    marked = item.get_closest_marker("inprocess") or item.get_closest_marker("root")
    return "in-process" if marked is not None else "unit"


class Counter:
    def __init__(self) -> None:
        self.kinds: collections.Counter[str] = collections.Counter()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.kinds.update(kind(item) for item in session.items)


def main(args: list[str]) -> int:
    counter = Counter()
    quiet = ["-p", "no:terminal", "-p", "no:cacheprovider"]
    code = pytest.main(["--collect-only", *quiet, *args], plugins=[counter])
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        return int(code)
    print()
    for name in ("unit", "in-process", "end-to-end"):
        print(f"{name:>11}: {counter.kinds[name]}")
    print(f"{'total':>11}: {sum(counter.kinds.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
