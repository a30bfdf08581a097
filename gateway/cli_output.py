"""What the `faas` CLI prints: tables, numbers, bodies, and log lines made
safe for a terminal."""

from __future__ import annotations

import itertools
import json
import re
import sys
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, TextIO


def dump(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()) -> str:
    everything = [list(header), *(list(r) for r in rows)]
    widths = [max(len(row[i]) for row in everything) for i in range(len(header))]
    lines = []
    for row in everything:
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def fmt(value: Any, spec: str = "") -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    return format(value, spec)


def write_body(body: bytes) -> None:
    """The body as bytes, untouched; a newline only to keep a terminal prompt off the last line."""
    out = sys.stdout
    out.flush()
    if body and not body.endswith(b"\n") and out.isatty() and is_text(body):
        body += b"\n"
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        out.write(body.decode("utf-8", errors="replace"))
    else:
        buffer.write(body)
    out.flush()
    if buffer is not None:
        buffer.flush()


def is_text(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# What a log line may not send to a terminal as is: C0 controls but tab, DEL,
# C1 controls (U+0080-U+009F: 8-bit CSI and OSC to some terminals), and the
# bidirectional overrides that make text display in another order.
_UNPRINTABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(line: str) -> str:
    """A log line, which a function wrote, made safe to print: escape
    sequences could move the cursor and rewrite earlier lines (a forged
    REPORT line), retitle the terminal or set the clipboard (OSC 52). Each
    such character is shown as a visible \\xNN (or \\uNNNN) escape."""
    return _UNPRINTABLE.sub(_escape, line)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def size_text(size_bytes: Any) -> str:
    if not isinstance(size_bytes, int):
        return "-"
    for unit in ("B", "KiB", "MiB"):
        if size_bytes < 1024:
            return f"{size_bytes:.0f} {unit}" if unit == "B" else f"{size_bytes:.1f} {unit}"
        size_bytes /= 1024  # type: ignore[assignment]
    return f"{size_bytes:.1f} GiB"


class Progress:
    """A line that shows a long request is alive (a spinner and the seconds
    so far), on a terminal only; scripts reading stderr get nothing."""

    FRAMES = "|/-\\"

    def __init__(self, text: str, stream: TextIO | None = None, interval_s: float = 0.1) -> None:
        self.text = text
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()

    def __enter__(self) -> Progress:
        if self.stream.isatty():
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()
        return self

    def _spin(self) -> None:
        for frame in itertools.cycle(self.FRAMES):
            self.stream.write(f"\r{self.text} {frame} {time.monotonic() - self._t0:.0f} s")
            self.stream.flush()
            if self._done.wait(self.interval_s):
                return

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
            self.stream.write("\r\033[K")  # the line goes: what follows says how it ended
            self.stream.flush()
