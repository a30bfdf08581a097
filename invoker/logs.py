"""Function logs: recent lines per function in memory, every line appended
to <data>/logs/<function>.log so they survive a restart."""

from __future__ import annotations

import asyncio
import collections
import os
import time

MAX_LINES_IN_MEMORY = 5000
FLUSH_DELAY_S = 0.2


class LogStore:
    def __init__(self, root: str, max_lines: int = MAX_LINES_IN_MEMORY) -> None:
        self.root = root
        self.max_lines = max_lines
        os.makedirs(root, exist_ok=True)
        self._lines: dict[str, collections.deque[str]] = {}
        self._files: dict[str, object] = {}
        self._dirty: set[str] = set()
        self._flush_scheduled = False
        self._stamp_second = -1
        self._stamp_prefix = ""

    def _path(self, function: str) -> str:
        return os.path.join(self.root, f"{function}.log")

    def _buffer(self, function: str) -> collections.deque[str]:
        buf = self._lines.get(function)
        if buf is None:
            buf = collections.deque(maxlen=self.max_lines)
            try:
                with open(self._path(function), encoding="utf-8", errors="replace") as f:
                    buf.extend(line.rstrip("\n") for line in f)
            except FileNotFoundError:
                pass
            self._lines[function] = buf
        return buf

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
        lines = [f"{stamp} {call_id} {line}" for line in text.splitlines()]
        self._buffer(function).extend(lines)
        f = self._files.get(function)
        if f is None:
            f = open(self._path(function), "a", encoding="utf-8")  # noqa: SIM115 - kept open, closed in close()
            self._files[function] = f
        f.write("\n".join(lines) + "\n")  # type: ignore[attr-defined]
        # Flushed to the file within FLUSH_DELAY_S rather than per call: logs
        # are served from memory, the file is for restarts.
        self._dirty.add(function)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(FLUSH_DELAY_S, self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        for function in self._dirty:
            f = self._files.get(function)
            if f is not None:
                f.flush()  # type: ignore[attr-defined]
        self._dirty.clear()

    def tail(self, function: str, n: int) -> list[str]:
        buf = self._buffer(function)
        if n <= 0:
            return []
        return list(buf)[-n:]

    def delete(self, function: str) -> None:
        f = self._files.pop(function, None)
        if f is not None:
            f.close()  # type: ignore[attr-defined]
        self._lines.pop(function, None)
        try:
            os.unlink(self._path(function))
        except FileNotFoundError:
            pass

    def close(self) -> None:
        self.flush()
        for f in self._files.values():
            f.close()  # type: ignore[attr-defined]
        self._files.clear()
