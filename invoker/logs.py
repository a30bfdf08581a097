"""Function logs: recent lines per function in memory, every line appended
to <data>/logs/<function>.log so they survive a restart.

Everything here is bounded whatever a function does (the sandbox's own cap
cannot be trusted): at most LOG_CAP_BYTES of one call's output is kept,
then one marker line; memory per function is capped in bytes; a log file
is rotated once it passes FILE_CAP_BYTES (one older generation is kept).
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from typing import IO

from sandbox.api import LOG_CAP_BYTES, TRUNCATION_MARKER

MEMORY_CAP_BYTES = 2 * 1024 * 1024
FILE_CAP_BYTES = 16 * 1024 * 1024
FLUSH_DELAY_S = 0.2
# The same cap and marker the sandbox's runtime applies, so a call's output
# is never marked twice.
TRUNCATED = TRUNCATION_MARKER.rstrip("\n")


def cap_call_output(text: str) -> str:
    """One call's output, cut at LOG_CAP_BYTES with a marker line."""
    if len(text) <= LOG_CAP_BYTES // 4 or len(text.encode("utf-8", "replace")) <= LOG_CAP_BYTES:
        return text
    kept = text.encode("utf-8", "replace")[:LOG_CAP_BYTES].decode("utf-8", "ignore")
    kept = kept[: kept.rfind("\n") + 1] if "\n" in kept else kept + "\n"
    if TRUNCATED in kept:  # the sandbox already marked it
        return kept
    return kept + TRUNCATED + "\n"


class _FunctionLog:
    def __init__(self) -> None:
        self.lines: collections.deque[str] = collections.deque()
        self.bytes = 0
        self.file: IO[str] | None = None
        self.file_bytes = 0

    def add(self, lines: list[str]) -> None:
        self.lines.extend(lines)
        self.bytes += sum(len(line) for line in lines)
        while self.bytes > MEMORY_CAP_BYTES and self.lines:
            self.bytes -= len(self.lines.popleft())


class LogStore:
    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, exist_ok=True)
        self._logs: dict[str, _FunctionLog] = {}
        self._dirty: set[str] = set()
        self._flush_scheduled = False
        self._stamp_second = -1
        self._stamp_prefix = ""

    def _path(self, function: str) -> str:
        return os.path.join(self.root, f"{function}.log")

    def _log(self, function: str) -> _FunctionLog:
        log = self._logs.get(function)
        if log is None:
            log = _FunctionLog()
            try:
                with open(self._path(function), encoding="utf-8", errors="replace") as f:
                    offset = max(0, os.fstat(f.fileno()).st_size - MEMORY_CAP_BYTES)
                    f.seek(offset)
                    lines = f.read().splitlines()
                # Read from the middle of the file, the first line may be cut.
                log.add(lines[1:] if offset > 0 else lines)
            except FileNotFoundError:
                pass
            self._logs[function] = log
        return log

    def _stamp(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp_prefix}.{int(now * 1000) % 1000:03d}Z"

    def append(self, function: str, call_id: str, text: str) -> None:
        """Store `text` (one call's output) as lines tagged with the call id."""
        if not text:
            return
        stamp = self._stamp()
        lines = [f"{stamp} {call_id} {line}" for line in cap_call_output(text).splitlines()]
        log = self._log(function)
        log.add(lines)
        if log.file is None:
            path = self._path(function)
            log.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open, closed in close()
            log.file_bytes = os.path.getsize(path)
        chunk = "\n".join(lines) + "\n"
        log.file.write(chunk)
        log.file_bytes += len(chunk)
        if log.file_bytes > FILE_CAP_BYTES:
            self._rotate(function, log)
        # Flushed to the file within FLUSH_DELAY_S rather than per call: logs
        # are served from memory, the file is for restarts.
        self._dirty.add(function)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(FLUSH_DELAY_S, self.flush)

    def _rotate(self, function: str, log: _FunctionLog) -> None:
        assert log.file is not None
        log.file.close()
        os.replace(self._path(function), self._path(function) + ".1")
        log.file = open(self._path(function), "a", encoding="utf-8")  # noqa: SIM115
        log.file_bytes = 0

    def flush(self) -> None:
        self._flush_scheduled = False
        for function in self._dirty:
            log = self._logs.get(function)
            if log is not None and log.file is not None:
                log.file.flush()
        self._dirty.clear()

    def tail(self, function: str, n: int) -> list[str]:
        if n <= 0:
            return []
        lines = self._log(function).lines
        return list(lines)[-n:]

    def delete(self, function: str) -> None:
        log = self._logs.pop(function, None)
        if log is not None and log.file is not None:
            log.file.close()
        self._dirty.discard(function)
        for path in (self._path(function), self._path(function) + ".1"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        self.flush()
        for log in self._logs.values():
            if log.file is not None:
                log.file.close()
                log.file = None
