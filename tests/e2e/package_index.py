"""Layer tests need pip to reach the package index (PyPI, or whatever the
host's pip configuration names). It is probed once per test run; without
it those tests skip, saying why, and never pass without having run."""

from __future__ import annotations

import base64
import functools
import subprocess
import sys
import tempfile
from typing import Any

import pytest

PROBE_TIMEOUT_S = 120


@functools.cache
def index_problem() -> str | None:
    """None when pip can fetch a wheel (six) from the configured index, else why not."""
    with tempfile.TemporaryDirectory() as dest:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
                + ["--dest", dest, "six"],
                capture_output=True,
                text=True,
                timeout=PROBE_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return f"pip download six did not finish within {PROBE_TIMEOUT_S} s"
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return f"pip download six failed: {lines[-1] if lines else done.returncode}"
    return None


def require_index() -> None:
    problem = index_problem()
    if problem is not None:
        pytest.skip(f"the package index cannot be reached, so no layer can be built ({problem})")


def files_body(name: str, files: dict[str, str], **options: Any) -> dict[str, Any]:
    """A deploy body of several files (a function directory)."""
    encoded = {path: base64.b64encode(text.encode()).decode() for path, text in files.items()}
    return {"name": name, "files": encoded, **options}
