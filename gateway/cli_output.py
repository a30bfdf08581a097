"""What the `faas` CLI prints: tables, numbers, bodies, and log lines made
safe for a terminal."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import Any


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
