"""A Lease: the invoker's hold on one specialized sandbox, with the
bookkeeping the sandbox itself does not need to know."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sandbox.api import Sandbox


@dataclass(eq=False)
class Lease:
    sandbox: Sandbox
    # The code directory it was specialized from: kept on disk while it lives.
    code_dir: str
    # Memory it holds, for the warm-memory budget (its last call's peak).
    memory_bytes: int
    # time.monotonic() of its last call's end, for keep-alive and LRU.
    last_used: float = field(default_factory=time.monotonic)
    # The layer directory it was specialized with ("": none): kept while it lives.
    layer_dir: str = ""
